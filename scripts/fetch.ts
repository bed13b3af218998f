// `npm run fetch -- --stack <name> [--out dir]` (--help: options, examples, exit codes): copies the run's report, PNGs, evaluation JSONs and
// samples from its results volume to this machine through the Kubernetes API (@kubernetes/client-node;
// no kubectl): a short-lived, read-only reader pod in the stack's namespace, one `exec` per file, and
// the pod deleted afterwards, also on failure or Ctrl-C. The pure half is fetch-core.ts.
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { Writable } from "stream";
import * as k8s from "@kubernetes/client-node";
import { ConfigError } from "../config";
import { readStackFile, stackFilePath, stackSettings } from "../config/stackfile";
import { runCli, unknownStack } from "./cli";
import {
    FETCH_EXIT, FetchError, FetchTarget, fetchTarget, humanBytes, listCommand, mapError, parseFetchArgs, podProblem,
    READER_CONTAINER, readerPod, readerPodName, reportJobSelector, selectFiles,
} from "./fetch-core";
import { kubeConfig } from "./status";

type Say = (line: string) => void;

/** One command in the reader pod: its stdout (bytes), stderr and exit code. */
async function execIn(exec: k8s.Exec, t: FetchTarget, pod: string, command: string[]): Promise<{ stdout: Buffer; stderr: string; code: number }> {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const sink = (into: Buffer[]) => new Writable({ write(chunk, _enc, cb) { into.push(Buffer.from(chunk)); cb(); } });
    let status: k8s.V1Status | undefined;
    const ws = await exec.exec(t.namespace, pod, READER_CONTAINER, command, sink(out), sink(err), null, false, (s) => { status = s; });
    await new Promise<void>((resolve, reject) => {
        ws.on("close", () => resolve());
        ws.on("error", reject);
    });
    if (!status) throw new FetchError(FETCH_EXIT.failed, `no exit status from \`${command.join(" ")}\` in pod ${pod} (connection dropped)`);
    const code = status.status === "Success" ? 0 : Number(status.details?.causes?.find((c) => c.reason === "ExitCode")?.message ?? 1);
    return { stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString("utf8"), code };
}

/** The image of the run's newest report Job (already pulled on the nodes, a built digest included),
 * else the configured trainer image. */
async function readerImage(batch: k8s.BatchV1Api, t: FetchTarget): Promise<{ image: string; pullSecrets: string[] }> {
    const jobs = await batch.listNamespacedJob({ namespace: t.namespace, labelSelector: reportJobSelector(t.run) });
    const newest = [...jobs.items].sort((a, b) => +(a.metadata?.creationTimestamp ?? 0) - +(b.metadata?.creationTimestamp ?? 0)).pop();
    const spec = newest?.spec?.template?.spec;
    const image = spec?.containers?.[0]?.image;
    if (image) return { image, pullSecrets: (spec?.imagePullSecrets ?? []).map((s) => s.name!).filter(Boolean) };
    if (t.configuredImage) return { image: t.configuredImage, pullSecrets: t.pullSecrets };
    throw new FetchError(FETCH_EXIT.noReport, `no report Job of run ${t.run} in namespace ${t.namespace}: enable stages.report (with the evaluations) and run pulumi up, then fetch again`);
}

async function waitRunning(core: k8s.CoreV1Api, t: FetchTarget, name: string, timeoutSeconds: number, sleep: (ms: number) => Promise<void>): Promise<void> {
    const deadline = Date.now() + timeoutSeconds * 1000;
    for (;;) {
        const pod = await core.readNamespacedPod({ name, namespace: t.namespace });
        if (pod.status?.phase === "Running") return;
        const problem = podProblem(pod as Parameters<typeof podProblem>[0], t);
        if (problem) throw problem;
        if (Date.now() > deadline) {
            const why = pod.status?.conditions?.find((c) => c.status === "False")?.message;
            throw new FetchError(FETCH_EXIT.failed, `the reader pod ${name} did not start within ${timeoutSeconds}s${why ? `: ${why}` : ""} (raise --timeout; a ReadWriteOnce results claim held on another node blocks it)`);
        }
        await sleep(1000);
    }
}

export interface FetchOptions {
    readonly out: string;
    readonly timeoutSeconds: number;
    readonly say?: Say;
    /** For tests: the pod name's suffix and the poll sleep. */
    readonly suffix?: string;
    readonly sleep?: (ms: number) => Promise<void>;
    /** Called with the cleanup once the pod exists (the CLI hooks it to SIGINT/SIGTERM). */
    readonly onPod?: (cleanup: () => Promise<void>) => void;
}

/** Copies the files; returns them. Throws FetchError (or what mapError turns into one). */
export async function fetchResults(t: FetchTarget, kc: k8s.KubeConfig, o: FetchOptions): Promise<string[]> {
    const say = o.say ?? ((l: string) => console.log(l));
    const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const batch = kc.makeApiClient(k8s.BatchV1Api);
    const exec = new k8s.Exec(kc);
    const { image, pullSecrets } = await readerImage(batch, t);
    const name = readerPodName(t.run, o.suffix ?? randomBytes(3).toString("hex"));
    await core.createNamespacedPod({ namespace: t.namespace, body: readerPod(t, name, image, pullSecrets) as k8s.V1Pod });
    let deleted: Promise<void> | undefined;
    const cleanup = () => (deleted ??= core.deleteNamespacedPod({ name, namespace: t.namespace, gracePeriodSeconds: 0 })
        .then(() => undefined, (e) => say(`warning: could not delete the reader pod ${name}: ${mapError(e, t).message} (it ends by itself within its deadline)`)));
    o.onPod?.(cleanup);
    try {
        say(`reader pod ${name} (${image}) in namespace ${t.namespace}, claim ${t.claim} read-only`);
        await waitRunning(core, t, name, o.timeoutSeconds, sleep);
        const list = await execIn(exec, t, name, listCommand(t));
        if (list.code !== 0) {
            if (/No such file/i.test(list.stderr)) throw new FetchError(FETCH_EXIT.noReport, `no ${t.resultsDir} on claim ${t.claim}: the run has written no results yet; run pulumi up with stages.report`);
            throw new FetchError(FETCH_EXIT.failed, `listing ${t.resultsDir} failed (exit ${list.code}): ${list.stderr.trim()}`);
        }
        const files = selectFiles(list.stdout.toString("utf8"), t);
        const done: string[] = [];
        for (const f of files) {
            const r = await execIn(exec, t, name, ["cat", `${t.resultsDir}/${f.path}`]);
            if (r.code !== 0) throw new FetchError(FETCH_EXIT.failed, `reading ${f.path} failed (exit ${r.code}): ${r.stderr.trim()}`);
            const local = path.join(o.out, ...f.path.split("/"));
            fs.mkdirSync(path.dirname(local), { recursive: true });
            fs.writeFileSync(local, r.stdout);
            say(`  ${f.path} (${humanBytes(r.stdout.length)})`);
            done.push(local);
        }
        say(`${done.length} files of run ${t.run} in ${o.out}`);
        return done;
    } finally {
        await cleanup();
    }
}

export async function main(argv = process.argv.slice(2), say: Say = (l) => console.log(l), warn: Say = (l) => console.error(l)): Promise<number> {
    const parsed = parseFetchArgs(argv, stackFilePath);
    if (parsed.kind === "help") {
        say(parsed.text);
        return FETCH_EXIT.ok;
    }
    if (parsed.kind === "error") {
        warn(parsed.message);
        return FETCH_EXIT.usage;
    }
    const a = parsed.opts.args;
    if (!fs.existsSync(a.file)) {
        warn(argv.includes("--config") ? `fetch: no stack file ${a.file}` : unknownStack(a.stack).message);
        return FETCH_EXIT.usage;
    }
    let t: FetchTarget;
    try {
        t = fetchTarget(stackSettings(readStackFile(a.file), { placeholderSecrets: true }).settings);
    } catch (e) {
        warn(e instanceof ConfigError ? e.message : `fetch: ${e instanceof Error ? e.message : e}`);
        return FETCH_EXIT.usage;
    }
    let server: string | undefined;
    let onSignal: (() => void) | undefined;
    try {
        // status.ts's loader: the same kubeconfig rules (a path or contents, the context, a clear error without any).
        const kc = kubeConfig({ namespace: t.namespace, run: t.run, gpuResource: "", kubeconfig: t.kubeconfig, context: t.context });
        server = kc.getCurrentCluster()?.server;
        await fetchResults(t, kc, {
            out: a.out,
            timeoutSeconds: a.timeoutSeconds,
            say,
            onPod: (cleanup) => {
                onSignal = () => {
                    warn("fetch: interrupted; deleting the reader pod");
                    cleanup().finally(() => process.exit(130));
                };
                process.once("SIGINT", onSignal);
                process.once("SIGTERM", onSignal);
            },
        });
        return FETCH_EXIT.ok;
    } catch (e) {
        const err = mapError(e, t, server);
        warn(`fetch: ${err.message}`);
        return err.code;
    } finally {
        if (onSignal) {
            process.off("SIGINT", onSignal);
            process.off("SIGTERM", onSignal);
        }
    }
}

if (require.main === module) runCli(main);

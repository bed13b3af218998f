// The pure half of `npm run fetch`: its arguments, the reader pod, which files of the results volume
// come home, and what a failure means (exit code and the one line that names the fix). No I/O here:
// scripts/fetch.ts talks to the API server.
import * as path from "path";
import { Command, Option } from "commander";
import { Settings } from "../config";
import { LABELS } from "../contract";
import { labels } from "../components/naming";
import { MOUNTS, reportDirs, resultsDir } from "../components/paths";
import { claimName } from "../components/storage";
import { CLI_EXIT, command, parseCommand, Parsed, positiveNumber } from "./cli";

/** The CLIs' exit codes (scripts/cli.ts), and one of fetch's own. */
export const FETCH_EXIT = {
    ...CLI_EXIT,
    /** Reached the cluster, but there is no report yet (no namespace, claim, results folder or report.md). */
    noReport: 4,
} as const;

/** The command line (scripts/cli.ts conventions): options, --help with its examples. */
export function fetchCommand(): Command {
    return command("fetch", "Copies the run's results from its results volume to this machine through the Kubernetes API (no kubectl): report.md, report.json, every PNG (exact_match.png is the blog's Figure 2, gpu_timeline.png), the evaluation JSONs, the samples and the benchmark JSONs. A short-lived pod of the stack's trainer image mounts the results claim read-only; it is deleted afterwards, also on failure or Ctrl-C. Exit codes: 0 copied, 1 failed, 2 bad options, 3 the cluster cannot be reached, 4 no report yet.", [
        "npm run fetch -- --stack blog && open results/blog/report/report.md",
        "npm run fetch -- --config ../Pulumi.mine.yaml --out /tmp/mine --timeout 600",
    ])
        .addOption(new Option("--stack <name>", "a shipped stack (stacks/Pulumi.<name>.yaml)").conflicts("config"))
        .addOption(new Option("--config <file>", "a stack file elsewhere (Pulumi.<stack>.yaml)"))
        .option("--out <dir>", "where the files go (default: ./results/<stack>/)")
        .addOption(new Option("--timeout <s>", "seconds to wait for the reader pod to start").default(180).argParser(positiveNumber));
}

export interface FetchArgs {
    readonly file: string;
    readonly stack: string;
    readonly out: string;
    readonly timeoutSeconds: number;
}

/** Command-line arguments; `stackFile` maps a stack name to its file (config/stackfile.ts). */
export function parseFetchArgs(argv: string[], stackFile: (stack: string) => string): Parsed<{ args: FetchArgs }> {
    const p = parseCommand<{ stack?: string; config?: string; out?: string; timeout: number }>(fetchCommand(), argv);
    if (p.kind !== "run") return p;
    const o = p.opts;
    if (!o.stack && !o.config) return { kind: "error", message: "error: give --stack <name> or --config <file>\n(--help for usage)" };
    const file = o.config ?? stackFile(o.stack!);
    const stack = o.stack ?? (/^Pulumi\.(.+)\.ya?ml$/.exec(path.basename(file))?.[1] ?? "stack");
    return { kind: "run", opts: { args: { file, stack, out: o.out ?? path.join("results", stack), timeoutSeconds: o.timeout } } };
}

// ---------------------------------------------------------------------------------------------------
// The reader pod

/** What the reader pod needs from the stack. */
export interface FetchTarget {
    readonly namespace: string;
    readonly run: string;
    /** Claim of the results volume: the stack's existing one, or `<run>-results`. */
    readonly claim: string;
    /** /results/<run> inside the pod. */
    readonly resultsDir: string;
    /** The report's folder, relative to resultsDir ("report"). */
    readonly reportDir: string;
    readonly runAsUser: number;
    /** The configured trainer image (a built one is only known from the cluster's report Job). */
    readonly configuredImage?: string;
    readonly pullPolicy: string;
    readonly pullSecrets: string[];
    readonly kubeconfig?: string;
    readonly context?: string;
}

export function fetchTarget(s: Settings): FetchTarget {
    return {
        namespace: s.cluster.namespace,
        run: s.run,
        claim: s.storage.results.existingClaim ?? claimName(s, "results"),
        resultsDir: resultsDir(s),
        reportDir: path.posix.relative(resultsDir(s), reportDirs(s).out),
        runAsUser: s.cluster.runAsUser,
        configuredImage: s.images.build ? undefined : s.images.trainer,
        pullPolicy: s.images.pullPolicy,
        pullSecrets: [...s.cluster.imagePullSecrets],
        kubeconfig: s.cluster.kubeconfig,
        context: s.cluster.context,
    };
}

/** Seconds the reader pod may live: it goes away by itself even if this process is killed outright. */
export const READER_DEADLINE_S = 1800;
export const READER_CONTAINER = "main";

/**
 * A pod that only holds the results claim open, read-only, for `exec`: the stage pods' user (the
 * files are theirs, written 0600), no token, no capabilities, a read-only root, no privilege
 * escalation, RuntimeDefault seccomp, a tiny footprint. No fsGroup: nothing on the volume is changed.
 * (A stack running as root (runAsUser 0) gets a root reader with every capability dropped.)
 */
export function readerPod(t: FetchTarget, name: string, image: string, pullSecrets: string[] = t.pullSecrets) {
    const user = t.runAsUser;
    return {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name, namespace: t.namespace, labels: labels(t.run, "fetch") },
        spec: {
            restartPolicy: "Never",
            activeDeadlineSeconds: READER_DEADLINE_S,
            terminationGracePeriodSeconds: 0,
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            securityContext: {
                ...(user === 0 ? { runAsUser: 0 } : { runAsNonRoot: true, runAsUser: user, runAsGroup: user }),
                seccompProfile: { type: "RuntimeDefault" },
            },
            imagePullSecrets: pullSecrets.length ? pullSecrets.map((n) => ({ name: n })) : undefined,
            containers: [{
                name: READER_CONTAINER,
                image,
                imagePullPolicy: t.pullPolicy,
                // `sleep` as PID 1 ignores SIGTERM: the grace period of 0 lets deletion be immediate.
                command: ["sleep", String(READER_DEADLINE_S)],
                securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
                resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
                volumeMounts: [{ name: "results", mountPath: MOUNTS.results, readOnly: true }],
            }],
            volumes: [{ name: "results", persistentVolumeClaim: { claimName: t.claim, readOnly: true } }],
        },
    };
}

/** `<run>-fetch-<suffix>`, a valid pod name. */
export function readerPodName(run: string, suffix: string): string {
    return `${run}-fetch-${suffix}`.slice(0, 63).replace(/-+$/, "");
}

/** The selector of the run's report Jobs (their image is the reader's: already on the nodes). */
export function reportJobSelector(run: string): string {
    return `${LABELS.run}=${run},${LABELS.stage}=report`;
}

// ---------------------------------------------------------------------------------------------------
// Files

/** Lists `<size> <path relative to the results folder>` of the files one folder down (GNU find). */
export function listCommand(t: FetchTarget): string[] {
    return ["find", t.resultsDir, "-mindepth", "2", "-maxdepth", "2", "-type", "f", "-printf", "%s %P\\n"];
}

export interface RemoteFile {
    /** Relative to the results folder, e.g. "report/report.md"; also the local path under --out. */
    readonly path: string;
    readonly size: number;
}

/** What comes home, by folder: the report's files, the evaluation JSONs, the samples (JSON and the
 * image each was asked about), the benchmark figures. Dot-files (temp files, completion markers) stay. */
const WANTED: Record<string, RegExp> = {
    report: /\.(md|json|png)$/,
    eval: /\.json$/,
    samples: /\.(json|png)$/,
    bench: /\.json$/,
};
const FOLDER_ORDER = Object.keys(WANTED);

export class FetchError extends Error {
    constructor(public readonly code: number, message: string) {
        super(message);
        this.name = "FetchError";
    }
}

/** The files to copy from `find`'s output; fails with noReport when there is no report.md. */
export function selectFiles(listing: string, t: Pick<FetchTarget, "resultsDir" | "reportDir">): RemoteFile[] {
    const files: RemoteFile[] = [];
    for (const line of listing.split("\n")) {
        const m = /^(\d+) (.+)$/.exec(line.trim());
        if (!m) continue;
        const [dir, base] = m[2].split("/");
        if (!base || base.startsWith(".") || !WANTED[dir]?.test(base)) continue;
        files.push({ path: `${dir}/${base}`, size: Number(m[1]) });
    }
    const report = t.reportDir;
    if (!files.some((f) => f.path === `${report}/report.md`)) {
        throw new FetchError(FETCH_EXIT.noReport, `no ${t.resultsDir}/${report}/report.md yet: the report has not run; enable stages.report (with the evaluations) and run pulumi up, then fetch again`);
    }
    return files.sort((a, b) => FOLDER_ORDER.indexOf(a.path.split("/")[0]) - FOLDER_ORDER.indexOf(b.path.split("/")[0]) || a.path.localeCompare(b.path));
}

/** "1.2 MB" */
export function humanBytes(n: number): string {
    const units = ["B", "kB", "MB", "GB"];
    let i = 0;
    let v = n;
    while (v >= 1000 && i < units.length - 1) {
        v /= 1000;
        i++;
    }
    return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

// ---------------------------------------------------------------------------------------------------
// Errors

const NETWORK_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "ECONNRESET", "UND_ERR_CONNECT_TIMEOUT", "CERT_HAS_EXPIRED", "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "ERR_TLS_CERT_ALTNAME_INVALID"]);

/** The network error code in an error or its causes (fetch wraps them: "fetch failed" <- ECONNREFUSED). */
function networkCode(e: unknown): string | undefined {
    for (let x: any = e, depth = 0; x && depth < 5; x = x.cause, depth++) {
        if (typeof x.code === "string" && NETWORK_CODES.has(x.code)) return x.code;
        const m = /\b(ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|ECONNRESET)\b/.exec(String(x.message ?? ""));
        if (m) return m[1];
    }
    return undefined;
}

/** The HTTP status of a client-node ApiException. */
function httpStatus(e: unknown): number | undefined {
    const c = (e as { code?: unknown })?.code;
    return typeof c === "number" ? c : undefined;
}

/** Any failure as a FetchError: its exit code and one line naming the fix. */
export function mapError(e: unknown, t: Pick<FetchTarget, "namespace">, server?: string): FetchError {
    if (e instanceof FetchError) return e;
    const net = networkCode(e);
    if (net) {
        return new FetchError(FETCH_EXIT.unreachable, `cannot reach the cluster${server ? ` at ${server}` : ""} (${net}): check cot-vr:cluster.kubeconfig / cluster.context in the stack, or KUBECONFIG`);
    }
    const status = httpStatus(e);
    const body = (e as { body?: unknown })?.body;
    const detail = typeof body === "string" ? (() => { try { return JSON.parse(body).message; } catch { return body; } })() : (body as { message?: string })?.message;
    if (status === 401) return new FetchError(FETCH_EXIT.failed, `the API server refused the credentials (401): log in again (kubeconfig of cot-vr:cluster.kubeconfig or KUBECONFIG)`);
    if (status === 403) return new FetchError(FETCH_EXIT.failed, `not allowed (403): fetch needs to list jobs, create, get and delete pods and create pods/exec in namespace ${t.namespace}${detail ? ` (${detail})` : ""}`);
    if (status === 404 && /namespaces? .*not found/i.test(String(detail ?? ""))) {
        return new FetchError(FETCH_EXIT.noReport, `namespace ${t.namespace} does not exist: the stack has not been deployed (pulumi up)`);
    }
    if (status !== undefined) return new FetchError(FETCH_EXIT.failed, `the API server answered ${status}${detail ? `: ${detail}` : ""}`);
    const msg = e instanceof Error ? e.message : String(e);
    if (/no cluster to read|No active cluster|kubeconfig/i.test(msg)) return new FetchError(FETCH_EXIT.unreachable, msg);
    return new FetchError(FETCH_EXIT.failed, msg);
}

/** Why a reader pod cannot start, from its status; undefined while it may still start. */
export function podProblem(pod: { status?: { phase?: string; reason?: string; message?: string; conditions?: { type: string; status: string; reason?: string; message?: string }[]; containerStatuses?: { state?: { waiting?: { reason?: string; message?: string } } }[] } }, t: Pick<FetchTarget, "claim" | "namespace">): FetchError | undefined {
    const st = pod.status ?? {};
    if (st.phase === "Failed" || st.phase === "Succeeded") return new FetchError(FETCH_EXIT.failed, `the reader pod ended (${st.phase}${st.reason ? `: ${st.reason}` : ""}${st.message ? `, ${st.message}` : ""}) before the copy`);
    const sched = st.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False");
    if (sched?.message && /persistentvolumeclaim .*not found/i.test(sched.message)) {
        return new FetchError(FETCH_EXIT.noReport, `the results claim ${t.claim} does not exist in namespace ${t.namespace}: the stack has not been deployed (pulumi up)`);
    }
    const waiting = st.containerStatuses?.[0]?.state?.waiting;
    if (waiting?.reason && ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"].includes(waiting.reason)) {
        return new FetchError(FETCH_EXIT.failed, `the reader pod cannot start: ${waiting.reason}${waiting.message ? `: ${waiting.message}` : ""} (it runs the stack's trainer image: check images.trainer and cluster.imagePullSecrets)`);
    }
    return undefined;
}

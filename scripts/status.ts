// `npm run status -- --stack <name> [--config <file>] [--watch] [--json] [--interval s] [--report]`:
// the run of a stack as the Kubernetes API sees it (through @kubernetes/client-node): one line per
// stage/variant with state, progress (the last COTVR_PROGRESS record of the pod's log), rate, ETA,
// GPU-hours and, with cluster.gpuHourPrice, cost. `--report` (also `npm run report`) prints the Job
// table and the table the report Job printed. The computing is in status-core.ts; this file is the I/O.
import * as fs from "fs";
import * as k8s from "@kubernetes/client-node";
import { InvalidArgumentError, Option } from "commander";
import logUpdate from "log-update";
import pc from "picocolors";
import { LABELS, selector } from "../contract";
import { deriveStatus, gpuHourPrice, jobState, jobTable, renderStatus, Snapshot, Status } from "./status-core";
import { readStackFile, stackFilePath, stackSettings } from "../config/stackfile";
import { CLI_EXIT, CliError, command, failureMessage, runCli, unknownStack } from "./cli";
import { loadKubeConfig } from "./kubeconfig";

/** How much of a log is read: the last lines hold the last record; the byte cap bounds tqdm-style lines. */
const LOG_TAIL = { tailLines: 300, limitBytes: 1 << 20 };

export interface Target {
    namespace: string;
    run: string;
    gpuResource: string;
    kubeconfig?: string;
    context?: string;
    price?: ReturnType<typeof gpuHourPrice>;
    /** images.trainer, images.datagen, images.vllm of the stack, to name the key to fix. */
    images?: Record<string, string>;
}

export function targetOf(file: string): Target {
    const { settings: s } = stackSettings(readStackFile(file), { placeholderSecrets: true });
    return {
        namespace: s.cluster.namespace,
        run: s.run,
        gpuResource: s.cluster.gpuResource,
        kubeconfig: s.cluster.kubeconfig,
        context: s.cluster.context,
        price: gpuHourPrice(s.cluster),
        images: { trainer: s.images.trainer, datagen: s.images.datagen, vllm: s.images.vllm },
    };
}

/** cluster.kubeconfig is a path or the file's contents; without it, the ambient kubeconfig. */
export function kubeConfig(t: Target): k8s.KubeConfig {
    return loadKubeConfig(k8s, t);
}

/** Flags that make a printed kubectl command reach the same cluster. */
function kubectlFlags(t: Target): string[] {
    const f: string[] = [];
    if (t.kubeconfig && fs.existsSync(t.kubeconfig)) f.push("--kubeconfig", t.kubeconfig);
    if (t.context) f.push("--context", t.context);
    return f;
}

export class Cluster {
    private batch: k8s.BatchV1Api;
    private core: k8s.CoreV1Api;
    private apps: k8s.AppsV1Api;
    constructor(private t: Target, kc = kubeConfig(t)) {
        this.batch = kc.makeApiClient(k8s.BatchV1Api);
        this.core = kc.makeApiClient(k8s.CoreV1Api);
        this.apps = kc.makeApiClient(k8s.AppsV1Api);
    }

    async log(pod: string, opts: { tailLines?: number; limitBytes?: number } = LOG_TAIL): Promise<string | undefined> {
        try {
            return await this.core.readNamespacedPodLog({ name: pod, namespace: this.t.namespace, container: "main", ...opts });
        } catch {
            // No log (kwok, a pod not started yet, a deleted node): the row says "progress unknown".
            return undefined;
        }
    }

    async snapshot(): Promise<Snapshot> {
        const { namespace, run } = this.t;
        const sel = selector({ [LABELS.run]: run });
        const [jobs, pods, deps] = await Promise.all([
            this.batch.listNamespacedJob({ namespace, labelSelector: sel }),
            this.core.listNamespacedPod({ namespace, labelSelector: sel }),
            this.apps.listNamespacedDeployment({ namespace, labelSelector: selector({ [LABELS.run]: run, [LABELS.stage]: "teacher" }) }),
        ]);
        // The newest pod of each Job is read: the running one, or the one that finished it.
        const jobPodNames = new Map<string, string>();
        for (const p of [...pods.items].sort((a, b) => +(a.metadata?.creationTimestamp ?? 0) - +(b.metadata?.creationTimestamp ?? 0))) {
            const owner = p.metadata?.ownerReferences?.find((o) => o.kind === "Job");
            if (owner && p.status?.phase !== "Pending" && p.metadata?.name) jobPodNames.set(owner.uid, p.metadata.name);
        }
        const logs: Record<string, string> = {};
        await Promise.all([...jobPodNames.values()].map(async (name) => {
            const text = await this.log(name);
            if (text !== undefined) logs[name] = text;
        }));
        return {
            namespace, run, gpuResource: this.t.gpuResource, kubectlFlags: kubectlFlags(this.t), images: this.t.images,
            jobs: jobs.items, pods: pods.items, deployments: deps.items, logs,
        };
    }
}

async function reportOutput(cluster: Cluster, snap: Snapshot): Promise<{ text: string; code: number }> {
    const report = snap.jobs.find((j) => j.metadata?.labels?.[LABELS.stage] === "report");
    if (!report) return { text: "No report Job in the cluster: enable stages.report (with the evaluations) and run pulumi up.", code: 0 };
    const state = jobState(report);
    if (state !== "complete") return { text: `Report Job ${report.metadata?.name} is ${state}.`, code: state === "failed" ? 1 : 0 };
    const pod = snap.pods.filter((p) => p.metadata?.ownerReferences?.some((o) => o.uid === report.metadata?.uid) && p.status?.phase === "Succeeded").pop();
    const log = pod?.metadata?.name ? await cluster.log(pod.metadata.name, { limitBytes: 4 << 20 }) : undefined;
    // The report program prints its table on stdout; progress records are for status, not for the report.
    const table = log?.split("\n").filter((l) => !l.includes("COTVR_PROGRESS ")).join("\n");
    return { text: table ?? `The log of ${report.metadata?.name} is gone; the report is in the results volume.`, code: 0 };
}

/** The stack file `--stack` or `--config` names; an unknown stack lists the ones there are. */
function stackFileOf(opts: { stack?: string; config?: string }): string {
    const file = opts.config ?? stackFilePath(opts.stack!);
    if (fs.existsSync(file)) return file;
    throw opts.config ? new CliError(`no stack file ${opts.config}`, CLI_EXIT.usage) : unknownStack(opts.stack!);
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
    const cmd = command("status", "The run of a stack as the Kubernetes API sees it: one line per stage and variant with its state, progress (the last progress record of its pod's log), rate, ETA, GPU-hours and, with cluster.gpuHourPrice, cost. Exit codes: 0 nothing failed, 1 a stage failed, 2 bad options, 3 the cluster cannot be reached.", [
        "npm run status -- --stack blog --watch",
        "npm run status -- --stack smoke --json",
        "npm run report -- --stack blog",
    ])
        .addOption(new Option("--stack <name>", "a shipped stack (stacks/Pulumi.<name>.yaml)").conflicts("config"))
        .addOption(new Option("--config <file>", "a stack file elsewhere (Pulumi.<stack>.yaml)"))
        .option("--watch", "redraw until Ctrl-C", false)
        .option("--json", "one JSON object (per redraw with --watch)", false)
        .addOption(new Option("--interval <seconds>", "seconds between redraws (default: 10 on a terminal, 60 otherwise)").argParser(positiveNumber))
        .option("--report", "the Job table and the table the report Job printed (npm run report)", false);
    const values = cmd.parse(argv, { from: "user" }).opts<{ stack?: string; config?: string; watch: boolean; json: boolean; interval?: number; report: boolean }>();
    if (!values.stack && !values.config) cmd.error("error: give --stack <name> or --config <file>");
    const interval = values.interval ?? (process.stdout.isTTY ? 10 : 60);
    const target = targetOf(stackFileOf(values));
    const cluster = new Cluster(target);
    const take = async (): Promise<Status> => deriveStatus(await cluster.snapshot(), { now: Date.now(), price: target.price });
    // Colour and the terminal's width only where a person reads it.
    const screen = () => ({ color: !!process.stdout.isTTY && pc.isColorSupported, width: process.stdout.isTTY ? process.stdout.columns : undefined });

    if (values.report) {
        const snap = await cluster.snapshot();
        console.log(`# run ${target.run} (namespace ${target.namespace})\n\n${jobTable(snap.jobs)}\n`);
        const r = await reportOutput(cluster, snap);
        console.log(r.text);
        return r.code;
    }
    if (!values.watch) {
        const st = await take();
        console.log(values.json ? JSON.stringify(st, null, 2) : renderStatus(st, screen()));
        return st.rows.some((r) => r.state === "failed") ? CLI_EXIT.failed : CLI_EXIT.ok;
    }
    // --watch: redraw in place on a terminal; plain screens (or one JSON object per line) otherwise.
    const tty = !!process.stdout.isTTY && !values.json;
    for (;;) {
        let out: string;
        try {
            const st = await take();
            out = values.json ? JSON.stringify(st) : renderStatus(st, screen());
        } catch (e) {
            out = `status: ${failureMessage(e)} (retrying in ${interval}s)`;
        }
        if (tty) logUpdate(`${out}\n\n(every ${interval}s; Ctrl-C to stop)`);
        else console.log(values.json ? out : `${out}\n`);
        await new Promise((r) => setTimeout(r, interval * 1000));
    }
}

/** A number above 0, for --interval. */
function positiveNumber(v: string): number {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("must be a number of seconds above 0");
    return n;
}

if (require.main === module) runCli(main);

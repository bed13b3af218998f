// The image-pull watch of `pulumi up` (index.ts starts it; never in a preview): it lists the run's Jobs
// and Pods every few seconds with the user's own kubeconfig (get/list on jobs and pods, patch on jobs:
// nothing new in the cluster), and fails a Job of this update whose pod cannot pull its image
// (scripts/imagepull.ts decides), so `up` ends in seconds instead of waiting out the stage's timeout;
// and it ends the wait on a Job its podFailurePolicy failed for a bad input (scripts/fatalexit.ts
// decides; patch on jobs/status).
// Its timers are unref'd: the program ends when its resources are done, whatever the watch is doing;
// and a watch that cannot work only warns, it never fails an update.
import type * as K8s from "@kubernetes/client-node";
import { LABELS, selector } from "../contract";
import { describePull, failJobPatch, PullFailure, PullJudge, pullAdvice, Verdict } from "./imagepull";
import { KubeTarget, loadKubeConfig } from "./kubeconfig";
import { CliError } from "./cli";
import { readFailure } from "./headline";
import { describeExit, EXIT_ADVICE, exitAnnotationPatch, ExitFailure, exitFailure, exitStatusPatch, parseExitFailure, podFailurePolicyIndex } from "./fatalexit";
import { lastErrorLine } from "./status-core";

export interface ImageWatchOptions extends KubeTarget {
    readonly namespace: string;
    readonly run: string;
    readonly stack: string;
    /** The Jobs this update awaits or submits: only these are ever failed. */
    readonly jobs: readonly string[];
    /** The images the stack config names (images.trainer, ...), to name the key to fix. */
    readonly configured?: Record<string, string>;
    readonly intervalMs?: number;
    readonly graceMs?: number;
    /** Where its lines go; `job`: the Job the line is about (pulumi up shows it under that resource). */
    readonly log: { info(m: string): void; warn(m: string, job?: string): void };
}

/** The line `pulumi up` prints when it ends the await of a Job its bad input failed. */
export function exitMessage(job: string, f: ExitFailure): string {
    return `Job ${job}: ${describeExit(f)}. Ending pulumi up now instead of waiting out its timeout; ${EXIT_ADVICE}`;
}

/** Seconds between two looks: a pull error is seen within this, plus one list. */
export const WATCH_INTERVAL_MS = 5000;
/** One list or patch that takes longer is abandoned (and the program never waits longer on it). */
const REQUEST_TIMEOUT_MS = 20000;
/** The failed pod's log (for its error line) is only a nicety: never wait long on it. */
const LOG_TIMEOUT_MS = 5000;

export interface ImageWatch {
    stop(): void;
    /** Looks taken so far. */
    readonly looks: number;
}

function timeout<T>(p: Promise<T>, ms: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new CliError(`no answer from the API server within ${ms / 1000}s`)), ms);
        timer.unref();
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** The line `pulumi up` prints when it fails a Job (or, for a kept teacher, only reports). */
export function verdictMessage(v: Verdict, configured?: Record<string, string>): string {
    const f: PullFailure = v.failure;
    const what = describePull(f);
    const after = f.kind === "fatal" ? "" : ` (failing for ${Math.round(f.failingSeconds / 60)} min)`;
    const next = pullAdvice(f, configured);
    if (v.action === "warn") return `teacher pod ${f.pod}: ${what}${after}; ${next}`;
    const teacher = f.stage === "teacher" ? ` its teacher's` : "";
    return `Job ${v.job}:${teacher} ${what}${after}. Failing the Job now instead of waiting out its timeout; ${next}`;
}

/**
 * Starts the watch; it runs until stop() or the end of the process. Errors are warned once per kind
 * and the watch keeps looking (an API server that comes back is used again).
 */
export function startImageWatch(o: ImageWatchOptions): ImageWatch {
    const judge = new PullJudge(new Set(o.jobs), o.graceMs);
    const interval = o.intervalMs ?? WATCH_INTERVAL_MS;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const warned = new Set<string>();
    const state = { looks: 0 };
    /** Jobs whose bad-input failure was handled (their await ended) or is being handled. */
    const exited = new Set<string>();
    /** Uids of Jobs already failed at the first look: an earlier update's, which this one replaces. */
    let earlier: Set<string> | undefined;
    const warnOnce = (key: string, m: string, job?: string) => {
        if (warned.has(key)) return;
        warned.add(key);
        o.log.warn(m, job);
    };

    let api: Promise<{ batch: K8s.BatchV1Api; core: K8s.CoreV1Api; k8s: typeof K8s }> | undefined;
    const clients = () => (api ??= (async () => {
        // Loaded here: an ES module, which only a real `up` needs (as scripts/headline.ts does).
        const k8s = await import("@kubernetes/client-node");
        const kc = loadKubeConfig(k8s, o);
        return { batch: kc.makeApiClient(k8s.BatchV1Api), core: kc.makeApiClient(k8s.CoreV1Api), k8s };
    })());

    const look = async () => {
        const { batch, core, k8s } = await clients();
        const labelSelector = selector({ [LABELS.run]: o.run });
        const [jobs, pods] = await timeout(Promise.all([
            batch.listNamespacedJob({ namespace: o.namespace, labelSelector }),
            core.listNamespacedPod({ namespace: o.namespace, labelSelector }),
        ]), REQUEST_TIMEOUT_MS);
        // A Job its podFailurePolicy failed on a bad input: Failed (reason PodFailurePolicy) is final and
        // no pod retries, so nothing here races the Job controller; only the await is still to end.
        const first = !earlier;
        earlier ??= new Set();
        for (const job of jobs.items) {
            const name = job.metadata?.name;
            if (!name || !o.jobs.includes(name) || exited.has(name) || earlier.has(job.metadata?.uid ?? "")) continue;
            const index = podFailurePolicyIndex(job);
            if (index < 0) continue;
            if (first) {
                earlier.add(job.metadata?.uid ?? "");
                continue;
            }
            exited.add(name);
            let f = parseExitFailure(job.metadata?.annotations);
            try {
                if (!f) {
                    const found = exitFailure(job, pods.items);
                    if (!found) {
                        exited.delete(name);
                        continue;
                    }
                    let line: string | undefined;
                    if (found.pod) {
                        try {
                            const log = await timeout(core.readNamespacedPodLog({ name: found.pod, namespace: o.namespace, container: found.container, tailLines: 50 }), LOG_TIMEOUT_MS);
                            line = lastErrorLine(String(log));
                        } catch {
                            // No log (gone, or no kubelet to ask): the controller's message names the code.
                        }
                    }
                    f = exitFailure(job, pods.items, line)!;
                    await timeout(batch.patchNamespacedJob(
                        { name, namespace: o.namespace, body: exitAnnotationPatch(f), fieldManager: "cot-vr-imagewatch" },
                        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
                    ), REQUEST_TIMEOUT_MS);
                }
                await timeout(batch.patchNamespacedJobStatus(
                    { name, namespace: o.namespace, body: exitStatusPatch(index, f), fieldManager: "cot-vr-imagewatch" },
                    k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch),
                ), REQUEST_TIMEOUT_MS);
                o.log.warn(exitMessage(name, f), name);
            } catch (e) {
                exited.delete(name);
                warnOnce(`exit:${name}`, `Job ${name}: ${f ? describeExit(f) : "failed by its podFailurePolicy (bad input)"}, and pulumi up could not end its wait (${readFailure(e, o.stack)}): ` +
                    `it waits out the stage's timeout unless you delete the Job (kubectl delete job -n ${o.namespace} ${name}); the kubeconfig's user needs patch on jobs and jobs/status`, name);
            }
        }
        for (const v of judge.observe(jobs.items, pods.items, Date.now())) {
            if (v.action === "warn") {
                o.log.warn(verdictMessage(v, o.configured));
                continue;
            }
            try {
                await timeout(batch.patchNamespacedJob(
                    { name: v.job, namespace: o.namespace, body: failJobPatch(v.failure), fieldManager: "cot-vr-imagewatch" },
                    k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
                ), REQUEST_TIMEOUT_MS);
                o.log.warn(verdictMessage(v, o.configured), v.job);
            } catch (e) {
                judge.retry(v.job);
                warnOnce(`patch:${v.job}`, `Job ${v.job}: ${describePull(v.failure)}, and it could not be failed (${readFailure(e, o.stack)}): ` +
                    `pulumi up waits out its timeout unless you delete it (kubectl delete job -n ${o.namespace} ${v.job}); the kubeconfig's user needs patch on jobs`, v.job);
            }
        }
    };

    const tick = async () => {
        if (stopped) return;
        try {
            await look();
        } catch (e) {
            warnOnce(`look:${readFailure(e, o.stack)}`, `image-pull watch: ${readFailure(e, o.stack)}; an image that cannot be pulled holds its Job until the stage's timeout (npm run status -- --stack ${o.stack} shows it)`);
        }
        state.looks++;
        if (stopped) return;
        timer = setTimeout(tick, interval);
        // Never what keeps the program alive: `pulumi up` ends when its resources are done.
        timer.unref();
    };
    timer = setTimeout(tick, 0);
    timer.unref();
    return {
        stop() {
            stopped = true;
            if (timer) clearTimeout(timer);
        },
        get looks() {
            return state.looks;
        },
    };
}

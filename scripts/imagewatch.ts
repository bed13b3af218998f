// The image-pull watch of `pulumi up` (index.ts starts it; never in a preview): it lists the run's Jobs
// and Pods every few seconds with the user's own kubeconfig (get/list on jobs and pods, patch on jobs:
// nothing new in the cluster), and fails a Job of this update whose pod cannot pull its image
// (scripts/imagepull.ts decides), so `up` ends in seconds instead of waiting out the stage's timeout.
// Its timers are unref'd: the program ends when its resources are done, whatever the watch is doing;
// and a watch that cannot work only warns, it never fails an update.
import type * as K8s from "@kubernetes/client-node";
import { LABELS, selector } from "../contract";
import { describePull, failJobPatch, PullFailure, PullJudge, pullAdvice, Verdict } from "./imagepull";
import { KubeTarget, loadKubeConfig } from "./kubeconfig";
import { CliError } from "./cli";
import { readFailure } from "./headline";

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

/** Seconds between two looks: a pull error is seen within this, plus one list. */
export const WATCH_INTERVAL_MS = 5000;
/** One list or patch that takes longer is abandoned (and the program never waits longer on it). */
const REQUEST_TIMEOUT_MS = 20000;

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

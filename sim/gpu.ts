// A pod's GPUs, the interval it holds them and its GPU-hours: one definition for `status` (a real
// run), `rehearse` and the e2e tier (a simulated one), so that their figures can be compared. Pure:
// pods come from the API (list, watch) or from recorded fixtures.
import { LABELS } from "../contract";

export type Time = string | Date | undefined | null;

/** Just the fields read here; @kubernetes/client-node's V1Pod and status-core's PodObject fit. */
export interface PodLike {
    metadata?: { name?: string; uid?: string; labels?: Record<string, string>; deletionTimestamp?: Time; deletionGracePeriodSeconds?: number };
    spec?: { nodeName?: string; containers?: { resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> } }[] };
    status?: {
        phase?: string;
        startTime?: Time;
        conditions?: { type: string; status: string; lastTransitionTime?: Time }[];
        containerStatuses?: { state?: { running?: { startedAt?: Time }; terminated?: { finishedAt?: Time } } }[];
    };
}

/** Epoch ms of an API timestamp; undefined when absent or unreadable. */
export function ms(t: Time): number | undefined {
    if (t === undefined || t === null) return undefined;
    const v = t instanceof Date ? t.getTime() : Date.parse(t);
    return Number.isFinite(v) ? v : undefined;
}

/** GPUs a pod holds: the sum over its containers of the extended resource (limits, else requests). */
export function podGpus(p: PodLike, gpuResource: string): number {
    let n = 0;
    for (const c of p.spec?.containers ?? []) {
        const q = c.resources?.limits?.[gpuResource] ?? c.resources?.requests?.[gpuResource];
        if (q !== undefined && q !== null) n += Number(q) || 0;
    }
    return n;
}

/** When a pod got its node (PodScheduled): its GPUs are the pod's from then on. */
export function podScheduledAt(p: PodLike): number | undefined {
    const c = p.status?.conditions?.find((x) => x.type === "PodScheduled" && x.status === "True");
    return ms(c?.lastTransitionTime) ?? (p.spec?.nodeName ? ms(p.status?.startTime) : undefined);
}

/**
 * When a finished pod let its GPUs go: its containers' finishedAt, else its last condition change.
 * A pod still terminating holds them (the kubelet has not stopped its containers yet): undefined.
 */
export function podFinishedAt(p: PodLike): number | undefined {
    if (!["Succeeded", "Failed"].includes(p.status?.phase ?? "")) return undefined;
    const ends = (p.status?.containerStatuses ?? []).map((c) => ms(c.state?.terminated?.finishedAt)).filter((x): x is number => x !== undefined);
    if (ends.length) return Math.max(...ends);
    const conds = (p.status?.conditions ?? []).map((c) => ms(c.lastTransitionTime)).filter((x): x is number => x !== undefined);
    return conds.length ? Math.max(...conds) : undefined;
}

/** When the containers ran (Job pods: the work); kwok's completion stage rewrites startedAt, so startTime first. */
export function podStartedAt(p: PodLike): number | undefined {
    const starts = [ms(p.status?.startTime), ...(p.status?.containerStatuses ?? []).map((c) => ms(c.state?.running?.startedAt))]
        .filter((x): x is number => x !== undefined);
    return starts.length ? Math.min(...starts) : undefined;
}

/** GPU-hours of `gpus` held from `from` to `to` (ms); `secondsPerHour`: 3600 real, less when simulated faster. */
export function gpuHours(gpus: number, from: number, to: number, secondsPerHour = 3600): number {
    return (Math.max(0, to - from) / (1000 * secondsPerHour)) * gpus;
}

/** GPU-hours a pod held: scheduled -> finished (or `now`) x its GPUs. */
export function podGpuHours(p: PodLike, gpuResource: string, now: number): number {
    const gpus = podGpus(p, gpuResource);
    const from = podScheduledAt(p);
    if (!gpus || from === undefined) return 0;
    return gpuHours(gpus, from, podFinishedAt(p) ?? now);
}

// ---------------------------------------------------------------------------------------------------
// Intervals of a run, as a watcher records them

export interface PodInterval {
    pod: string;
    stage?: string;
    variant?: string;
    node?: string;
    gpus: number;
    /** ms: PodScheduled (NaN: never scheduled). */
    scheduled: number;
    /** ms: podFinishedAt, or when the pod was seen gone; undefined: still holding. */
    finished?: number;
    /** ms: the containers ran (podStartedAt). */
    started?: number;
    phase?: string;
}

/** deletionTimestamp is the end of the grace period: the request came that much earlier. */
function deletionRequestedAt(p: PodLike): number | undefined {
    const t = ms(p.metadata?.deletionTimestamp);
    return t === undefined ? undefined : t - 1000 * Number(p.metadata?.deletionGracePeriodSeconds ?? 0);
}

/** A pod's interval as the API server has it. */
export function podInterval(pod: PodLike, gpuResource: string): PodInterval {
    return {
        pod: pod.metadata?.name ?? "",
        stage: pod.metadata?.labels?.[LABELS.stage],
        variant: pod.metadata?.labels?.[LABELS.variant],
        node: pod.spec?.nodeName,
        gpus: podGpus(pod, gpuResource),
        scheduled: podScheduledAt(pod) ?? NaN,
        finished: podFinishedAt(pod),
        started: podStartedAt(pod),
        phase: pod.status?.phase,
    };
}

/**
 * Every pod of a run from watch events, deleted ones kept (the teacher pods the ReplicaSet deletes
 * when the generation scales it down). A pod deleted before it finished ends at the deletion request
 * (kwok stops nothing, so that is when the GPUs went), else when it was seen gone.
 */
export class PodTimeline {
    private readonly pods = new Map<string, PodInterval>();
    constructor(private readonly gpuResource: string) {}

    record(type: string, pod: PodLike, now = Date.now()): void {
        const iv = podInterval(pod, this.gpuResource);
        if (type === "DELETED" && iv.finished === undefined) iv.finished = deletionRequestedAt(pod) ?? now;
        const key = pod.metadata?.uid ?? iv.pod;
        const old = this.pods.get(key);
        // a pod forgets nothing: keep a finish seen earlier (e.g. before kwok removed the pod)
        if (old?.finished !== undefined && iv.finished === undefined) iv.finished = old.finished;
        if (old?.started !== undefined) iv.started = Math.min(old.started, iv.started ?? Infinity);
        this.pods.set(key, iv);
    }

    /** Every pod seen, GPU or not, latest state (deleted pods included). */
    all(): PodInterval[] {
        return [...this.pods.values()];
    }

    /** Every scheduled GPU pod; one still holding its GPUs ends at `now`. */
    gpuPods(now = Date.now()): PodInterval[] {
        return this.all().filter((p) => p.gpus > 0 && !Number.isNaN(p.scheduled)).map((p) => ({ ...p, finished: p.finished ?? now }));
    }
}

export interface GpuFigures {
    /** GPU-hours the pods held (scheduled -> finished x GPUs). */
    held: number;
    /** GPU-hours of work: Job pods' run time; the teacher's only while a generation pod runs. */
    work: number;
    ratio: number;
    /** Hours from the first pod scheduled to the last pod's end (every pod of the run, GPU or not). */
    makespan: number;
    /** GPU pods still holding GPUs at `now`. */
    holding: string[];
}

const overlap = (a0: number, a1: number, b0: number, b1: number) => Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));

/** GPU figures of a timeline; `secondsPerHour`: 3600 for real time, 1 when 1 s simulates an hour. */
export function gpuFigures(all: PodInterval[], opts: { now?: number; secondsPerHour?: number } = {}): GpuFigures {
    const now = opts.now ?? Date.now();
    const perHour = opts.secondsPerHour ?? 3600;
    const gpu = all.filter((p) => p.gpus > 0 && !Number.isNaN(p.scheduled));
    const end = (p: PodInterval) => p.finished ?? now;
    const generating = all.filter((p) => p.stage === "generate" && p.started !== undefined).map((p) => [p.started!, end(p)] as const);
    let held = 0;
    let work = 0;
    for (const p of gpu) {
        held += gpuHours(p.gpus, p.scheduled, end(p), perHour);
        if (p.stage === "teacher") {
            for (const [g0, g1] of generating) work += gpuHours(p.gpus, 0, overlap(p.scheduled, end(p), g0, g1), perHour);
        } else {
            work += gpuHours(p.gpus, p.started ?? p.scheduled, end(p), perHour);
        }
    }
    // From the first pod scheduled to the last pod that ended (a teacher kept serving never ends).
    const timed = all.filter((p) => !Number.isNaN(p.scheduled));
    const ended = timed.filter((p) => p.finished !== undefined);
    const makespan = ended.length ? Math.max(...ended.map(end)) - Math.min(...timed.map((p) => p.scheduled)) : 0;
    return {
        held,
        work,
        ratio: work > 0 ? held / work : NaN,
        makespan: makespan / (1000 * perHour),
        holding: gpu.filter((p) => p.finished === undefined).map((p) => p.pod),
    };
}

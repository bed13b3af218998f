// The blog stack in one `pulumi up` on the e2e cluster with the blog's stage times (scaled: by default
// 1 simulated hour = 1 s), and its GPU timeline from the API server. Shared by gpu.e2e.ts (the test)
// and bench-gpu.ts (the figures, this design next to `teacher.keep: true`).
import * as path from "path";
import { stageGraph, StageNode } from "../../components/graph";
import { multiGpuSpeedup, Settings } from "../../config";
import { readStackFile, stackSettings } from "../../config/stackfile";
import { initStack, KUBECONFIG, kubectlJson, must, Result, Stack, useE2eCluster } from "./helpers";
import { criticalPath } from "../../sim/critical-path";
import { GpuFigures, gpuFigures, PodInterval, podGpus } from "../../sim/gpu";
import { applyStageDurations, durationOf, StageDuration } from "../../sim/stages";
import { HoldRun, holdTeacherWhileGenerating } from "../../sim/teacher";
import { gpuTimeline } from "../../sim/watch";

/**
 * The blog's stage times in hours on one MI300X (docs/FACTS.md "The blog's run"). The blog gives the
 * fine-tunes (11B LoRA "about 25 hours", 23 h in its summary; 90B QLoRA "about 13 hours"); the rest
 * are estimates (no measured figure in the blog): 90B download ~2 h, generation ~8 h, evaluations
 * ~8 GPU-h for the four models (~2 h each), 11B download ~0.5 h, the teacher's 90B load ~0.5 h, one
 * sample ~0.1 h, the report ~0.05 h.
 */
export const BLOG_HOURS = {
    download: { "11b": 0.5, "90b": 2 },
    teacherStart: 0.5,
    generate: 8,
    train: { "lora-11b": 25, "qlora-90b": 13 } as Record<string, number>,
    evaluate: 2,
    sample: 0.1,
    report: 0.05,
};

/**
 * kwok run times of the blog's Jobs. With the teacher held by the generation (keep false), the
 * generation pod itself waits for the teacher's load before its 8 h, so its pod runs load + 8 h; with
 * `teacher.keep` the update waits for the Deployment's load first and the pod runs 8 h.
 */
export function blogDurations(s: Settings, secondsPerHour: number): StageDuration[] {
    const h = (x: number) => x * secondsPerHour;
    const out: StageDuration[] = [
        { stage: "download", variant: "11b", seconds: h(BLOG_HOURS.download["11b"]) },
        { stage: "download", variant: "90b", seconds: h(BLOG_HOURS.download["90b"]) },
        // N teacher replicas share the rows: the blog's 8 h over N.
        { stage: "generate", seconds: h(BLOG_HOURS.generate / s.teacher.replicas + (s.teacher.keep ? 0 : BLOG_HOURS.teacherStart)) },
        { stage: "evaluate", seconds: h(BLOG_HOURS.evaluate) },
        { stage: "sample", seconds: h(BLOG_HOURS.sample) },
        { stage: "report", seconds: h(BLOG_HOURS.report) },
    ];
    for (const [variant, v] of s.trainings) {
        const hours = BLOG_HOURS.train[variant];
        if (hours === undefined) throw new Error(`no blog time for train variant ${variant}`);
        // On N GPUs: the blog's one-GPU time over the assumed speed-up (config/facts.ts).
        out.push({ stage: "train", variant, seconds: h(hours / multiGpuSpeedup(v.gpus)) });
    }
    return out;
}

/** Seconds of each DAG node as simulated: the teacher node is the Deployment's await (the load only when kept). */
export function nodeSeconds(s: Settings, durations: StageDuration[], secondsPerHour: number) {
    return (n: StageNode) => (n.kind === "teacher" ? (s.teacher.keep ? BLOG_HOURS.teacherStart * secondsPerHour : 0) : durationOf(durations, n));
}

export interface BlogRun {
    st: Stack;
    settings: Settings;
    up: Result;
    /** ms when `pulumi up` returned. */
    returnedAt: number;
    /** Pods that held GPUs (scheduled, not finished) when `up` returned, from the API server. */
    gpuPodsAtReturn: string[];
    /** The teacher Deployment after the run. */
    teacher: any;
    holds: HoldRun[];
    pods: PodInterval[];
    figures: GpuFigures;
    critical: { seconds: number; path: { id: string; seconds: number }[] };
    /** Most awaited Jobs (plus the teacher) in flight at once: what --parallel must allow. */
    maxConcurrent: number;
    secondsPerHour: number;
}

export async function runBlogFlow(o: {
    name: string; namespace: string; keep: boolean; secondsPerHour: number; parallel: number;
    /** The stack file's text (default: the shipped blog stack's). */
    stackFileText?: string;
}): Promise<BlogRun> {
    const st = initStack(o.name, o.stackFileText !== undefined ? { stackFileText: o.stackFileText } : { from: "blog" });
    useE2eCluster(st, o.namespace);
    if (o.keep) st.setConfig("teacher.keep", "true", { path: true, type: "bool" });
    const settings = stackSettings(readStackFile(path.join(st.dir, "stacks", `Pulumi.${o.name}.yaml`)), { placeholderSecrets: true }).settings;
    const durations = blogDurations(settings, o.secondsPerHour);
    await applyStageDurations(KUBECONFIG, durations, { teacherStartSeconds: BLOG_HOURS.teacherStart * o.secondsPerHour });

    const timeline = gpuTimeline(KUBECONFIG, o.namespace, settings.cluster.gpuResource);
    await timeline.synced;
    // With `keep`, the generation does not scale the teacher (no Role, no --teacher-deployment).
    const hold = o.keep ? undefined : holdTeacherWhileGenerating(KUBECONFIG, o.namespace, settings.run);
    let up: Result;
    let returnedAt: number;
    let atReturn: any[];
    try {
        up = await st.pulumiAsync(["up", "--yes", "--skip-preview", "--parallel", String(o.parallel)]);
        returnedAt = Date.now();
        atReturn = kubectlJson("-n", o.namespace, "get", "pods").items;
    } finally {
        await hold?.stop();
    }
    must(up, `pulumi up (${o.name})`);
    const teacher = kubectlJson("-n", o.namespace, "get", "deployment", `${settings.run}-teacher`);
    await timeline.stop();
    const pods = timeline.allPods();
    const figures = gpuFigures(pods, { now: returnedAt, secondsPerHour: o.secondsPerHour });
    const critical = criticalPath(stageGraph(settings), nodeSeconds(settings, durations, o.secondsPerHour));
    const gpuPodsAtReturn = atReturn
        .filter((p) => podGpus(p, settings.cluster.gpuResource) > 0 && p.spec?.nodeName && !["Succeeded", "Failed"].includes(p.status?.phase))
        .map((p) => p.metadata.name);
    // Concurrency: most pods of Jobs or the teacher alive at one instant (each is an operation the engine awaits).
    const events: [number, number][] = [];
    for (const p of pods) {
        if (Number.isNaN(p.scheduled)) continue;
        events.push([p.scheduled, 1], [p.finished ?? returnedAt, -1]);
    }
    events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let cur = 0;
    let maxConcurrent = 0;
    for (const [, d] of events) maxConcurrent = Math.max(maxConcurrent, (cur += d));
    return { st, settings, up, returnedAt, gpuPodsAtReturn, teacher, holds: hold?.runs ?? [], pods, figures, critical, maxConcurrent, secondsPerHour: o.secondsPerHour };
}

/** One line per pod: a text Gantt chart of the run, for logs and the bench. */
export function ganttText(run: BlogRun, width = 80): string {
    const timed = run.pods.filter((p) => !Number.isNaN(p.scheduled)).sort((a, b) => a.scheduled - b.scheduled);
    if (!timed.length) return "(no pods)";
    const t0 = timed[0].scheduled;
    const t1 = Math.max(...timed.map((p) => p.finished ?? run.returnedAt));
    const col = (t: number) => Math.round(((t - t0) / Math.max(1, t1 - t0)) * (width - 1));
    const hours = (t: number) => (t - t0) / 1000 / run.secondsPerHour;
    return timed.map((p) => {
        const a = col(p.scheduled);
        const b = Math.max(a + 1, col(p.finished ?? run.returnedAt));
        const bar = " ".repeat(a) + (p.gpus > 0 ? "#" : "-").repeat(b - a);
        const label = `${p.stage ?? "?"}${p.variant ? `:${p.variant}` : ""}`.padEnd(20);
        const span = `${hours(p.scheduled).toFixed(1)}-${p.finished ? hours(p.finished).toFixed(1) : "…"} h`;
        return `${label} ${bar.padEnd(width)} ${span}${p.gpus ? ` x${p.gpus} GPU` : ""}`;
    }).join("\n");
}

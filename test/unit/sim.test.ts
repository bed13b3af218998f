// The pure half of the simulation (sim/stages.ts, sim/gpu.ts, sim/critical-path.ts) and of the e2e
// tier's blog flow (blogflow.ts): kwok Stages derived from stage durations, GPU figures of a
// timeline, the DAG's critical path with the blog's stage times.
import * as path from "path";
import { describe, expect, test } from "vitest";
import { stageGraph } from "../../components/graph";
import { readStackFile, stackSettings } from "../../config/stackfile";
import { blogDurations, nodeSeconds } from "../e2e/blogflow";
import { LABELS } from "../../contract";
import { criticalPath } from "../../sim/critical-path";
import { gpuFigures, podGpuHours, PodInterval, PodTimeline } from "../../sim/gpu";
import { durationOf, podStages, StageDuration } from "../../sim/stages";

const blog = (keep: boolean) => {
    const f = readStackFile(path.join(__dirname, "../../stacks/Pulumi.blog.yaml"));
    if (keep) f.config["cot-vr:teacher"] = JSON.stringify({ ...JSON.parse(f.config["cot-vr:teacher"] ?? "{}"), keep: true });
    return stackSettings(f, { placeholderSecrets: true }).settings;
};

describe("kwok stages from durations", () => {
    const stages = podStages([{ stage: "train", seconds: 3 }, { stage: "train", variant: "lora-11b", seconds: 25 }], { teacherStartSeconds: 0.5, defaultCompleteMs: 1500 });
    const byName = new Map(stages.map((s) => [s.metadata.name, s]));
    const exprs = (n: string) => JSON.stringify(byName.get(n).spec.selector.matchExpressions);

    test("the most specific entry wins: defaults and the stage-wide entry leave the variant alone", () => {
        expect(exprs("pod-complete")).toContain('"values":["train"]');
        expect(exprs("pod-complete")).toContain("train/lora-11b");
        expect(exprs("sim-complete-train")).toContain("train/lora-11b");
        expect(byName.get("sim-complete-train-lora-11b").spec.selector.matchLabels).toEqual({ [LABELS.stage]: "train", [LABELS.variant]: "lora-11b" });
        expect(byName.get("sim-complete-train-lora-11b").spec.delay).toEqual({ durationMilliseconds: 25000 });
        expect(byName.get("pod-complete").spec.delay).toEqual({ durationMilliseconds: 1500 });
    });

    test("teacher pods: Running unready at once, Ready after the load; the default pod-ready leaves them", () => {
        expect(exprs("pod-ready")).toContain("teacher");
        expect(byName.get("sim-teacher-start").spec.next.statusTemplate).toMatch(/status: "False"\n\s*type: Ready/);
        expect(byName.get("sim-teacher-ready").spec.delay).toEqual({ durationMilliseconds: 500 });
    });

    test("a pod whose image does-not-exist is left to the pull-failure stage, by every stage that starts pods", () => {
        for (const n of ["pod-ready", "sim-teacher-start"]) expect(exprs(n)).toContain('contains(\\"does-not-exist\\")","operator":"NotIn"');
    });

    test("no durations: the shipped defaults", () => {
        const d = podStages([]);
        expect(d.map((s) => s.metadata.name)).toEqual(["pod-ready", "pod-complete"]);
        expect(d[1].spec.delay).toBeUndefined();
    });
});

describe("GPU figures", () => {
    const h = 1000; // 1 simulated hour = 1 s
    const pod = (stage: string, gpus: number, s: number, e?: number, started = s): PodInterval =>
        ({ pod: stage, stage, gpus, scheduled: s * h, started: started * h, finished: e === undefined ? undefined : e * h });

    test("the teacher is work only while the generation runs; a kept teacher holds until now", () => {
        const pods = [pod("generate", 0, 2, 10.5), pod("teacher", 1, 2.1, 10.6), pod("train", 1, 10.6, 35.6)];
        const f = gpuFigures(pods, { now: 40 * h, secondsPerHour: 1 });
        expect(f.held).toBeCloseTo(8.5 + 25, 6);
        expect(f.work).toBeCloseTo(8.4 + 25, 6);
        expect(f.makespan).toBeCloseTo(33.6, 6);
        const kept = gpuFigures([pod("generate", 0, 2.5, 10.5), pod("teacher", 1, 2, undefined), pod("train", 1, 10.6, 35.6)], { now: 36 * h, secondsPerHour: 1 });
        expect(kept.held).toBeCloseTo(34 + 25, 6);
        expect(kept.holding).toEqual(["teacher"]);
    });
});

describe("critical path of the blog stack with the blog's stage times", () => {
    for (const keep of [false, true]) {
        test(`teacher.keep ${keep}: download 90B, teacher load, generation, 11B LoRA, its evaluation, report`, () => {
            const s = blog(keep);
            expect(s.teacher.keep).toBe(keep);
            const cp = criticalPath(stageGraph(s), nodeSeconds(s, blogDurations(s, 1), 1));
            expect(cp.seconds).toBeCloseTo(2 + 0.5 + 8 + 25 + 2 + 0.05, 6);
            expect(cp.path.map((p) => p.id)).toEqual(["download:90b", "teacher", "generate", "train:lora-11b", "evaluate:lora-11b", "report"]);
        });
    }
});

describe("one count of a pod's GPU-hours", () => {
    const at = (hh: string) => `2026-01-01T${hh}Z`;
    const pod = (extra: { phase?: string; finishedAt?: string; deletionTimestamp?: string }) => ({
        metadata: { name: "p", uid: "u1", labels: { [LABELS.stage]: "teacher" }, deletionTimestamp: extra.deletionTimestamp, deletionGracePeriodSeconds: extra.deletionTimestamp ? 30 : undefined },
        spec: { nodeName: "n", containers: [{ resources: { limits: { "amd.com/gpu": "2" } } }] },
        status: {
            phase: extra.phase ?? "Running",
            startTime: at("10:00:05"),
            conditions: [{ type: "PodScheduled", status: "True", lastTransitionTime: at("10:00:00") }],
            containerStatuses: [{ state: extra.finishedAt ? { terminated: { finishedAt: extra.finishedAt } } : { running: { startedAt: at("10:00:05") } } }],
        },
    });

    test("status (podGpuHours) and the simulation (PodTimeline, gpuFigures) agree: PodScheduled -> finishedAt x GPUs", () => {
        const done = pod({ phase: "Succeeded", finishedAt: at("11:30:00") });
        const now = Date.parse(at("12:00:00"));
        expect(podGpuHours(done, "amd.com/gpu", now)).toBeCloseTo(3, 9);
        const t = new PodTimeline("amd.com/gpu");
        t.record("MODIFIED", done);
        expect(gpuFigures(t.all(), { now }).held).toBeCloseTo(3, 9);
        // still running: until now
        expect(podGpuHours(pod({}), "amd.com/gpu", now)).toBeCloseTo(4, 9);
    });

    test("a pod deleted while it ran ends at the deletion request (deletionTimestamp less the grace period)", () => {
        const t = new PodTimeline("amd.com/gpu");
        t.record("ADDED", pod({}));
        t.record("DELETED", pod({ deletionTimestamp: at("11:00:30") }), Date.parse(at("11:05:00")));
        expect(t.all()[0].finished).toBe(Date.parse(at("11:00:00")));
    });
});

describe("durations of DAG nodes", () => {
    test("an entry without variant covers the generation (variant cot) and the benchmark's variants", () => {
        const d: StageDuration[] = [{ stage: "generate", seconds: 8 }, { stage: "benchmark", seconds: 2 }, { stage: "benchmark", variant: "lora-11b", seconds: 3 }];
        expect(durationOf(d, { kind: "generate" })).toBe(8);
        expect(durationOf(d, { kind: "benchmark", variant: "lora-11b" })).toBe(3);
        expect(durationOf(d, { kind: "benchmark", variant: "qlora-90b" })).toBe(2);
        expect(durationOf(d, { kind: "report" })).toBe(0);
    });
});

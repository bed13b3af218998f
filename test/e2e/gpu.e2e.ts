// Issue 10 on a real engine and API server: the blog stack in ONE `pulumi up`, with the blog's stage
// times (1 simulated hour = COT_E2E_HOUR_SECONDS s, default 5, see below), while the generation's real release
// code (images/datagen/teacher_scale.py) scales the teacher through its own Role. The GPU timeline
// comes from the API server (test/e2e/sim.ts).
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BlogRun, ganttText, runBlogFlow } from "./blogflow";
import { KUBECONFIG, must, requireCluster } from "./helpers";
import { applyStageDurations } from "./sim";

// Seconds per simulated hour. At 1 s the control plane's fixed latency on each DAG edge (the Job
// controller batches pod updates for 1 s before it marks a Job complete, then the provider sees it and
// the engine creates the next Job) reads as 1-2 simulated hours per edge: measured makespan 44.0 h
// for a 37.55 h critical path. 5 s per hour keeps that latency as small next to the stage times as it
// is on a real cluster; the GPU ratio holds at either scale.
const SECONDS_PER_HOUR = Number(process.env.COT_E2E_HOUR_SECONDS ?? 5);
// Far above what the run has in flight at once (measured: maxConcurrent below), so the engine never
// queues an awaited Job behind another; the CLI's default is 4 x GOMAXPROCS (8 on 2 cores).
const PARALLEL = 64;

describe("blog stack in one pulumi up: GPUs only for work", () => {
    let run: BlogRun;
    beforeAll(() => requireCluster());
    // Later tests get the cluster's default run times back.
    afterAll(() => applyStageDurations(KUBECONFIG, []));

    test("GPU-hours held / of work <= 1.05, makespan <= 1.05 x critical path, nothing holds a GPU after up", async () => {
        run = await runBlogFlow({ name: "blog-gpu", namespace: "cot-vr-e2e-blog", keep: false, secondsPerHour: SECONDS_PER_HOUR, parallel: PARALLEL });
        const f = run.figures;
        const summary = `held ${f.held.toFixed(2)} GPU-h, work ${f.work.toFixed(2)} GPU-h, ratio ${f.ratio.toFixed(3)}, ` +
            `makespan ${f.makespan.toFixed(2)} h, critical path ${(run.critical.seconds / SECONDS_PER_HOUR).toFixed(2)} h ` +
            `(${run.critical.path.map((p) => p.id).join(" -> ")}), at most ${run.maxConcurrent} pods at once\n${ganttText(run)}`;
        console.log(summary);

        // The release went through the generation's own RBAC, and ended cleanly.
        expect(run.holds.length, "teacher_scale.py ran for the generation pod").toBeGreaterThan(0);
        for (const h of run.holds) expect(h.exitCode, `teacher_scale.py for ${h.pod}:\n${h.output}`).toBe(0);
        const teacherPods = run.pods.filter((p) => p.stage === "teacher");
        expect(teacherPods.length, "the teacher ran (scaled up by the generation)").toBeGreaterThan(0);

        expect(run.gpuPodsAtReturn, "GPU pods holding GPUs when up returned").toEqual([]);
        expect(run.teacher.spec.replicas, "teacher Deployment replicas").toBe(0);
        expect(run.teacher.status?.replicas ?? 0, "teacher pods").toBe(0);
        expect(f.holding, "GPU pods still holding").toEqual([]);

        expect(f.work, summary).toBeGreaterThan(0);
        expect(f.ratio, summary).toBeLessThanOrEqual(1.05);
        expect(f.makespan, summary).toBeLessThanOrEqual(1.05 * run.critical.seconds / SECONDS_PER_HOUR);
        expect(run.maxConcurrent, "the engine's --parallel allows every awaited Job at once").toBeLessThan(PARALLEL);
    });

    test("a second up and a refresh see no changes (the scaler owns spec.replicas)", () => {
        expect(run, "the run above").toBeDefined();
        must(run.st.pulumi("preview", "--expect-no-changes"), "pulumi preview --expect-no-changes");
        must(run.st.pulumi("preview", "--refresh", "--expect-no-changes"), "pulumi preview --refresh --expect-no-changes");
    });
});

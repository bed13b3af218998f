// The whole blog run on a real engine and API server: the blog stack in ONE `pulumi up`, with the blog's stage
// times (1 simulated hour = COT_E2E_HOUR_SECONDS s, default 5, see below), while the generation's real release
// code (images/datagen/teacher_scale.py) scales the teacher through its own Role. The GPU timeline
// comes from the API server (sim/watch.ts, sim/gpu.ts).
import * as fs from "fs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BlogRun, ganttText, runBlogFlow } from "./blogflow";
import { KUBECONFIG, kubectl, kubectlJson, must, requireCluster, run as runCommand } from "./helpers";
import { applyStageDurations } from "../../sim/stages";
import { runTeacherWatchdog } from "../../sim/teacher";
import { LABELS, selector } from "../../contract";

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

    test("a generation killed outright: the teacher's watchdog releases it through its own Role, not while a holder lives", async () => {
        expect(run, "the run above").toBeDefined();
        const ns = "cot-vr-e2e-blog";
        const teacher = `${run.settings.run}-teacher`;
        const replicas = () => kubectlJson("-n", ns, "get", "deployment", teacher).spec.replicas;
        // What a generation SIGKILLed on its Job's last try leaves behind: the teacher at 1 replica.
        must(kubectl("-n", ns, "scale", "deployment", teacher, "--replicas=1"), "scale the teacher to 1");
        // A live holder: a pod with the generation Job's own pod labels (not its controller's).
        const job = kubectlJson("-n", ns, "get", "jobs", "-l", selector({ [LABELS.stage]: "generate" })).items[0];
        const labels = Object.fromEntries(Object.entries(job.spec.template.metadata.labels as Record<string, string>)
            .filter(([k]) => !/controller-uid|job-name/.test(k)));
        const holder = { apiVersion: "v1", kind: "Pod", metadata: { name: `${run.settings.run}-holder`, namespace: ns, labels },
            spec: { containers: [{ name: "main", image: "registry.invalid/holder:1" }] } };
        must(runCommand("kubectl", ["apply", "-f", "-"], { input: JSON.stringify(holder) }), "create the holder pod");
        await until(() => kubectlJson("-n", ns, "get", "pod", holder.metadata.name).status?.phase === "Running", 60_000, "holder Running");

        const grace = 3;
        const dog = await runTeacherWatchdog(KUBECONFIG, ns, run.settings.run, { grace, interval: 0.5 });
        let exited = false;
        void dog.exited.then(() => (exited = true));
        try {
            await sleep(2 * grace * 1000);
            expect(exited, "the watchdog exited while a holder lived").toBe(false);
            expect(replicas(), "teacher while its holder lives").toBe(1);

            must(kubectl("-n", ns, "delete", "pod", holder.metadata.name, "--wait=true"), "the holder dies");
            const gone = Date.now();
            const result = await Promise.race([dog.exited, sleep(60_000).then(() => undefined)]);
            expect(result, "the watchdog exited within 60 s").toBeDefined();
            expect(result!.code, result!.output).toBe(0);
            expect(replicas(), "teacher after the watchdog").toBe(0);
            expect((Date.now() - gone) / 1000, "released after the grace, not before").toBeGreaterThanOrEqual(grace - 1);
            expect(result!.output).toContain(`no pod matching ${LABELS.run}=`);
            const events = fs.readFileSync(dog.record, "utf8").trim().split("\n").map((l) => JSON.parse(l));
            expect(events.at(-1)).toMatchObject({ event: "scaled", replicas: 0, deployment: teacher });
        } finally {
            await dog.stop();
            kubectl("-n", ns, "delete", "pod", holder.metadata.name, "--ignore-not-found");
        }
    });
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(ok: () => boolean, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (!ok()) {
        if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
        await sleep(250);
    }
}

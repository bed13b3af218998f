// Fine-tunes on several GPUs and the generation on several teachers, on the simulated MI300X nodes
// (two nodes of 8 amd.com/gpu): the blog-node stack with its 90B fine-tune on 4 GPUs and 4 teacher
// replicas, in one `pulumi up` with the blog's stage times (fine-tunes over the assumed speed-up).
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BlogRun, ganttText, runBlogFlow } from "./blogflow";
import { KUBECONFIG, requireCluster } from "./helpers";
import { applyStageDurations } from "../../sim/stages";

const SECONDS_PER_HOUR = Number(process.env.COT_E2E_HOUR_SECONDS ?? 5);
const NODE_GPUS = 8;

function stackText(): string {
    const doc = YAML.parseDocument(fs.readFileSync(path.join(__dirname, "..", "..", "stacks", "Pulumi.blog-node.yaml"), "utf8"));
    doc.setIn(["config", "cot-vr:train", "variants", "qlora-90b", "gpus"], 4);
    doc.setIn(["config", "cot-vr:teacher", "replicas"], 4);
    return doc.toString();
}

describe("blog-node: an 8-GPU 11B fine-tune, a 4-GPU 90B fine-tune, 4 teachers", () => {
    let run: BlogRun;
    beforeAll(() => requireCluster());
    afterAll(() => applyStageDurations(KUBECONFIG, []));

    test("scheduled with their N GPUs in the DAG's order, never more GPUs than a node has, N teachers while generating and 0 after", async () => {
        run = await runBlogFlow({ name: "blog-node-gpus", namespace: "cot-vr-e2e-node", keep: false, secondsPerHour: SECONDS_PER_HOUR, parallel: 64, stackFileText: stackText() });
        console.log(ganttText(run));
        const ran = (stage: string, variant?: string) => run.pods.filter((p) => p.stage === stage && (variant === undefined || p.variant === variant) && p.finished !== undefined);

        // Each fine-tune: one pod holding its N GPUs, on one node.
        const [t11] = ran("train", "lora-11b");
        const [t90] = ran("train", "qlora-90b");
        expect(t11?.gpus, "lora-11b's pod").toBe(8);
        expect(t90?.gpus, "qlora-90b's pod").toBe(4);

        // GPU accounting per node: at no instant more than the node's 8.
        for (const node of new Set(run.pods.filter((p) => p.gpus > 0).map((p) => p.node))) {
            const events = run.pods.filter((p) => p.node === node && p.gpus > 0 && !Number.isNaN(p.scheduled))
                .flatMap((p) => [[p.scheduled, p.gpus], [p.finished ?? run.returnedAt, -p.gpus]] as [number, number][])
                .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
            let now = 0;
            for (const [, d] of events) {
                now += d;
                expect(now, `GPUs in use on ${node}`).toBeLessThanOrEqual(NODE_GPUS);
            }
        }
        // GPU-hours count each pod's N GPUs: the 8-GPU fine-tune held 8 x its hours.
        expect(run.figures.held).toBeGreaterThan(8 * (t11.finished! - t11.scheduled) / 1000 / SECONDS_PER_HOUR);

        // The DAG: both fine-tunes after the generation, each tuned evaluation after its fine-tune.
        const [gen] = ran("generate");
        for (const t of [t11, t90]) expect(t.started ?? t.scheduled).toBeGreaterThanOrEqual(gen.finished!);
        for (const [v, t] of [["lora-11b", t11], ["qlora-90b", t90]] as const) {
            for (const e of ran("evaluate", v)) expect(e.scheduled).toBeGreaterThanOrEqual(t.finished!);
        }

        // 4 teacher pods while the generation ran, each on its own GPU; none after up returned.
        const teachers = run.pods.filter((p) => p.stage === "teacher");
        expect(teachers.length, "teacher pods").toBe(4);
        for (const t of teachers) {
            expect(t.gpus).toBe(1);
            expect(t.scheduled).toBeGreaterThanOrEqual(gen.scheduled);
            expect(t.finished, "released").toBeDefined();
            expect(t.finished!).toBeLessThanOrEqual(gen.finished! + 60_000);
        }
        for (const h of run.holds) expect(h.exitCode, `teacher_scale.py for ${h.pod}:\n${h.output}`).toBe(0);
        expect(run.teacher.spec.replicas).toBe(0);
        expect(run.teacher.status?.replicas ?? 0).toBe(0);
        expect(run.gpuPodsAtReturn).toEqual([]);
        expect(run.figures.ratio, "GPU-hours held / of work").toBeLessThanOrEqual(1.05);
    });
});

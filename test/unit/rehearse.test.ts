// The rehearsal's pure parts: duration estimates (scripts/estimate.ts), the --parallel a stack needs,
// timeouts against estimates, simulated nodes, scheduling verdicts and claims (scripts/rehearse-core.ts).
import { describe, expect, test } from "vitest";
import {
    datasetRows, epochSamples, estimateStages, MI300X_CONVERSION, MI300X_PEAK_BF16_TFLOPS, parseBench, plan,
    previewNotes, pulumiDefaultParallel, requiredParallel, stageGraph, timeoutProblems, trainSamplesPerS,
} from "../../scripts/estimate";
import { claimProblems, defaultNodes, keysIn, keysToChange, neverSchedulable, nodeShape, provisionerModes, textTimeline } from "../../scripts/rehearse-core";
import { MEASURED, plannable, sameLevers } from "../../config/measured";
import { readStackFile, stackFilePath, stackSettings } from "../../config/stackfile";
import { settings } from "./helpers";
import { LABELS } from "../../contract";

const shipped = (stack: string) => stackSettings(readStackFile(stackFilePath(stack)), { placeholderSecrets: true }).settings;
const byId = (s: ReturnType<typeof settings>) => new Map(estimateStages(s).map((e) => [e.id, e]));
/** Settings whose only fine-tunes are `variants` (samples and evaluations of the base 11B). */
const withVariants = (variants: Record<string, unknown>, raw: Record<string, any> = {}) =>
    settings({ ...raw, train: { variants }, sample: { variants: ["base-11b"] }, evaluate: { variants: ["base-11b"] } });
const lora = (extra: Record<string, unknown> = {}) => ({ model: "11b", method: "lora", epochs: 10, batchSize: 16, gradientAccumulationSteps: 1, ...extra });

describe("duration estimates", () => {
    test("the blog's fine-tunes: each from the measurement of its own model and setting (bench/results/), converted to an MI300X by a named assumption", () => {
        const s = settings();
        const est = byId(s);
        for (const name of ["lora-11b", "qlora-90b"]) {
            const v = s.train.variants[name];
            const e = est.get(`train:${name}`)!;
            const m = MEASURED.find((x) => x.model === v.model && plannable(x) && x.microBatch === v.microBatch && sameLevers(x, v))!;
            expect(m).toBeDefined();
            const sps = m.samplesPerS * MI300X_PEAK_BF16_TFLOPS / m.peakTflops!;
            const compute = v.epochs * 1768 * 16 / sps;
            expect(e.seconds).toBeGreaterThan(compute);
            expect(e.seconds).toBeLessThan(compute + 1200); // + load and the epochs' checkpoints
            // each line names the measurement, its GPU and the conversion
            expect(e.basis).toContain(m.file);
            expect(e.basis).toContain(m.setting);
            expect(e.basis).toContain(m.device);
            expect(e.basis).toContain(MI300X_CONVERSION);
        }
        // the 90B from a 90B measurement, not from the 11B
        // the 12-step measurement: the first call's 3 timed steps are not a steady-state speed
        expect(est.get("train:qlora-90b")!.basis).toContain("h200-qlora-90b-12steps.json compile:m2");
    });

    test("on the GPU it was measured on, the estimate is the benchmark's own projection (within 15%)", () => {
        const s = settings();
        const est = new Map(estimateStages(s, { target: "measured" }).map((e) => [e.id, e]));
        for (const name of ["lora-11b", "qlora-90b"]) {
            const v = s.train.variants[name];
            const m = MEASURED.find((x) => x.model === v.model && !x.groupTiles && x.microBatch === v.microBatch && x.compile === v.compile && x.activationCheckpointing === v.activationCheckpointing && x.compileEncoder === v.compileEncoder)!;
            const e = est.get(`train:${name}`)!;
            expect(e.basis).not.toContain(MI300X_CONVERSION);
            expect(Math.abs(e.seconds / 3600 / m.projectedHours! - 1)).toBeLessThan(0.15);
        }
    });

    test("the figures move with levers, epochs and rows", () => {
        const blog = { compile: false, compileEncoder: false, activationCheckpointing: true, exactTiles: false };
        const a = trainSamplesPerS({ model: "11b", ...blog, microBatch: 16 });
        expect(a.measured.setting).toBe("blog:m16");
        expect(trainSamplesPerS({ model: "11b", compile: true, compileEncoder: true, activationCheckpointing: false, exactTiles: true, microBatch: 4 }).sps).toBeGreaterThan(a.sps);
        expect(trainSamplesPerS({ model: "90b", ...blog, compile: true, microBatch: 2 }).sps).toBeGreaterThan(trainSamplesPerS({ model: "90b", ...blog, microBatch: 2 }).sps);
        expect(() => trainSamplesPerS({ model: "11b", compile: false, compileEncoder: true, activationCheckpointing: false, exactTiles: false })).toThrow(/no fine-tune measurement/);
        const one = byId(withVariants({ x: lora({ epochs: 1 }) })).get("train:x")!.seconds;
        const two = byId(withVariants({ x: lora({ epochs: 2 }) })).get("train:x")!.seconds;
        const limited = byId(withVariants({ x: lora({ epochs: 1, warmupSteps: 1 }) }, { generate: { limit: 1000 } })).get("train:x")!.seconds;
        expect(two).toBeGreaterThan(1.9 * one - 100);
        expect(limited).toBeLessThan(one / 10);
    });

    test("max_steps_per_epoch bounds an epoch; rows come from generate.limit", () => {
        expect(epochSamples(28_299, { batchSize: 16, gradientAccumulationSteps: 1, maxStepsPerEpoch: null })).toEqual({ steps: 1768, samples: 28_288 });
        expect(epochSamples(28_299, { batchSize: 2, gradientAccumulationSteps: 8, maxStepsPerEpoch: 10 })).toEqual({ steps: 10, samples: 160 });
        expect(datasetRows(settings())).toBe(28_299);
        expect(datasetRows(withVariants({}, { generate: { limit: 8 } }))).toBe(8);
        const smoke = byId(shipped("smoke"));
        expect(smoke.get("train:lora-11b")!.seconds).toBeLessThan(600);
        expect(smoke.get("train:lora-11b")!.basis).toContain("2 steps");
    });

    test("download from model bytes, generation from rows, evaluation from test rows", () => {
        const blog = byId(settings());
        expect(blog.get("download:90b")!.seconds).toBeCloseTo(195e9 / 200e6, 6);
        expect(blog.get("download:11b")!.seconds).toBeLessThan(blog.get("download:90b")!.seconds);
        const gen = blog.get("generate")!;
        expect(gen.gpus).toBe(1);
        expect(gen.seconds / 3600).toBeGreaterThan(2);
        expect(byId(withVariants({}, { generate: { limit: 100 } })).get("generate")!.seconds).toBeLessThan(gen.seconds / 20);
        expect(byId(settings({ teacher: { gpus: 2 } })).get("generate")!.seconds).toBeLessThan(gen.seconds);
        const ev = blog.get("evaluate:base-11b")!;
        expect(byId(settings({ evaluate: { limit: 250 } })).get("evaluate:base-11b")!.seconds).toBeLessThan(ev.seconds / 5);
        expect(blog.get("evaluate:base-90b")!.seconds).toBeGreaterThan(ev.seconds);
        expect(blog.get("report")!.gpus).toBe(0);
    });

    test("a benchmark result (--bench) comes before bench/results/; an MI300X result needs no conversion", () => {
        const s = withVariants({ x: lora() });
        const v = s.train.variants.x;
        const setting = { setting: "best:m4", micro_batch: v.microBatch, compile: v.compile, compile_encoder: v.compileEncoder, activation_checkpointing: v.activationCheckpointing, exact_tiles: v.exactTiles, samples_per_s: 6 };
        const json = { device: "AMD Instinct MI300X", device_memory_gb: 191.5, peak_tflops: 1307, config_model: "torchtune.models.llama3_2_vision.lora_llama3_2_vision_11b", layers_scale: 1.0, steps: 12, results: [setting] };
        const f = parseBench(`noise\nCOTVR_BENCH ${JSON.stringify(json)}\n`, "bench.log");
        expect(f[0]).toMatchObject({ model: "11b", samplesPerS: 6, device: "AMD Instinct MI300X" });
        const withBench = estimateStages(s, { bench: f }).find((e) => e.id === "train:x")!;
        expect(withBench.basis).toContain("bench.log");
        expect(withBench.basis).not.toContain(MI300X_CONVERSION);
        expect(withBench.seconds).toBeGreaterThan(10 * 1768 * 16 / 6);
        const h100 = parseBench(JSON.stringify({ ...json, device: "NVIDIA H100 80GB HBM3", peak_tflops: 989 }), "h100.json");
        expect(estimateStages(s, { bench: h100 }).find((e) => e.id === "train:x")!.basis).toContain(MI300X_CONVERSION);
        // fewer than 12 timed steps: not a steady-state speed, so bench/results/ is used instead
        const short = parseBench(JSON.stringify({ ...json, steps: 3 }), "short.json");
        expect(estimateStages(s, { bench: short }).find((e) => e.id === "train:x")!.basis).not.toContain("short.json");
        expect(() => parseBench(JSON.stringify({ ...json, layers_scale: 0.25 }), "f")).toThrow(/layer-scaled/);
        expect(() => parseBench(JSON.stringify({ ...json, results: [] }), "f")).toThrow(/no setting/);
        expect(() => parseBench("not json", "f")).toThrow(/COTVR_BENCH/);
    });

    test("a timeout shorter than the estimate names the key", () => {
        expect(timeoutProblems(shipped("blog"), estimateStages(shipped("blog")))).toEqual([]);
        const s = settings({ timing: { train: { timeout: "2h" } } });
        const p = timeoutProblems(s, estimateStages(s));
        expect(p.length).toBe(2);
        expect(p[0]).toMatch(/^cot-vr:timing\.train\.timeout is 2h00m but train:lora-11b is estimated at \d+h\d\dm/);
    });

    test("the plan: critical path through generation and the 90B fine-tune; GPU-hours add up", () => {
        const s = shipped("blog");
        const est = estimateStages(s);
        const p = plan(stageGraph(s), est);
        expect(p.criticalPath[0]).toBe("download:90b");
        expect(p.criticalPath).toContain("generate");
        expect(p.criticalPath.at(-1)).toBe("report");
        expect(p.makespan).toBeCloseTo(p.stages.find((x) => x.id === "report")!.end, 6);
        const gh = est.reduce((h, e) => h + e.gpus * e.seconds / 3600, 0);
        expect(p.gpuHours).toBeCloseTo(gh, 6);
    });
});

describe("--parallel from the DAG", () => {
    const need = (s: ReturnType<typeof settings>) => requiredParallel(stageGraph(s), estimateStages(s));

    test("blog: the 4 samples and 4 evaluations can all run at once", () => {
        const r = need(shipped("blog"));
        expect(r.parallel).toBe(8);
        expect(r.gpuJobs).toBe(8);
        expect(r.jobs).not.toContain("teacher");
    });

    test("a sweep of 10 fine-tunes needs 10 slots (Pulumi's default of 8 on 2 cores ran 8, then 2)", () => {
        const variants = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`r${i}`, lora({ loraRank: 4 + i })]));
        const s = settings({ stages: { download: false, generate: false, sample: false, evaluate: false, report: false }, train: { variants }, storage: { checkpoints: { size: "3Ti" } } });
        const r = need(s);
        expect(r.parallel).toBe(10);
        expect(pulumiDefaultParallel(2)).toBeLessThan(r.parallel);
    });

    test("a chain needs one slot; a Job submitted without waiting needs none", () => {
        expect(need(shipped("sweep-rank32")).parallel).toBe(1);
        const s = settings({ stages: { download: false, generate: false, sample: false, evaluate: false, report: false }, timing: { train: { await: false } }, train: { variants: { a: lora(), b: lora() } }, storage: { checkpoints: { size: "1Ti" } } });
        expect(need(s).jobs).toEqual([]);
    });
});

describe("simulated nodes and scheduling verdicts", () => {
    const gpuPod = (gpus: number, extra: Record<string, unknown> = {}, stage = "train") => ({
        metadata: { name: "p", labels: { [LABELS.stage]: stage } },
        spec: { tolerations: [{ key: "amd.com/gpu", operator: "Exists", effect: "NoSchedule" }], containers: [{ resources: { requests: { cpu: "16", memory: "256Gi", "amd.com/gpu": String(gpus) }, limits: { "amd.com/gpu": String(gpus) } } }], ...extra },
    });

    test("the default: an 8-GPU MI300X node tainted for GPUs and a CPU node", () => {
        const [gpu, cpu] = defaultNodes();
        expect(gpu.allocatable["amd.com/gpu"]).toBe("8");
        expect(gpu.taints).toEqual([{ key: "amd.com/gpu", value: "present", effect: "NoSchedule" }]);
        expect(gpu.labels["amd.com/gpu.device-id"]).toBe("74a1");
        expect(cpu.allocatable["amd.com/gpu"]).toBeUndefined();
    });

    test("a teacher asking 9 GPUs never fits: teacher.gpus; 8 fits", () => {
        const never = neverSchedulable(gpuPod(9, {}, "teacher"), defaultNodes(), "amd.com/gpu")!;
        expect(never).toBeDefined();
        expect(keysIn(never)).toContain("cot-vr:teacher.gpus");
        expect(neverSchedulable(gpuPod(8, {}, "teacher"), defaultNodes(), "amd.com/gpu")).toBeUndefined();
    });

    test("selector and taint mismatches name cluster.nodeSelector and cluster.tolerations", () => {
        const sel = neverSchedulable(gpuPod(1, { nodeSelector: { "amd.com/gpu.device-id": "74b5" } }), defaultNodes(), "amd.com/gpu")!;
        expect(keysIn(sel)).toContain("cot-vr:cluster.nodeSelector");
        const taint = neverSchedulable(gpuPod(1, { tolerations: [] }), defaultNodes(), "amd.com/gpu")!;
        expect(keysIn(taint)).toContain("cot-vr:cluster.tolerations");
    });

    test("a CPU pod on GPU nodes only names cluster.cpuTolerations, the key that reaches it", () => {
        const cpuPod = { metadata: { name: "d", labels: { [LABELS.stage]: "download" } }, spec: { containers: [{ resources: { requests: { cpu: "2", memory: "8Gi" } } }] } };
        const gpuOnly = defaultNodes().filter((n) => n.allocatable["amd.com/gpu"]);
        expect(keysToChange(neverSchedulable(cpuPod, gpuOnly, "amd.com/gpu")!)).toEqual(["cot-vr:cluster.cpuTolerations"]);
        expect(neverSchedulable({ ...cpuPod, spec: { ...cpuPod.spec, tolerations: [{ key: "amd.com/gpu", operator: "Exists" }] } }, gpuOnly, "amd.com/gpu")).toBeUndefined();
        expect(neverSchedulable(cpuPod, defaultNodes(), "amd.com/gpu")).toBeUndefined();
    });

    test("a real node's shape: labels and taints kept, lifecycle taints and kubelet labels dropped", () => {
        const n = nodeShape({
            metadata: { name: "gpu-a", labels: { "kubernetes.io/hostname": "gpu-a", pool: "mi300x" } },
            spec: { taints: [{ key: "node.kubernetes.io/not-ready", effect: "NoSchedule" }, { key: "gpu", value: "true", effect: "NoSchedule" }] },
            status: { allocatable: { cpu: "96", memory: "1Ti", "amd.com/gpu": "8", "hugepages-2Mi": "0" } },
        }, 0);
        expect(n.labels).toEqual({ pool: "mi300x" });
        expect(n.taints).toEqual([{ key: "gpu", value: "true", effect: "NoSchedule" }]);
        expect(n.allocatable).toEqual({ cpu: "96", memory: "1Ti", "amd.com/gpu": "8" });
        // The stack's default toleration (amd.com/gpu) does not cover this pool's taint.
        expect(keysToChange(neverSchedulable(gpuPod(1), [n], "amd.com/gpu")!)).toEqual(["cot-vr:cluster.tolerations"]);
        // The CPU node misses on more counts: the key is the GPU node's.
        expect(keysToChange(neverSchedulable(gpuPod(9, {}, "teacher"), defaultNodes(), "amd.com/gpu")!)).toEqual(["cot-vr:teacher.gpus"]);
    });

    test("claims: a missing class or an access mode the provisioner lacks never binds", () => {
        expect(provisionerModes("rancher.io/local-path")).not.toContain("ReadWriteMany");
        expect(provisionerModes("nfs.csi.k8s.io")).toContain("ReadWriteMany");
        expect(provisionerModes("example.com/unknown")).toBeUndefined();
        const local = [{ name: "local-path", isDefault: true, provisioner: "rancher.io/local-path", modes: provisionerModes("rancher.io/local-path") }];
        const p = claimProblems(settings(), local);
        expect(p.length).toBe(4); // every volume defaults to ReadWriteMany
        expect(p[0]).toContain("cot-vr:storage.models.accessMode");
        const rwo = { models: { accessMode: "ReadWriteOnce" }, data: { accessMode: "ReadWriteOnce" }, checkpoints: { accessMode: "ReadWriteOnce" }, results: { accessMode: "ReadWriteOnce" } };
        expect(claimProblems(settings({ storage: rwo }), local)).toEqual([]);
        expect(claimProblems(settings({ storage: { storageClass: "fast" } }), local)[0]).toContain("cot-vr:storage.storageClass");
        expect(claimProblems(settings(), [])[0]).toContain("no default StorageClass");
    });

    test("without ReadWriteMany, the advice depends on where the class's volumes live", () => {
        const local = [{ name: "local-path", isDefault: true, provisioner: "rancher.io/local-path", modes: provisionerModes("rancher.io/local-path") }];
        expect(claimProblems(settings(), local)[0]).toContain("set cot-vr:storage.models.accessMode to ReadWriteOnce (its volumes are node-local");
        // Network block storage: ReadWriteOnce would strand concurrent stages on different nodes.
        const ebs = [{ name: "gp3", isDefault: true, provisioner: "ebs.csi.aws.com", modes: provisionerModes("ebs.csi.aws.com") }];
        const p = claimProblems(settings(), ebs)[0];
        expect(p).toContain("pick a ReadWriteMany class with cot-vr:storage.storageClass");
        expect(p).toContain("Multi-Attach");
        expect(p).not.toContain("set cot-vr:storage.models.accessMode to ReadWriteOnce");
    });

    test("text timeline: one row per GPU pod, in real hours", () => {
        const t = textTimeline([
            { name: "a", stage: "train", variant: "lora-11b", gpus: 1, start: 0, end: 50 },
            { name: "b", stage: "evaluate", variant: "base-11b", gpus: 1, start: 50, end: 100 },
        ], { scale: 5, width: 20 });
        const lines = t.split("\n");
        expect(lines[0]).toMatch(/^train lora-11b\s+1 GPU \|#{10} {10}\| 0\.0-10\.0 h$/);
        expect(lines[1]).toMatch(/\| {10}#{10}\| 10\.0-20\.0 h$/);
        expect(lines[2]).toContain("20.0 h");
    });
});

describe("what the rehearsal knows, preview says", () => {
    test("a timeout shorter than its stage's estimate, naming the key", () => {
        const n = previewNotes(settings({ timing: { train: { timeout: "2h" } } }));
        expect(n.warnings).toEqual([
            expect.stringMatching(/^cot-vr:timing\.train\.timeout is 2h00m but train:lora-11b is estimated at \d+h\d+m .*raise it to at least \d+h\d+m$/),
            expect.stringMatching(/^cot-vr:timing\.train\.timeout is 2h00m but train:qlora-90b is estimated/),
        ]);
    });

    test("a --parallel that would serialise stages, and none when it is enough", () => {
        const s = settings();
        const need = requiredParallel(stageGraph(s), estimateStages(s)).parallel;
        expect(previewNotes(s, need - 1).warnings).toEqual([expect.stringMatching(new RegExp(`^pulumi up --parallel ${need - 1} would serialise stages: .* run pulumi up --parallel ${need}$`))]);
        expect(previewNotes(s, need).warnings).toEqual([]);
        expect(previewNotes(s).warnings).toEqual([]);
    });

    test("the plan's makespan, GPU-hours and cost, as the rehearsal computes them", () => {
        const s = settings({ cluster: { gpuHourPrice: { amount: 2, currency: "USD" } } });
        const p = plan(stageGraph(s), estimateStages(s));
        const [info] = previewNotes(s).info;
        expect(info).toContain(`${p.gpuHours.toFixed(1)} GPU-hours, about ${(2 * p.gpuHours).toFixed(0)} USD`);
        expect(info).toMatch(/pulumi up --parallel >= 8/);
    });
});

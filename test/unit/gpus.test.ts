// Fine-tunes on several GPUs of one node (train.variants.<v>.gpus): the blog's math kept, the pod
// sized for N ranks, the distributed recipe from the packaged multi-device config.
import * as YAML from "yaml";
import { describe, expect, it } from "vitest";
import { CHARTQA_ROWS, ConfigError, distributedStepsPerEpoch, MULTI_GPU_SCALING_EFFICIENCY, multiGpuSpeedup, parseSettings, RCCL_ONE_NODE_ENV, stepsPerEpoch, TrainVariant } from "../../config";
import { argOf, container, render, settings, TOKEN } from "./helpers";

const blogVariants = (gpus11: number, gpus90: number) => ({
    variants: {
        "lora-11b": { model: "11b", method: "lora", epochs: 10, batchSize: 16, gradientAccumulationSteps: 1, gpus: gpus11 },
        "qlora-90b": { model: "90b", method: "qlora", epochs: 3, batchSize: 2, gradientAccumulationSteps: 8, gpus: gpus90 },
    },
});

function problems(raw: Record<string, unknown>): string[] {
    try {
        parseSettings({ hfToken: TOKEN, ...raw }, { stack: "blog", secretKeys: ["cot-vr:hfToken"] });
    } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as ConfigError).problems;
    }
    throw new Error("expected a ConfigError");
}

const steps = (v: TrainVariant, rows: number) => {
    const x = { batchSize: v.microBatch, gradientAccumulationSteps: v.accumulation, maxStepsPerEpoch: v.maxStepsPerEpoch };
    return v.gpus === 1 ? stepsPerEpoch(rows, x) : distributedStepsPerEpoch(rows, x, v.gpus);
};

describe("the blog's math on N GPUs", () => {
    const one = settings().train.variants;
    for (const n of [2, 4, 8]) {
        const many = settings({ train: blogVariants(n, n <= 8 ? n : 1) }).train.variants;
        it(`${n} GPUs: micro-batch x accumulation x gpus = the blog's 16, same epochs, warmup, lr and seed`, () => {
            for (const name of ["lora-11b", "qlora-90b"]) {
                const v = many[name];
                expect(v.gpus).toBe(n);
                expect(v.microBatch * v.accumulation * v.gpus).toBe(16);
                expect(one[name].microBatch * one[name].accumulation).toBe(16);
                for (const k of ["epochs", "warmupSteps", "learningRate", "seed", "loraRank", "loraAlpha"] as const) expect(v[k]).toBe(one[name][k]);
            }
        });
        it(`${n} GPUs: steps per epoch of the distributed recipe within one of the single-device recipe's on ChartQA train`, () => {
            const rows = CHARTQA_ROWS.train;
            for (const name of ["lora-11b", "qlora-90b"]) {
                const single = steps(one[name], rows);
                expect(single).toBe(Math.floor(rows / 16));
                // The sampler pads to a multiple of N: at most one more step, never fewer.
                expect(steps(many[name], rows) - single).toBeGreaterThanOrEqual(0);
                expect(steps(many[name], rows) - single).toBeLessThanOrEqual(1);
            }
        });
    }
    it("counts the padded rows as torchtune's sampler does: 28,299 rows on 8 GPUs make 1769 steps, on 4 GPUs 1768", () => {
        const v = { batchSize: 2, gradientAccumulationSteps: 1, maxStepsPerEpoch: null };
        expect(distributedStepsPerEpoch(28299, v, 8)).toBe(1769); // ceil(28299/8) = 3538 per rank, 1769 batches of 2
        expect(distributedStepsPerEpoch(28299, { ...v, batchSize: 4 }, 4)).toBe(1768); // 7075 per rank
    });
    it("says at preview what it cannot keep: the extra padded step", () => {
        const s = settings({ train: blogVariants(8, 1) });
        expect(s.defaulted).toContainEqual(expect.stringMatching(/^train\.variants\.lora-11b: micro-batch \d+ x accumulation \d+ x 8 GPUs \(effective batch 16/));
        expect(s.defaulted).toContainEqual(expect.stringMatching(/^train\.variants\.lora-11b\.gpus = 8: 1769 optimizer steps per epoch, the single-device recipe's 1768/));
        expect(settings({ train: blogVariants(4, 1) }).defaulted.filter((d) => /steps per epoch/.test(d))).toEqual([]);
    });
    it("plans the encoder uncompiled on N GPUs (the distributed recipe compiles the decoder only), and says why", () => {
        const s = settings({ train: blogVariants(8, 4) });
        expect(s.train.variants["lora-11b"].compileEncoder).toBe(false);
        expect(s.defaulted).toContain("train.variants.lora-11b.compileEncoder = false (the distributed recipe compiles the decoder only)");
        expect(settings().train.variants["lora-11b"].compileEncoder).toBe(true);
    });
});

describe("bad GPU counts fail at preview, naming the keys", () => {
    it("accepts 1, 2, 4 or 8 only", () => {
        expect(problems({ train: blogVariants(3, 1) })).toContain("cot-vr:train.variants.lora-11b.gpus: must be 1, 2, 4 or 8");
        expect(problems({ train: blogVariants(0, 1) })).toContainEqual(expect.stringMatching(/^cot-vr:train\.variants\.lora-11b\.gpus: /));
    });
    it("at most the GPUs of one node", () => {
        expect(problems({ cluster: { gpusPerNode: 4 }, train: blogVariants(8, 1) })).toContainEqual(
            expect.stringMatching(/^cot-vr:train\.variants\.lora-11b\.gpus: 8 is more than cluster\.gpusPerNode \(4\)/));
    });
    it("an effective batch the GPUs cannot share evenly", () => {
        const raw = { train: { variants: { x: { model: "11b", method: "lora", epochs: 1, batchSize: 6, gradientAccumulationSteps: 1, gpus: 4 } } }, stages: { sample: false, evaluate: false, report: false } };
        expect(problems(raw)).toContainEqual(expect.stringMatching(
            /^cot-vr:train\.variants\.x\.gpus: 4 GPUs cannot share the effective batch batchSize 6 x gradientAccumulationSteps 1 = 6 evenly/));
    });
    it("a micro-batch that does not divide each GPU's share", () => {
        const raw = { train: { variants: { x: { model: "11b", method: "lora", epochs: 1, batchSize: 16, gradientAccumulationSteps: 1, gpus: 4, microBatchSize: 8 } } }, stages: { sample: false, evaluate: false, report: false } };
        expect(problems(raw)).toContain("cot-vr:train.variants.x.microBatchSize: 8 does not divide each GPU's share of the effective batch (batchSize 16 x gradientAccumulationSteps 1 / gpus 4 = 4): use one of 1, 2, 4 or \"auto\"");
    });
    it("compileEncoder: true with N GPUs (only the single-device recipe is patched for it)", () => {
        const raw = { train: { variants: { x: { model: "11b", method: "lora", epochs: 1, batchSize: 16, gradientAccumulationSteps: 1, gpus: 2, compileEncoder: true } } }, stages: { sample: false, evaluate: false, report: false } };
        expect(problems(raw)).toContainEqual(expect.stringMatching(/^cot-vr:train\.variants\.x\.compileEncoder: true needs the single-device recipe/));
    });
});

describe("the N-GPU fine-tune pod", async () => {
    const s = settings({ train: blogVariants(8, 4) });
    const r = await render(s);
    const one = await render(settings());
    const job11 = r.job("train", "lora-11b");
    const job90 = r.job("train", "qlora-90b");
    const c11 = container(job11);
    const cfg11 = YAML.parse(r.configOf(job11)["train.yaml"]);
    const cfg90 = YAML.parse(r.configOf(job90)["train.yaml"]);

    it("one pod requests N amd.com/gpu and runs the distributed recipe through torchrun's N processes", () => {
        expect(c11.resources.requests["amd.com/gpu"]).toBe("8");
        expect(c11.resources.limits["amd.com/gpu"]).toBe("8");
        expect(container(job90).resources.limits["amd.com/gpu"]).toBe("4");
        expect(argOf(c11.args, "--recipe")).toBe("lora_finetune_distributed");
        expect(argOf(c11.args, "--nproc")).toBe("8");
        expect(argOf(container(job90).args, "--nproc")).toBe("4");
        const c1 = container(one.job("train", "lora-11b"));
        expect(argOf(c1.args, "--recipe")).toBe("lora_finetune_single_device");
        expect(c1.args).not.toContain("--nproc");
        expect(c1.resources.limits["amd.com/gpu"]).toBe("1");
    });
    it("starts from the packaged multi-device configs with the blog's changes and the pod paths, as on one GPU", () => {
        const single11 = YAML.parse(one.configOf(one.job("train", "lora-11b"))["train.yaml"]);
        const single90 = YAML.parse(one.configOf(one.job("train", "qlora-90b"))["train.yaml"]);
        for (const [multi, single] of [[cfg11, single11], [cfg90, single90]]) {
            for (const k of ["output_dir", "tokenizer", "checkpointer", "dataset", "seed", "epochs", "optimizer", "lr_scheduler", "loss", "metric_logger", "dtype", "collate_fn"]) {
                expect(multi[k], k).toEqual(single[k]);
            }
            expect(multi.model).toEqual(single.model);
            expect(multi).not.toHaveProperty("compile_encoder");
        }
        expect(cfg11.batch_size * cfg11.gradient_accumulation_steps * 8).toBe(16);
        expect(cfg90.batch_size * cfg90.gradient_accumulation_steps * 4).toBe(16);
    });
    it("sizes /dev/shm and host memory for N ranks, and sets the RCCL environment for one node", () => {
        // Every rank loads the full checkpoint on the host: 256Gi + 7 x 22Gi (11B), 256Gi + 3 x 182Gi (90B).
        expect(c11.resources.limits.memory).toBe("410Gi");
        expect(container(job90).resources.limits.memory).toBe("802Gi");
        const shm = job11.spec.template.spec.volumes.find((v: any) => v.name === "dshm");
        expect(shm.emptyDir).toEqual({ medium: "Memory", sizeLimit: "120Gi" });
        for (const [name, value] of Object.entries(RCCL_ONE_NODE_ENV)) expect(c11.env).toContainEqual({ name, value });
        expect(container(one.job("train", "lora-11b")).env.map((e: any) => e.name)).not.toContain("NCCL_MIN_NCHANNELS");
    });
    it("scales activeDeadlineSeconds by the named speed-up assumption", () => {
        expect(MULTI_GPU_SCALING_EFFICIENCY).toBeGreaterThan(0);
        expect(job11.spec.activeDeadlineSeconds).toBe(Math.ceil(48 * 3600 / multiGpuSpeedup(8)));
        expect(job90.spec.activeDeadlineSeconds).toBe(Math.ceil(48 * 3600 / multiGpuSpeedup(4)));
        expect(one.job("train", "lora-11b").spec.activeDeadlineSeconds).toBe(48 * 3600);
    });
    it("a new Job name: the config hash includes N", async () => {
        expect(job11.metadata.name).not.toBe(one.job("train", "lora-11b").metadata.name);
        const two = await render(settings({ train: blogVariants(2, 1) }));
        expect(two.job("train", "lora-11b").metadata.name).not.toBe(job11.metadata.name);
    });
});

describe("estimates count N GPUs", () => {
    it("a fine-tune on N GPUs: ~1/speed-up of the time, N x its hours in GPU-hours, the deadline checked against the scaled one", async () => {
        const { DEFAULT_ASSUMPTIONS: a, estimateStages, previewNotes, trainSamplesPerS } = await import("../../scripts/estimate");
        const { MODEL_FACTS } = await import("../../config");
        const s = settings({ train: blogVariants(8, 4) });
        const many = estimateStages(s).filter((e) => e.stage === "train");
        for (const [i, name, n] of [[0, "lora-11b", 8], [1, "qlora-90b", 4]] as const) {
            const v = s.train.variants[name];
            expect(many[i].gpus).toBe(n);
            // One GPU's measured rate at the rank's micro-batch and levers x the assumed speed-up, over
            // the distributed recipe's steps; loading and checkpoints do not scale.
            const st = distributedStepsPerEpoch(CHARTQA_ROWS.train, { batchSize: v.microBatch, gradientAccumulationSteps: v.accumulation, maxStepsPerEpoch: null }, n);
            const io = MODEL_FACTS[v.model].bytes * (1 / a.volumeReadBytesPerS + v.epochs / a.volumeWriteBytesPerS);
            expect(many[i].seconds).toBeCloseTo(v.epochs * st * 16 / (trainSamplesPerS(v).sps * multiGpuSpeedup(n)) + io, 3);
            expect(many[i].basis).toContain(`x ${multiGpuSpeedup(n).toFixed(2)} for ${n} GPUs (assumption MULTI_GPU_SCALING_EFFICIENCY`);
        }
        expect(estimateStages(settings()).filter((e) => e.stage === "train").map((e) => e.gpus)).toEqual([1, 1]);
        // A timeout that fits one GPU's run but not the N-GPU deadline it implies is flagged.
        const tight = settings({ train: blogVariants(8, 1), timing: { train: { timeout: "9h" } } });
        expect(previewNotes(tight).warnings).toContainEqual(expect.stringMatching(/^cot-vr:timing\.train\.timeout is 9h00m \(its 8-GPU deadline: 1h18m, the timeout \/ 6\.95\) but train:lora-11b is estimated at/));
        expect(previewNotes(settings({ train: blogVariants(8, 1) })).info[0]).toMatch(/^cot-vr:train\.variants\.lora-11b\.gpus = 8: 1769 optimizer steps per epoch/);
    });
});

describe("teacher.replicas: the generation on N teachers", async () => {
    const one = await render(settings());
    const many = await render(settings({ teacher: { replicas: 4 } }));
    const kept = await render(settings({ teacher: { replicas: 4, keep: true } }));
    const deployment = (r: Awaited<ReturnType<typeof render>>) => r.byKind("Deployment")[0];
    const sdk = (r: Awaited<ReturnType<typeof render>>) => YAML.parse(r.configOf(r.job("generate"))["sdk.yaml"]);

    it("the generation scales the Deployment to N (from 0), and N teachers are not another dataset", () => {
        const args = container(many.job("generate")).args;
        expect(argOf(args, "--teacher-replicas")).toBe("4");
        expect(container(one.job("generate")).args).not.toContain("--teacher-replicas");
        expect(deployment(many).spec.replicas).toBe(0);
        // The per-replica batch stays in the config (the dataset's identity): the program multiplies it.
        expect(sdk(many)).toEqual(sdk(one));
        expect(many.job("generate").metadata.labels).toEqual(one.job("generate").metadata.labels);
        // Each pod its own GPUs, as with one.
        expect(container(deployment(many)).resources.limits["amd.com/gpu"]).toBe("1");
    });
    it("a kept teacher serves N replicas from the stack", () => {
        expect(deployment(kept).spec.replicas).toBe(4);
        expect(deployment(one).spec.replicas).toBe(0);
    });
    it("the estimate: ~1/N of the generation time, N x the teacher's GPUs", async () => {
        const { estimateStages } = await import("../../scripts/estimate");
        const gen = (s: ReturnType<typeof settings>) => estimateStages(s).find((e) => e.stage === "generate")!;
        const g1 = gen(settings()), g4 = gen(settings({ teacher: { replicas: 4 } }));
        expect(g4.gpus).toBe(4 * g1.gpus);
        expect(g4.basis).toContain("4 teachers");
        // The teacher's load happens once per replica, in parallel: only the rows part divides by N.
        expect(g4.seconds).toBeLessThan(g1.seconds / 3);
        expect(g4.seconds).toBeGreaterThan(g1.seconds / 4);
    });
});

describe("the rehearsal and the plan know N", () => {
    it("an 8-GPU fine-tune fits an MI300X node; on a 4-GPU node it never schedules and names train.variants.<v>.gpus", async () => {
        const { defaultNodes, keysToChange, neverSchedulable } = await import("../../scripts/rehearse-core");
        const r = await render(settings({ train: blogVariants(8, 1) }));
        const pod = { metadata: { labels: r.job("train", "lora-11b").spec.template.metadata.labels }, spec: r.job("train", "lora-11b").spec.template.spec };
        expect(neverSchedulable(pod, defaultNodes(8), "amd.com/gpu")).toBeUndefined();
        const never = neverSchedulable(pod, defaultNodes(4), "amd.com/gpu")!;
        expect(keysToChange(never)).toEqual(["cot-vr:train.variants.lora-11b.gpus"]);
    });
    it("the plan's GPUs at once count an N-GPU stage N times", async () => {
        const { estimateStages, peakGpus, plan, stageGraph } = await import("../../scripts/estimate");
        const at = (s: ReturnType<typeof settings>) => plan(stageGraph(s), estimateStages(s)).peakGpus;
        const stages = [{ gpus: 8, start: 0, end: 2 }, { gpus: 8, start: 0, end: 3 }, { gpus: 1, start: 2, end: 4 }, { gpus: 0, start: 0, end: 9 }] as any;
        expect(peakGpus(stages)).toBe(16);
        expect(at(settings({ train: blogVariants(8, 8), teacher: { replicas: 8 } }))).toBeGreaterThanOrEqual(16);
        expect(at(settings())).toBe(4); // the blog: two fine-tunes, then four evaluations at once
    });
    it("the blog-node stack's estimate is printed next to the blog stack's", async () => {
        const { blogComparison } = await import("../../scripts/rehearse");
        const { readStackFile, stackFilePath, stackSettings } = await import("../../config/stackfile");
        const node = stackSettings(readStackFile(stackFilePath("blog-node")), { placeholderSecrets: true }).settings;
        const line = blogComparison(node)!;
        expect(line).toMatch(/^next to the blog stack \(one GPU per fine-tune, one teacher\): makespan \S+ vs \S+ \(0\.\d\dx\), [\d.]+ vs [\d.]+ GPU-hours/);
        const blog = stackSettings(readStackFile(stackFilePath("blog")), { placeholderSecrets: true }).settings;
        expect(blogComparison(blog)).toBeUndefined();
        expect(node.train.variants["lora-11b"].gpus).toBe(8);
        expect(node.teacher.replicas).toBe(8);
    });
});

describe("the rehearsal reads the nodes' GPUs (--like)", () => {
    it("a fine-tune on more GPUs than the biggest node has fails before anything starts, naming the keys", async () => {
        const { defaultNodes, gpusPerNodeProblems } = await import("../../scripts/rehearse-core");
        const s = settings({ train: blogVariants(8, 4) });
        expect(gpusPerNodeProblems(s, defaultNodes(8))).toEqual([]);
        expect(gpusPerNodeProblems(s, defaultNodes(4))).toEqual([
            "cot-vr:train.variants.lora-11b.gpus is 8 but the cluster's biggest node has 4 amd.com/gpu: use at most 4 (and set cot-vr:cluster.gpusPerNode: 4)",
        ]);
    });
});

import { describe, expect, it } from "vitest";
import { blogMeasurement, ConfigError, durationSeconds, isPinnedImage, MEASURED, parseSettings, plannable, planSpeed, quantityBytes, peakGiB, settingsFromConfigMap, stackFileProblems, stepsPerEpoch, TrainVariant } from "../../config";
import { settings, TOKEN } from "./helpers";

function problems(raw: Record<string, unknown>, secretKeys = ["cot-vr:hfToken"]): string[] {
    try {
        parseSettings({ hfToken: TOKEN, ...raw }, { stack: "blog", secretKeys });
    } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as ConfigError).problems;
    }
    throw new Error("expected a ConfigError");
}

describe("defaults reproduce the blog's experiment, corrected", () => {
    const s = settings();
    it("serves the 90B teacher with max-model-len 8192 (not the blog's 8129) and 16 sequences", () => {
        expect(s.teacher.maxModelLen).toBe(8192);
        expect(s.teacher.maxNumSeqs).toBe(16);
        expect(s.teacher.servedModelName).toBe("meta-llama/Llama-3.2-90B-Vision-Instruct");
    });
    it("pins a vLLM image that still serves Mllama", () => {
        expect(s.images.vllm).toMatch(/^rocm\/vllm:rocm[\d.]+_vllm_0\.(8|9|10)\./);
    });
    it("generates with the blog's sampling settings", () => {
        expect(s.generate).toMatchObject({ source: "HuggingFaceM4/ChartQA", temperature: 0.2, topP: 0.95, maxTokens: 4092, inputSplit: "train", outputSplit: "train" });
    });
    it("fine-tunes 11B LoRA r16/a32, 10 epochs, batch 16 and 90B QLoRA 3 epochs, batch 2, accumulation 8", () => {
        expect(s.train.variants["lora-11b"]).toMatchObject({ model: "11b", method: "lora", loraRank: 16, loraAlpha: 32, epochs: 10, batchSize: 16, gradientAccumulationSteps: 1 });
        expect(s.train.variants["qlora-90b"]).toMatchObject({ model: "90b", method: "qlora", loraRank: 8, loraAlpha: 16, epochs: 3, batchSize: 2, gradientAccumulationSteps: 8 });
    });
    it("evaluates base and tuned 11B and 90B on chartqa over the whole test split", () => {
        expect(s.evaluations.map((r) => r.name)).toEqual(["base-11b", "lora-11b", "base-90b", "qlora-90b"]);
        expect(s.evaluate.tasks).toEqual(["chartqa"]);
        expect(s.evaluate.limit).toBeUndefined();
    });
    it("derives the run from the stack and the models from the stages", () => {
        expect(s.run).toBe("blog");
        expect(s.neededModels).toEqual(["11b", "90b"]);
    });
});

describe("bad stack files fail with every bad field named", () => {
    it("reports a wrong type, an unknown key, a zero size and a bad GPU count together", () => {
        const p = problems({
            teacher: { maxModelLen: "8192", gpus: 1.5, colour: "red" },
            storage: { data: { size: "0Gi" } },
            bogus: 1,
        });
        expect(p).toEqual(expect.arrayContaining([
            expect.stringMatching(/^cot-vr:teacher\.maxModelLen: .*number/),
            expect.stringMatching(/^cot-vr:teacher\.gpus: .*int/),
            "cot-vr:teacher.colour: unknown key",
            expect.stringMatching(/^cot-vr:storage\.data\.size: must be a positive Kubernetes quantity/),
            "cot-vr:bogus: unknown key",
        ]));
        expect(p).toHaveLength(5);
    });
    it("rejects negative sizes and GPU counts", () => {
        const p = problems({ storage: { models: { size: "-5Gi" } }, teacher: { gpus: -1 } });
        expect(p.join("\n")).toMatch(/storage\.models\.size/);
        expect(p.join("\n")).toMatch(/teacher\.gpus/);
    });
    it("rejects unpinned images", () => {
        for (const ref of ["rocm/vllm:latest", "rocm/vllm", "registry:5000/x"]) {
            expect(problems({ images: { vllm: ref } }).join()).toMatch(/cot-vr:images\.vllm: must be pinned/);
        }
        expect(isPinnedImage("registry:5000/x:1.0")).toBe(true);
        expect(isPinnedImage(`x@sha256:${"a".repeat(64)}`)).toBe(true);
    });
    it("requires the Hugging Face token as a secret when models are downloaded", () => {
        expect(() => parseSettings({}, { stack: "blog", secretKeys: [] })).toThrow(/cot-vr:hfToken: required to download 11b, 90b: pulumi config set --secret/);
        expect(problems({}, [])).toEqual(["cot-vr:hfToken: must be set as a secret: pulumi config set --secret cot-vr:hfToken <value>"]);
        // Without downloads nothing needs the token.
        expect(() => parseSettings({ stages: { download: false } }, { stack: "blog", secretKeys: [] })).not.toThrow();
    });
    it("keeps secret values out of the settings: they travel beside them", () => {
        const s = parseSettings({ hfToken: TOKEN }, { stack: "blog", secretKeys: ["cot-vr:hfToken"] });
        expect(s).not.toHaveProperty("hfToken");
        expect(JSON.stringify(s)).not.toContain(TOKEN);
    });
    it("rejects a tuned evaluation whose fine-tune is not in the stack", () => {
        expect(problems({ evaluate: { variants: ["base-11b", "lora-11b-r64"] } })).toEqual([
            expect.stringMatching(/^cot-vr:evaluate\.variants\.1: "lora-11b-r64" is neither base-11b, base-90b nor a train variant .*not in the stack/),
        ]);
    });
    it("accepts a tuned evaluation whose fine-tune ran in an earlier update (variant disabled)", () => {
        const s = settings({ train: { variants: { "lora-11b": { model: "11b", method: "lora", epochs: 2, batchSize: 1, gradientAccumulationSteps: 1, enabled: false } } }, evaluate: { variants: ["lora-11b"] }, sample: { variants: [] } });
        expect(s.trainings).toEqual([]);
        expect(s.evaluations).toEqual([{ name: "lora-11b", size: "11b", trainVariant: "lora-11b" }]);
    });
    it("rejects epochs < 1 and an eval limit that is not a positive integer", () => {
        const p = problems({
            train: { variants: { x: { model: "11b", method: "lora", epochs: 0, batchSize: 1, gradientAccumulationSteps: 1 } } },
            evaluate: { limit: 2.5, variants: ["base-11b"] },
            sample: { variants: [] },
        });
        expect(p).toEqual(expect.arrayContaining([
            expect.stringMatching(/^cot-vr:train\.variants\.x\.epochs: /),
            expect.stringMatching(/^cot-vr:evaluate\.limit: /),
        ]));
        expect(problems({ evaluate: { limit: 0 } }).join()).toMatch(/cot-vr:evaluate\.limit/);
    });
    it("rejects volumes too small for what the stages write", () => {
        expect(problems({ storage: { checkpoints: { size: "500Gi" } } })).toEqual([
            expect.stringMatching(/^cot-vr:storage\.checkpoints\.size: 500Gi is too small: the epochs kept \(lora-11b: 10 x 22Gi, qlora-90b: 3 x 182Gi\) need at least 7\d\dGi$/),
        ]);
        expect(problems({ storage: { models: { size: "100Gi" } } })[0]).toMatch(/storage\.models\.size: 100Gi is too small: the models 11b \+ 90b need at least/);
        // Existing claims are not sized by this stack.
        expect(() => settings({ storage: { checkpoints: { size: "1Gi", existingClaim: "shared" } } })).not.toThrow();
    });
    it("rejects 90B LoRA (needs QLoRA on one GPU) and generation without the teacher", () => {
        const p = problems({
            train: { variants: { big: { model: "90b", method: "lora", epochs: 1, batchSize: 1, gradientAccumulationSteps: 1 } } },
            stages: { teacher: false },
            evaluate: { variants: ["base-11b"] }, sample: { variants: [] },
        });
        expect(p).toEqual(expect.arrayContaining([
            'cot-vr:train.variants.big.method: the 90B model fits one GPU only with "qlora"',
            "cot-vr:stages.generate: needs stages.teacher in the same update (the generator calls the teacher)",
        ]));
    });
    it("rejects a stage submitted without waiting when a later stage runs in the same update", () => {
        expect(problems({ timing: { train: { await: false } } })).toEqual([
            expect.stringMatching(/^cot-vr:timing\.train\.await: false submits train without waiting, but sample, evaluate in the same update/),
        ]);
        expect(() => settings({ timing: { train: { await: false } }, stages: { sample: false, evaluate: false, report: false } })).not.toThrow();
    });
    it("requires a registry and its password to build images, and the W&B key for wandb logging", () => {
        const p = problems({ images: { build: true }, train: { variants: { x: { model: "11b", method: "lora", epochs: 1, batchSize: 1, gradientAccumulationSteps: 1, metricLogger: "wandb" } } }, evaluate: { variants: ["x"] }, sample: { variants: [] } });
        expect(p).toEqual(expect.arrayContaining([
            expect.stringMatching(/^cot-vr:images\.registry: required/),
            expect.stringMatching(/^cot-vr:registryPassword: required/),
            expect.stringMatching(/^cot-vr:wandbApiKey: required/),
        ]));
    });
    it("parses quantities", () => {
        expect(quantityBytes("1Gi")).toBe(2 ** 30);
        expect(quantityBytes("500G")).toBe(5e11);
        expect(quantityBytes("1.5Ti")).toBe(1.5 * 2 ** 40);
        expect(quantityBytes("lots")).toBeNaN();
    });
});

describe("the teacher follows generation", () => {
    it("is on while the stack generates and goes with generation, unless set explicitly", () => {
        expect(settings().stages.teacher).toBe(true);
        expect(settings({ stages: { generate: false } }).stages.teacher).toBe(false);
        expect(settings({ stages: { generate: false, teacher: true } }).stages.teacher).toBe(true);
    });
});

describe("data volume", () => {
    it("must hold the ChartQA cache and the CoT dataset", () => {
        expect(() => settings({ storage: { data: { size: "2Gi" } } })).toThrow(/cot-vr:storage\.data\.size: 2Gi is too small: the ChartQA cache and the CoT dataset need at least 10Gi/);
    });
});

describe("config that cannot silently run the wrong experiment", () => {
    const v = (extra: Record<string, unknown>) => ({ model: "11b", method: "lora", epochs: 1, batchSize: 2, gradientAccumulationSteps: 1, ...extra });
    // Only the fine-tunes under test: no samples or evaluations of the default variants.
    const only = { stages: { sample: false, evaluate: false, report: false } };
    it("gives a 90B variant that sets no rank/alpha the 90B recipe's 8/16, an 11B one the blog's 16/32, and says so", () => {
        const s = settings({ ...only, train: { variants: { a: v({}), b: v({ model: "90b", method: "qlora" }), c: v({ model: "90b", method: "qlora", loraRank: 32 }) } } });
        expect(s.train.variants.a).toMatchObject({ loraRank: 16, loraAlpha: 32 });
        expect(s.train.variants.b).toMatchObject({ loraRank: 8, loraAlpha: 16 });
        expect(s.train.variants.c).toMatchObject({ loraRank: 32, loraAlpha: 16 });
        expect(s.defaulted).toContainEqual(expect.stringMatching(/^train\.variants\.b\.loraRank = 8 \(default for 90b: torchtune's 90B_qlora, kept by the blog/));
        expect(s.defaulted.some((d) => d.startsWith("train.variants.c.loraRank"))).toBe(false);
    });
    it("rejects keys in a near-miss namespace, of no known namespace, and a project key written with a dot", () => {
        const read = (all: Record<string, string>) => {
            try {
                settingsFromConfigMap({ "cot-vr:hfToken": TOKEN, ...all }, { stack: "blog", secretKeys: ["cot-vr:hfToken"] });
            } catch (e) {
                return (e as ConfigError).problems;
            }
            return [];
        };
        expect(read({ "cot_vr:generate": "{}" })).toEqual([expect.stringMatching(/^cot_vr:generate: unknown namespace "cot_vr": this project's keys are "cot-vr:<key>" \(e\.g\. cot-vr:generate\)/)]);
        expect(read({ "cotvr:teacher": "{}" })).toEqual([expect.stringMatching(/^cotvr:teacher: unknown namespace/)]);
        expect(read({ "aws:region": "us-east-1" })).toEqual([expect.stringMatching(/^aws:region: no program reads the namespace "aws" \(known: cot-vr, kubernetes, docker, pulumi\)/)]);
        expect(read({ "cot-vr:cot-vr.generate": "{}" })).toEqual([expect.stringMatching(/^cot-vr:cot-vr\.generate: unknown key \(did you mean cot-vr:generate\?/)]);
        expect(read({ "kubernetes:context": "x", "pulumi:template": "y" })).toEqual([]);
        // Namespace problems and schema problems come together.
        expect(read({ "cot_vr:x": "1", "cot-vr:teacher": JSON.stringify({ gpus: 0 }) })).toHaveLength(2);
    });
    it("rejects settings written outside the stack file's config: map", () => {
        expect(stackFileProblems({ config: {}, "cot-vr:generate": {} })).toEqual([expect.stringMatching(/^cot-vr:generate: top-level key of the stack file that Pulumi does not read .* settings go under config:/)]);
        expect(stackFileProblems({ config: {}, secretsprovider: "passphrase", encryptionsalt: "x" })).toEqual([]);
    });
    it("rejects activation offloading without checkpointing (torchtune raises on the GPU)", () => {
        expect(problems({ ...only, train: { variants: { a: v({ activationCheckpointing: false, activationOffloading: true }) } } })).toEqual([
            expect.stringMatching(/^cot-vr:train\.variants\.a\.activationOffloading: needs activationCheckpointing: true/),
        ]);
    });
    it("rejects a teacher context too small for the CoT answer plus its prompt", () => {
        const [p] = problems({ teacher: { maxModelLen: 4096 } });
        expect(p).toMatch(/^cot-vr:teacher\.maxModelLen: 4096 is too small: generate\.maxTokens 4092 plus the prompt \(~\d+ tokens: system prompt, question, image\) need \d+/);
        // The blog's 8192 fits its 4092-token answers.
        expect(() => settings()).not.toThrow();
    });
    it("rejects a teacher split over a GPU count that does not divide the 90B model's KV heads", () => {
        expect(problems({ teacher: { gpus: 3 } })).toEqual([expect.stringMatching(/^cot-vr:teacher\.gpus: 3 GPUs cannot split .* use 1, 2, 4 or 8/)]);
    });
    it("rejects a model repo that is not owner/name", () => {
        expect(problems({ models: { "11b": "Llama-3.2-11B-Vision-Instruct" } })).toEqual([expect.stringMatching(/^cot-vr:models\.11b: must be a Hugging Face repo id "owner\/name"/)]);
    });
    it("takes CPU requests in cores or millicores, and names the key of a bad one", () => {
        expect(() => settings({ teacher: { cpu: "250m" }, generate: { cpu: "0.5" } })).not.toThrow();
        expect(problems({ generate: { cpu: "4Gi" } })).toEqual([expect.stringMatching(/^cot-vr:generate\.cpu: must be a CPU quantity such as "16", "0.5" or "500m"/)]);
    });
    it("rejects a Hub endpoint that is not an http(s) URL", () => {
        expect(problems({ models: { endpoint: "hub.local" } })).toEqual([expect.stringMatching(/^cot-vr:models\.endpoint: must be an http\(s\) URL/)]);
    });
    it("rejects a run that makes no optimizer step or never leaves warmup", () => {
        expect(problems({ ...only, generate: { limit: 8 }, train: { variants: { a: v({ batchSize: 16 }) } } })).toEqual([
            expect.stringMatching(/^cot-vr:train\.variants\.a\.batchSize: 8 rows make no optimizer step: batchSize 16 x gradientAccumulationSteps 1/),
        ]);
        expect(problems({ ...only, generate: { limit: 8 }, train: { variants: { a: v({ warmupSteps: 100 }) } } })).toEqual([
            expect.stringMatching(/^cot-vr:train\.variants\.a\.warmupSteps: 100 is not below the 4 optimizer steps of the run \(1 epochs x 4\)/),
        ]);
        expect(stepsPerEpoch(28299, { batchSize: 2, gradientAccumulationSteps: 8, maxStepsPerEpoch: null })).toBe(1768);
        expect(stepsPerEpoch(28299, { batchSize: 16, gradientAccumulationSteps: 1, maxStepsPerEpoch: 2 })).toBe(2);
    });
    it("states the rule for a bad variant name, and names every path with dots", () => {
        expect(problems({ ...only, train: { variants: { Bad_Name: v({}) } } })).toEqual([
            expect.stringMatching(/^cot-vr:train\.variants\.Bad_Name: bad name: must be lowercase letters, digits and '-', starting and ending with a letter or digit/),
        ]);
        expect(problems({ ...only, train: { variants: { ["x".repeat(30)]: v({}) } } })[0]).toMatch(/at most 24|<=24/);
        expect(problems({ evaluate: { variants: ["base-11b", "base-11b"] } })).toEqual([expect.stringMatching(/^cot-vr:evaluate\.variants\.1: "base-11b" is listed twice/)]);
    });
});

describe("fine-tune throughput: the blog's math, faster settings chosen for the GPU's memory", () => {
    const v = (extra: Record<string, unknown>) => ({ model: "11b", method: "lora", epochs: 1, batchSize: 16, gradientAccumulationSteps: 1, ...extra });
    const only = { stages: { sample: false, evaluate: false, report: false } };
    it("ships the fastest measured setting that fits an MI300X, keeping the effective batch", () => {
        const s = settings();
        const m11 = blogMeasurement("11b", 16)!;
        const m90 = blogMeasurement("90b", 2)!;
        const l11 = s.train.variants["lora-11b"];
        const l90 = s.train.variants["qlora-90b"];
        const shipped = (v: TrainVariant) => MEASURED.find((x) => x.model === v.model && !x.groupTiles && x.microBatch === v.microBatch && x.compile === v.compile && x.compileEncoder === v.compileEncoder && x.activationCheckpointing === v.activationCheckpointing)!;
        // measured in the same run as the blog's exact setting, and faster (bench/results/)
        expect(shipped(l11).samplesPerS).toBeGreaterThan(m11.samplesPerS);
        expect(shipped(l90).samplesPerS).toBeGreaterThan(m90.samplesPerS);
        for (const t of Object.values(s.train.variants)) expect(t.microBatch * t.accumulation).toBe(t.batchSize * t.gradientAccumulationSteps);
    });
    it("chooses for speed, never slower than the blog's setting, at 80, 141, 192 and 256 GiB", () => {
        for (const gib of [80, 141, 192, 256]) {
            for (const [model, batch] of [["11b", 16], ["90b", 2]] as const) {
                const plan = planSpeed(model, batch, gib, {}, "auto");
                const blog = blogMeasurement(model, batch)!;
                const fast = MEASURED.filter((x) => x.model === model && plannable(x) && peakGiB(model, x.microBatch, x) <= gib);
                if (plan.measured) {
                    // the fastest of the measured settings that fit, and at least the blog's
                    expect(plan.measured.samplesPerS).toBe(Math.max(...fast.map((x) => x.samplesPerS)));
                    expect(plan.measured.samplesPerS).toBeGreaterThanOrEqual(blog.samplesPerS);
                    expect(peakGiB(model, plan.microBatch, plan)).toBeLessThanOrEqual(gib);
                } else {
                    // nothing measured fits or beats the blog here: the blog's levers ship
                    expect(plan).toMatchObject({ compile: false, compileEncoder: false, activationCheckpointing: true, exactTiles: false });
                }
                expect(batch % plan.microBatch).toBe(0);
            }
        }
        // the largest micro-batch that fits is not the fastest: 11B m8 fits 192 GiB, m4 ships (measured faster)
        const p192 = planSpeed("11b", 16, 192, {}, "auto");
        expect(peakGiB("11b", 8, p192)).toBeLessThanOrEqual(192);
        expect(p192.microBatch).toBe(4);
        // exact tiles measured fastest (not the pinned copies, which the recipe does not make): shipped,
        // compared with the blog's setting of the same run
        expect(p192).toMatchObject({ exactTiles: true, compile: true, compileEncoder: true, activationCheckpointing: false });
        expect(p192.measured!.pinMemory).toBe(false);
        expect(p192.blog!.file).toBe(p192.measured!.file);
        expect(MEASURED.some((x) => x.model === "11b" && x.pinMemory && x.samplesPerS > p192.measured!.samplesPerS)).toBe(true);
        // the 90B at 80 GiB: nothing measured fits; the blog's levers at the largest micro-batch that fits
        const p80 = planSpeed("90b", 2, 80, {}, "auto");
        expect(p80).toMatchObject({ compile: false, activationCheckpointing: true });
        expect(p80.measured).toBeUndefined();
    });
    it("the memory margin is calibrated: the 90B without checkpointing keeps m=2 on a 141 GiB GPU (measured to fit 139.8)", () => {
        const noAc = { compile: false, compileEncoder: false, activationCheckpointing: false, exactTiles: false };
        expect(peakGiB("90b", 2, noAc)).toBeLessThanOrEqual(141);
        expect(planSpeed("90b", 2, 141, noAc, "auto")).toMatchObject({ microBatch: 2, activationCheckpointing: false });
        const measured = MEASURED.find((x) => x.model === "90b" && x.setting === "no_ac:m2")!;
        expect(measured.peakGiB).toBeLessThanOrEqual(peakGiB("90b", 2, noAc)); // the model is not below what was measured
    });
    it("the recipe runs the text bucket its measurement ran with; the blog's setting, and an unmeasured micro-batch, none", () => {
        const plan = planSpeed("11b", 16, 192, {}, "auto");
        expect(plan.textBucket).toBe(plan.measured!.textBucket);
        const s = settings({ ...only, train: { variants: { a: v({}), b: v({ microBatchSize: 1 }), c: v({ compile: false, compileEncoder: false, activationCheckpointing: true, exactTiles: false }) } } });
        expect(s.train.variants.a).toMatchObject({ microBatch: plan.microBatch, textBucket: plan.measured!.textBucket });
        expect(MEASURED.some((x) => x.model === "11b" && x.microBatch === 1)).toBe(false);
        expect(s.train.variants.b).toMatchObject({ microBatch: 1, textBucket: 1 });
        expect(s.train.variants.c.textBucket).toBe(1);
        const tb1 = MEASURED.map((x) => (x.model === "11b" ? { ...x, textBucket: 1 } : x));
        expect(planSpeed("11b", 16, 192, {}, "auto", tb1).textBucket).toBe(1);
    });
    it("exact tiles: the single-device recipe's key, planned off and refused on N GPUs", () => {
        const s = settings({ ...only, train: { variants: { a: v({}), b: v({ exactTiles: false }) } } });
        expect(s.train.variants.a.exactTiles).toBe(true);
        expect(s.train.variants.b.exactTiles).toBe(false);
        expect(problems({ ...only, train: { variants: { a: v({ gpus: 2, exactTiles: true }) } } })).toEqual([
            expect.stringMatching(/^cot-vr:train\.variants\.a\.exactTiles: true needs the single-device recipe/),
        ]);
        expect(settings({ ...only, train: { variants: { a: v({ gpus: 2 }) } } }).train.variants.a.exactTiles).toBe(false);
    });
    it("a synthetic table where nothing beats the blog ships the blog's setting", () => {
        const base = MEASURED.filter((x) => x.model === "11b");
        const slow = base.map((x) => (x.activationCheckpointing && !x.compile ? x : { ...x, samplesPerS: 1 }));
        expect(planSpeed("11b", 16, 192, {}, "auto", slow)).toMatchObject({ compile: false, compileEncoder: false, activationCheckpointing: true, microBatch: 16 });
    });
    it("chooses by the declared GPU memory and names its basis", () => {
        const s = settings({ ...only, cluster: { gpuMemory: "80Gi" }, train: { variants: { a: v({}) } } });
        const a = s.train.variants.a;
        expect(peakGiB("11b", a.microBatch, a)).toBeLessThanOrEqual(80);
        expect(planSpeed("11b", 16, 80, {}, "auto").why).toMatch(/bench\/results\/h200-lora-11b-exact\.json/);
    });
    it("rejects a micro-batch that cannot fit, naming the variant and the fix, before any GPU is used", () => {
        expect(problems({ ...only, train: { variants: { a: v({ microBatchSize: 16, activationCheckpointing: false }) } } })).toEqual([
            expect.stringMatching(/^cot-vr:train\.variants\.a\.microBatchSize: 16 samples need ~\d+ GiB by the memory model, more than cluster\.gpuMemory \(192 GiB\): use "auto" or activationCheckpointing: true/),
        ]);
        expect(problems({ ...only, train: { variants: { a: v({ microBatchSize: 3 }) } } })).toEqual([
            expect.stringMatching(/^cot-vr:train\.variants\.a\.microBatchSize: 3 does not divide batchSize 16: use one of 1, 2, 4, 8, 16 or "auto"/),
        ]);
        expect(problems({ ...only, cluster: { gpuMemory: "80Gi" }, train: { variants: { q: v({ model: "90b", method: "qlora", batchSize: 2, gradientAccumulationSteps: 8, activationCheckpointing: false }) } } })).toEqual([
            expect.stringMatching(/^cot-vr:train\.variants\.q\.activationCheckpointing: even 1 sample needs ~\d+ GiB .* set activationCheckpointing: true/),
        ]);
    });
    it("keeps the blog's settings where the stack asks for them", () => {
        const s = settings({ ...only, train: { variants: { a: v({ compile: false, compileEncoder: false, activationCheckpointing: true, exactTiles: false }) } } });
        expect(s.train.variants.a).toMatchObject({ microBatch: 16, accumulation: 1, compile: false, activationCheckpointing: true });
    });
});

describe("durations", () => {
    it("accepts one unit or several, largest first: 2h, 90m, 45s, 1h30m, 1h30m15s", () => {
        expect(["2h", "90m", "45s", "1h30m", "1h30m15s", "36h", "600s", "1m30s"].map(durationSeconds))
            .toEqual([7200, 5400, 45, 5400, 5415, 129600, 600, 90]);
        expect(settings({ timing: { train: { timeout: "1h30m" } } }).timing.train.timeout).toBe(5400);
    });
    it("rejects anything else, naming the key and what is allowed", () => {
        for (const bad of ["", "90", "1.5h", "30m1h", "1h 30m", "1d", "h", "0s", "0h0m", "-5m", "1hh", "90M"]) {
            expect(durationSeconds(bad) > 0, bad).toBe(false);
            expect(problems({ timing: { train: { timeout: bad } } }), bad).toEqual([
                'cot-vr:timing.train.timeout: must be a positive duration: whole hours, minutes and seconds in that order, such as "2h", "90m", "45s" or "1h30m"',
            ]);
        }
        expect(problems({ timing: { train: { timeout: 3600 } } })).toEqual([expect.stringMatching(/^cot-vr:timing\.train\.timeout: .*string/)]);
    });
});

describe("a stack that borrows claims cannot delete their namespace", () => {
    const borrow = { storage: { retainOnDestroy: false, models: { existingClaim: "blog-models" }, data: { existingClaim: "blog-data" } } };
    it("refuses createNamespace with retainOnDestroy false and an existingClaim, naming the keys and the ways out", () => {
        expect(problems(borrow)).toEqual([
            'cot-vr:cluster.createNamespace: true with storage.retainOnDestroy false makes this stack\'s destroy delete the namespace "cot-vr", ' +
            'and with it the claims it borrows (storage.models.existingClaim "blog-models", storage.data.existingClaim "blog-data") and their data: ' +
            "set cluster.createNamespace: false (the stack that created those claims owns the namespace), or storage.retainOnDestroy: true",
        ]);
    });
    it("accepts it without any one of the three", () => {
        expect(() => settings({ ...borrow, cluster: { createNamespace: false } })).not.toThrow();
        expect(() => settings({ storage: { ...borrow.storage, retainOnDestroy: true } })).not.toThrow();
        expect(() => settings({ storage: { retainOnDestroy: false } })).not.toThrow();
    });
});

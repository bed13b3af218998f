// The rendered torchtune configs, key by key, against what torchtune 0.6.1 reads.
import * as YAML from "yaml";
import { describe, expect, it } from "vitest";
import { argOf, container, render, settings } from "./helpers";

describe("torchtune configs", async () => {
    const r = await render(settings());
    const cfg = (stage: string, variant: string, key: string) => r.configOf(r.job(stage, variant))[key];
    const train11 = YAML.parse(cfg("train", "lora-11b", "train.yaml"));
    const train90 = YAML.parse(cfg("train", "qlora-90b", "train.yaml"));

    it("11B LoRA: the blog's math on the single-device config, at the fast settings", () => {
        expect(train11.model).toMatchObject({ _component_: "torchtune.models.llama3_2_vision.lora_llama3_2_vision_11b", lora_rank: 16, lora_alpha: 32, lora_dropout: 0 });
        // The blog's effective batch of 16 as 4 x 4 (the fastest measured setting that fits an MI300X), compiled, no recompute.
        expect(train11).toMatchObject({ epochs: 10, batch_size: 4, gradient_accumulation_steps: 4, max_steps_per_epoch: null, seed: 42, compile: true, compile_encoder: true, enable_activation_checkpointing: false, enable_activation_offloading: false, resume_from_checkpoint: false });
        // text padded to a multiple of 128 tokens by the patched recipe, as the benchmark measured the setting
        expect(train11.text_bucket).toBe(128);
        // each image's real tiles only through the encoder (the patched recipe), as measured fastest
        expect(train11.exact_tiles).toBe(true);
        expect(train11.optimizer.lr).toBe(1e-4);
        expect(train11.lr_scheduler.num_warmup_steps).toBe(100);
        expect(train11.loss._component_).toBe("torchtune.modules.loss.CEWithChunkedOutputLoss");
        expect(train11.metric_logger).toEqual({ _component_: "torchtune.training.metric_logging.DiskLogger", log_dir: "${output_dir}/logs" });
    });
    it("90B QLoRA: 3 epochs, batch 2, accumulation 8, tiled-image collate", () => {
        expect(train90.model).toMatchObject({ _component_: "torchtune.models.llama3_2_vision.qlora_llama3_2_vision_90b", lora_rank: 8, lora_alpha: 16 });
        expect(train90).toMatchObject({ epochs: 3, batch_size: 2, gradient_accumulation_steps: 8, collate_fn: "torchtune.data.padded_collate_tiled_images_and_mask" });
        // NF4 with compile (decoder + loss) and checkpointing: the fastest measured 90B setting (without checkpointing it ran out of memory)
        expect(train90).toMatchObject({ compile: true, compile_encoder: false, enable_activation_checkpointing: true, exact_tiles: false });
        // padded as the 12-step measurement ran it: to each micro-batch's longest only
        expect(train90.text_bucket).toBe(1);
    });
    it("read the CoT dataset with vqa_dataset and the ChartQA column map, unpacked", () => {
        for (const t of [train11, train90]) {
            expect(t.dataset).toEqual({
                _component_: "torchtune.datasets.multimodal.vqa_dataset",
                source: "/data/cot_chartqa",
                split: "train",
                column_map: { input: "query", image: "image", output: "label" },
                packed: false,
            });
        }
    });
    it("point every path at the volumes, output_dir outside checkpoint_dir", () => {
        expect(train11.output_dir).toBe("/checkpoints/blog/lora-11b");
        expect(train11.checkpointer.output_dir).toBe("${output_dir}");
        expect(train11.checkpointer.checkpoint_dir).toBe("/models/Llama-3.2-11B-Vision-Instruct");
        expect(train11.tokenizer.path).toBe("/models/Llama-3.2-11B-Vision-Instruct/original/tokenizer.model");
        expect(train90.tokenizer.path).toBe("/models/Llama-3.2-90B-Vision-Instruct/original/tokenizer.model");
        for (const t of [train11, train90]) expect(t.output_dir.startsWith(t.checkpointer.checkpoint_dir)).toBe(false);
    });
    it('keep max_filename the strings "00005" and "00037" (an unquoted 00037 is the integer 37)', () => {
        expect(cfg("train", "lora-11b", "train.yaml")).toMatch(/max_filename: "00005"/);
        expect(cfg("train", "qlora-90b", "train.yaml")).toMatch(/max_filename: "00037"/);
        expect(train90.checkpointer.checkpoint_files).toEqual({ filename_format: "model-{}-of-{}.safetensors", max_filename: "00037" });
        expect(cfg("evaluate", "base-90b", "eval.yaml")).toMatch(/max_filename: "00037"/);
    });
    it("the training Job writes where its evaluation and sample read: epoch_{epochs-1} of its own run", () => {
        for (const [variant, epochs] of [["lora-11b", 10], ["qlora-90b", 3]] as const) {
            const trainArgs = container(r.job("train", variant)).args;
            const out = argOf(trainArgs, "--output-dir");
            expect(out).toBe(YAML.parse(cfg("train", variant, "train.yaml")).output_dir);
            for (const [stage, key] of [["evaluate", "eval.yaml"], ["sample", "generate.yaml"]]) {
                const c = YAML.parse(cfg(stage, variant, key));
                expect(c.checkpointer.checkpoint_dir).toBe(`${out}/epoch_${epochs - 1}`);
                // The reader checks the fine-tune's completion marker before it takes a GPU's time.
                expect(argOf(container(r.job(stage, variant)).args, "--require")).toBe(`${out}/.complete.json`);
            }
        }
    });
    it("derive the 90B evaluation and generation configs from the 11B ones", () => {
        for (const [stage, key] of [["evaluate", "eval.yaml"], ["sample", "generate.yaml"]]) {
            const base = YAML.parse(cfg(stage, "base-90b", key));
            expect(base.model._component_).toBe("torchtune.models.llama3_2_vision.llama3_2_vision_90b");
            expect(base.checkpointer.checkpoint_dir).toBe("/models/Llama-3.2-90B-Vision-Instruct");
            expect(base.checkpointer.checkpoint_files.max_filename).toBe("00037");
            expect(base.tokenizer.path).toBe("/models/Llama-3.2-90B-Vision-Instruct/original/tokenizer.model");
        }
    });
    it("evaluate chartqa on the whole test split, batch size 1", () => {
        const ev = YAML.parse(cfg("evaluate", "lora-11b", "eval.yaml"));
        expect(ev).toMatchObject({ tasks: ["chartqa"], limit: null, batch_size: 1, max_seq_length: 8192 });
        const out = argOf(container(r.job("evaluate", "lora-11b")).args, "--out");
        expect(out).toBe("/results/blog/eval/lora-11b.json");
    });
    it("sample with the blog's ChartQA system prompt, question and image row", () => {
        const g = YAML.parse(cfg("sample", "base-11b", "generate.yaml"));
        expect(g.prompt.system).toMatch(/^Analyze the image and question carefully/);
        expect(g.prompt.system).toMatch(/IMPORTANT: Remember, to end your answer with Final Answer: <answer>\.$/);
        expect(g.prompt.system).not.toContain("{{query}}");
        expect(g.prompt.user.text).toBe("How many monthly sessions per user did Netflix have?");
        expect(g).toMatchObject({ max_new_tokens: 200, temperature: 0.6, top_k: 300 });
        const args = container(r.job("sample", "base-11b")).args;
        expect([argOf(args, "--image-dataset"), argOf(args, "--image-split"), argOf(args, "--image-index")]).toEqual(["HuggingFaceM4/ChartQA", "train", "27901"]);
        expect(argOf(args, "--out")).toBe("/results/blog/samples/base-11b.json");
    });
    it("take optional settings from config: W&B logger, limit, steps", async () => {
        const r2 = await render(settings({
            wandbApiKey: "wandb-secret",
            train: { variants: { "lora-11b": { model: "11b", method: "lora", epochs: 2, batchSize: 4, gradientAccumulationSteps: 2, maxStepsPerEpoch: 5, warmupSteps: 2, metricLogger: "wandb", loraRank: 8, loraAlpha: 16, learningRate: 3e-4, compile: true } } },
            evaluate: { variants: ["lora-11b"], limit: 10 }, sample: { variants: [] },
        }));
        const t = YAML.parse(r2.configOf(r2.job("train", "lora-11b"))["train.yaml"]);
        expect(t.metric_logger).toMatchObject({ _component_: "torchtune.training.metric_logging.WandBLogger", project: "vision_llama_reasoning" });
        expect(t).toMatchObject({ epochs: 2, batch_size: 4, gradient_accumulation_steps: 2, max_steps_per_epoch: 5, compile: true });
        expect(t.optimizer.lr).toBe(3e-4);
        expect(container(r2.job("train", "lora-11b")).env).toContainEqual({ name: "WANDB_API_KEY", valueFrom: { secretKeyRef: { name: "blog-secrets", key: "WANDB_API_KEY", optional: false } } });
        expect(YAML.parse(r2.configOf(r2.job("evaluate", "lora-11b"))["eval.yaml"]).limit).toBe(10);
        expect(JSON.stringify(r2.objects)).not.toContain("wandb-secret");
    });
});

describe("recipe overrides", async () => {
    const lora = { model: "11b", method: "lora", epochs: 1, batchSize: 2, gradientAccumulationSteps: 1, microBatchSize: 2 };
    const r = await render(settings({
        train: { variants: { "lora-11b": { ...lora, recipeOverrides: { "model._component_": "tiny.lora", "model.image_size": 112, device: "cpu", "optimizer.weight_decay": 0.01 } } } },
        sample: { variants: ["base-11b", "lora-11b"], recipeOverrides: { "model._component_": "tiny.base", "tokenizer.image_size": 112 }, cpu: "1", memory: "3Gi" },
        evaluate: { variants: ["base-11b", "lora-11b"], recipeOverrides: { device: "cpu" }, memory: "4Gi" },
    }));
    const cfg = (stage: string, variant: string, key: string) => YAML.parse(r.configOf(r.job(stage, variant))[key]);

    it("set the keys last, next to what the stack renders", () => {
        const t = cfg("train", "lora-11b", "train.yaml");
        expect(t.model).toMatchObject({ _component_: "tiny.lora", image_size: 112, lora_rank: 16 });
        expect(t.device).toBe("cpu");
        expect(t.optimizer).toMatchObject({ _component_: "torch.optim.AdamW", weight_decay: 0.01, lr: 1e-4 });
        expect(cfg("sample", "lora-11b", "generate.yaml").model._component_).toBe("tiny.base");
        expect(cfg("sample", "base-11b", "generate.yaml").tokenizer).toMatchObject({ image_size: 112, path: "/models/Llama-3.2-11B-Vision-Instruct/original/tokenizer.model" });
        expect(cfg("evaluate", "base-11b", "eval.yaml").device).toBe("cpu");
    });
    it("size the reader pods from sample/evaluate cpu and memory, else by model", () => {
        expect(container(r.job("sample", "lora-11b")).resources.requests).toMatchObject({ cpu: "1", memory: "3Gi" });
        expect(container(r.job("evaluate", "base-11b")).resources).toMatchObject({ requests: { cpu: "8", memory: "4Gi" }, limits: { memory: "4Gi" } });
        const d = settings();
        expect(d.sample.memory).toBeUndefined();
    });
    it("refuse keys the stack owns, naming the setting to use", () => {
        const bad = (raw: Record<string, unknown>) => {
            try {
                settings(raw);
            } catch (e) {
                return String(e);
            }
            return "";
        };
        expect(bad({ train: { variants: { a: { ...lora, recipeOverrides: { "dataset.source": "/x" } } } } }))
            .toMatch(/train\.variants\.a\.recipeOverrides\.dataset\.source: sets "dataset", which the stack renders from generate\.datasetName/);
        expect(bad({ train: { variants: { a: { ...lora, recipeOverrides: { checkpointer: {} } } } } })).toMatch(/recipeOverrides\.checkpointer: sets "checkpointer\.output_dir"/);
        expect(bad({ train: { variants: { a: { ...lora, recipeOverrides: { epochs: 2 } } } } })).toMatch(/train\.variants\.<v>\.epochs/);
        expect(bad({ evaluate: { recipeOverrides: { limit: 2 } } })).toMatch(/evaluate\.recipeOverrides\.limit: .*evaluate\.limit/);
        expect(bad({ sample: { recipeOverrides: { "bad key": 1 } } })).toMatch(/must be a dotted torchtune config key/);
    });
});

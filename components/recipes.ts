// Every config a stage mounts, rendered from the upstream templates in manifests/ with the stack's
// settings: torchtune 0.6.1 recipe configs and the synthetic-data-kit config. Paths come from
// paths.ts, so a fine-tune and the evaluation that reads it agree. `renderRecipes` renders each
// once per update; stages and identities read the result.
import { MODEL_FACTS, ModelRef, ModelSize, Settings, TrainVariant } from "../config";
import { readManifest, renderTemplate } from "./manifests";
import { teacherApiBase } from "./naming";
import { checkpointOf, datasetDir, modelDir, SCRATCH, trainOutputDir } from "./paths";

/** `max_filename` must stay a string: an unquoted 00037 would be read as the integer 37. */
export function maxFilename(size: ModelSize): string {
    return String(MODEL_FACTS[size].shards).padStart(5, "0");
}

export function tokenizerPath(s: Settings, size: ModelSize): string {
    return `${modelDir(s, size)}/original/tokenizer.model`;
}

/** Base (non-LoRA) model builder: there is no 90B generation/eval config upstream, so it is derived. */
export function baseModelComponent(size: ModelSize): string {
    return `torchtune.models.llama3_2_vision.llama3_2_vision_${size}`;
}

/** Upstream template and recipe of a fine-tune: on one GPU the blog's single-device recipe, on
 * several torchtune's FSDP2 recipe from the packaged multi-device config of the same model. */
export function trainTemplate(v: TrainVariant): { template: string; recipe: string; component: string } {
    const distributed = v.gpus > 1;
    const recipe = distributed ? "lora_finetune_distributed" : "lora_finetune_single_device";
    if (v.model === "90b") {
        // 90B_qlora is registered for the distributed recipe; the single-device one runs it on one GPU too.
        return { template: "torchtune/90B_qlora.yaml", recipe, component: "torchtune.models.llama3_2_vision.qlora_llama3_2_vision_90b" };
    }
    return {
        // 11B_lora is 11B_lora_single_device for lora_finetune_distributed (11B_qlora differs only in its component).
        template: distributed ? "torchtune/11B_lora.yaml" : "torchtune/11B_lora_single_device.yaml",
        recipe,
        component: `torchtune.models.llama3_2_vision.${v.method}_llama3_2_vision_11b`,
    };
}

/** The CoT dataset as torchtune's vqa_dataset reads it (label is a string: synthetic-data-kit made it one). */
export function datasetConfig(s: Settings) {
    return {
        _component_: "torchtune.datasets.multimodal.vqa_dataset",
        source: datasetDir(s),
        split: s.generate.outputSplit,
        column_map: { input: "query", image: "image", output: "label" },
        // vqa_dataset raises on packed=True.
        packed: false,
    };
}

function metricLogger(v: TrainVariant) {
    if (v.metricLogger === "wandb") {
        return { _component_: "torchtune.training.metric_logging.WandBLogger", project: v.wandbProject, log_dir: "${output_dir}/logs" };
    }
    return { _component_: "torchtune.training.metric_logging.DiskLogger", log_dir: "${output_dir}/logs" };
}

/** The fine-tune config (train.yaml). */
export function trainConfig(s: Settings, name: string, v: TrainVariant): string {
    const t = trainTemplate(v);
    const dir = modelDir(s, v.model);
    return renderTemplate(t.template, {
        output_dir: trainOutputDir(s, name),
        "model._component_": t.component,
        "model.lora_rank": v.loraRank,
        "model.lora_alpha": v.loraAlpha,
        "model.lora_dropout": v.loraDropout,
        "tokenizer.path": tokenizerPath(s, v.model),
        "checkpointer.checkpoint_dir": dir,
        "checkpointer.checkpoint_files.max_filename": maxFilename(v.model),
        // train.py turns this on when it resumes after a pod restart.
        resume_from_checkpoint: false,
        dataset: datasetConfig(s),
        seed: v.seed,
        shuffle: true,
        collate_fn: "torchtune.data.padded_collate_tiled_images_and_mask",
        epochs: v.epochs,
        max_steps_per_epoch: v.maxStepsPerEpoch,
        // The micro-batch (of each rank) and the accumulation that keeps the effective batch (config/derive.ts).
        batch_size: v.microBatch,
        gradient_accumulation_steps: v.accumulation,
        "optimizer.lr": v.learningRate,
        "lr_scheduler.num_warmup_steps": v.warmupSteps,
        compile: v.compile,
        // Read by the image's patched single-device recipe only (images/trainer/lora_finetune_single_device.patch);
        // the distributed recipe has no such keys (config/derive.ts refuses compileEncoder with gpus > 1).
        compile_encoder: v.gpus > 1 ? undefined : v.compileEncoder,
        // Pad each micro-batch's text to a multiple of this many tokens, as the benchmark measured the
        // planned setting (1: the collate's own padding).
        text_bucket: v.gpus > 1 ? undefined : v.textBucket,
        // Encode each image's real tiles only (the patched recipe's exact_tiles_encoder).
        exact_tiles: v.gpus > 1 ? undefined : v.exactTiles,
        enable_activation_checkpointing: v.activationCheckpointing,
        enable_activation_offloading: v.activationOffloading,
        metric_logger: metricLogger(v),
        // Last: the user's own keys (config/schema.ts refuses the ones above that it owns).
        ...v.recipeOverrides,
    });
}

/** Settings shared by the generation and evaluation configs of one (base or tuned) model. */
function modelOverrides(s: Settings, ref: ModelRef) {
    return {
        "model._component_": baseModelComponent(ref.size),
        "tokenizer.path": tokenizerPath(s, ref.size),
        "checkpointer.checkpoint_dir": checkpointOf(s, ref).dir,
        "checkpointer.checkpoint_files.max_filename": maxFilename(ref.size),
    };
}

export function chartqaSystemPrompt(s: Settings): string {
    return s.sample.systemPrompt ?? readManifest("prompts/chartqa-system.txt").trimEnd();
}

/** The generate_v2 config (generate.yaml). */
export function generationConfig(s: Settings, ref: ModelRef): string {
    const x = s.sample;
    return renderTemplate("torchtune/11B_generation_v2.yaml", {
        output_dir: SCRATCH.generate,
        ...modelOverrides(s, ref),
        "prompt.system": chartqaSystemPrompt(s),
        "prompt.user.image": x.imagePath ?? SCRATCH.sampleImage,
        "prompt.user.text": x.question,
        max_new_tokens: x.maxNewTokens,
        temperature: x.temperature,
        top_k: x.topK,
        ...x.recipeOverrides,
    });
}

/** The eleuther_eval config (eval.yaml). */
export function evaluationConfig(s: Settings, ref: ModelRef): string {
    const e = s.evaluate;
    return renderTemplate("torchtune/11B_evaluation.yaml", {
        output_dir: SCRATCH.eval,
        ...modelOverrides(s, ref),
        tasks: e.tasks,
        limit: e.limit ?? null,
        // The wrapper around vision models is greedy and batch size 1 only.
        batch_size: 1,
        max_seq_length: e.maxSeqLength,
        ...e.recipeOverrides,
    });
}

export const SDK_TEMPLATE = "synthetic-data-kit/config.yaml";

/**
 * The synthetic-data-kit config. The model name is the teacher's served name (vLLM answers 404 to any
 * other name, and synthetic-data-kit would then write "ERROR: ..." labels instead of failing).
 */
export function sdkConfig(s: Settings): string {
    const g = s.generate;
    return renderTemplate(SDK_TEMPLATE, {
        "api-endpoint.api_base": teacherApiBase(s.run, s.cluster.namespace, s.teacher.port),
        "api-endpoint.model": s.teacher.servedModelName,
        "api-endpoint.max_retries": g.maxRetries,
        "api-endpoint.retry_delay": g.retryDelay,
        "generation.temperature": g.temperature,
        "generation.top_p": g.topP,
        "generation.max_tokens": g.maxTokens,
        // Per teacher replica: generate_cot.py --teacher-replicas multiplies it, so the dataset's identity
        // (this config) does not change with the number of teachers.
        "generation.batch_size": g.batchSize,
        input_split: g.inputSplit,
        output_split: g.outputSplit,
        ...(g.prompt ? { prompt: g.prompt } : {}),
    });
}

/** Every rendered config of an update, by stage and variant/model name. */
export interface Recipes {
    /** synthetic-data-kit config of the generation (rendered even without generation: the dataset's identity). */
    readonly sdk: string;
    /** train.yaml of every defined train variant (a disabled one still names the checkpoints its readers read). */
    readonly train: Readonly<Record<string, string>>;
    /** generate.yaml of every sampled model. */
    readonly sample: Readonly<Record<string, string>>;
    /** eval.yaml of every evaluated model. */
    readonly evaluate: Readonly<Record<string, string>>;
}

export function renderRecipes(s: Settings): Recipes {
    return {
        sdk: sdkConfig(s),
        train: Object.fromEntries(Object.entries(s.train.variants).map(([n, v]) => [n, trainConfig(s, n, v)])),
        sample: Object.fromEntries(s.samples.map((r) => [r.name, generationConfig(s, r)])),
        evaluate: Object.fromEntries(s.evaluations.map((r) => [r.name, evaluationConfig(s, r)])),
    };
}

// The only reader of stack configuration. Every key the stack file may set is declared here, with
// its default (the blog's experiment, with the blog's mistakes corrected) and a doc line. The README's
// config table is written from this file.
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";
import { z } from "zod";
import { PROJECT, SECRET_KEYS, SecretKey, STAGE_NAMES, StageName, STAGES } from "./contract";

export { PROJECT, SECRET_KEYS, STAGE_NAMES };
export type { SecretKey, StageName };

// ---------------------------------------------------------------------------------------------------
// Value types

const QUANTITY_RE = /^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?$/;
const UNIT_BYTES: Record<string, number> = {
    "": 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15,
    Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50,
};

/** Bytes in a Kubernetes quantity such as "800Gi"; NaN when it is not one. */
export function quantityBytes(q: string): number {
    const m = QUANTITY_RE.exec(q);
    return m ? Number(m[1]) * UNIT_BYTES[m[2] ?? ""] : NaN;
}

const quantity = z.string().refine((q) => quantityBytes(q) > 0, {
    message: 'must be a positive Kubernetes quantity such as "500Gi"',
});

const DURATION_RE = /^([0-9]+)(s|m|h)$/;
/** Seconds in a duration such as "90m", "36h", "600s". */
export function durationSeconds(d: string): number {
    const m = DURATION_RE.exec(d);
    if (!m) return NaN;
    return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as "s" | "m" | "h"];
}
/** A duration in the stack file ("90m"), seconds in the settings: converted once, here. */
const duration = z.string().refine((d) => durationSeconds(d) > 0, {
    message: 'must be a positive duration such as "600s", "90m" or "36h"',
}).transform(durationSeconds);

/** An image reference pinned to a tag other than `latest`, or to a digest. */
export function isPinnedImage(ref: string): boolean {
    if (/@sha256:[0-9a-f]{64}$/.test(ref)) return true;
    const lastSlash = ref.lastIndexOf("/");
    const colon = ref.indexOf(":", lastSlash + 1);
    if (colon < 0) return false;
    const tag = ref.slice(colon + 1);
    return tag.length > 0 && tag !== "latest";
}
const image = z.string().refine(isPinnedImage, {
    message: 'must be pinned: a tag other than "latest" (repo:tag) or a digest (repo@sha256:...)',
});

const dnsLabel = (max: number) =>
    z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, {
        message: "must be lowercase letters, digits and '-', starting and ending with a letter or digit",
    }).max(max);

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();

// ---------------------------------------------------------------------------------------------------
// Sections

export const MODEL_SIZES = ["11b", "90b"] as const;
export type ModelSize = (typeof MODEL_SIZES)[number];

const clusterSchema = z.strictObject({
    /** Path to a kubeconfig file, or its contents. @default the ambient kubeconfig */
    kubeconfig: z.string().min(1).optional(),
    /** kubeconfig context. @default the current context */
    context: z.string().min(1).optional(),
    /** Namespace of every object. @default "cot-vr" */
    namespace: dnsLabel(63).default("cot-vr"),
    /** Create the namespace (kept on destroy: deleting it would delete the volumes). false = it exists. @default true */
    createNamespace: z.boolean().default(true),
    /** Extended resource that counts GPUs. @default "amd.com/gpu" */
    gpuResource: z.string().min(1).default("amd.com/gpu"),
    /** Node selector for GPU pods. Empty: the GPU request alone selects nodes (works where
     * `amd.com/gpu.product-name` is missing). E.g. {"amd.com/gpu.device-id": "74a1"}. @default {} */
    nodeSelector: z.record(z.string(), z.string()).default({}),
    /** Tolerations for GPU pods. @default tolerate the `amd.com/gpu` NoSchedule taint */
    tolerations: z.array(z.strictObject({
        key: z.string().min(1),
        operator: z.enum(["Exists", "Equal"]).default("Exists"),
        value: z.string().optional(),
        effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(),
    })).default([{ key: "amd.com/gpu", operator: "Exists", effect: "NoSchedule" }]),
    /** Existing image pull Secrets in the namespace. @default [] */
    imagePullSecrets: z.array(dnsLabel(253)).default([]),
    /** Supplemental groups of GPU pods, which open /dev/kfd and /dev/dri/renderD* as a non-root user:
     * `video` (44) and the `render` group IDs of Ubuntu 22.04/24.04 ROCm hosts (109, 110). Add your
     * nodes' `stat -c %g /dev/dri/renderD128` if it differs. @default [44, 109, 110] */
    supplementalGroups: z.array(nonNegInt).default([44, 109, 110]),
    /** User (and group, fsGroup) every pod runs as; at least 10000, never a host user. 0 runs as root:
     * only for RWX storage that ignores fsGroup and is not writable by that group (README). @default 10001 */
    runAsUser: nonNegInt.refine((u) => u === 0 || u >= 10000, { message: "must be 0 (root) or at least 10000 (no host user)" }).default(10001),
    /** Seccomp profile of GPU pods. ROCm's user-mode driver binds host memory to the GPU's NUMA node
     * (mbind/set_mempolicy), which the runtimes' default profiles deny without CAP_SYS_NICE; ROCm's
     * container docs run with seccomp=unconfined. CPU pods always use RuntimeDefault. @default "Unconfined" */
    gpuSeccompProfile: z.enum(["Unconfined", "RuntimeDefault"]).default("Unconfined"),
    /** Memory of one GPU, for the fine-tunes' memory model (micro-batch choice, out-of-memory check at
     * preview). @default "192Gi": the MI300X */
    gpuMemory: quantity.default("192Gi"),
    /** NetworkPolicies for the run's pods: the teacher accepts traffic only from the generation; every
     * pod may reach DNS, and only the pods that need it HTTPS (Hugging Face, W&B) or the API server
     * (generation, report). Needs a CNI that enforces NetworkPolicy. @default false */
    networkPolicy: z.boolean().default(false),
    /** Share the host IPC namespace (some AMD examples do; /dev/shm is enough for vLLM and torchtune). @default false */
    hostIPC: z.boolean().default(false),
    /** Price of one GPU-hour, e.g. {amount: 2.5, currency: "USD"}: turns GPU-hours into cost in the
     * report, `npm run status` and the rehearsal. @default none (hours only) */
    gpuHourPrice: z.strictObject({
        /** Price per GPU-hour. */
        amount: z.number().nonnegative(),
        /** Currency code or name, e.g. "USD". */
        currency: z.string().min(1),
    }).optional(),
}).prefault({});

const volumeSchema = (size: string) => z.strictObject({
    /** Requested size. */
    size: quantity.default(size),
    /** Access mode; ReadWriteMany lets Jobs on different nodes share the volume. ReadWriteOnce suits node-local classes (local-path) or a one-node cluster: on network block storage, stages that run at once on different nodes wait for the volume. */
    accessMode: z.enum(["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"]).default("ReadWriteMany"),
    /** Use this existing claim instead of creating one (e.g. a sweep stack sharing a blog stack's volume). */
    existingClaim: dnsLabel(253).optional(),
}).prefault({});

const storageSchema = z.strictObject({
    /** StorageClass of created claims. @default the cluster default */
    storageClass: z.string().min(1).optional(),
    /** Keep created claims (and a created namespace) when the stack is destroyed. @default true */
    retainOnDestroy: z.boolean().default(true),
    /** Downloaded weights: 11B ~21 GB, 90B ~177 GB. */
    models: volumeSchema("250Gi"),
    /** CoT dataset and the Hugging Face datasets cache. */
    data: volumeSchema("50Gi"),
    /** Fine-tune outputs, `<run>/<variant>/epoch_N`: 11B ~21 GB, 90B ~178 GB per epoch. */
    checkpoints: volumeSchema("800Gi"),
    /** Evaluation JSON, samples, report. */
    results: volumeSchema("5Gi"),
}).prefault({});

const imagesSchema = z.strictObject({
    /** vLLM image for the teacher: must still serve Mllama (vLLM <= 0.10.2). */
    vllm: image.default("rocm/vllm:rocm6.4.1_vllm_0.10.1_20250909"),
    /** Trainer/evaluator image built from images/trainer (used when build is false). */
    trainer: image.default("cot-vr-trainer:0.1.0"),
    /** CoT generation image built from images/datagen (used when build is false). */
    datagen: image.default("cot-vr-datagen:0.1.0"),
    /** Image pull policy. @default "IfNotPresent" */
    pullPolicy: z.enum(["IfNotPresent", "Always", "Never"]).default("IfNotPresent"),
    /** Build images/trainer and images/datagen with @pulumi/docker, push them to `registry`, run the digests. @default false */
    build: z.boolean().default(false),
    /** Registry to push to when build is true; password from `pulumi config set --secret cot-vr:registryPassword`. */
    registry: z.strictObject({
        /** Registry host, e.g. "ghcr.io". */
        server: z.string().min(1),
        /** Repository prefix, e.g. "ghcr.io/my-team". Images are <repository>/cot-vr-trainer. */
        repository: z.string().min(1),
        /** Registry user name. */
        username: z.string().min(1),
    }).optional(),
}).prefault({});

const hfRepo = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/, {
    message: 'must be a Hugging Face repo id "owner/name" (letters, digits, "-", "_", "."), e.g. "meta-llama/Llama-3.2-11B-Vision-Instruct"',
});

const modelsSchema = z.strictObject({
    /** Hugging Face repo of the 11B model (5 safetensors shards). */
    "11b": hfRepo.default("meta-llama/Llama-3.2-11B-Vision-Instruct"),
    /** Hugging Face repo of the 90B model (37 safetensors shards). */
    "90b": hfRepo.default("meta-llama/Llama-3.2-90B-Vision-Instruct"),
}).prefault({});

const stagesSchema = z.strictObject({
    /** Download every model the enabled stages read. @default true */
    download: z.boolean().default(true),
    /** Define the 90B vLLM teacher (a Deployment at 0 replicas: the generation scales it up while it
     * needs it, see teacher.keep). By default it follows `generate`. @default the value of stages.generate */
    teacher: z.boolean().optional(),
    /** Generate the CoT dataset from the teacher. @default true */
    generate: z.boolean().default(true),
    /** Run the enabled fine-tunes of `train.variants`. @default true */
    train: z.boolean().default(true),
    /** Sample one answer per `sample.variants`. @default true */
    sample: z.boolean().default(true),
    /** Evaluate every `evaluate.variants`. @default true */
    evaluate: z.boolean().default(true),
    /** Build the report from the evaluations. @default true */
    report: z.boolean().default(true),
    /** Measure each enabled fine-tune's throughput on this cluster's GPU (random weights, minutes, no
     * downloads): the shipped settings against the blog's, written to /results/<run>/bench/. @default false */
    benchmark: z.boolean().default(false),
}).prefault({});

const stageTimingSchema = (timeout: string) => z.strictObject({
    /** How long `pulumi up` waits for the stage (also its Kubernetes activeDeadlineSeconds). */
    timeout: duration.prefault(timeout),
    /** Wait for completion. false submits the Job and returns (pulumi.com/skipAwait); nothing in the same update may depend on it. */
    await: z.boolean().default(true),
    /** Pod retries after a failure that is not a bad input (eviction and node loss never count). */
    retries: nonNegInt.default(2),
}).prefault({});

const timingSchema = z.strictObject({
    download: stageTimingSchema(STAGES.download.timeout),
    teacher: stageTimingSchema(STAGES.teacher.timeout),
    generate: stageTimingSchema(STAGES.generate.timeout),
    train: stageTimingSchema(STAGES.train.timeout),
    sample: stageTimingSchema(STAGES.sample.timeout),
    evaluate: stageTimingSchema(STAGES.evaluate.timeout),
    report: stageTimingSchema(STAGES.report.timeout),
    benchmark: stageTimingSchema(STAGES.benchmark.timeout),
}).prefault({});

const teacherSchema = z.strictObject({
    /** Keep the teacher serving after generation (interactive use): it holds its GPU until an update
     * disables stages.teacher. false: the generation scales it up for as long as it needs it. @default false */
    keep: z.boolean().default(false),
    /** Name vLLM serves the model under; the generator's `api-endpoint.model` is derived from it. */
    servedModelName: z.string().min(1).default("meta-llama/Llama-3.2-90B-Vision-Instruct"),
    /** --max-model-len (the blog's 8129 is a typo for 8192). */
    maxModelLen: posInt.default(8192),
    /** --max-num-seqs. */
    maxNumSeqs: posInt.default(16),
    /** --gpu-memory-utilization. */
    gpuMemoryUtilization: z.number().gt(0).lte(1).default(0.95),
    /** Further `vllm serve` arguments. */
    extraArgs: z.array(z.string()).default(["--enforce-eager", "--limit-mm-per-prompt", '{"image": 1}']),
    /** GPUs for the teacher (tensor parallel size). */
    gpus: posInt.default(1),
    /** Size of the memory-backed /dev/shm. */
    shmSize: quantity.default("64Gi"),
    /** CPU request. */
    cpu: quantity.default("16"),
    /** Memory request (and limit). */
    memory: quantity.default("256Gi"),
    /** Service port. */
    port: z.number().int().min(1).max(65535).default(8000),
}).prefault({});

const generateSchema = z.strictObject({
    /** Source dataset (Hugging Face id). */
    source: z.string().min(1).default("HuggingFaceM4/ChartQA"),
    /** Split the CoT is generated for. */
    inputSplit: z.string().min(1).default("train"),
    /** Split name of the written dataset. */
    outputSplit: z.string().min(1).default("train"),
    /** Folder on the data volume; stacks that must not share a dataset use different names. */
    datasetName: z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/, { message: "must be a folder name: lowercase letters, digits, '_', '.', '-'" }).max(63).default("cot_chartqa"),
    /** Only the first N samples (smoke runs). @default all */
    limit: posInt.optional(),
    /** Teacher sampling temperature (low: consistent reasoning). */
    temperature: z.number().min(0).max(2).default(0.2),
    /** Teacher nucleus sampling. */
    topP: z.number().gt(0).lte(1).default(0.95),
    /** Longest CoT answer, in tokens (the blog's value). */
    maxTokens: posInt.default(4092),
    /** Concurrent requests to the teacher. */
    batchSize: posInt.default(32),
    /** Retries of a failed teacher request; a row that still fails gets an ERROR label and fails the Job. */
    maxRetries: nonNegInt.default(3),
    /** Seconds before the first retry. */
    retryDelay: z.number().nonnegative().default(1.0),
    /** System prompt; default: the blog's CoT prompt (manifests/synthetic-data-kit/config.yaml). */
    prompt: z.string().trim().min(1).optional(),
}).prefault({});

const trainVariantSchema = z.strictObject({
    /** Run this fine-tune in this update. false: defined only so evaluations can read its checkpoints from the volume. */
    enabled: z.boolean().default(true),
    /** Base model. */
    model: z.enum(MODEL_SIZES),
    /** lora (11B, single device recipe config) or qlora (NF4 base; the 90B_qlora config). */
    method: z.enum(["lora", "qlora"]),
    /** LoRA rank. @default per model: 16 for 11b (the blog's change), 8 for 90b (torchtune's 90B_qlora, which the blog keeps) */
    loraRank: posInt.optional(),
    /** LoRA alpha, usually 2 x rank. @default per model: 32 for 11b (the blog), 16 for 90b (90B_qlora) */
    loraAlpha: z.number().positive().optional(),
    /** LoRA dropout. */
    loraDropout: z.number().min(0).lt(1).default(0.0),
    /** Epochs (each writes epoch_N; evaluations read the last, epoch_{epochs-1}). Required. */
    epochs: posInt,
    /** null runs whole epochs. */
    maxStepsPerEpoch: posInt.nullable().default(null),
    /** Samples per forward pass as the recipe config counts them (the blog: 16 for 11B, 2 for 90B). The
     * effective batch is batchSize x gradientAccumulationSteps; see microBatchSize. Required. */
    batchSize: posInt,
    /** Gradient accumulation steps. Required. */
    gradientAccumulationSteps: posInt,
    /** Samples per micro-batch: a divisor of batchSize; the accumulation grows so the effective batch,
     * the optimizer steps and the learning-rate schedule stay the same. "auto": the largest that fits
     * cluster.gpuMemory by the memory model (config.ts MEMORY_MODEL). */
    microBatchSize: z.union([z.literal("auto"), posInt]).default("auto"),
    /** AdamW learning rate. */
    learningRate: z.number().positive().default(1e-4),
    /** Cosine schedule warmup steps. */
    warmupSteps: nonNegInt.default(100),
    /** Data shuffling and init seed. torchtune's configs leave it null (random); the blog sets 42 for both models. */
    seed: nonNegInt.default(42),
    /** torch.compile the decoder and the loss. @default per model: true for 11b (measured faster), false for 90b (QLoRA compile ran out of memory) */
    compile: z.boolean().optional(),
    /** Also compile the vision encoder (~60% of the forward FLOPs; the image's patched recipe, key compile_encoder). @default per model: true for 11b, false for 90b */
    compileEncoder: z.boolean().optional(),
    /** Activation checkpointing: recomputes activations (less memory, ~1/3 more compute). @default false: the memory model picks a micro-batch that fits without it */
    activationCheckpointing: z.boolean().optional(),
    /** Offload activations to CPU memory. */
    activationOffloading: z.boolean().default(false),
    /** Metric logger: disk (DiskLogger under the output dir) or wandb (key: `cot-vr:wandbApiKey` secret). */
    metricLogger: z.enum(["disk", "wandb"]).default("disk"),
    /** W&B project when metricLogger is wandb. */
    wandbProject: z.string().min(1).default("vision_llama_reasoning"),
    /** CPU request of the fine-tune pod. */
    cpu: quantity.default("16"),
    /** Memory request and limit of the fine-tune pod. */
    memory: quantity.default("256Gi"),
    /** Size of the memory-backed /dev/shm (data loader workers). */
    shmSize: quantity.default("64Gi"),
});
type RawTrainVariant = z.infer<typeof trainVariantSchema>;
/** A train variant with its model-dependent defaults resolved and its micro-batch planned. */
export type TrainVariant = Omit<RawTrainVariant, "loraRank" | "loraAlpha" | "compile" | "compileEncoder" | "activationCheckpointing"> & {
    readonly loraRank: number;
    readonly loraAlpha: number;
    readonly compile: boolean;
    readonly compileEncoder: boolean;
    readonly activationCheckpointing: boolean;
    /** Samples per micro-batch (the recipe's batch_size) and the accumulation that keeps the effective batch. */
    readonly microBatch: number;
    readonly accumulation: number;
};

/** Defaults that depend on the model: the blog changed rank/alpha for 11B only; 90B keeps 90B_qlora's.
 * Speed levers measured with images/trainer/bench_finetune.py (README "Fine-tune throughput"). */
export const MODEL_DEFAULTS: Record<ModelSize, { loraRank: number; loraAlpha: number; compile: boolean; compileEncoder: boolean; activationCheckpointing: boolean; why: string }> = {
    "11b": { loraRank: 16, loraAlpha: 32, compile: true, compileEncoder: true, activationCheckpointing: false, why: "the blog's 11B LoRA; compile + encoder, no recompute: 1.98x the blog's speed, measured" },
    "90b": { loraRank: 8, loraAlpha: 16, compile: false, compileEncoder: false, activationCheckpointing: false, why: "torchtune's 90B_qlora, kept by the blog; no recompute: 1.60x, measured at 1/4 depth; compile ran out of memory" },
};

/**
 * Memory of one fine-tune step on one GPU, GiB: static (bf16/NF4 weights, LoRA weights and their
 * AdamW state) + per-sample activations at the worst-case shape (4 tiles of 560x560, 600 tokens),
 * with and without activation checkpointing. Measured with bench_finetune.py on an H100 (11B LoRA
 * r16; 90B QLoRA static measured, its activations without checkpointing estimated from a 1/4-depth
 * model). A micro-batch m fits when static + m x act x (1 + ACT_MARGIN) + RESERVE <= cluster.gpuMemory.
 */
export const MEMORY_MODEL: Record<ModelSize, { staticGiB: number; actGiB: number; actCheckpointedGiB: number }> = {
    "11b": { staticGiB: 20.1, actGiB: 16.1, actCheckpointedGiB: 3.25 },
    "90b": { staticGiB: 62.7, actGiB: 36, actCheckpointedGiB: 5.0 },
};
/** Margin on activations (longer CoT answers than the calibration's 600 tokens) and the allocator's reserve. */
export const ACT_MARGIN = 0.15;
export const RESERVE_GIB = 4;

/** Peak GiB of a micro-batch of m samples by the memory model. */
export function peakGiB(model: ModelSize, m: number, checkpointing: boolean): number {
    const mm = MEMORY_MODEL[model];
    return mm.staticGiB + m * (checkpointing ? mm.actCheckpointedGiB : mm.actGiB) * (1 + ACT_MARGIN) + RESERVE_GIB;
}

const trainSchema = z.strictObject({
    /** Fine-tunes by name. Names appear in paths and Job names. */
    variants: z.record(dnsLabel(24), trainVariantSchema).default({
        "lora-11b": trainVariantSchema.parse({ model: "11b", method: "lora", epochs: 10, batchSize: 16, gradientAccumulationSteps: 1 }),
        "qlora-90b": trainVariantSchema.parse({ model: "90b", method: "qlora", epochs: 3, batchSize: 2, gradientAccumulationSteps: 8 }),
    }),
}).prefault({});

/** base-11b / base-90b, or the name of a train variant (its last epoch). */
const evalVariant = z.string().regex(/^(base-11b|base-90b|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$/, {
    message: 'must be "base-11b", "base-90b" or the name of a train variant',
});

const sampleSchema = z.strictObject({
    /** Models to sample: base-11b, base-90b or train variant names. */
    variants: z.array(evalVariant).default(["base-11b", "lora-11b", "base-90b", "qlora-90b"]),
    /** The question asked (the blog's, about ChartQA train[27901]). */
    question: z.string().trim().min(1).default("How many monthly sessions per user did Netflix have?"),
    /** Where the image comes from: a dataset row (default the blog's) ... */
    imageDataset: z.string().min(1).default("HuggingFaceM4/ChartQA"),
    /** Split of that row. */
    imageSplit: z.string().min(1).default("train"),
    /** Index of that row (the blog's example chart). */
    imageIndex: nonNegInt.default(27901),
    /** ... or a path/URL the container can read (overrides the dataset row). */
    imagePath: z.string().min(1).optional(),
    /** Longest sampled answer, in tokens. */
    maxNewTokens: posInt.default(200),
    /** Sampling temperature. */
    temperature: z.number().min(0).max(2).default(0.6),
    /** Top-k sampling. */
    topK: posInt.default(300),
    /** System prompt; default: the ChartQA answer rules the blog uses (manifests/prompts/chartqa-system.txt). */
    systemPrompt: z.string().trim().min(1).optional(),
}).prefault({});

const evaluateSchema = z.strictObject({
    /** Models to evaluate: base-11b, base-90b or train variant names. */
    variants: z.array(evalVariant).default(["base-11b", "lora-11b", "base-90b", "qlora-90b"]),
    /** lm-eval tasks. */
    tasks: z.array(z.string().min(1)).min(1).default(["chartqa"]),
    /** Samples per task. @default the whole test split */
    limit: posInt.optional(),
    /** Longest evaluation sequence (prompt and answer). */
    maxSeqLength: posInt.default(8192),
}).prefault({});

export const configSchema = z.strictObject({
    /** Run name: prefixes Job names and the checkpoints/results folders. @default the stack name */
    run: dnsLabel(20).optional(),
    /** Hugging Face token (secret) with access to the gated Llama 3.2 Vision models. Required when stages.download is on. */
    hfToken: z.string().min(1).optional(),
    /** W&B API key (secret); required when a train variant logs to wandb. */
    wandbApiKey: z.string().min(1).optional(),
    /** Registry password (secret); required when images.build is true. */
    registryPassword: z.string().min(1).optional(),
    cluster: clusterSchema,
    storage: storageSchema,
    images: imagesSchema,
    models: modelsSchema,
    stages: stagesSchema,
    timing: timingSchema,
    teacher: teacherSchema,
    generate: generateSchema,
    train: trainSchema,
    sample: sampleSchema,
    evaluate: evaluateSchema,
});
export type RawSettings = z.infer<typeof configSchema>;

// ---------------------------------------------------------------------------------------------------
// Derived settings

/** What each model is on disk (UPSTREAM.md sizes with ~10% headroom). Every fine-tune epoch writes
 * merged full weights, so an epoch takes as much room as the model. */
export const MODEL_FACTS: Record<ModelSize, { bytes: number; shards: number }> = {
    "11b": { bytes: 23e9, shards: 5 },
    "90b": { bytes: 195e9, shards: 37 },
};
/** ChartQA in the Hugging Face cache (~1.3 GB) plus the CoT dataset with its images, with headroom. */
export const DATA_BYTES = 10e9;

/** What one evaluation or sample reads. */
export interface ModelRef {
    /** "base-11b", "base-90b" or a train variant name. */
    readonly name: string;
    readonly size: ModelSize;
    /** The train variant, for tuned models. */
    readonly trainVariant?: string;
}

/** Validated settings. Secret values are not in here: they travel beside (settings.ts -> Pipeline). */
export interface Settings extends Omit<RawSettings, "run" | "stages" | "train" | SecretKey> {
    /** Stages of this update, defaults resolved. */
    readonly stages: Record<StageName, boolean>;
    /** Train variants with their model-dependent defaults resolved. */
    readonly train: { readonly variants: Record<string, TrainVariant> };
    /** Model-dependent defaults that were applied, for `npm run render` to show. */
    readonly defaulted: string[];
    readonly stack: string;
    readonly run: string;
    /** Models the enabled stages read (download these). */
    readonly neededModels: ModelSize[];
    readonly evaluations: ModelRef[];
    readonly samples: ModelRef[];
    /** Enabled train variants, by name. */
    readonly trainings: [string, TrainVariant][];
}

export class ConfigError extends Error {
    constructor(public readonly problems: string[], source?: string) {
        super(`Invalid stack configuration${source ? ` (${source})` : ""}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
        this.name = "ConfigError";
    }
}

function key(path: PropertyKey[]): string {
    return `${PROJECT}:${path.map(String).join(".")}`;
}

function modelRef(name: string, variants: Record<string, TrainVariant>): ModelRef | undefined {
    if (name === "base-11b") return { name, size: "11b" };
    if (name === "base-90b") return { name, size: "90b" };
    const v = variants[name];
    return v ? { name, size: v.model, trainVariant: name } : undefined;
}

/** " (did you mean ...)" for an unknown key that looks like this project's namespace written wrongly. */
function nearMiss(k: string): string {
    const m = /^cot[-_.]?vr[.:_-](.+)$/i.exec(k);
    return m ? ` (did you mean ${PROJECT}:${m[1]}? keys of this project are "${PROJECT}:<key>")` : "";
}

/** The ChartQA splits' row counts (HuggingFaceM4/ChartQA). */
export const CHARTQA_ROWS: Record<string, number> = { train: 28299, val: 1920, test: 2500 };

/** Rows the fine-tunes train on, when the stack knows it: the generation's limit, or the ChartQA split. */
export function trainingRows(c: Pick<RawSettings, "generate">): number | undefined {
    const g = c.generate;
    const full = g.source === "HuggingFaceM4/ChartQA" ? CHARTQA_ROWS[g.inputSplit] : undefined;
    return g.limit !== undefined && full !== undefined ? Math.min(g.limit, full) : (g.limit ?? full);
}

/** Optimizer steps per epoch as torchtune 0.6.1 counts them: drop_last batches // accumulation, capped. */
export function stepsPerEpoch(rows: number, v: Pick<TrainVariant, "batchSize" | "gradientAccumulationSteps" | "maxStepsPerEpoch">): number {
    const steps = Math.floor(Math.floor(rows / v.batchSize) / v.gradientAccumulationSteps);
    return v.maxStepsPerEpoch !== null && v.maxStepsPerEpoch < steps ? v.maxStepsPerEpoch : steps;
}

function resolveVariants(raw: Record<string, RawTrainVariant>, gpuGiB: number, defaulted: string[], p: Problem): Record<string, TrainVariant> {
    return Object.fromEntries(Object.entries(raw).map(([name, v]) => {
        const d = MODEL_DEFAULTS[v.model];
        const keys = ["loraRank", "loraAlpha", "compile", "compileEncoder", "activationCheckpointing"] as const;
        for (const k of keys) {
            if (v[k] === undefined) defaulted.push(`train.variants.${name}.${k} = ${d[k]} (default for ${v.model}: ${d.why})`);
        }
        const resolved = Object.fromEntries(keys.map((k) => [k, v[k] ?? d[k]])) as Pick<TrainVariant, (typeof keys)[number]>;
        const microBatch = planMicroBatch(name, v, resolved.activationCheckpointing, gpuGiB, p);
        if (v.microBatchSize === "auto" && microBatch !== v.batchSize) {
            defaulted.push(`train.variants.${name}: micro-batch ${microBatch} x accumulation ${(v.batchSize / microBatch) * v.gradientAccumulationSteps} (effective batch ${v.batchSize * v.gradientAccumulationSteps}, ~${peakGiB(v.model, microBatch, resolved.activationCheckpointing).toFixed(0)} GiB of ${gpuGiB.toFixed(0)})`);
        }
        return [name, { ...v, ...resolved, microBatch, accumulation: (v.batchSize / microBatch) * v.gradientAccumulationSteps }];
    }));
}

/** The micro-batch of a variant: the configured one if it divides batchSize and fits, else "auto"'s
 * largest fitting divisor. Out of memory by the model is a config error, naming the fix. */
function planMicroBatch(name: string, v: RawTrainVariant, checkpointing: boolean, gpuGiB: number, p: Problem): number {
    const at = `train.variants.${name}`;
    const divisors = Array.from({ length: v.batchSize }, (_, i) => i + 1).filter((m) => v.batchSize % m === 0);
    const fits = (m: number) => peakGiB(v.model, m, checkpointing) <= gpuGiB;
    const need = (m: number) => `~${peakGiB(v.model, m, checkpointing).toFixed(0)} GiB`;
    if (v.microBatchSize !== "auto") {
        const m = v.microBatchSize;
        if (v.batchSize % m !== 0) {
            p(`${at}.microBatchSize`, `${m} does not divide batchSize ${v.batchSize}: use one of ${divisors.join(", ")} or "auto"`);
        } else if (!fits(m)) {
            p(`${at}.microBatchSize`, `${m} samples need ${need(m)} by the memory model, more than cluster.gpuMemory (${gpuGiB.toFixed(0)} GiB): use "auto"${checkpointing ? "" : " or activationCheckpointing: true"}`);
        }
        return m;
    }
    const best = divisors.filter(fits).pop();
    if (best === undefined) {
        p(`${at}.activationCheckpointing`, `even 1 sample needs ${need(1)} by the memory model, more than cluster.gpuMemory (${gpuGiB.toFixed(0)} GiB)${checkpointing ? ": the model does not fit this GPU" : ": set activationCheckpointing: true"}`);
        return 1;
    }
    return best;
}

/** Contradictions torchtune would only raise on the GPU, or that would silently train nothing. */
function checkTraining(c: RawSettings, trainings: [string, TrainVariant][], p: Problem): void {
    const rows = trainingRows(c);
    for (const [name, v] of trainings) {
        const at = `train.variants.${name}`;
        if (v.activationOffloading && !v.activationCheckpointing) {
            p(`${at}.activationOffloading`, "needs activationCheckpointing: true (torchtune raises: offloading only applies to checkpointed activations)");
        }
        if (rows === undefined) continue;
        // As the recipe counts them: micro-batches (drop_last) // accumulation.
        const steps = stepsPerEpoch(rows, { batchSize: v.microBatch, gradientAccumulationSteps: v.accumulation, maxStepsPerEpoch: v.maxStepsPerEpoch });
        if (steps === 0) {
            p(`${at}.batchSize`, `${rows} rows make no optimizer step: batchSize ${v.batchSize} x gradientAccumulationSteps ${v.gradientAccumulationSteps} must be at most the rows (torchtune drops the last partial batch)`);
        } else if (v.warmupSteps >= steps * v.epochs) {
            p(`${at}.warmupSteps`, `${v.warmupSteps} is not below the ${steps * v.epochs} optimizer steps of the run (${v.epochs} epochs x ${steps}): the learning rate would never leave warmup`);
        }
    }
}

/** The default CoT system prompt the generator sends (manifests/synthetic-data-kit/config.yaml). */
function defaultCotPrompt(): string {
    const file = path.join(__dirname, "manifests", "synthetic-data-kit", "config.yaml");
    return String(YAML.parse(fs.readFileSync(file, "utf8"))?.prompt ?? "");
}

/** Tokens of a CoT request besides the answer: the system prompt (~3 characters a token, generous for
 * Llama 3's tokenizer), the question and its original answer, the chat template and the image token. */
export function cotPromptTokens(prompt: string): number {
    return Math.ceil(prompt.length / 3) + 256;
}

function checkTeacher(c: RawSettings, st: Record<StageName, boolean>, p: Problem): void {
    if (!st.teacher) return;
    const t = c.teacher;
    // Llama 3.2 90B Vision has 64 attention heads and 8 KV heads; vLLM's tensor parallel size must divide them.
    if (![1, 2, 4, 8].includes(t.gpus)) p("teacher.gpus", `${t.gpus} GPUs cannot split the 90B model's 8 KV heads: use 1, 2, 4 or 8`);
    if (!st.generate) return;
    const need = c.generate.maxTokens + cotPromptTokens(c.generate.prompt ?? defaultCotPrompt());
    if (t.maxModelLen < need) {
        p("teacher.maxModelLen", `${t.maxModelLen} is too small: generate.maxTokens ${c.generate.maxTokens} plus the prompt (~${need - c.generate.maxTokens} tokens: system prompt, question, image) need ${need}; vLLM would refuse every request and every row would be an ERROR label`);
    }
}

/** Records problems as `cot-vr:<path>: <what is allowed>`. */
type Problem = (path: string, msg: string) => void;

function resolveRun(c: RawSettings, stack: string, p: Problem): string {
    const run = c.run ?? stack.toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 20).replace(/^-+|-+$/g, "");
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(run)) {
        p("run", `the stack name "${stack}" does not make a valid run name; set ${PROJECT}:run (lowercase letters, digits, '-', at most 20)`);
    }
    return run;
}

function checkSecrets(c: RawSettings, secretKeys: string[] | undefined, p: Problem): void {
    if (!secretKeys) return;
    for (const s of SECRET_KEYS) {
        if (c[s] !== undefined && !secretKeys.includes(`${PROJECT}:${s}`)) {
            p(s, `must be set as a secret: pulumi config set --secret ${PROJECT}:${s} <value>`);
        }
    }
}

function checkVariants(c: RawSettings, st: Record<StageName, boolean>, p: Problem): void {
    for (const [name, v] of Object.entries(c.train.variants)) {
        if (v.method === "lora" && v.model === "90b") {
            p(`train.variants.${name}.method`, 'the 90B model fits one GPU only with "qlora"');
        }
        if (v.metricLogger === "wandb" && v.enabled && st.train && !c.wandbApiKey) {
            p("wandbApiKey", `required by train.variants.${name}.metricLogger "wandb": pulumi config set --secret ${PROJECT}:wandbApiKey <key>`);
        }
    }
}

/** The models a sample/evaluate list reads, each once; unknown names are problems. */
function modelRefs(list: string[], section: "sample" | "evaluate", variants: Record<string, TrainVariant>, p: Problem): ModelRef[] {
    const seen = new Set<string>();
    return list.flatMap((name, i) => {
        if (seen.has(name)) {
            p(`${section}.variants.${i}`, `"${name}" is listed twice`);
            return [];
        }
        seen.add(name);
        const r = modelRef(name, variants);
        if (!r) {
            p(`${section}.variants.${i}`, `"${name}" is neither base-11b, base-90b nor a train variant (${Object.keys(variants).join(", ") || "none defined"}): its fine-tune is not in the stack`);
            return [];
        }
        return [r];
    });
}

function checkStageOrder(c: RawSettings, st: Record<StageName, boolean>, evaluations: ModelRef[], p: Problem): void {
    if (st.generate && !st.teacher) p("stages.generate", "needs stages.teacher in the same update (the generator calls the teacher)");
    if (st.report && !st.evaluate) p("stages.report", "needs stages.evaluate in the same update");
    if (st.report && evaluations.length === 0) p("stages.report", "needs at least one evaluate.variants entry");
    // Nothing in the same update may depend on a stage submitted without waiting.
    for (const stage of STAGE_NAMES) {
        if (!st[stage] || c.timing[stage].await) continue;
        if (stage === "teacher") {
            p("timing.teacher.await", "the teacher Deployment must be awaited (the generator needs it ready)");
            continue;
        }
        const blocked = STAGES[stage].dependents.filter((d) => st[d]);
        if (blocked.length > 0) {
            p(`timing.${stage}.await`, `false submits ${stage} without waiting, but ${blocked.join(", ")} in the same update would run before it finishes; disable them until a later update`);
        }
    }
}

function checkOther(c: RawSettings, neededModels: ModelSize[], st: Record<StageName, boolean>, p: Problem): void {
    if (st.download && neededModels.length > 0 && !c.hfToken) {
        p("hfToken", `required to download ${neededModels.join(", ")}: pulumi config set --secret ${PROJECT}:hfToken <token>`);
    }
    if (c.images.build && !c.images.registry) p("images.registry", "required when images.build is true: {server, repository, username}");
    if (c.images.build && !c.registryPassword) p("registryPassword", `required when images.build is true: pulumi config set --secret ${PROJECT}:registryPassword <password>`);
}

/** Volume sizes against what the stages write (only claims this stack creates). */
function checkSizes(c: RawSettings, d: Pick<Settings, "neededModels" | "trainings" | "evaluations" | "samples" | "stages">, p: Problem): void {
    const gib = (b: number) => `${Math.ceil(b / 2 ** 30)}Gi`;
    const check = (vol: "models" | "data" | "checkpoints", bytes: number, what: string) => {
        const v = c.storage[vol];
        if (v.existingClaim || bytes === 0) return;
        if (quantityBytes(v.size) < bytes) p(`storage.${vol}.size`, `${v.size} is too small: ${what} need at least ${gib(bytes)}`);
    };
    check("models", d.neededModels.reduce((s, m) => s + MODEL_FACTS[m].bytes, 0), `the models ${d.neededModels.join(" + ")}`);
    const readsChartQA = d.stages.generate || d.evaluations.length > 0 || d.samples.length > 0;
    check("data", readsChartQA ? DATA_BYTES : 0, "the ChartQA cache and the CoT dataset");
    check(
        "checkpoints",
        d.trainings.reduce((s, [, v]) => s + v.epochs * MODEL_FACTS[v.model].bytes, 0),
        `the epochs kept (${d.trainings.map(([n, v]) => `${n}: ${v.epochs} x ${gib(MODEL_FACTS[v.model].bytes)}`).join(", ")})`,
    );
}

/**
 * Validates raw stack config (`cot-vr:*` keys, values already JSON-decoded) and derives the settings.
 * Throws one ConfigError listing every bad field by path and what is allowed. Secret values are
 * checked for presence and dropped: they are not part of the settings.
 */
export function parseSettings(
    raw: Record<string, unknown>,
    opts: { stack: string; secretKeys?: string[]; source?: string },
): Settings {
    const parsed = configSchema.safeParse(raw);
    if (!parsed.success) {
        const problems = parsed.error.issues.map((i) => {
            if (i.code === "unrecognized_keys") {
                return i.keys.map((k) => `${key([...i.path, k])}: unknown key${nearMiss(k)}`).join("\n  - ");
            }
            if (i.code === "invalid_key") {
                // A record key (a train variant name): say the rule, not only "Invalid key".
                const rules = i.issues.map((x) => x.message).join("; ");
                return `${key(i.path)}: bad name: ${rules} (names appear in Job names and paths)`;
            }
            return `${key(i.path)}: ${i.message}`;
        });
        throw new ConfigError(problems, opts.source);
    }
    const c = parsed.data;
    const problems: string[] = [];
    const p: Problem = (path, msg) => problems.push(`${PROJECT}:${path}: ${msg}`);

    checkSecrets(c, opts.secretKeys, p);
    const run = resolveRun(c, opts.stack, p);
    const stages = Object.fromEntries(STAGE_NAMES.map((n) => [n, n === "teacher" ? (c.stages.teacher ?? c.stages.generate) : c.stages[n]])) as Record<StageName, boolean>;
    const defaulted: string[] = [];
    const variants = resolveVariants(c.train.variants, quantityBytes(c.cluster.gpuMemory) / 2 ** 30, defaulted, p);
    const trainings = stages.train ? Object.entries(variants).filter(([, v]) => v.enabled) : [];
    checkVariants(c, stages, p);
    checkTraining(c, trainings, p);
    checkTeacher(c, stages, p);
    const evaluations = stages.evaluate ? modelRefs(c.evaluate.variants, "evaluate", variants, p) : [];
    const samples = stages.sample ? modelRefs(c.sample.variants, "sample", variants, p) : [];
    checkStageOrder(c, stages, evaluations, p);

    const needed = new Set<ModelSize>([
        ...(stages.teacher ? ["90b" as const] : []),
        ...trainings.map(([, v]) => v.model),
        ...[...evaluations, ...samples].map((r) => r.size),
    ]);
    const neededModels = MODEL_SIZES.filter((m) => needed.has(m));
    checkOther(c, neededModels, stages, p);
    checkSizes(c, { neededModels, trainings, evaluations, samples, stages }, p);

    if (problems.length > 0) throw new ConfigError(problems, opts.source);
    const { hfToken, wandbApiKey, registryPassword, ...rest } = c;
    return { ...rest, train: { variants }, stages, stack: opts.stack, run, neededModels, evaluations, samples, trainings, defaulted };
}

/** Decodes a Pulumi config value: structured values arrive as JSON strings. */
export function decodeConfigValue(v: string): unknown {
    try {
        return JSON.parse(v);
    } catch {
        return v;
    }
}

/** Config namespaces something reads: this project's, and the providers' and engine's own. */
export const KNOWN_NAMESPACES = [PROJECT, "kubernetes", "docker", "pulumi"];

/** Keys nothing would read: a near-miss of this project's namespace, or a namespace nobody reads. */
export function namespaceProblems(keys: string[]): string[] {
    const problems: string[] = [];
    for (const k of keys) {
        const ns = k.includes(":") ? k.slice(0, k.indexOf(":")) : "";
        if (KNOWN_NAMESPACES.includes(ns)) continue;
        const near = /^cot[-_.]?vr$/i.test(ns) || /^cot[-_.]?vr[.]/i.test(k);
        problems.push(near
            ? `${k}: unknown namespace "${ns || k}": this project's keys are "${PROJECT}:<key>" (e.g. ${PROJECT}:${k.replace(/^cot[-_.]?vr[.:]/i, "")})`
            : `${k}: no program reads the namespace "${ns}" (known: ${KNOWN_NAMESPACES.join(", ")}); remove the key or fix its namespace`);
    }
    return problems;
}

/** Top-level keys Pulumi reads in a stack file; anything else (e.g. settings outside `config:`) is ignored by it. */
const STACK_FILE_KEYS = ["config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"];

/** Problems of a parsed `Pulumi.<stack>.yaml` beside its config keys. */
export function stackFileProblems(doc: unknown): string[] {
    if (doc === null || doc === undefined) return [];
    if (typeof doc !== "object" || Array.isArray(doc)) return ["the stack file must be a YAML mapping with a `config:` section"];
    return Object.keys(doc)
        .filter((k) => !STACK_FILE_KEYS.includes(k))
        .map((k) => `${k}: top-level key of the stack file that Pulumi does not read (allowed: ${STACK_FILE_KEYS.join(", ")}); settings go under config: as ${PROJECT}:<key>`);
}

/**
 * Reads every `cot-vr:*` key of a flat Pulumi config map ("project:key" -> string) and parses it.
 * Keys of no namespace anything reads are errors too: they would be silently ignored.
 */
export function settingsFromConfigMap(
    all: Record<string, string>,
    opts: { stack: string; secretKeys: string[]; source?: string; extraProblems?: string[] },
): Settings {
    const early = [...(opts.extraProblems ?? []), ...namespaceProblems(Object.keys(all))];
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(all)) {
        if (!k.startsWith(`${PROJECT}:`)) continue;
        const name = k.slice(PROJECT.length + 1);
        raw[name] = (SECRET_KEYS as readonly string[]).includes(name) ? v : decodeConfigValue(v);
    }
    let settings: Settings | undefined;
    let problems = early;
    try {
        settings = parseSettings(raw, opts);
    } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        problems = [...early, ...e.problems];
    }
    if (problems.length > 0 || !settings) throw new ConfigError(problems, opts.source);
    return settings;
}

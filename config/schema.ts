// The stack config's schema: every key the stack file may set, with its type, its default (the blog's
// experiment, with the blog's mistakes corrected) and its description. The README's config table and
// config/stack.schema.json are generated from it (`npm run docs`). A default the schema cannot state
// (it depends on other keys, or is "none") ends the description as `@default ...`: the README table
// moves it to its default column.
import { z } from "zod";
import { STAGES } from "../contract";

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

// CPU: whole or decimal cores, or millicores ("500m"), as Kubernetes writes them.
const cpuQuantity = z.string().regex(/^(?:[0-9]+(?:\.[0-9]+)?|[0-9]+m)$/, { message: 'must be a CPU quantity such as "16", "0.5" or "500m"' })
    .refine((q) => parseFloat(q) > 0, { message: 'must be a positive CPU quantity such as "16", "0.5" or "500m"' });

// Go's notation (as kubectl's --timeout), units largest first, each at most once: "2h", "90m", "1h30m15s".
const DURATION_RE = /^(?=[0-9])(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$/;
/** Seconds in a duration such as "90m", "36h", "1h30m" or "600s"; NaN when it is not one. */
export function durationSeconds(d: string): number {
    const m = DURATION_RE.exec(d);
    if (!m) return NaN;
    const [h, min, s] = m.slice(1).map((x) => Number(x ?? 0));
    return h * 3600 + min * 60 + s;
}
const DURATION_RULE = 'must be a positive duration: whole hours, minutes and seconds in that order, such as "2h", "90m", "45s" or "1h30m"';
/** A duration in the stack file ("90m"), seconds in the settings: converted once, here. The pattern
 * also reaches the JSON Schema, so editors flag a bad one. */
const duration = z.string().regex(DURATION_RE, { message: DURATION_RULE, abort: true })
    .refine((d) => durationSeconds(d) > 0, { message: DURATION_RULE })
    .transform(durationSeconds);

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

const toleration = z.strictObject({
    key: z.string().min(1),
    operator: z.enum(["Exists", "Equal"]).default("Exists"),
    value: z.string().optional(),
    effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(),
});

const clusterSchema = z.strictObject({
    kubeconfig: z.string().min(1).optional().meta({ description: "Path to a kubeconfig file, or its contents. @default the ambient kubeconfig" }),
    context: z.string().min(1).optional().meta({ description: "kubeconfig context. @default the current context" }),
    namespace: dnsLabel(63).default("cot-vr").meta({ description: "Namespace of every object." }),
    createNamespace: z.boolean().default(true).meta({
        description: "Create the namespace (or adopt it if it exists) and own it: with storage.retainOnDestroy false, destroy " +
            "deletes it and everything in it. false: it exists and another stack owns it (required for a stack that " +
            "borrows an existingClaim and does not retain on destroy).",
    }),
    gpuResource: z.string().min(1).default("amd.com/gpu").meta({ description: "Extended resource that counts GPUs." }),
    nodeSelector: z.record(z.string(), z.string()).default({}).meta({
        description: "Node selector for GPU pods. Empty: the GPU request alone selects nodes (works where " +
            '`amd.com/gpu.product-name` is missing). E.g. {"amd.com/gpu.device-id": "74a1"}.',
    }),
    tolerations: z.array(toleration).default([{ key: "amd.com/gpu", operator: "Exists", effect: "NoSchedule" }]).meta({ description: "Tolerations for GPU pods." }),
    cpuTolerations: z.array(toleration).default([]).meta({
        description: "Tolerations for the pods that need no GPU (downloads, generation, report). Where every node is a tainted GPU " +
            'node (one MI300X machine as the whole cluster), give them the GPU taint\'s, e.g. [{"key": "amd.com/gpu"}]: else they are never scheduled.',
    }),
    imagePullSecrets: z.array(dnsLabel(253)).default([]).meta({ description: "Existing image pull Secrets in the namespace." }),
    supplementalGroups: z.array(nonNegInt).default([44, 109, 110]).meta({
        description: "Supplemental groups of GPU pods, which open /dev/kfd and /dev/dri/renderD* as a non-root user: `video` (44) " +
            "and the `render` group IDs of Ubuntu 22.04/24.04 ROCm hosts (109, 110). Add your nodes' `stat -c %g " +
            "/dev/dri/renderD128` if it differs.",
    }),
    runAsUser: nonNegInt.refine((u) => u === 0 || u >= 10000, { message: "must be 0 (root) or at least 10000 (no host user)" }).default(10001).meta({
        description: "User (and group, fsGroup) every pod runs as; at least 10000, never a host user. 0 runs as root: only for RWX " +
            "storage that ignores fsGroup and is not writable by that group (README).",
    }),
    gpuSeccompProfile: z.enum(["Unconfined", "RuntimeDefault"]).default("Unconfined").meta({
        description: "Seccomp profile of GPU pods. ROCm's user-mode driver binds host memory to the GPU's NUMA node " +
            "(mbind/set_mempolicy), which the runtimes' default profiles deny without CAP_SYS_NICE; ROCm's container docs " +
            "run with seccomp=unconfined. CPU pods always use RuntimeDefault.",
    }),
    // The default is one MI300X's.
    gpuMemory: quantity.default("192Gi").meta({
        description: "Memory of one GPU, for the fine-tunes' memory model (micro-batch choice, out-of-memory check at preview).",
    }),
    gpusPerNode: posInt.default(8).meta({
        description: "GPUs of one node (an MI300X platform has 8): the most one pod may request, so the most a fine-tune's " +
            "`train.variants.<v>.gpus` may be.",
    }),
    networkPolicy: z.boolean().default(false).meta({
        description: "NetworkPolicies for the run's pods: the teacher accepts traffic only from the generation; every pod may " +
            "reach DNS, and only the pods that need it HTTPS (Hugging Face, W&B) or the API server (generation, report). " +
            "Needs a CNI that enforces NetworkPolicy.",
    }),
    hostIPC: z.boolean().default(false).meta({
        description: "Share the host IPC namespace (some AMD examples do; /dev/shm is enough for vLLM and torchtune).",
    }),
    gpuHourPrice: z.strictObject({
        amount: z.number().nonnegative().meta({ description: "Price per GPU-hour." }),
        currency: z.string().min(1).meta({ description: 'Currency code or name, e.g. "USD".' }),
    }).optional().meta({
        description: 'Price of one GPU-hour, e.g. {amount: 2.5, currency: "USD"}: turns GPU-hours into cost in the report, `npm ' +
            "run status` and the rehearsal. @default none (hours only)",
    }),
}).prefault({});

const volumeSchema = (size: string) => z.strictObject({
    size: quantity.default(size).meta({ description: "Requested size." }),
    accessMode: z.enum(["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"]).default("ReadWriteMany").meta({
        description: "Access mode; ReadWriteMany lets Jobs on different nodes share the volume. ReadWriteOnce suits node-local " +
            "classes (local-path) or a one-node cluster: on network block storage, stages that run at once on different " +
            "nodes wait for the volume.",
    }),
    existingClaim: dnsLabel(253).optional().meta({
        description: "Use this existing claim instead of creating one; the stack never changes or deletes it. Claims are " +
            "namespaced: it must be in cluster.namespace, so a stack reusing another stack's claim (a sweep on the blog " +
            "stack's data, a smoke run on its downloaded models) sets that stack's namespace and cluster.createNamespace: false.",
    }),
}).prefault({});

const storageSchema = z.strictObject({
    storageClass: z.string().min(1).optional().meta({ description: "StorageClass of created claims. @default the cluster default" }),
    retainOnDestroy: z.boolean().default(true).meta({
        description: "Keep created claims (and a created namespace) when the stack is destroyed. false deletes them on destroy: " +
            "the namespace with everything in it, so give such a stack a namespace of its own.",
    }),
    models: volumeSchema("250Gi").meta({ description: "Downloaded weights: 11B ~21 GB, 90B ~177 GB." }),
    data: volumeSchema("50Gi").meta({ description: "CoT dataset and the Hugging Face datasets cache." }),
    checkpoints: volumeSchema("800Gi").meta({ description: "Fine-tune outputs, `<run>/<variant>/epoch_N`: 11B ~21 GB, 90B ~178 GB per epoch." }),
    results: volumeSchema("5Gi").meta({ description: "Evaluation JSON, samples, report." }),
}).prefault({});

const imagesSchema = z.strictObject({
    vllm: image.default("rocm/vllm:rocm6.4.1_vllm_0.10.1_20250909").meta({
        description: "vLLM image for the teacher: must still serve Mllama (vLLM <= 0.10.2).",
    }),
    trainer: image.default("cot-vr-trainer:0.1.0").meta({
        description: "Trainer/evaluator image built from images/trainer (used when build is false).",
    }),
    datagen: image.default("cot-vr-datagen:0.1.0").meta({
        description: "CoT generation image built from images/datagen (used when build is false).",
    }),
    pullPolicy: z.enum(["IfNotPresent", "Always", "Never"]).default("IfNotPresent").meta({ description: "Image pull policy." }),
    build: z.boolean().default(false).meta({
        description: "Build images/trainer and images/datagen with @pulumi/docker, push them to `registry`, run the digests.",
    }),
    registry: z.strictObject({
        server: z.string().min(1).meta({ description: 'Registry host, e.g. "ghcr.io".' }),
        repository: z.string().min(1).meta({ description: 'Repository prefix, e.g. "ghcr.io/my-team". Images are <repository>/cot-vr-trainer.' }),
        username: z.string().min(1).meta({ description: "Registry user name." }),
    }).optional().meta({
        description: "Registry to push to when build is true; password from `pulumi config set --secret cot-vr:registryPassword`.",
    }),
}).prefault({});

const hfRepo = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/, {
    message: 'must be a Hugging Face repo id "owner/name" (letters, digits, "-", "_", "."), e.g. "meta-llama/Llama-3.2-11B-Vision-Instruct"',
});

const modelsSchema = z.strictObject({
    "11b": hfRepo.default("meta-llama/Llama-3.2-11B-Vision-Instruct").meta({
        description: "Hugging Face repo of the 11B model (5 safetensors shards).",
    }),
    "90b": hfRepo.default("meta-llama/Llama-3.2-90B-Vision-Instruct").meta({
        description: "Hugging Face repo of the 90B model (37 safetensors shards).",
    }),
    endpoint: z.string().regex(/^https?:\/\/[^\s/]+(\/\S*)?$/, { message: 'must be an http(s) URL, e.g. "https://hf-mirror.example.com"' }).optional().meta({
        description: "Hugging Face Hub the models and the ChartQA dataset come from (HF_ENDPOINT of every pod that reads the " +
            "Hub), e.g. a company mirror. Under cluster.networkPolicy only HTTPS (443) leaves the namespace. @default https://huggingface.co",
    }),
}).prefault({});

const stagesSchema = z.strictObject({
    download: z.boolean().default(true).meta({ description: "Download every model the enabled stages read." }),
    teacher: z.boolean().optional().meta({
        description: "Define the 90B vLLM teacher (a Deployment at 0 replicas: the generation scales it up while it needs it, see " +
            "teacher.keep). By default it follows `generate`. @default the value of stages.generate",
    }),
    generate: z.boolean().default(true).meta({ description: "Generate the CoT dataset from the teacher." }),
    train: z.boolean().default(true).meta({ description: "Run the enabled fine-tunes of `train.variants`." }),
    sample: z.boolean().default(true).meta({ description: "Sample one answer per `sample.variants`." }),
    evaluate: z.boolean().default(true).meta({ description: "Evaluate every `evaluate.variants`." }),
    report: z.boolean().default(true).meta({ description: "Build the report from the evaluations." }),
    benchmark: z.boolean().default(false).meta({
        description: "Measure each enabled fine-tune's throughput on this cluster's GPU (random weights, minutes, no downloads): " +
            "the shipped settings against the blog's, written to /results/<run>/bench/.",
    }),
}).prefault({});

const stageTimingSchema = (timeout: string) => z.strictObject({
    timeout: duration.prefault(timeout).meta({
        description: 'How long `pulumi up` waits for the stage (also its Kubernetes activeDeadlineSeconds): hours, minutes, seconds, e.g. "2h", "90m", "1h30m".',
    }),
    await: z.boolean().default(true).meta({
        description: "Wait for completion. false submits the Job and returns (pulumi.com/skipAwait); nothing in the same update may depend on it.",
    }),
    retries: nonNegInt.default(2).meta({ description: "Pod retries after a failure that is not a bad input (eviction and node loss never count)." }),
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
    keep: z.boolean().default(false).meta({
        description: "Keep the teacher serving after generation (interactive use): it holds its GPU until an update disables " +
            "stages.teacher. false: the generation scales it up for as long as it needs it.",
    }),
    servedModelName: z.string().min(1).default("meta-llama/Llama-3.2-90B-Vision-Instruct").meta({
        description: "Name vLLM serves the model under; the generator's `api-endpoint.model` is derived from it.",
    }),
    maxModelLen: posInt.default(8192).meta({ description: "--max-model-len (the blog's 8129 is a typo for 8192)." }),
    maxNumSeqs: posInt.default(16).meta({ description: "--max-num-seqs." }),
    gpuMemoryUtilization: z.number().gt(0).lte(1).default(0.95).meta({ description: "--gpu-memory-utilization." }),
    extraArgs: z.array(z.string()).default(["--enforce-eager", "--limit-mm-per-prompt", '{"image": 1}']).meta({
        description: "Further `vllm serve` arguments.",
    }),
    gpus: posInt.default(1).meta({ description: "GPUs for the teacher (tensor parallel size)." }),
    replicas: posInt.default(1).meta({
        description: "Teacher pods, each on its own `gpus` GPUs: the generation scales the Deployment to this many and back to " +
            "0, and sends generate.batchSize concurrent requests per replica (the Service spreads the connections).",
    }),
    shmSize: quantity.default("64Gi").meta({ description: "Size of the memory-backed /dev/shm." }),
    cpu: cpuQuantity.default("16").meta({ description: "CPU request." }),
    memory: quantity.default("256Gi").meta({ description: "Memory request (and limit)." }),
    port: z.number().int().min(1).max(65535).default(8000).meta({ description: "Service port." }),
}).prefault({});

const generateSchema = z.strictObject({
    source: z.string().min(1).default("HuggingFaceM4/ChartQA").meta({ description: "Source dataset (Hugging Face id)." }),
    inputSplit: z.string().min(1).default("train").meta({ description: "Split the CoT is generated for." }),
    outputSplit: z.string().min(1).default("train").meta({ description: "Split name of the written dataset." }),
    datasetName: z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/, { message: "must be a folder name: lowercase letters, digits, '_', '.', '-'" }).max(63).default("cot_chartqa").meta({
        description: "Folder on the data volume; stacks that must not share a dataset use different names.",
    }),
    limit: posInt.optional().meta({ description: "Only the first N samples (smoke runs). @default all" }),
    temperature: z.number().min(0).max(2).default(0.2).meta({ description: "Teacher sampling temperature (low: consistent reasoning)." }),
    topP: z.number().gt(0).lte(1).default(0.95).meta({ description: "Teacher nucleus sampling." }),
    maxTokens: posInt.default(4092).meta({ description: "Longest CoT answer, in tokens (the blog's value)." }),
    batchSize: posInt.default(32).meta({ description: "Concurrent requests to the teacher, per teacher replica (teacher.replicas)." }),
    cpu: cpuQuantity.default("4").meta({ description: "CPU request of the generation pod (it only waits on the teacher and writes Arrow files)." }),
    memory: quantity.default("16Gi").meta({ description: "Memory request and limit of the generation pod." }),
    maxRetries: nonNegInt.default(3).meta({
        description: "Retries of a failed teacher request; a row that still fails gets an ERROR label and fails the Job.",
    }),
    retryDelay: z.number().nonnegative().default(1.0).meta({ description: "Seconds before the first retry." }),
    prompt: z.string().trim().min(1).optional().meta({
        description: "System prompt; default: the blog's CoT prompt (manifests/synthetic-data-kit/config.yaml).",
    }),
}).prefault({});

/** GPUs a fine-tune may use: torchtune's FSDP2 recipe on one node; powers of two divide the blog's
 * effective batch of 16. */
export const TRAIN_GPUS = [1, 2, 4, 8];

/**
 * torchtune config keys the stack sets from its own keys, and the key to use instead. A recipe
 * override may not touch them (nor what is under them, nor a parent that holds them): paths are
 * the contract between a stage and the stages that read its output, and the batch, epochs and
 * levers are what the planner, the estimates and the resume logic count on.
 */
export const OWNED_RECIPE_KEYS: Record<"train" | "sample" | "evaluate", Record<string, string>> = {
    train: {
        output_dir: "the run's paths (run)",
        "checkpointer.output_dir": "the run's paths (run)",
        "checkpointer.checkpoint_dir": "models.11b / models.90b",
        dataset: "generate.datasetName",
        resume_from_checkpoint: "nothing: train.py resumes after a pod restart",
        epochs: "train.variants.<v>.epochs",
        max_steps_per_epoch: "train.variants.<v>.maxStepsPerEpoch",
        batch_size: "train.variants.<v>.microBatchSize",
        gradient_accumulation_steps: "train.variants.<v>.batchSize and gradientAccumulationSteps",
        seed: "train.variants.<v>.seed",
        compile: "train.variants.<v>.compile",
        compile_encoder: "train.variants.<v>.compileEncoder",
        exact_tiles: "train.variants.<v>.exactTiles",
        enable_activation_checkpointing: "train.variants.<v>.activationCheckpointing",
        enable_activation_offloading: "train.variants.<v>.activationOffloading",
        metric_logger: "train.variants.<v>.metricLogger",
        "model.lora_rank": "train.variants.<v>.loraRank",
        "model.lora_alpha": "train.variants.<v>.loraAlpha",
    },
    sample: {
        output_dir: "the run's paths (run)",
        "checkpointer.checkpoint_dir": "sample.variants",
        prompt: "sample.question / sample.imagePath / sample.systemPrompt",
        max_new_tokens: "sample.maxNewTokens",
        temperature: "sample.temperature",
        top_k: "sample.topK",
    },
    evaluate: {
        output_dir: "the run's paths (run)",
        "checkpointer.checkpoint_dir": "evaluate.variants",
        tasks: "evaluate.tasks",
        limit: "evaluate.limit",
        batch_size: "nothing: the vision evaluation wrapper runs batch size 1 only",
        max_seq_length: "evaluate.maxSeqLength",
    },
};

const recipeKey = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/** `key=value` overrides of a rendered torchtune config (what `tune run ... key=value` does), set last. */
function recipeOverridesSchema(stage: keyof typeof OWNED_RECIPE_KEYS, example: string) {
    const owned = OWNED_RECIPE_KEYS[stage];
    return z.record(z.string().regex(recipeKey, { message: 'must be a dotted torchtune config key such as "model._component_"' }), z.unknown())
        .default({})
        .superRefine((o, ctx) => {
            for (const key of Object.keys(o)) {
                const hit = Object.keys(owned).find((k) => key === k || key.startsWith(`${k}.`) || k.startsWith(`${key}.`));
                if (hit) ctx.addIssue({ code: "custom", path: [key], message: `sets "${hit}", which the stack renders from ${owned[hit]}: set that instead` });
            }
        })
        .meta({
            description: "torchtune config keys (dotted, as `tune run ... key=value` takes them) set last on the rendered " +
                `config, e.g. ${example}. Keys the stack renders from its own settings (paths, dataset, batch, epochs, levers) ` +
                "are refused with the setting to use instead. @default none",
        });
}

const trainVariantSchema = z.strictObject({
    enabled: z.boolean().default(true).meta({
        description: "Run this fine-tune in this update. false: defined only so evaluations can read its checkpoints from the volume.",
    }),
    model: z.enum(MODEL_SIZES).meta({ description: "Base model." }),
    method: z.enum(["lora", "qlora"]).meta({ description: "lora (11B, single device recipe config) or qlora (NF4 base; the 90B_qlora config)." }),
    loraRank: posInt.optional().meta({
        description: "LoRA rank. @default per model: 16 for 11b (the blog's change), 8 for 90b (torchtune's 90B_qlora, which the blog keeps)",
    }),
    loraAlpha: z.number().positive().optional().meta({
        description: "LoRA alpha, usually 2 x rank. @default per model: 32 for 11b (the blog), 16 for 90b (90B_qlora)",
    }),
    loraDropout: z.number().min(0).lt(1).default(0.0).meta({ description: "LoRA dropout." }),
    epochs: posInt.meta({ description: "Epochs (each writes epoch_N; evaluations read the last, epoch_{epochs-1}). Required." }),
    maxStepsPerEpoch: posInt.nullable().default(null).meta({ description: "null runs whole epochs." }),
    batchSize: posInt.meta({
        description: "Samples per forward pass as the recipe config counts them (the blog: 16 for 11B, 2 for 90B). The effective " +
            "batch is batchSize x gradientAccumulationSteps; see microBatchSize. Required.",
    }),
    gradientAccumulationSteps: posInt.meta({ description: "Gradient accumulation steps. Required." }),
    microBatchSize: z.union([z.literal("auto"), posInt]).default("auto").meta({
        description: "Samples per micro-batch: a divisor of batchSize; the accumulation grows so the effective batch, the " +
            'optimizer steps and the learning-rate schedule stay the same. "auto": chosen for speed, not size: the ' +
            "fastest measured setting (bench/results/) that fits cluster.gpuMemory by the memory model (config/facts.ts " +
            "peakGiB), never slower than the blog's; else the largest that fits with the blog's levers.",
    }),
    learningRate: z.number().positive().default(1e-4).meta({ description: "AdamW learning rate." }),
    warmupSteps: nonNegInt.default(100).meta({ description: "Cosine schedule warmup steps." }),
    seed: nonNegInt.default(42).meta({
        description: "Data shuffling and init seed. torchtune's configs leave it null (random); the blog sets 42 for both models.",
    }),
    compile: z.boolean().optional().meta({
        description: "torch.compile the decoder and the loss. @default planned per model and GPU memory from the measurements " +
            "in bench/results/ (on 141-256 GiB: true for 11b and for 90b, NF4 compiled with checkpointing)",
    }),
    compileEncoder: z.boolean().optional().meta({
        description: "Also compile the vision encoder (~60% of the forward FLOPs; the image's patched recipe, key " +
            "compile_encoder). @default planned from bench/results/ (on 80-256 GiB: true for 11b, false for 90b)",
    }),
    exactTiles: z.boolean().optional().meta({
        description: "Encode each image's real tiles only: the collate pads a micro-batch's images to its most tiles and " +
            "torchtune 0.6.1's vision encoder has no tile mask, so padded tiles cost encoder work and are attended to. With it each " +
            "sample is encoded as at micro-batch 1 (as sampling and evaluation see it); the samples, their micro-batches and the " +
            "loss are unchanged (the image's patched recipe, key exact_tiles). @default planned from bench/results/ (on 80-256 GiB: " +
            "true for 11b)",
    }),
    activationCheckpointing: z.boolean().optional().meta({
        description: "Activation checkpointing: recomputes activations (less memory, ~1/3 more compute). @default planned " +
            "from bench/results/ (on 80-256 GiB: false for 11b; true for 90b, whose compiled NF4 run without it ran out of memory)",
    }),
    activationOffloading: z.boolean().default(false).meta({ description: "Offload activations to CPU memory." }),
    metricLogger: z.enum(["disk", "wandb"]).default("disk").meta({
        description: "Metric logger: disk (DiskLogger under the output dir) or wandb (key: `cot-vr:wandbApiKey` secret).",
    }),
    wandbProject: z.string().min(1).default("vision_llama_reasoning").meta({ description: "W&B project when metricLogger is wandb." }),
    gpus: posInt.refine((n) => TRAIN_GPUS.includes(n), { message: "must be 1, 2, 4 or 8" }).default(1).meta({
        description: "GPUs of the fine-tune's one pod. 1: the blog's single-device recipe. 2, 4 or 8 (at most " +
            "cluster.gpusPerNode): torchtune's lora_finetune_distributed (FSDP2) through torchrun, from the packaged " +
            "multi-device config, with the same effective batch (micro-batch x accumulation x gpus), epochs and schedule.",
    }),
    recipeOverrides: recipeOverridesSchema("train", '`model._component_: mypkg.my_lora_builder` (a builder importable in the trainer image) or `optimizer.weight_decay: 0.01`'),
    cpu: cpuQuantity.default("16").meta({ description: "CPU request of the fine-tune pod." }),
    memory: quantity.optional().meta({
        description: "Memory request and limit of the fine-tune pod. @default 256Gi for one GPU; with N GPUs 256Gi plus " +
            "the model's size for each further rank (every rank loads the full checkpoint into host memory)",
    }),
    shmSize: quantity.optional().meta({
        description: "Size of the memory-backed /dev/shm (data loader workers; RCCL's shared-memory buffers between ranks). " +
            "@default 64Gi, plus 8Gi for each further rank",
    }),
});
export type RawTrainVariant = z.infer<typeof trainVariantSchema>;

const trainSchema = z.strictObject({
    variants: z.record(dnsLabel(24), trainVariantSchema).default({
        "lora-11b": trainVariantSchema.parse({ model: "11b", method: "lora", epochs: 10, batchSize: 16, gradientAccumulationSteps: 1 }),
        "qlora-90b": trainVariantSchema.parse({ model: "90b", method: "qlora", epochs: 3, batchSize: 2, gradientAccumulationSteps: 8 }),
    }).meta({ description: "Fine-tunes by name. Names appear in paths and Job names." }),
}).prefault({});

/** CPU and memory of the pods that read one model's checkpoint (sample, evaluate): the whole
 * checkpoint is loaded into host memory before it goes to the GPU. */
export const READER_MEMORY: Record<"11b" | "90b", string> = { "11b": "64Gi", "90b": "256Gi" };
function readerResources(stage: "sample" | "evaluate") {
    return {
        cpu: cpuQuantity.default("8").meta({ description: `CPU request of each ${stage} pod.` }),
        memory: quantity.optional().meta({
            description: `Memory request and limit of each ${stage} pod. @default ${READER_MEMORY["11b"]} for an 11B model, ${READER_MEMORY["90b"]} for a 90B one`,
        }),
    };
}

/** base-11b / base-90b, or the name of a train variant (its last epoch). */
const evalVariant = z.string().regex(/^(base-11b|base-90b|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$/, {
    message: 'must be "base-11b", "base-90b" or the name of a train variant',
});

const sampleSchema = z.strictObject({
    variants: z.array(evalVariant).default(["base-11b", "lora-11b", "base-90b", "qlora-90b"]).meta({
        description: "Models to sample: base-11b, base-90b or train variant names.",
    }),
    question: z.string().trim().min(1).default("How many monthly sessions per user did Netflix have?").meta({
        description: "The question asked (the blog's, about ChartQA train[27901]).",
    }),
    imageDataset: z.string().min(1).default("HuggingFaceM4/ChartQA").meta({
        description: "Where the image comes from: a dataset row (default the blog's) ...",
    }),
    imageSplit: z.string().min(1).default("train").meta({ description: "Split of that row." }),
    imageIndex: nonNegInt.default(27901).meta({ description: "Index of that row (the blog's example chart)." }),
    imagePath: z.string().min(1).optional().meta({ description: "... or a path/URL the container can read (overrides the dataset row)." }),
    maxNewTokens: posInt.default(200).meta({ description: "Longest sampled answer, in tokens." }),
    temperature: z.number().min(0).max(2).default(0.6).meta({ description: "Sampling temperature." }),
    topK: posInt.default(300).meta({ description: "Top-k sampling." }),
    systemPrompt: z.string().trim().min(1).optional().meta({
        description: "System prompt; default: the ChartQA answer rules the blog uses (manifests/prompts/chartqa-system.txt).",
    }),
    recipeOverrides: recipeOverridesSchema("sample", "`model._component_` of a base builder importable in the trainer image"),
    ...readerResources("sample"),
}).prefault({});

const evaluateSchema = z.strictObject({
    variants: z.array(evalVariant).default(["base-11b", "lora-11b", "base-90b", "qlora-90b"]).meta({
        description: "Models to evaluate: base-11b, base-90b or train variant names.",
    }),
    tasks: z.array(z.string().min(1)).min(1).default(["chartqa"]).meta({ description: "lm-eval tasks." }),
    limit: posInt.optional().meta({ description: "Samples per task. @default the whole test split" }),
    maxSeqLength: posInt.default(8192).meta({ description: "Longest evaluation sequence (prompt and answer)." }),
    recipeOverrides: recipeOverridesSchema("evaluate", "`model._component_` of a base builder importable in the trainer image"),
    ...readerResources("evaluate"),
}).prefault({});

export const configSchema = z.strictObject({
    run: dnsLabel(20).optional().meta({ description: "Run name: prefixes Job names and the checkpoints/results folders. @default the stack name" }),
    hfToken: z.string().min(1).optional().meta({
        description: "Hugging Face token (secret) with access to the gated Llama 3.2 Vision models. Required when stages.download is on.",
    }),
    wandbApiKey: z.string().min(1).optional().meta({ description: "W&B API key (secret); required when a train variant logs to wandb." }),
    registryPassword: z.string().min(1).optional().meta({ description: "Registry password (secret); required when images.build is true." }),
    // Only presence is checked: `pulumi up` validates secrets with their values masked.
    notifyWebhook: z.string().min(1).optional().meta({
        description: "Webhook URL (secret), e.g. a Slack incoming webhook: the report POSTs the headline results, a stage " +
            "that fails for good its reason (`{\"text\": ...}`). Reached over HTTPS (port 443 under cluster.networkPolicy). " +
            "@default none (no notifications)",
    }),
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

// What the code knows about the models, the data, the fine-tune recipe and the GPU's memory: one copy,
// each fact with its source in docs/FACTS.md. images/common/cotvr_facts.py repeats the few the
// benchmark needs inside its image; test/unit/facts.test.ts pins the two together.
import type { ModelSize } from "./schema";
import { Levers, MEASURED, Measured, sameLevers } from "./measured";

/** What each model is on disk (the safetensors shards with ~10% headroom). Every fine-tune epoch writes
 * merged full weights, so an epoch takes as much room as the model. */
export const MODEL_FACTS: Record<ModelSize, { bytes: number; shards: number }> = {
    "11b": { bytes: 23e9, shards: 5 },
    "90b": { bytes: 195e9, shards: 37 },
};
/** ChartQA in the Hugging Face cache (~1.3 GB) plus the CoT dataset with its images, with headroom. */
export const DATA_BYTES = 10e9;

/** The ChartQA splits' row counts (HuggingFaceM4/ChartQA). */
export const CHARTQA_ROWS: Record<string, number> = { train: 28299, val: 1920, test: 2500 };

/** Optimizer steps per epoch as torchtune 0.6.1 counts them: drop_last batches // accumulation, capped. */
export function stepsPerEpoch(rows: number, v: { batchSize: number; gradientAccumulationSteps: number; maxStepsPerEpoch: number | null }): number {
    const steps = Math.floor(Math.floor(rows / v.batchSize) / v.gradientAccumulationSteps);
    return v.maxStepsPerEpoch !== null && v.maxStepsPerEpoch < steps ? v.maxStepsPerEpoch : steps;
}

/** Defaults that depend on the model: the blog changed rank/alpha for 11B only; 90B keeps 90B_qlora's.
 * The speed levers and the micro-batch are not defaults: config/derive.ts plans them per GPU memory from
 * the measurements in bench/results/ (config/measured.ts), never slower than the blog's setting. */
export const MODEL_DEFAULTS: Record<ModelSize, { loraRank: number; loraAlpha: number; why: string }> = {
    "11b": { loraRank: 16, loraAlpha: 32, why: "the blog's 11B LoRA" },
    "90b": { loraRank: 8, loraAlpha: 16, why: "torchtune's 90B_qlora, kept by the blog" },
};

/** The blog's own setting per model: batch 16 x 1 (11B) and 2 x 8 (90B), activation checkpointing on,
 * nothing compiled. */
export const BLOG_MICRO_BATCH: Record<ModelSize, number> = { "11b": 16, "90b": 2 };

/**
 * Memory of one fine-tune step on one GPU, GiB: static (bf16/NF4 weights, LoRA weights and their
 * AdamW state) + per-sample activations at the worst-case shape (4 tiles of 560x560, 600 tokens padded
 * to 640), read from the measurements in bench/results/ (config/measured.ts): the activations of the
 * setting's own levers when measured, else the most any measured setting with the same checkpointing
 * needed. MEMORY_FALLBACK (H100 measurements, 90B activations estimated at 1/4 depth) stands in for
 * a model with no measurement. A micro-batch m fits when static + m x act x (1 + ACT_MARGIN) +
 * RESERVE_GIB <= cluster.gpuMemory.
 */
export const MEMORY_FALLBACK: Record<ModelSize, { staticGiB: number; actGiB: number; actCheckpointedGiB: number }> = {
    "11b": { staticGiB: 20.1, actGiB: 16.1, actCheckpointedGiB: 3.25 },
    "90b": { staticGiB: 62.7, actGiB: 36, actCheckpointedGiB: 5.0 },
};
/** Margin on activations (real CoT answers longer than the calibration's 640 tokens) and the
 * allocator's reserve (reserved - allocated at the peak). Calibrated on the H200 (bench/results/): the
 * 90B without checkpointing at m=2 peaked at 135.2 GiB allocated, 137.7 reserved on a 139.8 GiB card,
 * so the model must let it fit there (62.6 + 2 x 36.1 x 1.03 + 2.5 = 139.5); the old 15 % margin and
 * 4 GiB reserve left it at m=1, 0.56x its speed. */
export const ACT_MARGIN = 0.03;
export const RESERVE_GIB = 2.5;

/** Static and per-sample activation GiB of a model under some levers, and where they come from. */
export function memoryFigures(model: ModelSize, levers: Levers | boolean, from: readonly Measured[] = MEASURED): { staticGiB: number; actGiB: number; source: string } {
    const l: Levers = typeof levers === "boolean" ? { compile: false, compileEncoder: false, activationCheckpointing: levers, exactTiles: false } : levers;
    const mine = from.filter((x) => x.model === model && x.staticGiB > 0);
    if (!mine.length) {
        const f = MEMORY_FALLBACK[model];
        return { staticGiB: f.staticGiB, actGiB: l.activationCheckpointing ? f.actCheckpointedGiB : f.actGiB, source: "MEMORY_FALLBACK (H100)" };
    }
    const staticGiB = Math.max(...mine.map((x) => x.staticGiB));
    const exact = mine.filter((x) => typeof levers !== "boolean" && sameLevers(x, l));
    const same = exact.length ? exact : mine.filter((x) => x.activationCheckpointing === l.activationCheckpointing);
    if (!same.length) {
        const f = MEMORY_FALLBACK[model];
        return { staticGiB, actGiB: l.activationCheckpointing ? f.actCheckpointedGiB : f.actGiB, source: "MEMORY_FALLBACK (H100) activations" };
    }
    const top = same.reduce((a, b) => (b.actGiB > a.actGiB ? b : a));
    return { staticGiB, actGiB: top.actGiB, source: `${top.file} ${top.setting}` };
}

/** Peak GiB of a micro-batch of m samples by the memory model (levers, or checkpointing alone). */
export function peakGiB(model: ModelSize, m: number, levers: Levers | boolean, from: readonly Measured[] = MEASURED): number {
    const f = memoryFigures(model, levers, from);
    return f.staticGiB + m * f.actGiB * (1 + ACT_MARGIN) + RESERVE_GIB;
}

/**
 * Optimizer steps per epoch of torchtune 0.6.1's lora_finetune_distributed on `ranks` processes: its
 * StatefulDistributedSampler (drop_last False) pads the dataset by repeating samples to a multiple of
 * the ranks and gives each ceil(rows / ranks); each rank's DataLoader drops its last partial batch;
 * steps = batches // accumulation, capped. With the same seed (the sampler's 0) every optimizer step
 * sees the same samples as on one GPU (rank r takes every N-th of the same permutation); only the
 * padding can add a step at the end of an epoch.
 */
export function distributedStepsPerEpoch(rows: number, v: { batchSize: number; gradientAccumulationSteps: number; maxStepsPerEpoch: number | null }, ranks: number): number {
    return stepsPerEpoch(Math.ceil(rows / ranks), v);
}

/**
 * Host memory and /dev/shm of a fine-tune pod with `gpus` ranks. One rank: the shipped 256Gi and 64Gi.
 * Each further rank: the model's size in host memory (every rank of lora_finetune_distributed loads the
 * full checkpoint on CPU before sharding it: its `load_checkpoint` runs on all ranks, safetensors read
 * with get_tensor, which copies) and 8Gi more /dev/shm (RCCL's shared-memory transport and proxy
 * buffers between ranks; the DataLoader runs in the rank's process).
 */
export function trainPodSize(model: ModelSize, gpus: number): { memory: string; shmSize: string } {
    const extra = gpus - 1;
    const perRankGi = Math.ceil(MODEL_FACTS[model].bytes / 2 ** 30);
    return { memory: `${256 + extra * perRankGi}Gi`, shmSize: `${64 + extra * 8}Gi` };
}

/**
 * ASSUMPTION until a multi-GPU measurement replaces it: each GPU beyond the first adds this fraction
 * of one GPU's throughput (FSDP2 all-gathers and reduce-scatters over the node's xGMI links). The
 * estimator's speed-up and a multi-GPU fine-tune's activeDeadlineSeconds divide by multiGpuSpeedup.
 */
export const MULTI_GPU_SCALING_EFFICIENCY = 0.85;

/** Throughput of `gpus` GPUs in units of one GPU's, by MULTI_GPU_SCALING_EFFICIENCY. */
export function multiGpuSpeedup(gpus: number, efficiency = MULTI_GPU_SCALING_EFFICIENCY): number {
    return 1 + (gpus - 1) * efficiency;
}

/**
 * The RCCL environment of a multi-GPU fine-tune on one MI300X node (docs/FACTS.md, "Several GPUs of
 * one node"). RCCL reads the NCCL_* names. Only set where ranks > 1.
 */
export const RCCL_ONE_NODE_ENV: Readonly<Record<string, string>> = {
    // More channels than RCCL's default on MI300X's fully connected xGMI mesh.
    NCCL_MIN_NCHANNELS: "112",
    // PyTorch's NCCL (RCCL) process group on a high-priority HIP stream, so collectives overlap compute.
    TORCH_NCCL_HIGH_PRIORITY: "1",
    // Fewer hardware queues per process, as the same guide advises beside the two above.
    GPU_MAX_HW_QUEUES: "2",
};

// What the code knows about the models, the data, the fine-tune recipe and the GPU's memory: one copy,
// each fact with its source in docs/FACTS.md. images/common/cotvr_facts.py repeats the few the
// benchmark needs inside its image; test/unit/facts.test.ts pins the two together.
import type { ModelSize } from "./schema";

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
 * Speed levers measured with images/trainer/bench_finetune.py (docs/THROUGHPUT.md). */
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

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
    const l: Levers = typeof levers === "boolean" ? { compile: false, compileEncoder: false, activationCheckpointing: levers } : levers;
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

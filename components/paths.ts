// Where everything lives inside the pods. One module, so the Job that writes a path and the Job
// that reads it can never disagree.
import { ModelRef, ModelSize, Settings, TrainVariant } from "../config";

export const MOUNTS = {
    models: "/models",
    data: "/data",
    checkpoints: "/checkpoints",
    results: "/results",
    config: "/etc/cotvr",
    shm: "/dev/shm",
} as const;

/** Marker a producer writes last; consumers check it instead of guessing from partial files. */
export const COMPLETE = ".complete.json";
/** Hugging Face home on the data volume: datasets cache shared by every stage. */
export const HF_HOME = `${MOUNTS.data}/hf-home`;

/** Folder of a downloaded model, e.g. /models/Llama-3.2-11B-Vision-Instruct. */
export function modelDir(s: Settings, size: ModelSize): string {
    const repo = s.models[size];
    return `${MOUNTS.models}/${repo.split("/").pop()}`;
}

/** The CoT dataset folder (what vqa_dataset's `source` points at). */
export function datasetDir(s: Settings): string {
    return `${MOUNTS.data}/${s.generate.datasetName}`;
}

/** torchtune output_dir of a fine-tune: <checkpoints>/<run>/<variant>. */
export function trainOutputDir(s: Settings, variant: string): string {
    return `${MOUNTS.checkpoints}/${s.run}/${variant}`;
}

/** The checkpoint a tuned model is read from: epoch_{epochs-1} of its own run (torchtune counts from 0). */
export function lastEpochDir(s: Settings, variant: string, v: TrainVariant): string {
    return `${trainOutputDir(s, variant)}/epoch_${v.epochs - 1}`;
}

export function resultsDir(s: Settings): string {
    return `${MOUNTS.results}/${s.run}`;
}

/** Checkpoint dir and the marker that proves it complete, for a base or tuned model. */
export function checkpointOf(s: Settings, ref: ModelRef): { dir: string; marker: string } {
    if (!ref.trainVariant) {
        const dir = modelDir(s, ref.size);
        return { dir, marker: `${dir}/${COMPLETE}` };
    }
    const v = s.train.variants[ref.trainVariant];
    return {
        dir: lastEpochDir(s, ref.trainVariant, v),
        marker: `${trainOutputDir(s, ref.trainVariant)}/${COMPLETE}`,
    };
}

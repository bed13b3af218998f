// Where everything lives inside the pods: mounts, programs, rendered configs, outputs and completion
// markers. One module, so the Job that writes a path and the Job that reads it can never disagree.
import { ModelRef, ModelSize, Settings, TrainVariant } from "../config";
import { MARKER_NAME, VOLUME_NAMES, VolumeName } from "../contract";

export { VOLUME_NAMES };
export type { VolumeName };

export const MOUNTS: Record<VolumeName | "config" | "shm" | "tmp" | "hfToken" | "serviceAccount", string> = {
    models: "/models",
    data: "/data",
    checkpoints: "/checkpoints",
    results: "/results",
    config: "/etc/cotvr",
    shm: "/dev/shm",
    /** Scratch and HOME (the root filesystem is read-only): caches of triton, MIOpen, vLLM, inductor. */
    tmp: "/tmp",
    /** The Hugging Face token, as a file (huggingface_hub reads HF_TOKEN_PATH). */
    hfToken: "/var/run/secrets/cotvr/hf",
    /** Where a pod's API token and CA are looked for (images/common/cotvr_common.py SA_DIR). */
    serviceAccount: "/var/run/secrets/kubernetes.io/serviceaccount",
};

/** Where the images put this project's programs (images/README.md). */
export const PROGRAMS_DIR = "/opt/cotvr";

/** `python /opt/cotvr/<program>`: the command of a stage container. */
export function programCommand(program: string): string[] {
    return ["python", `${PROGRAMS_DIR}/${program}`];
}

/** A file of the stage's rendered ConfigMap, as mounted in its pod. */
export function configFile(key: string): string {
    return `${MOUNTS.config}/${key}`;
}

/** Marker a producer writes last; consumers check it instead of guessing from partial files. */
export const COMPLETE = MARKER_NAME;
/** Hugging Face home on the data volume: datasets cache shared by every stage. */
export const HF_HOME = `${MOUNTS.data}/hf-home`;

/** Folder of a downloaded model, e.g. /models/Llama-3.2-11B-Vision-Instruct. */
export function modelDir(s: Settings, size: ModelSize): string {
    const repo = s.models[size];
    return `${MOUNTS.models}/${repo.split("/").pop()}`;
}

/** Written by the download when every file of the model is there. */
export function modelMarker(s: Settings, size: ModelSize): string {
    return `${modelDir(s, size)}/${COMPLETE}`;
}

/** The CoT dataset folder (what vqa_dataset's `source` points at). */
export function datasetDir(s: Settings): string {
    return `${MOUNTS.data}/${s.generate.datasetName}`;
}

/** Written by the generation when the dataset passed its check; the fine-tunes require it. */
export function datasetMarker(s: Settings): string {
    return `${datasetDir(s)}/${COMPLETE}`;
}

/** torchtune output_dir of a fine-tune: <checkpoints>/<run>/<variant>. */
export function trainOutputDir(s: Settings, variant: string): string {
    return `${MOUNTS.checkpoints}/${s.run}/${variant}`;
}

/** Written by train.py when the last epoch is complete. */
export function trainMarker(s: Settings, variant: string): string {
    return `${trainOutputDir(s, variant)}/${COMPLETE}`;
}

/** The checkpoint a tuned model is read from: epoch_{epochs-1} of its own run (torchtune counts from 0). */
export function lastEpochDir(s: Settings, variant: string, v: TrainVariant): string {
    return `${trainOutputDir(s, variant)}/epoch_${v.epochs - 1}`;
}

export function resultsDir(s: Settings): string {
    return `${MOUNTS.results}/${s.run}`;
}

/** Where a sample or evaluation writes its JSON. */
export function readOutputPath(s: Settings, stage: "sample" | "evaluate", ref: ModelRef): string {
    return `${resultsDir(s)}/${stage === "sample" ? "samples" : "eval"}/${ref.name}.json`;
}

/** Where the throughput benchmark of a fine-tune writes its figures. */
export function benchOutputPath(s: Settings, variant: string): string {
    return `${resultsDir(s)}/bench/${variant}.json`;
}

/** Where the generation records when it scaled the teacher (the teacher's GPU time, for the report). */
export function teacherRecord(s: Settings): string {
    return `${resultsDir(s)}/gpu-time/teacher.jsonl`;
}

/** The report's inputs (evaluation JSONs) and its output folder. */
export function reportDirs(s: Settings): { evalDir: string; out: string } {
    return { evalDir: `${resultsDir(s)}/eval`, out: `${resultsDir(s)}/report` };
}

/** Checkpoint dir and the marker that proves it complete, for a base or tuned model. */
export function checkpointOf(s: Settings, ref: ModelRef): { dir: string; marker: string } {
    if (!ref.trainVariant) return { dir: modelDir(s, ref.size), marker: modelMarker(s, ref.size) };
    const v = s.train.variants[ref.trainVariant];
    return { dir: lastEpochDir(s, ref.trainVariant, v), marker: trainMarker(s, ref.trainVariant) };
}

/** Scratch folders inside a pod (not on a volume). */
export const SCRATCH = {
    generate: "/tmp/cotvr/generate",
    eval: "/tmp/cotvr/eval",
    /** Where sample.py writes the image it takes from the dataset row. */
    sampleImage: "/tmp/cotvr/sample-image.png",
} as const;

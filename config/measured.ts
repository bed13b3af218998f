// Fine-tune throughput and memory as images/trainer/bench_finetune.py measured them: the result files
// in bench/results/ (JSON with device, versions, settings and shapes; the raw outputs beside them in
// bench/raw/). Read, never copied: the planner (config/derive.ts) and the estimator
// (scripts/estimate.ts) take every measured figure from here.
import * as fs from "fs";
import * as path from "path";
import { BENCH_PREFIX } from "../contract";
import type { ModelSize } from "./schema";

/** The speed levers of a fine-tune. */
export interface Levers {
    compile: boolean;
    compileEncoder: boolean;
    activationCheckpointing: boolean;
    /** The vision encoder on each image's real tiles only (the patched recipe's exact_tiles). */
    exactTiles: boolean;
}

/** One setting of one benchmark run. */
export interface Measured extends Levers {
    /** The result file (bench/results/<file>, or the path given to --bench). */
    file: string;
    /** The GPU as the benchmark named it, and its memory in GiB. */
    device: string;
    deviceGiB: number;
    peakTflops: number | null;
    model: ModelSize;
    /** The benchmark's setting name, e.g. `best:m4`, `blog:m16`. */
    setting: string;
    microBatch: number;
    /** Opt-in: samples grouped by tiles inside each optimizer step (never shipped by default). */
    groupTiles: boolean;
    /** Opt-in: pinned, non-blocking copies (--pin-memory), which the recipe does not make (never shipped). */
    pinMemory: boolean;
    /** Text padded to a multiple of this many tokens (the patched recipe's text_bucket; 1: none). */
    textBucket: number;
    samplesPerS: number;
    /** The benchmark's own projection of the configured epochs, hours on that GPU. */
    projectedHours: number | null;
    /** Weights + adapters + optimizer state, and activations per worst-case sample, GiB. */
    staticGiB: number;
    actGiB: number;
    peakGiB: number;
    timedSteps: number;
}

export const BENCH_RESULTS_DIR = path.join(__dirname, "..", "bench", "results");

function modelOf(configModel: string): ModelSize | undefined {
    return /90b/i.test(configModel) ? "90b" : /11b/i.test(configModel) ? "11b" : undefined;
}

/** The settings of a benchmark result: its JSON (`--json-out`, `--merge`) or a log with its
 * `COTVR_BENCH {json}` line. Settings that ran out of memory are left out. A result of a
 * layer-scaled model cannot stand for the model: an error. */
export function readBenchResult(text: string, file: string): Measured[] {
    const line = text.split("\n").find((l) => l.startsWith(BENCH_PREFIX));
    let j: any;
    try {
        j = JSON.parse(line ? line.slice(BENCH_PREFIX.length) : text);
    } catch {
        throw new Error(`${file}: neither a benchmark JSON nor a log with a COTVR_BENCH line`);
    }
    const model = modelOf(String(j.config_model));
    if (!model) throw new Error(`${file}: config_model ${j.config_model} is neither an 11B nor a 90B model`);
    if (j.layers_scale !== undefined && j.layers_scale !== null && Number(j.layers_scale) !== 1) {
        throw new Error(`${file}: measured on a layer-scaled model (layers_scale ${j.layers_scale}); rerun the benchmark on the full model`);
    }
    const out: Measured[] = [];
    for (const r of j.results ?? []) {
        if (!(r.samples_per_s > 0)) continue;
        out.push({
            file, device: String(j.device ?? "unknown device"), deviceGiB: Number(j.device_memory_gb ?? 0), peakTflops: j.peak_tflops ?? null,
            model, setting: String(r.setting), microBatch: Number(r.micro_batch), groupTiles: Boolean(r.group_tiles),
            pinMemory: Boolean(r.pin_memory), exactTiles: Boolean(r.exact_tiles),
            textBucket: Number(r.text_bucket ?? j.text_bucket ?? 1),
            compile: Boolean(r.compile), compileEncoder: Boolean(r.compile_encoder), activationCheckpointing: Boolean(r.activation_checkpointing),
            samplesPerS: Number(r.samples_per_s), projectedHours: r.projected_hours ?? null,
            staticGiB: Number(r.static_gb ?? 0), actGiB: Number(r.act_per_sample_gb ?? 0), peakGiB: Number(r.peak_allocated_gb ?? 0),
            timedSteps: Number(r.timed_steps ?? j.steps ?? 0),
        });
    }
    if (!out.length) throw new Error(`${file}: no setting with a measured samples/s`);
    return out;
}

/** Every measured setting in bench/results/, file by file. */
export function readMeasured(dir: string = BENCH_RESULTS_DIR): Measured[] {
    if (!fs.existsSync(dir)) return [];
    return fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort()
        .flatMap((f) => readBenchResult(fs.readFileSync(path.join(dir, f), "utf8"), f));
}

/** The repository's measurements, read once. */
export const MEASURED: readonly Measured[] = readMeasured();

export const sameLevers = (a: Levers, b: Levers) =>
    a.compile === b.compile && a.compileEncoder === b.compileEncoder && a.activationCheckpointing === b.activationCheckpointing
    && a.exactTiles === b.exactTiles;

/** Timed optimizer steps that make a speed steady-state (after every shape class is compiled): fewer
 * (the first 90B calls timed 3) still say how much memory a setting needs, not how fast it runs. */
export const STEADY_STEPS = 12;

/** What a stack can run, at a speed measured in steady state: not the benchmark's opt-in measurements
 * (grouping by tiles, pinned copies), not a short run. */
export const plannable = (x: Measured) => !x.groupTiles && !x.pinMemory && x.timedSteps >= STEADY_STEPS;

/** The blog's levers: activation checkpointing on, nothing compiled. */
export const BLOG_LEVERS: Levers = { compile: false, compileEncoder: false, activationCheckpointing: true, exactTiles: false };

/** The measurement of the blog's exact setting for a model (its levers at the blog's micro-batch),
 * the one every speed-up is compared with in the same run. */
export function blogMeasurement(model: ModelSize, blogMicroBatch: number, from: readonly Measured[] = MEASURED): Measured | undefined {
    return from.find((x) => x.model === model && sameLevers(x, BLOG_LEVERS) && x.microBatch === blogMicroBatch && plannable(x));
}

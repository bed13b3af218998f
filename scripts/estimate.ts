// Estimated real duration of every stage of an update, from the stack's settings alone (pure: no
// cluster, no files unless a benchmark result is passed in). The rehearsal (scripts/rehearse.ts)
// scales these to simulated seconds, checks the stage timeouts against them and computes the
// `--parallel` a stack needs from the DAG.
//
// THESE ARE ESTIMATES. Every figure below says where it comes from; the only measured ones are the
// 11B LoRA throughputs in docs/FACTS.md (NVIDIA H100 80GB, torchtune 0.6.1), scaled to an MI300X by the
// ratio of the two GPUs' peak dense bf16 throughput, and whatever a training benchmark result
// (`COTVR_BENCH` JSON of images/trainer/bench_finetune.py) passed with --bench measured.
import { CHARTQA_ROWS, MODEL_FACTS, stepsPerEpoch } from "../config/facts";
import { ModelSize, Settings, StageName } from "../config";
import { NodeId, stageGraph, StageNode } from "../components/graph";
import { BENCH_PREFIX, PROJECT } from "../contract";
import { criticalPath } from "../sim/critical-path";
import { fmtDuration } from "./duration";

export { fmtDuration, stageGraph };
export type { StageNode };

// ---------------------------------------------------------------------------------------------------
// Figures and assumptions

/** Peak dense bf16 TFLOP/s (vendor data sheets, no sparsity): H100 SXM 989, MI300X 1307.4. */
export const PEAK_BF16_TFLOPS = { h100: 989, mi300x: 1307.4 } as const;
/** How much faster an MI300X is taken to be than the H100 the figures were measured on. An
 * assumption: real ratios depend on kernels (the blog's own MI300X run of 10 epochs took ~23 h,
 * slower than this scaling predicts, on PyTorch 2.8.0.dev+rocm6.4, May 2025). */
export const MI300X_PER_H100 = PEAK_BF16_TFLOPS.mi300x / PEAK_BF16_TFLOPS.h100;

/** Measured with images/trainer/bench_finetune.py in one run (H100 80GB, torchtune 0.6.1, the blog
 * stack's 11B LoRA r16 config, random weights, ChartQA-shaped batches; docs/THROUGHPUT.md): samples/s
 * per setting, effective batch 16 in all. */
export const H100_11B_LORA_SAMPLES_PER_S = {
    /** activation checkpointing on, compile off (what the blog runs), 16 x 1 */
    blog: 3.69,
    /** + compile (decoder and loss) */
    compile: 4.4,
    /** + the vision encoder compiled too */
    compileEncoder: 4.98,
    /** checkpointing off, compile off, 2 x 8 on the 80 GB card */
    noCheckpointing: 2.87,
    /** checkpointing off + compile incl. the encoder, 2 x 8: the 11B default */
    best: 7.29,
} as const;
/** 90B QLoRA without activation checkpointing against the blog's setting (measured at 1/4 depth). */
const QLORA_90B_NO_CHECKPOINTING_SPEEDUP = 1.6;

/** The measured H100 figure of the 11B LoRA for a variant's levers. */
function h100Figure(v: { compile: boolean; compileEncoder: boolean; activationCheckpointing: boolean }): [number, string] {
    const t = H100_11B_LORA_SAMPLES_PER_S;
    if (!v.activationCheckpointing) return v.compile && v.compileEncoder ? [t.best, "best"] : [t.noCheckpointing, "no checkpointing"];
    if (v.compile) return v.compileEncoder ? [t.compileEncoder, "compile incl. encoder"] : [t.compile, "compile"];
    return [t.blog, "the blog's settings"];
}

/** Measured (docs/FACTS.md): ~60% of an 11B sample's forward FLOPs (76 TFLOP per sample in all) are in the vision
 * encoder. */
const VISION_SHARE_11B = 0.6;
/** Parameters outside the vision encoder (decoder + cross-attention), in billions: the 11B and 90B
 * models share the ~0.9B ViT-H/14 encoder; 10.7B and 88.8B in total (model cards). */
const TEXT_PARAMS_B = { "11b": 10.7 - 0.9, "90b": 88.8 - 0.9 } as const;
/** Per-sample FLOPs of the 90B relative to the 11B: the encoder's part is the same, the text part
 * scales with its parameters. No 90B measurement exists: an estimate (QLoRA's NF4 dequantisation
 * is not counted, so the real 90B is slower). */
export const FLOP_RATIO_90B = VISION_SHARE_11B + (1 - VISION_SHARE_11B) * (TEXT_PARAMS_B["90b"] / TEXT_PARAMS_B["11b"]);

export interface Assumptions {
    /** Hugging Face download rate per model, bytes/s (hf_transfer from a datacenter: 100-500 MB/s). */
    downloadBytesPerS: number;
    /** Reading weights from the models volume into a GPU, bytes/s (network file system). */
    volumeReadBytesPerS: number;
    /** Writing a checkpoint (merged weights, every epoch), bytes/s. */
    volumeWriteBytesPerS: number;
    /** vLLM start before loading weights (imports, profiling; --enforce-eager: no graph capture), s. */
    teacherStartS: number;
    /** Teacher decode rate with 16 concurrent sequences on one MI300X, tokens/s: a decode step reads
     * the ~177 GB of 90B weights; at ~3.2 TB/s effective of the 5.3 TB/s HBM that is ~55 ms per step,
     * x 16 sequences. Taken as linear in the concurrency up to 16 (memory-bound decoding). */
    teacherTokensPerS16: number;
    /** Mean chain-of-thought answer length, tokens (the cap, generate.maxTokens, is 4092). */
    cotTokensPerRow: number;
    /** Share of teacher time spent on prefill (the image and the prompt) rather than decoding. */
    teacherPrefillShare: number;
    /** torchtune's batch-1 greedy generation (eleuther_eval, generate_v2), tokens/s: 11B is Python-
     * bound in eager mode; 90B memory-bound (~177 GB read per token at ~3.2 TB/s). */
    readerTokensPerS: Record<ModelSize, number>;
    /** Mean tokens an evaluated answer takes (lm-eval chartqa: max_gen_toks 512, "Final Answer:"). */
    evalTokensPerRow: number;
    /** The report Job, s. */
    reportS: number;
}

export const DEFAULT_ASSUMPTIONS: Assumptions = {
    downloadBytesPerS: 200e6,
    volumeReadBytesPerS: 1e9,
    volumeWriteBytesPerS: 1e9,
    teacherStartS: 120,
    teacherTokensPerS16: 290,
    cotTokensPerRow: 350,
    teacherPrefillShare: 0.1,
    readerTokensPerS: { "11b": 30, "90b": 18 },
    evalTokensPerRow: 150,
    reportS: 60,
};

// ---------------------------------------------------------------------------------------------------
// Benchmark results

/** A measured fine-tune throughput for one model, already scaled to an MI300X. */
export interface BenchFigure {
    model: ModelSize;
    /** samples/s on an MI300X (scaled by peak ratio when measured elsewhere). */
    samplesPerS: number;
    /** Where it came from, for the printed basis. */
    source: string;
}

/**
 * Fine-tune figures from a training benchmark result: the JSON of bench_finetune.py (`--json-out`)
 * or a log with its `COTVR_BENCH {json}` line. Uses the `blog` setting (the stack's settings as
 * configured). A result of a layer-scaled model (layers_scale != 1) cannot be projected: an error.
 */
export function parseBench(text: string, source: string): BenchFigure {
    const line = text.split("\n").find((l) => l.startsWith(BENCH_PREFIX));
    let j: any;
    try {
        j = JSON.parse(line ? line.slice(BENCH_PREFIX.length) : text);
    } catch {
        throw new Error(`${source}: neither a benchmark JSON nor a log with a COTVR_BENCH line`);
    }
    const model: ModelSize | undefined = /90b/i.test(String(j.config_model)) ? "90b" : /11b/i.test(String(j.config_model)) ? "11b" : undefined;
    if (!model) throw new Error(`${source}: config_model ${j.config_model} is neither an 11B nor a 90B model`);
    if (j.layers_scale !== undefined && j.layers_scale !== null && Number(j.layers_scale) !== 1) {
        throw new Error(`${source}: measured on a layer-scaled model (layers_scale ${j.layers_scale}); rerun the benchmark on the full model`);
    }
    const r = (j.results ?? []).find((x: any) => x.setting === "blog" && x.samples_per_s > 0);
    if (!r) throw new Error(`${source}: no result for the "blog" setting (the stack's settings as configured)`);
    const device = String(j.device ?? "unknown device");
    const onMi300x = /MI300X/i.test(device);
    const peak = Number(j.peak_tflops);
    if (!onMi300x && !(peak > 0)) throw new Error(`${source}: measured on ${device} without peak_tflops: cannot scale to an MI300X`);
    const scale = onMi300x ? 1 : PEAK_BF16_TFLOPS.mi300x / peak;
    const samplesPerS = r.samples_per_s * scale;
    const how = onMi300x ? "" : `, x${scale.toFixed(2)} peak ratio to MI300X`;
    return { model, samplesPerS, source: `benchmark ${source}: ${r.samples_per_s.toFixed(2)} samples/s on ${device}${how}` };
}

// ---------------------------------------------------------------------------------------------------
// Estimates

export interface StageEstimate {
    readonly id: NodeId;
    readonly stage: StageName;
    /** The Job's variant label (model size, "cot", variant or model name). */
    readonly variant?: string;
    /** Real seconds the stage's Job (or, for the teacher, its start) takes. */
    readonly seconds: number;
    /** GPUs its pod holds while it runs (the generation: the teacher's). */
    readonly gpus: number;
    /** Whether `pulumi up` waits for it (timing.<stage>.await). */
    readonly awaited: boolean;
    /** How the figure was made. */
    readonly basis: string;
}

/** Rows the CoT dataset has: generate.limit or the whole ChartQA split. */
export function datasetRows(s: Settings): number {
    const all = CHARTQA_ROWS[s.generate.inputSplit] ?? CHARTQA_ROWS.train;
    return Math.min(all, s.generate.limit ?? all);
}

/** Seconds the teacher needs to serve: vLLM start + its weights read from the models volume. */
export function teacherLoadSeconds(a: Assumptions = DEFAULT_ASSUMPTIONS): number {
    return a.teacherStartS + MODEL_FACTS["90b"].bytes / a.volumeReadBytesPerS;
}

/** samples/s of one fine-tune on an MI300X, and where the figure comes from. */
export function trainSamplesPerS(v: { model: ModelSize; compile: boolean; compileEncoder: boolean; activationCheckpointing: boolean }, bench: BenchFigure[] = []): { sps: number; basis: string } {
    const b = bench.find((x) => x.model === v.model);
    if (b) return { sps: b.samplesPerS, basis: b.source };
    // 90B: the 11B figure of its levers but checkpointing, by FLOPs per sample, then checkpointing's measured effect.
    const [h100, what] = h100Figure(v.model === "90b" ? { ...v, activationCheckpointing: true } : v);
    let sps = h100 * MI300X_PER_H100;
    let basis = `H100 11B LoRA ${what} ${h100} samples/s (measured, bench_finetune.py) x${MI300X_PER_H100.toFixed(2)} MI300X/H100 peak`;
    if (v.model === "90b") {
        sps /= FLOP_RATIO_90B;
        basis += ` / ${FLOP_RATIO_90B.toFixed(1)} (90B FLOPs per sample, NF4 overhead not counted)`;
        if (!v.activationCheckpointing) {
            sps *= QLORA_90B_NO_CHECKPOINTING_SPEEDUP;
            basis += ` x${QLORA_90B_NO_CHECKPOINTING_SPEEDUP} (no checkpointing, measured at 1/4 depth)`;
        }
    }
    return { sps, basis: `${basis} = ${sps.toFixed(2)} samples/s (estimate)` };
}

/** Optimizer steps and samples of one epoch, counted as the recipe counts them (config/facts.ts
 * stepsPerEpoch: the last partial batch is dropped), whole epochs or max_steps_per_epoch. */
export function epochSamples(rows: number, v: { batchSize: number; gradientAccumulationSteps: number; maxStepsPerEpoch: number | null }): { steps: number; samples: number } {
    const steps = stepsPerEpoch(rows, v);
    return { steps, samples: steps * v.batchSize * v.gradientAccumulationSteps };
}

function estimateNode(s: Settings, n: StageNode, a: Assumptions, bench: BenchFigure[]): StageEstimate {
    const awaited = n.kind === "teacher" ? true : s.timing[n.kind].await;
    const base = { id: n.id, stage: n.kind as StageName, awaited };
    const load = (size: ModelSize) => MODEL_FACTS[size].bytes / a.volumeReadBytesPerS;
    const h = (sec: number) => `${(sec / 3600).toFixed(2)} h`;
    switch (n.kind) {
        case "download": {
            const sec = MODEL_FACTS[n.size].bytes / a.downloadBytesPerS;
            return { ...base, variant: n.size, seconds: sec, gpus: 0, basis: `${MODEL_FACTS[n.size].bytes / 1e9} GB at ${a.downloadBytesPerS / 1e6} MB/s (assumed)` };
        }
        case "teacher": {
            // keep=false: a Deployment at 0 replicas is ready at once; the generation pays its start.
            const sec = s.teacher.keep ? teacherLoadSeconds(a) : 0;
            return { ...base, seconds: sec, gpus: s.teacher.keep ? s.teacher.gpus : 0, basis: s.teacher.keep ? `vLLM start ${a.teacherStartS}s + 90B weights at ${a.volumeReadBytesPerS / 1e9} GB/s` : "0 replicas: started by the generation" };
        }
        case "generate": {
            const rows = datasetRows(s);
            const conc = Math.min(s.generate.batchSize, s.teacher.maxNumSeqs, 16);
            // Tensor parallel over more GPUs splits the weight reads; 85% efficiency beyond one GPU.
            const tp = s.teacher.gpus === 1 ? 1 : s.teacher.gpus * 0.85;
            const tokPerS = a.teacherTokensPerS16 * (conc / 16) * tp * (1 - a.teacherPrefillShare);
            const tokens = Math.min(a.cotTokensPerRow, s.generate.maxTokens);
            const rowsPerS = tokPerS / tokens;
            const start = s.teacher.keep ? 0 : teacherLoadSeconds(a);
            const sec = start + rows / rowsPerS;
            return {
                ...base, variant: "cot", seconds: sec, gpus: s.teacher.gpus,
                basis: `${rows} rows at ${rowsPerS.toFixed(2)} rows/s (teacher ~${Math.round(tokPerS)} tok/s, ${tokens} tokens/row, assumed)${start ? ` + teacher start ${Math.round(start)}s` : ""} = ${h(sec)}`,
            };
        }
        case "train": {
            const v = n.train;
            const rows = datasetRows(s);
            const { steps, samples } = epochSamples(rows, v);
            const { sps, basis } = trainSamplesPerS(v, bench);
            // Model load once, merged weights written every epoch.
            const io = load(v.model) + v.epochs * MODEL_FACTS[v.model].bytes / a.volumeWriteBytesPerS;
            const sec = v.epochs * samples / sps + io;
            return {
                ...base, variant: n.variant, seconds: sec, gpus: 1,
                basis: `${v.epochs} epochs x ${steps} steps x ${v.batchSize * v.gradientAccumulationSteps} samples; ${basis}; + load/checkpoints ${Math.round(io)}s = ${h(sec)}`,
            };
        }
        case "sample": {
            const sec = load(n.model.size) + s.sample.maxNewTokens / a.readerTokensPerS[n.model.size];
            return { ...base, variant: n.model.name, seconds: sec, gpus: 1, basis: `load ${n.model.size} + ${s.sample.maxNewTokens} tokens at ${a.readerTokensPerS[n.model.size]} tok/s (assumed)` };
        }
        case "evaluate": {
            const rows = Math.min(s.evaluate.limit ?? CHARTQA_ROWS.test, CHARTQA_ROWS.test) * s.evaluate.tasks.length;
            const perRow = a.evalTokensPerRow / a.readerTokensPerS[n.model.size];
            const sec = load(n.model.size) + rows * perRow;
            return {
                ...base, variant: n.model.name, seconds: sec, gpus: 1,
                basis: `${rows} rows (ChartQA test; other tasks taken as the same size) x ${perRow.toFixed(1)} s/row (${a.evalTokensPerRow} tokens at ${a.readerTokensPerS[n.model.size]} tok/s, assumed) = ${h(sec)}`,
            };
        }
        case "benchmark":
            // Two settings x (2 warmup + 3 timed steps) plus compile: about 6 minutes on an H100 for five settings.
            return { ...base, variant: n.variant, seconds: 600, gpus: 1, basis: "the throughput benchmark: ~10 min (compile, 2 settings x 5 steps)" };
        case "report":
            return { ...base, seconds: a.reportS, gpus: 0, basis: "assumed" };
    }
}

/** One estimate per stage node of the update, in DAG order. */
export function estimateStages(s: Settings, opts: { bench?: BenchFigure[]; assumptions?: Partial<Assumptions> } = {}): StageEstimate[] {
    const a = { ...DEFAULT_ASSUMPTIONS, ...opts.assumptions };
    return stageGraph(s).map((n) => estimateNode(s, n, a, opts.bench ?? []));
}

// ---------------------------------------------------------------------------------------------------
// Schedule, timeouts, --parallel

export interface PlannedStage extends StageEstimate {
    readonly start: number;
    readonly end: number;
}

/**
 * As-soon-as-possible schedule with enough GPUs and engine slots: every stage starts when the last
 * stage it waits for ends. The makespan is a lower bound of the real one; the critical path is the
 * chain of stages that decides it.
 */
export function plan(graph: StageNode[], est: StageEstimate[]): { stages: PlannedStage[]; makespan: number; criticalPath: NodeId[]; gpuHours: number } {
    const byId = new Map(est.map((e) => [e.id, e]));
    const cp = criticalPath(graph, (n) => byId.get(n.id)!.seconds);
    const stages: PlannedStage[] = graph.map((n) => ({ ...byId.get(n.id)!, ...cp.times.get(n.id)! }));
    const gpuHours = stages.reduce((h, p) => h + p.gpus * p.seconds / 3600, 0);
    return { stages, makespan: cp.seconds, criticalPath: cp.path.map((p) => p.id), gpuHours };
}

/** `timing.<stage>.timeout` shorter than the stage's estimate: the real run would be cut off. */
export function timeoutProblems(s: Settings, est: StageEstimate[]): string[] {
    const out: string[] = [];
    for (const e of est) {
        const timeout = s.timing[e.stage].timeout;
        if (e.seconds > timeout) {
            out.push(`${PROJECT}:timing.${e.stage}.timeout is ${fmtDuration(timeout)} but ${e.id} is estimated at ${fmtDuration(e.seconds)} (${e.basis}): raise it to at least ${fmtDuration(Math.ceil(e.seconds * 1.25 / 60) * 60)}`);
        }
    }
    return out;
}

/**
 * The `pulumi up --parallel` a stack needs so that no stage waits for an engine slot: each awaited
 * Job holds one slot for its whole run, so the slots must cover the most awaited Jobs that can run
 * at once. That is the width of the DAG's partial order over the awaited Jobs (Dilworth: the
 * number of Jobs minus a maximum matching of the "must come before" relation), whatever the
 * durations. The teacher (a Deployment, ready at once at 0 replicas) is not counted.
 */
export function requiredParallel(graph: StageNode[], est: StageEstimate[]): { parallel: number; gpuJobs: number; jobs: NodeId[] } {
    const awaited = new Set(est.filter((e) => e.awaited && e.stage !== "teacher").map((e) => e.id));
    const deps = new Map(graph.map((n) => [n.id, n.deps]));
    // before(a) = every node a transitively waits for
    const memo = new Map<NodeId, Set<NodeId>>();
    const before = (id: NodeId): Set<NodeId> => {
        let r = memo.get(id);
        if (r) return r;
        r = new Set();
        for (const d of deps.get(id) ?? []) {
            r.add(d);
            for (const x of before(d)) r.add(x);
        }
        memo.set(id, r);
        return r;
    };
    const jobs = [...awaited];
    const width = (ids: NodeId[]) => {
        // bipartite matching u -> v where u must come before v (Kuhn's augmenting paths)
        const matchOf = new Map<NodeId, NodeId>();
        const tryAug = (u: NodeId, seen: Set<NodeId>): boolean => {
            for (const v of ids) {
                if (v === u || seen.has(v) || !before(v).has(u)) continue;
                seen.add(v);
                const w = matchOf.get(v);
                if (w === undefined || tryAug(w, seen)) {
                    matchOf.set(v, u);
                    return true;
                }
            }
            return false;
        };
        let m = 0;
        for (const u of ids) if (tryAug(u, new Set())) m++;
        return ids.length - m;
    };
    const gpu = jobs.filter((id) => (est.find((e) => e.id === id)?.gpus ?? 0) > 0);
    return { parallel: Math.max(1, width(jobs)), gpuJobs: width(gpu), jobs };
}

/** `pulumi up`'s default --parallel: 4 x the CPUs of the machine that runs it (8 on 2 cores). */
export function pulumiDefaultParallel(cpus: number): number {
    return 4 * cpus;
}

// ---------------------------------------------------------------------------------------------------
// What preview says

/**
 * What the estimator knows of a stack before anything runs, for `pulumi preview`/`up` and `render`:
 * warnings that name the key to change (a stage timeout shorter than its estimate, a `--parallel`
 * that would serialise stages) and the plan's figures (makespan, GPU-hours, cost). `parallel` is the
 * engine's (PULUMI_NODEJS_PARALLEL in a program), when known.
 */
export function previewNotes(s: Settings, parallel?: number): { warnings: string[]; info: string[] } {
    const graph = stageGraph(s);
    const est = estimateStages(s);
    const p = plan(graph, est);
    const need = requiredParallel(graph, est);
    const warnings = timeoutProblems(s, est);
    if (parallel !== undefined && parallel > 0 && parallel < need.parallel) {
        warnings.push(`pulumi up --parallel ${parallel} would serialise stages: up to ${need.parallel} awaited Jobs can run at once (each holds an engine slot for its whole run); run pulumi up --parallel ${need.parallel}`);
    }
    const price = s.cluster.gpuHourPrice;
    const cost = price ? `, about ${(p.gpuHours * price.amount).toFixed(0)} ${price.currency} (cluster.gpuHourPrice)` : "";
    const info = graph.length === 0 ? [] : [
        `estimated makespan ${fmtDuration(p.makespan)} with a GPU for every stage, ${p.gpuHours.toFixed(1)} GPU-hours${cost}; the stack needs pulumi up --parallel >= ${need.parallel} (npm run rehearse -- --stack ${s.stack} --plan-only shows each stage's estimate and its basis)`,
    ];
    return { warnings, info };
}

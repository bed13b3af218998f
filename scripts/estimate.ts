// Estimated real duration of every stage of an update, from the stack's settings alone (pure: no
// cluster, no files unless a benchmark result is passed in). The rehearsal (scripts/rehearse.ts)
// scales these to simulated seconds, checks the stage timeouts against them and computes the
// `--parallel` a stack needs from the DAG.
//
// THESE ARE ESTIMATES. Every figure below says where it comes from; the only measured ones are the
// fine-tune throughputs: each fine-tune's figure is the measurement of its own model, levers and
// micro-batch in bench/results/ (config/measured.ts; images/trainer/bench_finetune.py on the GPU it
// names), or in a benchmark result passed with --bench, which comes first. A figure measured on
// another GPU than an MI300X is converted by the ratio of the two GPUs' peak dense bf16 throughput:
// a named assumption (MI300X_CONVERSION), printed in every plan line that uses it.
import { CHARTQA_ROWS, distributedStepsPerEpoch, MODEL_FACTS, MULTI_GPU_SCALING_EFFICIENCY, multiGpuSpeedup, stepsPerEpoch } from "../config/facts";
import { Levers, MEASURED, Measured, plannable, readBenchResult, sameLevers } from "../config/measured";
import { ModelSize, Settings, StageName } from "../config";
import { NodeId, stageGraph, StageNode } from "../components/graph";
import { PROJECT } from "../contract";
import { criticalPath } from "../sim/critical-path";
import { fmtDuration } from "./duration";

export { fmtDuration, stageGraph };
export type { StageNode };

// ---------------------------------------------------------------------------------------------------
// Figures and assumptions

/** Peak dense bf16 TFLOP/s of an MI300X (AMD data sheet, no sparsity). */
export const MI300X_PEAK_BF16_TFLOPS = 1307.4;
/** The named assumption that turns a figure measured on another GPU into an MI300X's: samples/s
 * scale with peak dense bf16 throughput. Real ratios depend on kernels (ROCm's against CUDA's); an
 * MI300X measurement (rehearse --bench <file>) replaces it. */
export const MI300X_CONVERSION = "assumption MI300X_CONVERSION: samples/s x MI300X/measured-GPU peak dense bf16";

/** Where the estimates are for: an MI300X (the blog's GPU, the default), or the GPU each measurement
 * was taken on (no conversion: what `rehearse --on-measured-gpu` prints, to check against the
 * benchmark's own projection). */
export type EstimateTarget = "mi300x" | "measured";

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

/** The settings of a training benchmark result (bench_finetune.py's JSON, or a log with its
 * `COTVR_BENCH` line), for --bench. */
export function parseBench(text: string, source: string): Measured[] {
    return readBenchResult(text, source);
}

/** The measurement behind a fine-tune's figure: the --bench results first, then bench/results/; its
 * own model, levers and micro-batch, else the same levers at the nearest micro-batch. */
export function measurementFor(v: { model: ModelSize } & Levers & { microBatch?: number }, bench: readonly Measured[] = []): { m: Measured; exact: boolean } | undefined {
    for (const pool of [bench, MEASURED]) {
        const same = pool.filter((x) => x.model === v.model && plannable(x) && sameLevers(x, v));
        const exact = same.find((x) => v.microBatch === undefined || x.microBatch === v.microBatch);
        if (exact) return { m: exact, exact: true };
        if (same.length) {
            const near = same.reduce((a, x) => (Math.abs(x.microBatch - v.microBatch!) < Math.abs(a.microBatch - v.microBatch!) ? x : a));
            return { m: near, exact: false };
        }
    }
    return undefined;
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

/** samples/s of one fine-tune (on an MI300X, or on the GPU it was measured on), and where the figure
 * comes from: the measurement's file, setting and GPU, and the conversion when there is one. */
export function trainSamplesPerS(v: { model: ModelSize; microBatch?: number } & Levers, bench: readonly Measured[] = [], target: EstimateTarget = "mi300x"): { sps: number; basis: string; measured: Measured } {
    const found = measurementFor(v, bench);
    if (!found) {
        const levers = `compile ${v.compile}, compileEncoder ${v.compileEncoder}, activationCheckpointing ${v.activationCheckpointing}, exactTiles ${v.exactTiles}`;
        throw new Error(`no fine-tune measurement of the ${v.model} with ${levers} in bench/results/: run images/trainer/bench_finetune.py with that setting and pass it with --bench`);
    }
    const { m, exact } = found;
    let basis = `${m.samplesPerS.toFixed(2)} samples/s measured on ${m.device} (${m.file} ${m.setting}${exact ? "" : `, nearest measured micro-batch to ${v.microBatch}`})`;
    let sps = m.samplesPerS;
    if (target === "mi300x" && !/MI300X/i.test(m.device)) {
        if (!(m.peakTflops && m.peakTflops > 0)) throw new Error(`${m.file}: measured on ${m.device} without peak_tflops: cannot convert to an MI300X`);
        const k = MI300X_PEAK_BF16_TFLOPS / m.peakTflops;
        sps *= k;
        basis += ` x${k.toFixed(2)} (${MI300X_CONVERSION}) = ${sps.toFixed(2)} samples/s on an MI300X (estimate)`;
    }
    return { sps, basis, measured: m };
}

/** Optimizer steps and samples of one epoch, counted as the recipe counts them (config/facts.ts
 * stepsPerEpoch: the last partial batch is dropped), whole epochs or max_steps_per_epoch. */
export function epochSamples(rows: number, v: { batchSize: number; gradientAccumulationSteps: number; maxStepsPerEpoch: number | null }): { steps: number; samples: number } {
    const steps = stepsPerEpoch(rows, v);
    return { steps, samples: steps * v.batchSize * v.gradientAccumulationSteps };
}

function estimateNode(s: Settings, n: StageNode, a: Assumptions, bench: readonly Measured[], target: EstimateTarget): StageEstimate {
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
            return { ...base, seconds: sec, gpus: s.teacher.keep ? s.teacher.gpus * s.teacher.replicas : 0, basis: s.teacher.keep ? `vLLM start ${a.teacherStartS}s + 90B weights at ${a.volumeReadBytesPerS / 1e9} GB/s` : "0 replicas: started by the generation" };
        }
        case "generate": {
            const rows = datasetRows(s);
            const conc = Math.min(s.generate.batchSize, s.teacher.maxNumSeqs, 16);
            // Tensor parallel over more GPUs splits the weight reads; 85% efficiency beyond one GPU.
            const tp = s.teacher.gpus === 1 ? 1 : s.teacher.gpus * 0.85;
            // Each replica serves its own batchSize share of the requests (the concurrency scales with them).
            const tokPerS = a.teacherTokensPerS16 * (conc / 16) * tp * (1 - a.teacherPrefillShare) * s.teacher.replicas;
            const tokens = Math.min(a.cotTokensPerRow, s.generate.maxTokens);
            const rowsPerS = tokPerS / tokens;
            const start = s.teacher.keep ? 0 : teacherLoadSeconds(a);
            const sec = start + rows / rowsPerS;
            return {
                ...base, variant: "cot", seconds: sec, gpus: s.teacher.gpus * s.teacher.replicas,
                basis: `${rows} rows at ${rowsPerS.toFixed(2)} rows/s (${s.teacher.replicas > 1 ? `${s.teacher.replicas} teachers, ` : ""}teacher ~${Math.round(tokPerS)} tok/s, ${tokens} tokens/row, assumed)${start ? ` + teacher start ${Math.round(start)}s` : ""} = ${h(sec)}`,
            };
        }
        case "train": {
            const v = n.train;
            const rows = datasetRows(s);
            const effective = v.batchSize * v.gradientAccumulationSteps;
            const { steps, samples } = v.gpus === 1 ? epochSamples(rows, v) : (() => {
                const st = distributedStepsPerEpoch(rows, { batchSize: v.microBatch, gradientAccumulationSteps: v.accumulation, maxStepsPerEpoch: v.maxStepsPerEpoch }, v.gpus);
                return { steps: st, samples: st * effective };
            })();
            const one = trainSamplesPerS(v, bench, target);
            // N GPUs: one GPU's measured rate at the rank's micro-batch x the assumed speed-up.
            const speedup = multiGpuSpeedup(v.gpus);
            const sps = one.sps * speedup;
            const basis = v.gpus === 1 ? one.basis
                : `${one.basis} x ${speedup.toFixed(2)} for ${v.gpus} GPUs (assumption MULTI_GPU_SCALING_EFFICIENCY ${MULTI_GPU_SCALING_EFFICIENCY} per further GPU)`;
            // Model load once, merged weights written every epoch.
            const io = load(v.model) + v.epochs * MODEL_FACTS[v.model].bytes / a.volumeWriteBytesPerS;
            const sec = v.epochs * samples / sps + io;
            return {
                ...base, variant: n.variant, seconds: sec, gpus: v.gpus,
                basis: `${v.epochs} epochs x ${steps} steps x ${effective} samples; ${basis}; + load/checkpoints ${Math.round(io)}s = ${h(sec)}`,
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
        case "benchmark": {
            // The blog's exact setting and the shipped one, 12 timed steps each after the warm-up (compile
            // included): on the H200 (bench/raw/h200/) the 11B took ~2 + ~3 minutes, the 90B ~5.5 + ~3.5
            // at 3 steps, so ~12 at 12 (a 90B blog step is ~37 s).
            const sec = n.train.model === "90b" ? 900 : 360;
            return { ...base, variant: n.variant, seconds: sec, gpus: 1, basis: `the throughput benchmark: ~${sec / 60} min (2 settings x 12 timed steps, compile; measured on an H200)` };
        }
        case "report":
            return { ...base, seconds: a.reportS, gpus: 0, basis: "assumed" };
    }
}

/** One estimate per stage node of the update, in DAG order. */
export function estimateStages(s: Settings, opts: { bench?: readonly Measured[]; assumptions?: Partial<Assumptions>; target?: EstimateTarget } = {}): StageEstimate[] {
    const a = { ...DEFAULT_ASSUMPTIONS, ...opts.assumptions };
    return stageGraph(s).map((n) => estimateNode(s, n, a, opts.bench ?? [], opts.target ?? "mi300x"));
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
export function plan(graph: StageNode[], est: StageEstimate[]): { stages: PlannedStage[]; makespan: number; criticalPath: NodeId[]; gpuHours: number; peakGpus: number } {
    const byId = new Map(est.map((e) => [e.id, e]));
    const cp = criticalPath(graph, (n) => byId.get(n.id)!.seconds);
    const stages: PlannedStage[] = graph.map((n) => ({ ...byId.get(n.id)!, ...cp.times.get(n.id)! }));
    const gpuHours = stages.reduce((h, p) => h + p.gpus * p.seconds / 3600, 0);
    return { stages, makespan: cp.seconds, criticalPath: cp.path.map((p) => p.id), gpuHours, peakGpus: peakGpus(stages) };
}

/** The most GPUs the schedule holds at once: the DAG's width in GPUs, an N-GPU stage counting N. */
export function peakGpus(stages: readonly PlannedStage[]): number {
    const edges = stages.filter((p) => p.gpus > 0 && p.end > p.start).flatMap((p) => [{ t: p.start, d: p.gpus }, { t: p.end, d: -p.gpus }]);
    // Ends before starts at the same instant: a stage that follows another does not overlap it.
    edges.sort((a, b) => a.t - b.t || a.d - b.d);
    let now = 0, peak = 0;
    for (const e of edges) peak = Math.max(peak, (now += e.d));
    return peak;
}

/** `timing.<stage>.timeout` shorter than the stage's estimate: the real run would be cut off. */
export function timeoutProblems(s: Settings, est: StageEstimate[]): string[] {
    const out: string[] = [];
    for (const e of est) {
        const timeout = s.timing[e.stage].timeout;
        // A multi-GPU fine-tune's deadline is the timeout / its assumed speed-up (components/train.ts).
        const speedup = e.stage === "train" && e.gpus > 1 ? multiGpuSpeedup(e.gpus) : 1;
        const deadline = Math.ceil(timeout / speedup);
        if (e.seconds > deadline) {
            const scaled = speedup > 1 ? ` (its ${e.gpus}-GPU deadline: ${fmtDuration(deadline)}, the timeout / ${speedup.toFixed(2)})` : "";
            out.push(`${PROJECT}:timing.${e.stage}.timeout is ${fmtDuration(timeout)}${scaled} but ${e.id} is estimated at ${fmtDuration(e.seconds)} (${e.basis}): raise it to at least ${fmtDuration(Math.ceil(e.seconds * speedup * 1.25 / 60) * 60)}`);
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
    // What a multi-GPU fine-tune cannot keep of the single-device run (config/derive.ts).
    const gpuNotes = s.defaulted.filter((d) => /^train\.variants\.[^.]+\.gpus = /.test(d)).map((d) => `${PROJECT}:${d}`);
    const info = graph.length === 0 ? gpuNotes : [
        ...gpuNotes,
        `estimated makespan ${fmtDuration(p.makespan)} with a GPU for every stage, ${p.gpuHours.toFixed(1)} GPU-hours${cost}; the stack needs pulumi up --parallel >= ${need.parallel} (npm run rehearse -- --stack ${s.stack} --plan-only shows each stage's estimate and its basis)`,
    ];
    return { warnings, info };
}

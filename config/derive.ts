// Validated settings from raw stack config: the schema's parse, the model-dependent defaults, the
// micro-batch plan, and the checks across keys that the schema alone cannot state.
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";
import { PROJECT, SECRET_KEYS, SecretKey, STAGE_NAMES, StageName, STAGES } from "../contract";
import { BLOG_MICRO_BATCH, CHARTQA_ROWS, DATA_BYTES, distributedStepsPerEpoch, MODEL_DEFAULTS, MODEL_FACTS, peakGiB, trainPodSize, stepsPerEpoch } from "./facts";
import { BLOG_LEVERS, blogMeasurement, Levers, MEASURED, Measured, plannable } from "./measured";
import { configSchema, MODEL_SIZES, ModelSize, quantityBytes, RawSettings, RawTrainVariant } from "./schema";

/** A train variant with its model-dependent defaults resolved and its micro-batch planned. */
export type TrainVariant = Omit<RawTrainVariant, "loraRank" | "loraAlpha" | "compile" | "compileEncoder" | "activationCheckpointing" | "exactTiles" | "memory" | "shmSize"> & {
    /** Memory request and limit, and /dev/shm, sized for the variant's ranks. */
    readonly memory: string;
    readonly shmSize: string;
    readonly loraRank: number;
    readonly loraAlpha: number;
    readonly compile: boolean;
    readonly compileEncoder: boolean;
    readonly exactTiles: boolean;
    readonly activationCheckpointing: boolean;
    /** Samples per micro-batch of one rank (the recipe's batch_size) and the accumulation that keeps the
     * effective batch: microBatch x accumulation x gpus = batchSize x gradientAccumulationSteps. */
    readonly microBatch: number;
    readonly accumulation: number;
    /** The recipe's text_bucket: text padded to a multiple of this many tokens, as measured (1: none). */
    readonly textBucket: number;
};

/** What one evaluation or sample reads. */
export interface ModelRef {
    /** "base-11b", "base-90b" or a train variant name. */
    readonly name: string;
    readonly size: ModelSize;
    /** The train variant, for tuned models. */
    readonly trainVariant?: string;
}

/** Validated settings. Secret values are not in here: they travel beside (config/pulumi.ts -> Pipeline). */
export interface Settings extends Omit<RawSettings, "run" | "stages" | "train" | SecretKey> {
    /** Stages of this update, defaults resolved. */
    readonly stages: Record<StageName, boolean>;
    /** Train variants with their model-dependent defaults resolved. */
    readonly train: { readonly variants: Record<string, TrainVariant> };
    /** A notification webhook is set (its URL stays in the Secret, key SECRET_DATA_KEYS.notifyWebhook). */
    readonly notify: boolean;
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

/** The keys the schema allows in the object at `path` (through defaults, optionals and records). */
function keysAt(path: PropertyKey[]): string[] {
    const unwrap = (t: any): any => {
        while (t?.def && ["default", "prefault", "optional", "nullable", "pipe"].includes(t.def.type)) t = t.def.innerType ?? t.def.in;
        return t;
    };
    let t: any = unwrap(configSchema);
    for (const p of path) {
        if (t?.shape) t = unwrap(t.shape[p as string]);
        else if (t?.def?.type === "record") t = unwrap(t.def.valueType);
        else return [];
    }
    return t?.shape ? Object.keys(t.shape) : [];
}

/** " (did you mean X?)" for the allowed key closest to a misspelt one, if one is close. */
export function didYouMean(k: string, allowed: string[]): string {
    // Edits between two keys, a swap of neighbours counting as one (optimal string alignment).
    const distance = (a: string, b: string): number => {
        const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
        for (let i = 1; i <= a.length; i++) {
            for (let j = 1; j <= b.length; j++) {
                d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
                if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
            }
        }
        return d[a.length][b.length];
    };
    const scored = allowed.map((a) => ({ a, d: distance(k.toLowerCase(), a.toLowerCase()) })).sort((x, y) => x.d - y.d);
    const best = scored[0];
    return best && best.d <= Math.max(1, Math.floor(k.length / 3)) ? ` (did you mean ${best.a}?)` : "";
}

/** Rows the fine-tunes train on, when the stack knows it: the generation's limit, or the ChartQA split. */
export function trainingRows(c: Pick<RawSettings, "generate">): number | undefined {
    const g = c.generate;
    const full = g.source === "HuggingFaceM4/ChartQA" ? CHARTQA_ROWS[g.inputSplit] : undefined;
    return g.limit !== undefined && full !== undefined ? Math.min(g.limit, full) : (g.limit ?? full);
}

const LEVER_KEYS = ["compile", "compileEncoder", "activationCheckpointing", "exactTiles"] as const;

/** The speed levers and micro-batch a fine-tune runs with, and why. */
export interface SpeedPlan extends Levers {
    readonly microBatch: number;
    /** The text bucket the measurement ran with, which the recipe then runs with too (1: the blog's padding). */
    readonly textBucket: number;
    /** The measurement the plan is taken from (none: the blog's levers, nothing measured beats them here). */
    readonly measured?: Measured;
    /** The blog's exact setting measured in the same kind of run, when there is one. */
    readonly blog?: Measured;
    /** False when not even one sample fits by the memory model. */
    readonly fits: boolean;
    readonly why: string;
}

/**
 * Speed, not size: of the measured settings (bench/results/) of this model whose micro-batch divides
 * batchSize, that agree with the levers and micro-batch the stack fixes, and that fit gpuGiB by the
 * memory model, the one with the most samples/s, if it is at least the blog's exact setting measured
 * in the same run. Otherwise (nothing measured fits, matches or beats the blog here) the blog's levers
 * (with the stack's own) at the largest micro-batch that fits: never slower than the blog's setting.
 * Opt-in settings (samples grouped by tiles) are never planned.
 */
export function planSpeed(model: ModelSize, batchSize: number, gpuGiB: number, fixed: Partial<Levers>, micro: number | "auto", from: readonly Measured[] = MEASURED): SpeedPlan {
    const agrees = (x: Levers) => LEVER_KEYS.every((k) => fixed[k] === undefined || fixed[k] === x[k]);
    const anyBlog = blogMeasurement(model, BLOG_MICRO_BATCH[model], from);
    const candidates = from.filter((x) => x.model === model && plannable(x) && batchSize % x.microBatch === 0 && agrees(x)
        && (micro === "auto" || x.microBatch === micro) && peakGiB(model, x.microBatch, x, from) <= gpuGiB);
    const best = candidates.reduce<Measured | undefined>((a, x) => (!a || x.samplesPerS > a.samplesPerS ? x : a), undefined);
    // The blog's setting measured in the same run as the best, where that run measured it.
    const blog = (best && blogMeasurement(model, BLOG_MICRO_BATCH[model], from.filter((x) => x.file === best.file))) ?? anyBlog;
    const sps = (x: Measured) => `${x.samplesPerS.toFixed(2)} samples/s`;
    if (best && (!blog || best.samplesPerS >= blog.samplesPerS)) {
        const vs = blog ? `, ${(best.samplesPerS / blog.samplesPerS).toFixed(2)}x the blog's ${blog.setting} (${sps(blog)})` : "";
        return {
            compile: best.compile, compileEncoder: best.compileEncoder, activationCheckpointing: best.activationCheckpointing,
            exactTiles: best.exactTiles, microBatch: best.microBatch, textBucket: best.textBucket, measured: best, blog, fits: true,
            why: `fastest measured setting that fits ${gpuGiB.toFixed(0)} GiB: ${best.setting} ${sps(best)} on ${best.device} (bench/results/${best.file})${vs}`,
        };
    }
    const levers: Levers = { ...BLOG_LEVERS, ...Object.fromEntries(LEVER_KEYS.filter((k) => fixed[k] !== undefined).map((k) => [k, fixed[k]])) };
    const divisors = Array.from({ length: batchSize }, (_, i) => i + 1).filter((m) => batchSize % m === 0);
    const fitting = (micro === "auto" ? divisors : [micro]).filter((m) => peakGiB(model, m, levers, from) <= gpuGiB);
    const m = fitting.pop();
    const reason = best ? `no measured setting beats the blog's (${blog!.setting}, ${sps(blog!)}) at ${gpuGiB.toFixed(0)} GiB` : `no measured setting fits ${gpuGiB.toFixed(0)} GiB and the stack's levers`;
    return { ...levers, microBatch: m ?? (micro === "auto" ? 1 : micro), textBucket: 1, blog, fits: m !== undefined, why: `${reason}: the blog's levers, largest micro-batch that fits` };
}

function resolveVariants(raw: Record<string, RawTrainVariant>, gpuGiB: number, defaulted: string[], p: Problem): Record<string, TrainVariant> {
    return Object.fromEntries(Object.entries(raw).map(([name, v]) => {
        const d = MODEL_DEFAULTS[v.model];
        const n = v.gpus;
        for (const k of ["loraRank", "loraAlpha"] as const) {
            if (v[k] === undefined) defaulted.push(`train.variants.${name}.${k} = ${d[k]} (default for ${v.model}: ${d.why})`);
        }
        const fixed: Partial<Levers> = Object.fromEntries(LEVER_KEYS.filter((k) => v[k] !== undefined).map((k) => [k, v[k]]));
        // The image patches only the single-device recipe to compile the encoder and encode exact tiles.
        if (n > 1 && v.compileEncoder === undefined) fixed.compileEncoder = false;
        if (n > 1 && v.exactTiles === undefined) fixed.exactTiles = false;
        // What one rank's micro-batches and accumulation must make: the whole effective batch on one
        // GPU (the blog's path, unchanged), 1/N of it on each of N ranks.
        const share = n === 1 ? v.batchSize : rankShare(name, v, p);
        const plan = planSpeed(v.model, share, gpuGiB, fixed, v.microBatchSize);
        for (const k of LEVER_KEYS) {
            if (v[k] === undefined) {
                const why = n > 1 && k === "compileEncoder" ? "the distributed recipe compiles the decoder only"
                    : n > 1 && k === "exactTiles" ? "only the single-device recipe is patched" : plan.why;
                defaulted.push(`train.variants.${name}.${k} = ${plan[k]} (${why})`);
            }
        }
        const resolved = { loraRank: v.loraRank ?? d.loraRank, loraAlpha: v.loraAlpha ?? d.loraAlpha, compile: plan.compile, compileEncoder: plan.compileEncoder, activationCheckpointing: plan.activationCheckpointing, exactTiles: plan.exactTiles };
        const microBatch = checkMicroBatch(name, v, share, resolved, plan, gpuGiB, p);
        const accumulation = n === 1 ? (v.batchSize / microBatch) * v.gradientAccumulationSteps : Math.max(1, Math.floor(share / microBatch));
        if (v.microBatchSize === "auto" && (n > 1 || microBatch !== v.batchSize)) {
            const ranks = n > 1 ? ` x ${n} GPUs` : "";
            defaulted.push(`train.variants.${name}: micro-batch ${microBatch} x accumulation ${accumulation}${ranks} (effective batch ${v.batchSize * v.gradientAccumulationSteps}, ~${peakGiB(v.model, microBatch, resolved).toFixed(0)} GiB of ${gpuGiB.toFixed(0)}; ${plan.why})`);
        }
        const pod = trainPodSize(v.model, n);
        // The plan's text bucket belongs to its measured levers and micro-batch (with others, none), and
        // bounds the shapes compiled graphs see: eager, the blog's own padding. Only the patched
        // single-device recipe reads it.
        const compiled = resolved.compile || resolved.compileEncoder;
        const measured = microBatch === plan.microBatch && LEVER_KEYS.every((k) => resolved[k] === plan[k]);
        const textBucket = n === 1 && compiled && measured ? plan.textBucket : 1;
        return [name, { ...v, ...resolved, microBatch, accumulation, textBucket, memory: v.memory ?? pod.memory, shmSize: v.shmSize ?? pod.shmSize }];
    }));
}

/** The samples each of N ranks contributes to one optimizer step: the effective batch / N, which must
 * be whole (a config error naming the keys otherwise). */
function rankShare(name: string, v: RawTrainVariant, p: Problem): number {
    const effective = v.batchSize * v.gradientAccumulationSteps;
    if (effective % v.gpus !== 0) {
        p(`train.variants.${name}.gpus`, `${v.gpus} GPUs cannot share the effective batch batchSize ${v.batchSize} x gradientAccumulationSteps ${v.gradientAccumulationSteps} = ${effective} evenly (micro-batch x accumulation x gpus must equal it): use gpus that divide ${effective}, or change batchSize/gradientAccumulationSteps`);
        return 1;
    }
    return effective / v.gpus;
}

/** The planned micro-batch, or the configured one if it divides the rank's share (batchSize on one
 * GPU) and fits. Out of memory by the model is a config error, naming the fix. */
function checkMicroBatch(name: string, v: RawTrainVariant, share: number, levers: Levers, plan: SpeedPlan, gpuGiB: number, p: Problem): number {
    const at = `train.variants.${name}`;
    const divisors = Array.from({ length: share }, (_, i) => i + 1).filter((m) => share % m === 0);
    const need = (m: number) => `~${peakGiB(v.model, m, levers).toFixed(0)} GiB`;
    const checkpointing = levers.activationCheckpointing;
    if (v.microBatchSize !== "auto") {
        const m = v.microBatchSize;
        if (share % m !== 0) {
            const what = v.gpus === 1
                ? `batchSize ${v.batchSize}`
                : `each GPU's share of the effective batch (batchSize ${v.batchSize} x gradientAccumulationSteps ${v.gradientAccumulationSteps} / gpus ${v.gpus} = ${share})`;
            p(`${at}.microBatchSize`, `${m} does not divide ${what}: use one of ${divisors.join(", ")} or "auto"`);
        } else if (peakGiB(v.model, m, levers) > gpuGiB) {
            p(`${at}.microBatchSize`, `${m} samples need ${need(m)} by the memory model, more than cluster.gpuMemory (${gpuGiB.toFixed(0)} GiB): use "auto"${checkpointing ? "" : " or activationCheckpointing: true"}`);
        }
        return m;
    }
    if (!plan.fits) {
        p(`${at}.activationCheckpointing`, `even 1 sample needs ${need(1)} by the memory model, more than cluster.gpuMemory (${gpuGiB.toFixed(0)} GiB)${checkpointing ? ": the model does not fit this GPU" : ": set activationCheckpointing: true"}`);
        return 1;
    }
    return plan.microBatch;
}

/** Contradictions torchtune would only raise on the GPU, or that would silently train nothing. */
function checkTraining(c: RawSettings, trainings: [string, TrainVariant][], defaulted: string[], p: Problem): void {
    const rows = trainingRows(c);
    for (const [name, v] of trainings) {
        const at = `train.variants.${name}`;
        if (v.activationOffloading && !v.activationCheckpointing) {
            p(`${at}.activationOffloading`, "needs activationCheckpointing: true (torchtune raises: offloading only applies to checkpointed activations)");
        }
        if (rows === undefined) continue;
        // As the recipe counts them: micro-batches (drop_last) // accumulation.
        const steps = v.gpus === 1
            ? stepsPerEpoch(rows, { batchSize: v.microBatch, gradientAccumulationSteps: v.accumulation, maxStepsPerEpoch: v.maxStepsPerEpoch })
            : distributedStepsPerEpoch(rows, { batchSize: v.microBatch, gradientAccumulationSteps: v.accumulation, maxStepsPerEpoch: v.maxStepsPerEpoch }, v.gpus);
        const single = stepsPerEpoch(rows, { batchSize: v.batchSize, gradientAccumulationSteps: v.gradientAccumulationSteps, maxStepsPerEpoch: v.maxStepsPerEpoch });
        if (v.gpus > 1 && steps !== single) {
            // Not kept: torchtune's sampler repeats samples so every rank gets ceil(rows / N).
            const pad = Math.ceil(rows / v.gpus) * v.gpus - rows;
            defaulted.push(`${at}.gpus = ${v.gpus}: ${steps} optimizer steps per epoch, the single-device recipe's ${single} (the distributed sampler repeats ${pad} of the ${rows} rows so each GPU gets ${Math.ceil(rows / v.gpus)}); all the other steps see the same samples`);
        }
        if (steps === 0) {
            p(`${at}.batchSize`, `${rows} rows make no optimizer step: batchSize ${v.batchSize} x gradientAccumulationSteps ${v.gradientAccumulationSteps} must be at most the rows (torchtune drops the last partial batch)`);
        } else if (v.warmupSteps >= steps * v.epochs) {
            p(`${at}.warmupSteps`, `${v.warmupSteps} is not below the ${steps * v.epochs} optimizer steps of the run (${v.epochs} epochs x ${steps}): the learning rate would never leave warmup`);
        }
    }
}

/** The default CoT system prompt the generator sends (manifests/synthetic-data-kit/config.yaml). */
function defaultCotPrompt(): string {
    const file = path.join(__dirname, "..", "manifests", "synthetic-data-kit", "config.yaml");
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
        if (v.gpus > c.cluster.gpusPerNode) {
            p(`train.variants.${name}.gpus`, `${v.gpus} is more than cluster.gpusPerNode (${c.cluster.gpusPerNode}): one pod cannot span nodes; use at most ${c.cluster.gpusPerNode} (docs/multi-node.md says how more would run)`);
        }
        if (v.gpus > 1 && v.compileEncoder === true) {
            p(`train.variants.${name}.compileEncoder`, `true needs the single-device recipe the image patches (gpus: 1); torchtune's lora_finetune_distributed compiles the decoder only: leave it unset or false with gpus ${v.gpus}`);
        }
        if (v.gpus > 1 && v.exactTiles === true) {
            p(`train.variants.${name}.exactTiles`, `true needs the single-device recipe the image patches (gpus: 1); torchtune's lora_finetune_distributed pads tiles as the collate does: leave it unset or false with gpus ${v.gpus}`);
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

/** A stack that borrows claims lives in their owner's namespace: if it also owns that namespace and
 * does not retain it, its destroy deletes the namespace and with it the owner's claims and data. */
function checkBorrowedClaims(c: RawSettings, p: Problem): void {
    const borrowed = (["models", "data", "checkpoints", "results"] as const).filter((v) => c.storage[v].existingClaim);
    if (!c.cluster.createNamespace || c.storage.retainOnDestroy || borrowed.length === 0) return;
    const keys = borrowed.map((v) => `storage.${v}.existingClaim "${c.storage[v].existingClaim}"`).join(", ");
    p("cluster.createNamespace", `true with storage.retainOnDestroy false makes this stack's destroy delete the namespace "${c.cluster.namespace}", and with it the claims it borrows (${keys}) and their data: set cluster.createNamespace: false (the stack that created those claims owns the namespace), or storage.retainOnDestroy: true`);
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
                return i.keys.map((k) => `${key([...i.path, k])}: unknown key${nearMiss(k) || didYouMean(k, keysAt(i.path))}`).join("\n  - ");
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
    checkTraining(c, trainings, defaulted, p);
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
    checkBorrowedClaims(c, p);

    if (problems.length > 0) throw new ConfigError(problems, opts.source);
    const { hfToken, wandbApiKey, registryPassword, notifyWebhook, ...rest } = c;
    return { ...rest, notify: notifyWebhook !== undefined, train: { variants }, stages, stack: opts.stack, run, neededModels, evaluations, samples, trainings, defaulted };
}

// The pure half of `npm run status`: progress records from log text, one row per stage/variant from
// Job, Pod and Deployment objects, GPU-hours, ETA and cost, and the text screen. No I/O here: the
// objects come from scripts/status.ts (the Kubernetes API) or from recorded fixtures in the tests.
import pc from "picocolors";
import { EXIT_MEANINGS, LABELS, PROGRESS_PREFIX, STAGES, StageName, WATCHDOG_GRACE_SECONDS } from "../contract";
import { ms, podFinishedAt, podGpuHours, podGpus, podScheduledAt } from "../sim/gpu";
import { fmtDuration } from "./duration";
import { describePull, parseFailure, pullAdvice, PullKind, pullProblems } from "./imagepull";
import { describeExit, EXIT_ADVICE, parseExitFailure } from "./fatalexit";

export { EXIT_MEANINGS, fmtDuration, PROGRESS_PREFIX, podFinishedAt, podGpuHours, podGpus, podScheduledAt };

/** A timestamp as the API server writes it (JSON) or as @kubernetes/client-node deserializes it. */
export type Time = string | Date;

// Just the fields read here; @kubernetes/client-node's V1Job, V1Pod and V1Deployment fit these shapes.
export interface Meta {
    name?: string;
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    creationTimestamp?: Time;
    deletionTimestamp?: Time;
    ownerReferences?: { kind: string; name: string; uid: string }[];
}
export interface Condition {
    type: string;
    status: string;
    reason?: string;
    message?: string;
    lastTransitionTime?: Time;
}
export interface JobObject {
    metadata?: Meta;
    spec?: { suspend?: boolean; activeDeadlineSeconds?: number; backoffLimit?: number };
    status?: { startTime?: Time; completionTime?: Time; active?: number; succeeded?: number; failed?: number; conditions?: Condition[] };
}
export interface ContainerState {
    running?: { startedAt?: Time };
    terminated?: { exitCode: number; reason?: string; message?: string; startedAt?: Time; finishedAt?: Time };
    waiting?: { reason?: string; message?: string };
}
export interface PodObject {
    metadata?: Meta;
    spec?: { nodeName?: string; containers: { name: string; image?: string; resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> } }[] };
    status?: {
        phase?: string;
        reason?: string;
        message?: string;
        startTime?: Time;
        conditions?: Condition[];
        containerStatuses?: { name: string; image?: string; state?: ContainerState; lastState?: ContainerState; restartCount?: number }[];
    };
}
export interface DeploymentObject {
    metadata?: Meta;
    spec?: { replicas?: number; template?: { spec?: { containers?: { name?: string; args?: string[] }[] } } };
    status?: { replicas?: number; readyReplicas?: number; availableReplicas?: number; conditions?: Condition[] };
}

// ---------------------------------------------------------------------------------------------------
// Progress records (images/common/cotvr_common.py `Progress`; images/README.md "Progress records")

export interface ProgressRecord {
    v: number;
    stage: string;
    variant: string | null;
    unit: string;
    done: number;
    total: number | null;
    rate: number | null;
    ts: string;
    /** Stage fields: epoch, epochs, loss, lr, shard, shards, task, files, ... */
    [extra: string]: unknown;
}

/** The record of one `COTVR_PROGRESS {json}` line (the prefix may follow a log prefix), else undefined. */
export function parseProgress(line: string): ProgressRecord | undefined {
    const i = line.indexOf(PROGRESS_PREFIX);
    if (i < 0) return undefined;
    let rec: unknown;
    try {
        rec = JSON.parse(line.slice(i + PROGRESS_PREFIX.length));
    } catch {
        return undefined;
    }
    if (!rec || typeof rec !== "object" || Array.isArray(rec)) return undefined;
    const r = rec as Record<string, unknown>;
    // A record this reader does not understand (another version, no numbers) is no progress at all.
    if (r.v !== 1 || typeof r.done !== "number" || typeof r.unit !== "string") return undefined;
    return r as ProgressRecord;
}

/** Log lines; tqdm-style carriage-return updates count as lines of their own. */
function logLines(text: string): string[] {
    return text.split(/\r\n|\n|\r/);
}

/** The last progress record of a log (tail), if any. */
export function lastProgress(log: string): ProgressRecord | undefined {
    const lines = logLines(log);
    for (let i = lines.length - 1; i >= 0; i--) {
        const r = parseProgress(lines[i]);
        if (r) return r;
    }
    return undefined;
}

/** The last `<program>: error: ...` line (images/README.md: every expected failure prints one). */
export function lastErrorLine(log: string): string | undefined {
    const lines = logLines(log);
    for (let i = lines.length - 1; i >= 0; i--) {
        const l = lines[i].trim();
        if (/^[\w.\-/]+: error: /.test(l)) return l;
    }
    return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Failure reasons

export interface Failure {
    /** One line: why, e.g. "exit 3: missing input", "OOMKilled", "DeadlineExceeded: ...". */
    reason: string;
    exitCode?: number;
    /** The last `<program>: error: ...` line of the log, when the log is still there. */
    errorLine?: string;
    /** The command that shows the whole log. */
    logsCommand: string;
    /** What to do next, when the program knows (an image that cannot be pulled). */
    next?: string;
}

/** A container that cannot pull its image: from its pod while it waits, or from the annotation
 * `pulumi up` wrote on the Job it failed for it (ANNOTATIONS.failure; the pod is gone by then). */
export interface ImagePull {
    image: string;
    container: string;
    /** The kubelet's waiting reason: ErrImagePull, ImagePullBackOff, InvalidImageName, ... */
    reason: string;
    message: string;
    /** fatal: will not heal (not found, unauthorized, bad name); transient: may (a registry hiccup). */
    kind: PullKind;
    /** The stage whose pod it is (a generation is failed for its teacher's image). */
    stage?: string;
    /** What to do: the stack key to fix, or the pull Secret. */
    next: string;
}

const MAIN = "main";

function mainTerminated(p: PodObject) {
    const c = p.status?.containerStatuses?.find((s) => s.name === MAIN) ?? p.status?.containerStatuses?.[0];
    return c?.state?.terminated ?? c?.lastState?.terminated;
}

/** Why a Job failed, from its Failed condition and its last failed pod (or `pulumi up`'s annotation). */
export function failureReason(job: JobObject, pods: PodObject[]): string {
    const pulled = parseFailure(job.metadata?.annotations);
    if (pulled) return `image pull failed, so pulumi up failed the Job: ${pullWords(pulled)}`;
    // Its Failed reason reads DeadlineExceeded: `pulumi up` rewrote it to end its wait (fatalexit.ts).
    const exited = parseExitFailure(job.metadata?.annotations);
    if (exited) return `bad input: ${describeExit(exited)}`;
    const failed = job.status?.conditions?.find((c) => c.type === "Failed" && c.status === "True");
    const lastFailed = [...pods].filter((p) => p.status?.phase === "Failed").sort(byCreation).pop();
    const parts: string[] = [];
    if (failed?.reason === "DeadlineExceeded") {
        parts.push(`DeadlineExceeded: ran past activeDeadlineSeconds${job.spec?.activeDeadlineSeconds ? ` (${fmtDuration(job.spec.activeDeadlineSeconds)}, timing.<stage>.timeout)` : ""}`);
    }
    if (lastFailed) {
        if (lastFailed.status?.reason === "Evicted") parts.push(`Evicted: ${lastFailed.status.message ?? "the node reclaimed resources"}`);
        const t = mainTerminated(lastFailed);
        if (t?.reason === "OOMKilled") parts.push(`OOMKilled (exit ${t.exitCode}): the container ran out of memory`);
        else if (t && !parts.length) parts.push(`exit ${t.exitCode}: ${EXIT_MEANINGS[t.exitCode] ?? t.reason ?? "failed"}`);
    }
    if (!parts.length && failed) parts.push(`${failed.reason ?? "Failed"}${failed.message ? `: ${failed.message}` : ""}`);
    return parts.join("; ") || "failed";
}

/** The failure in words, naming the teacher when the generation was failed for the teacher's image. */
function pullWords(p: { image: string; reason: string; message: string; stage?: string }, rowStage?: string): string {
    return `${p.stage === "teacher" && rowStage !== "teacher" ? "its teacher's " : ""}${describePull(p)}`;
}

/** The first container of these pods that cannot pull its image, as a row shows it. */
function podsImagePull(pods: PodObject[], images?: Record<string, string>): ImagePull | undefined {
    for (const p of pods) {
        const [first] = pullProblems(p);
        if (first) {
            const stage = p.metadata?.labels?.[LABELS.stage];
            return { image: first.image, container: first.container, reason: first.reason, message: first.message, kind: first.kind, ...(stage ? { stage } : {}), next: pullAdvice(first, images) };
        }
    }
    return undefined;
}

// ---------------------------------------------------------------------------------------------------
// GPU-hours: sim/gpu.ts (podGpus, podScheduledAt, podFinishedAt, podGpuHours), shared with `rehearse`
// and the e2e tier so that a rehearsal and a real run count alike.

// ---------------------------------------------------------------------------------------------------
// Rows

export type State = "pending" | "running" | "complete" | "failed" | "suspended" | "starting" | "ready" | "scaled-to-zero";

export interface Price {
    amount: number;
    currency: string;
}

export interface PodRow {
    name: string;
    phase: string;
    node?: string;
    gpus: number;
    scheduledAt?: string;
    finishedAt?: string;
    gpuHours: number;
}

export interface StageRow {
    stage: string;
    variant: string | null;
    kind: "Job" | "Deployment";
    /** The Job's (or Deployment's) name. */
    name: string;
    state: State;
    /** Why it waits (unschedulable, image pull, ...), when pending. */
    detail?: string;
    /** The latest progress record; null: none in the log, or no log (kwok pods, a deleted node). */
    progress: ProgressRecord | null;
    /** done/total in [0, 1], when both are known. */
    fraction: number | null;
    /** Seconds since the progress record was printed (the log may have stopped: a hung program). */
    progressAgeSeconds: number | null;
    /** Seconds to go, from the record's rate (counted from its ts); null when unknown or the record is stale. */
    etaSeconds: number | null;
    /** GPUs held right now. */
    gpus: number;
    gpuHours: number;
    /** gpuHours + GPUs held x ETA; equals gpuHours when finished; null when it cannot be known. */
    projectedGpuHours: number | null;
    cost: { amount: number; projected: number | null; currency: string } | null;
    failure?: Failure;
    /** A container that cannot pull its image (waiting now, or why `pulumi up` failed the Job). */
    imagePull?: ImagePull;
    pods: PodRow[];
}

export interface Snapshot {
    namespace: string;
    run: string;
    gpuResource: string;
    jobs: JobObject[];
    pods: PodObject[];
    deployments: DeploymentObject[];
    /** Tail of the log of a pod (by pod name), where it could be read. */
    logs: Record<string, string>;
    /** Extra kubectl flags (--context, --kubeconfig) for the printed commands. */
    kubectlFlags?: string[];
    /** The images the stack config names ({trainer, datagen, vllm}), to name the key to fix. */
    images?: Record<string, string>;
}

export interface Status {
    /** Shape version of this object (`--json`). */
    v: 1;
    run: string;
    namespace: string;
    at: string;
    rows: StageRow[];
    totals: {
        gpuHours: number;
        /** Sum of the rows' projections; `projectedComplete` false when some active row has none. */
        projectedGpuHours: number;
        projectedComplete: boolean;
        cost: { amount: number; projected: number; currency: string } | null;
    };
}

function byCreation(a: { metadata?: Meta }, b: { metadata?: Meta }): number {
    return (ms(a.metadata?.creationTimestamp) ?? 0) - (ms(b.metadata?.creationTimestamp) ?? 0) || (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? "");
}

function cond(o: { status?: { conditions?: Condition[] } }, type: string): boolean {
    return !!o.status?.conditions?.some((c) => c.type === type && c.status === "True");
}

function iso(t: number | undefined): string | undefined {
    return t === undefined ? undefined : new Date(t).toISOString().replace(/\.000Z$/, "Z");
}

/** Pods of a Job: owned by it (uid), else carrying its job-name label. */
export function jobPods(job: JobObject, pods: PodObject[]): PodObject[] {
    const uid = job.metadata?.uid;
    const name = job.metadata?.name;
    return pods.filter((p) => {
        const owner = p.metadata?.ownerReferences?.find((o) => o.kind === "Job");
        if (owner) return uid ? owner.uid === uid : owner.name === name;
        const l = p.metadata?.labels ?? {};
        return (l["batch.kubernetes.io/job-name"] ?? l["job-name"]) === name;
    });
}

/** Why a pod waits: unschedulable, or its container's waiting reason (ImagePullBackOff, ...). */
function waitingDetail(p: PodObject): string | undefined {
    const sched = p.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False");
    if (sched) return `${sched.reason ?? "not scheduled"}${sched.message ? `: ${sched.message}` : ""}`;
    const w = p.status?.containerStatuses?.map((c) => c.state?.waiting).find((x) => x?.reason);
    return w ? `${w.reason}${w.message ? `: ${w.message}` : ""}` : undefined;
}

/** A Job's state from its conditions; running means a pod runs (without pods: the Job counts one active). */
export function jobState(job: JobObject, pods?: PodObject[]): State {
    if (cond(job, "Complete")) return "complete";
    if (cond(job, "Failed")) return "failed";
    if (job.spec?.suspend) return "suspended";
    if (pods) return pods.some((p) => p.status?.phase === "Running") ? "running" : "pending";
    return (job.status?.active ?? 0) > 0 ? "running" : "pending";
}

function podRow(p: PodObject, gpuResource: string, now: number): PodRow {
    return {
        name: p.metadata?.name ?? "",
        phase: p.status?.phase ?? "Unknown",
        node: p.spec?.nodeName,
        gpus: podGpus(p, gpuResource),
        scheduledAt: iso(podScheduledAt(p)),
        finishedAt: iso(podFinishedAt(p)),
        gpuHours: podGpuHours(p, gpuResource, now),
    };
}

const active = (p: PodObject) => !["Succeeded", "Failed"].includes(p.status?.phase ?? "") && podScheduledAt(p) !== undefined;

/** A record older than this (programs print one every 5 s) says nothing about the time left. */
export const STALE_SECONDS = 600;

/** Seconds since a record was printed. */
export function recordAge(rec: ProgressRecord | null, now: number): number | null {
    const t = rec ? ms(rec.ts) : undefined;
    return t === undefined ? null : Math.max(0, (now - t) / 1000);
}

/** ETA in seconds from a record: what is left at its rate, less the time since it was printed; null when stale. */
export function etaSeconds(rec: ProgressRecord | null, now: number): number | null {
    if (!rec || rec.total === null || rec.total === undefined || !rec.rate || rec.rate <= 0) return null;
    if ((recordAge(rec, now) ?? 0) > STALE_SECONDS) return null;
    const left = Math.max(0, rec.total - rec.done) / rec.rate;
    const since = Math.max(0, (now - (ms(rec.ts) ?? now)) / 1000);
    return Math.max(0, left - since);
}

function kubectlLogs(snap: Snapshot, job: string): string {
    return ["kubectl", ...(snap.kubectlFlags ?? []), "logs", "-n", snap.namespace, `job/${job}`].join(" ");
}

function jobRow(snap: Snapshot, job: JobObject, now: number): StageRow {
    const pods = jobPods(job, snap.pods).sort(byCreation);
    const state = jobState(job, pods);
    const name = job.metadata?.name ?? "";
    const labels = job.metadata?.labels ?? {};
    // The newest pod with a log tells where the work is (a retry starts over from its own first record).
    const logged = [...pods].reverse().find((p) => snap.logs[p.metadata?.name ?? ""] !== undefined);
    const log = logged ? snap.logs[logged.metadata!.name!] : undefined;
    const progress = (log !== undefined ? lastProgress(log) : undefined) ?? null;
    const rows = pods.map((p) => podRow(p, snap.gpuResource, now));
    const gpuHours = rows.reduce((a, r) => a + r.gpuHours, 0);
    const gpus = pods.filter(active).reduce((a, p) => a + podGpus(p, snap.gpuResource), 0);
    const finished = state === "complete" || state === "failed";
    const eta = finished ? 0 : state === "running" ? etaSeconds(progress, now) : null;
    const row: StageRow = {
        stage: labels[LABELS.stage] ?? "?",
        variant: labels[LABELS.variant] ?? null,
        kind: "Job",
        name,
        state,
        progress,
        progressAgeSeconds: recordAge(progress, now),
        fraction: state === "complete" ? 1 : progress && progress.total ? Math.min(1, progress.done / progress.total) : null,
        etaSeconds: eta,
        gpus,
        gpuHours,
        projectedGpuHours: finished ? gpuHours : eta !== null ? gpuHours + (gpus * eta) / 3600 : null,
        cost: null,
        pods: rows,
    };
    if (state === "pending") {
        const waiting = pods.map(waitingDetail).find(Boolean);
        if (waiting) row.detail = waiting;
    }
    const pulled = parseFailure(job.metadata?.annotations);
    const imagePull = pulled
        ? { image: pulled.image, container: pulled.container, reason: pulled.reason, message: pulled.message, kind: pulled.kind, ...(pulled.stage ? { stage: pulled.stage } : {}), next: pullAdvice(pulled, snap.images) }
        : state === "pending" || state === "running" ? podsImagePull(pods, snap.images) : undefined;
    if (imagePull) {
        row.imagePull = imagePull;
        if (state !== "failed") row.detail = pullWords(imagePull);
    }
    if (state === "failed") {
        const t = [...pods].filter((p) => p.status?.phase === "Failed").sort(byCreation).pop();
        const term = t ? mainTerminated(t) : undefined;
        const exited = parseExitFailure(job.metadata?.annotations);
        row.failure = {
            reason: failureReason(job, pods),
            exitCode: term?.exitCode ?? exited?.exitCode,
            errorLine: log !== undefined ? lastErrorLine(log) : undefined,
            logsCommand: kubectlLogs(snap, name),
            ...(imagePull ? { next: imagePull.next } : exited ? { next: EXIT_ADVICE } : {}),
        };
    }
    return row;
}

/** Seconds the teacher's watchdog (its `release` container) waits without a generation pod before it
 * scales the teacher to 0, from the Deployment itself; undefined: no watchdog (teacher.keep). */
function watchdogGrace(d: DeploymentObject): number | undefined {
    const c = d.spec?.template?.spec?.containers?.find((x) => x.name === "release");
    if (!c) return undefined;
    const i = c.args?.indexOf("--grace") ?? -1;
    const grace = i >= 0 ? Number(c.args![i + 1]) : NaN;
    return Number.isFinite(grace) ? grace : WATCHDOG_GRACE_SECONDS;
}

function teacherRow(snap: Snapshot, d: DeploymentObject, now: number, generating: boolean): StageRow {
    const name = d.metadata?.name ?? "";
    const pods = snap.pods.filter((p) => p.metadata?.labels?.[LABELS.stage] === "teacher" && !p.metadata?.ownerReferences?.some((o) => o.kind === "Job")).sort(byCreation);
    const rows = pods.map((p) => podRow(p, snap.gpuResource, now));
    const gpuHours = rows.reduce((a, r) => a + r.gpuHours, 0);
    const gpus = pods.filter(active).reduce((a, p) => a + podGpus(p, snap.gpuResource), 0);
    let state: State;
    if ((d.spec?.replicas ?? 1) === 0) state = pods.some(active) ? "running" : "scaled-to-zero";
    else if ((d.status?.readyReplicas ?? 0) > 0) state = "ready";
    else if (pods.some((p) => p.status?.phase === "Running")) state = "starting";
    else state = "pending";
    const row: StageRow = {
        stage: "teacher", variant: null, kind: "Deployment", name, state, progress: null, progressAgeSeconds: null, fraction: null,
        etaSeconds: null, gpus, gpuHours, projectedGpuHours: gpus ? null : gpuHours, cost: null, pods: rows,
    };
    if (state === "pending") {
        const waiting = pods.map(waitingDetail).find(Boolean);
        if (waiting) row.detail = waiting;
    }
    // A teacher that cannot pull vLLM's image (pending, or counted running while scaled down).
    const imagePull = podsImagePull(pods, snap.images);
    if (imagePull) {
        row.imagePull = imagePull;
        row.detail = pullWords(imagePull, "teacher");
    }
    const grace = watchdogGrace(d);
    if (gpus > 0 && !generating && grace !== undefined && !imagePull) {
        // Left up by a generation that died without releasing it: say what frees it, and when.
        row.detail = `no generation pod: its watchdog scales it to 0 ${Math.round(grace / 60)} min after the last one ` +
            `(kubectl logs -n ${snap.namespace} deploy/${name} -c release)`;
    }
    return row;
}

/** Reads `cluster.gpuHourPrice` ({amount, currency}) from settings that may not know the key yet. */
export function gpuHourPrice(cluster: unknown): Price | undefined {
    const p = (cluster as { gpuHourPrice?: unknown } | undefined)?.gpuHourPrice as Partial<Price> | undefined;
    if (!p || typeof p !== "object") return undefined;
    if (typeof p.amount !== "number" || !Number.isFinite(p.amount) || p.amount < 0 || typeof p.currency !== "string" || !p.currency) return undefined;
    return { amount: p.amount, currency: p.currency };
}

export function deriveStatus(snap: Snapshot, opts: { now: number; price?: Price }): Status {
    const { now, price } = opts;
    const rows = snap.jobs.map((j) => jobRow(snap, j, now));
    const generating = rows.some((r) => r.stage === "generate" && ["pending", "starting", "running"].includes(r.state));
    for (const d of snap.deployments) rows.push(teacherRow(snap, d, now, generating));
    // The teacher serves the generation: it gives its GPUs back when the dataset is published.
    const gen = rows.find((r) => r.stage === "generate" && r.state === "running");
    for (const t of rows.filter((r) => r.kind === "Deployment" && r.gpus > 0)) {
        if (gen?.etaSeconds !== null && gen?.etaSeconds !== undefined) {
            t.etaSeconds = gen.etaSeconds;
            t.projectedGpuHours = t.gpuHours + (t.gpus * gen.etaSeconds) / 3600;
        }
    }
    const order = (s: string) => STAGES[s as StageName]?.order ?? 99;
    rows.sort((a, b) => order(a.stage) - order(b.stage) || (a.variant ?? "").localeCompare(b.variant ?? "") || a.name.localeCompare(b.name));
    if (price) {
        for (const r of rows) {
            r.cost = { amount: r.gpuHours * price.amount, projected: r.projectedGpuHours === null ? null : r.projectedGpuHours * price.amount, currency: price.currency };
        }
    }
    const gpuHours = rows.reduce((a, r) => a + r.gpuHours, 0);
    const projectedGpuHours = rows.reduce((a, r) => a + (r.projectedGpuHours ?? r.gpuHours), 0);
    const projectedComplete = rows.every((r) => r.projectedGpuHours !== null);
    return {
        v: 1,
        run: snap.run,
        namespace: snap.namespace,
        at: iso(now)!,
        rows,
        totals: {
            gpuHours,
            projectedGpuHours,
            projectedComplete,
            cost: price ? { amount: gpuHours * price.amount, projected: projectedGpuHours * price.amount, currency: price.currency } : null,
        },
    };
}

// ---------------------------------------------------------------------------------------------------
// Text

const group = (n: number) => Math.round(n).toLocaleString("en-US");

function fmtAmount(rec: ProgressRecord, n: number): string {
    return rec.unit === "bytes" ? (n / 1e9).toFixed(1) : group(n);
}

function fmtRate(rec: ProgressRecord): string {
    if (!rec.rate) return "-";
    if (rec.unit === "bytes") return `${(rec.rate / 1e6).toFixed(0)} MB/s`;
    const unit = rec.unit === "requests" ? "req" : rec.unit;
    if (rec.rate < 1) return `${(rec.rate * 60).toFixed(1)} ${unit}/min`;
    return `${rec.rate.toFixed(rec.rate < 10 ? 2 : 0)} ${unit}/s`;
}

/** Stage fields worth a glance, as the record gives them (epoch and shard as printed, 1-based): epoch and loss, shard, task, files. */
function fmtExtras(rec: ProgressRecord): string {
    const out: string[] = [];
    if (typeof rec.epoch === "number") out.push(`epoch ${rec.epoch}${typeof rec.epochs === "number" ? `/${rec.epochs}` : ""}`);
    if (typeof rec.loss === "number") out.push(`loss ${rec.loss.toFixed(3)}`);
    if (typeof rec.shard === "number") out.push(`shard ${rec.shard}${typeof rec.shards === "number" ? `/${rec.shards}` : ""}`);
    if (typeof rec.files === "number") out.push(`${rec.files}${typeof rec.file_total === "number" ? `/${rec.file_total}` : ""} files`);
    if (typeof rec.task === "string") out.push(rec.task);
    return out.join(", ");
}

export const BAR_WIDTH = 20;

export function bar(fraction: number, width = BAR_WIDTH): string {
    const full = Math.max(0, Math.min(width, Math.floor(fraction * width)));
    return "█".repeat(full) + "░".repeat(width - full);
}

function progressCell(r: StageRow): string {
    const p = r.progress;
    if (r.kind === "Deployment") return r.state === "ready" ? "serving" : "";
    if (!p) return r.state === "complete" ? `${bar(1)} done` : r.state === "pending" ? "" : "progress unknown";
    const frac = r.fraction;
    const unit = p.unit === "bytes" ? "GB" : p.unit;
    const counts = p.total ? `${fmtAmount(p, p.done)}/${fmtAmount(p, p.total)} ${unit}` : `${fmtAmount(p, p.done)} ${unit}`;
    return `${frac !== null ? bar(frac) + " " : ""}${counts}${frac !== null ? ` ${Math.floor(frac * 100)}%` : ""}`;
}

function money(amount: number, currency: string): string {
    return `${amount.toFixed(2)} ${currency}`;
}

/** Pads columns to the widest cell (all characters used here are one column wide). */
function table(rows: string[][]): string[] {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
    return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ").trimEnd());
}

/** Colours of the states on a terminal: done green, at work cyan, waiting yellow, failed red. */
const STATE_COLOUR: Record<State, "green" | "cyan" | "yellow" | "red"> = {
    complete: "green", "scaled-to-zero": "green",
    running: "cyan", ready: "cyan",
    pending: "yellow", starting: "yellow", suspended: "yellow",
    failed: "red",
};

export interface ScreenOptions {
    /** ANSI colours; the CLI asks for them on a terminal that wants them (picocolors: NO_COLOR, FORCE_COLOR, TTY). */
    readonly color?: boolean;
    /** Terminal columns: longer lines are cut with "…" (the DETAIL column goes first). */
    readonly width?: number;
}

/** A line cut to `width` characters, "…" marking the cut. */
function fit(line: string, width: number | undefined): string {
    return width && line.length > width ? `${line.slice(0, Math.max(1, width - 1))}…` : line;
}

/** The status screen: one line per stage/variant, failure details under failed rows, totals last. */
export function renderStatus(st: Status, opts: ScreenOptions = {}): string {
    const priced = st.totals.cost !== null;
    const head = ["STAGE", "STATE", "PROGRESS", "RATE", "ETA", "GPU-H", ...(priced ? ["COST"] : []), "DETAIL"];
    const lines: string[][] = [head];
    const under = new Map<number, string[]>();
    for (const r of st.rows) {
        // A pod on several GPUs (a multi-GPU fine-tune, whose records are rank 0's) says how many.
        const podGpus = Math.max(0, ...r.pods.map((p) => p.gpus));
        const name = (r.variant && r.stage !== "generate" ? `${r.stage} ${r.variant}` : r.stage) + (podGpus > 1 ? ` (${podGpus} GPUs)` : "");
        const eta = r.state === "running" || r.state === "ready" ? (r.etaSeconds === null ? "?" : fmtDuration(r.etaSeconds)) : "-";
        const gpuh = r.pods.some((p) => p.gpus > 0) ? r.gpuHours.toFixed(2) : "-";
        const cost = r.cost && r.pods.some((p) => p.gpus > 0) ? money(r.cost.amount, r.cost.currency) : "-";
        const stale = r.state === "running" && (r.progressAgeSeconds ?? 0) > STALE_SECONDS ? `no record for ${fmtDuration(r.progressAgeSeconds!)}; ` : "";
        const detail = stale + (r.progress ? fmtExtras(r.progress) : r.detail ?? "");
        lines.push([name, r.state, progressCell(r), r.progress ? fmtRate(r.progress) : "-", eta, gpuh, ...(priced ? [cost] : []), detail]);
        if (r.failure) {
            under.set(lines.length - 1, [
                `  ✗ ${r.failure.reason}`,
                ...(r.failure.errorLine ? [`    ${r.failure.errorLine}`] : []),
                // An image that was never pulled ran nothing: there is no log to read.
                r.failure.next ? `    next: ${r.failure.next}` : `    full log: ${r.failure.logsCommand}`,
            ]);
        } else if (r.imagePull) {
            under.set(lines.length - 1, [
                `  ! ${pullWords(r.imagePull, r.stage)}`,
                `    ${r.imagePull.kind === "fatal" ? "it will not heal" : "pulumi up fails the Job if it does not heal within minutes"}; next: ${r.imagePull.next}`,
            ]);
        }
    }
    const rendered = table(lines);
    const c = pc.createColors(opts.color ?? false);
    const stateAt = rendered[0].indexOf("STATE");
    const paint = (l: string, i: number): string => {
        l = fit(l, opts.width);
        if (i === 0) return c.bold(l);
        const state = st.rows[i - 1].state;
        return l.slice(0, stateAt) + l.slice(stateAt).replace(state, c[STATE_COLOUR[state]](state));
    };
    const detail = (l: string) => c.red(fit(l, opts.width));
    const body = rendered.flatMap((l, i) => [paint(l, i), ...(under.get(i) ?? []).map(detail)]);
    const t = st.totals;
    const approx = t.projectedComplete ? "" : "≥ ";
    let total = `GPU-hours: ${t.gpuHours.toFixed(2)} so far, ${approx}${t.projectedGpuHours.toFixed(2)} projected`;
    if (t.cost) total += ` · cost: ${money(t.cost.amount, t.cost.currency)} so far, ${approx}${money(t.cost.projected, t.cost.currency)} projected`;
    const when = st.at.replace("T", " ").replace("Z", " UTC");
    const empty = st.rows.length ? [] : [`(no Jobs or teacher of run ${st.run} in namespace ${st.namespace})`];
    return [fit(`run ${st.run} · namespace ${st.namespace} · ${when}`, opts.width), "", ...body, ...empty, "", fit(total, opts.width)].join("\n");
}

// ---------------------------------------------------------------------------------------------------
// `--report` (was `npm run report`): the Job table and the report Job's printed table

/** Hours from a Job's start to its completion (or now), "-" before it starts. */
export function hours(j: JobObject, now = Date.now()): string {
    const start = ms(j.status?.startTime);
    if (start === undefined) return "-";
    const end = ms(j.status?.completionTime) ?? now;
    return ((end - start) / 3.6e6).toFixed(2);
}

export function jobTable(items: JobObject[], now = Date.now()): string {
    const rows = items.map((j) => [j.metadata?.labels?.[LABELS.stage] ?? "", j.metadata?.labels?.[LABELS.variant] ?? "", jobState(j), hours(j, now), j.metadata?.name ?? ""]);
    return ["| stage | variant | state | hours | job |", "|---|---|---|---|---|", ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

// Simulated run times on the e2e cluster (sim/cluster.sh): kwok pods execute nothing, so this
// module gives them the durations of the real stages, runs the generation's real teacher scaler
// (images/datagen/teacher_scale.py) while a simulated generation pod runs, and measures the GPU
// timeline from the API server.
//
//   applyStageDurations   kwok Stage objects: Job pods of a stage/variant succeed N s after they
//                         start; teacher pods become Ready N s after they start (the 90B load)
//   holdTeacherWhileGenerating
//                         `teacher_scale.py hold` through the generation's own ServiceAccount and Role
//   runTeacherWatchdog    the teacher's `release` sidecar (`teacher_scale.py watch`, its args from the
//                         deployed Deployment) through the teacher's own ServiceAccount and Role
//   gpuTimeline           every GPU pod's scheduled -> finished interval (watched, so pods the
//                         ReplicaSet deleted are kept), GPU-hours held / of work, makespan, critical path
//
// Stages live in the API server (kwok runs with --enable-crds=Stage, see cluster.sh) so that a test
// can change them on a running cluster; kwok's stage manager picks the change up without a restart.
import * as k8s from "@kubernetes/client-node";
import { ChildProcess, spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as YAML from "yaml";
import type { StageNode } from "../components/graph";

const HERE = __dirname;
const ROOT = path.resolve(HERE, "..");
const STAGE_LABEL = "cot-vr/stage";
const VARIANT_LABEL = "cot-vr/variant";
/** Field manager of every Stage this module or cluster.sh applies (server-side apply: omitted fields go). */
export const STAGE_FIELD_MANAGER = "cot-vr-e2e";
/** Label of the Stages made here (removed when a later call no longer wants them). */
const SIM_LABEL = "e2e.cot-vr/sim";

export interface StageDuration {
    /** Value of the pod label cot-vr/stage. */
    stage: string;
    /** Value of cot-vr/variant; none: every pod of the stage without a more specific entry. */
    variant?: string;
    seconds: number;
}

export interface Stoppable {
    /** Stops watching; any hold still running releases the teacher first. */
    stop(): Promise<void>;
}

function kubectlSync(kubeconfig: string, args: string[], input?: string): string {
    const r = spawnSync("kubectl", ["--kubeconfig", kubeconfig, ...args], { input, encoding: "utf8", maxBuffer: 64 << 20 });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`kubectl ${args.join(" ")} failed (exit ${r.status}): ${r.stderr}`);
    return r.stdout;
}

// ---------------------------------------------------------------------------------------------------
// Stage durations

const jqLabel = (key: string) => `.metadata.labels["${key}"]`;
/** "<stage>/<variant>" of a pod ("" for a missing label), to exclude stage/variant pairs in one expression. */
const JQ_PAIR = `.metadata.labels | ((.["${STAGE_LABEL}"] // "") + "/" + (.["${VARIANT_LABEL}"] // ""))`;
const notIn = (key: string, values: string[]) => (values.length ? [{ key, operator: "NotIn", values }] : []);

const stageName = (d: { stage: string; variant?: string }) =>
    `sim-complete-${d.stage}${d.variant ? `-${d.variant}` : ""}`.toLowerCase().replace(/[^a-z0-9-]/g, "-");

/** The default stages shipped in kwok/stages.yaml, by name. */
function defaultStages(): Map<string, any> {
    const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(HERE, "kwok", "stages.yaml"), "utf8"))
        .map((d) => d.toJS()).filter((d) => d?.kind === "Stage");
    return new Map(docs.map((d) => [d.metadata.name, d]));
}

/** Replace one piece of a kwok status template, and fail loudly when kwok's template changed shape. */
function replaceOnce(text: string, from: RegExp, to: string): string {
    if (!from.test(text)) throw new Error(`kwok stage template: ${from} not found (kwok/stages.yaml changed?)`);
    return text.replace(from, to);
}

/**
 * The pod Stages for these durations: the defaults of kwok/stages.yaml with the simulated pods taken
 * out of their selectors, one `sim-complete-*` Stage per entry, and with `teacherStartSeconds` two
 * teacher Stages (Running but not Ready at once, Ready after the load). Pure; exported for tests.
 */
export function podStages(durations: StageDuration[], opts: { teacherStartSeconds?: number; defaultCompleteMs?: number } = {}): any[] {
    const defaults = defaultStages();
    const ready = structuredClone(defaults.get("pod-ready"));
    const complete = structuredClone(defaults.get("pod-complete"));
    if (!ready || !complete) throw new Error("kwok/stages.yaml lacks pod-ready or pod-complete");
    const seen = new Set<string>();
    for (const d of durations) {
        const k = `${d.stage}/${d.variant ?? ""}`;
        if (seen.has(k)) throw new Error(`two durations for ${k}`);
        if (!(d.seconds >= 0)) throw new Error(`duration of ${k}: ${d.seconds}`);
        seen.add(k);
    }
    const wide = durations.filter((d) => !d.variant).map((d) => d.stage);
    const pairs = durations.filter((d) => d.variant).map((d) => `${d.stage}/${d.variant}`);
    const baseComplete = complete.spec.selector.matchExpressions as any[];

    complete.spec.selector.matchExpressions = [...baseComplete, ...notIn(jqLabel(STAGE_LABEL), wide), ...notIn(JQ_PAIR, pairs)];
    if (opts.defaultCompleteMs) complete.spec.delay = { durationMilliseconds: opts.defaultCompleteMs };
    else delete complete.spec.delay;
    const out = [ready, complete];

    for (const d of durations) {
        const s = structuredClone(complete);
        s.metadata = { name: stageName(d), labels: { [SIM_LABEL]: "true" } };
        s.spec.selector = {
            matchLabels: { [STAGE_LABEL]: d.stage, ...(d.variant ? { [VARIANT_LABEL]: d.variant } : {}) },
            // a stage-wide entry leaves the variants that have their own entry alone
            matchExpressions: [...baseComplete, ...(d.variant ? [] : notIn(JQ_PAIR, pairs.filter((p) => p.startsWith(`${d.stage}/`))))],
        };
        s.spec.delay = { durationMilliseconds: Math.round(d.seconds * 1000) };
        out.push(s);
    }

    if (opts.teacherStartSeconds !== undefined) {
        ready.spec.selector.matchExpressions.push(...notIn(jqLabel(STAGE_LABEL), ["teacher"]));
        const teacher = { matchLabels: { [STAGE_LABEL]: "teacher" } };
        // Running (scheduled, holding its GPU, loading weights) but not Ready yet.
        const start = structuredClone(defaults.get("pod-ready"));
        start.metadata = { name: "sim-teacher-start", labels: { [SIM_LABEL]: "true" } };
        start.spec.selector = { ...teacher, matchExpressions: start.spec.selector.matchExpressions };
        let t: string = start.spec.next.statusTemplate;
        t = replaceOnce(t, /status: "True"\n(\s*)type: Ready\n/, 'status: "False"\n$1type: Ready\n');
        t = replaceOnce(t, /status: "True"\n(\s*)type: ContainersReady\n/, 'status: "False"\n$1type: ContainersReady\n');
        t = replaceOnce(t, /(containerStatuses:\n\s*\{\{ range \.spec\.containers \}\}[\s\S]*?)ready: true/, "$1ready: false\n  started: true");
        start.spec.next.statusTemplate = t;
        // Ready after the load: the readiness probe's first success.
        const loaded = {
            apiVersion: "kwok.x-k8s.io/v1alpha1",
            kind: "Stage",
            metadata: { name: "sim-teacher-ready", labels: { [SIM_LABEL]: "true" } },
            spec: {
                resourceRef: { apiGroup: "v1", kind: "Pod" },
                selector: {
                    ...teacher,
                    matchExpressions: [
                        { key: ".metadata.deletionTimestamp", operator: "DoesNotExist" },
                        { key: ".status.phase", operator: "In", values: ["Running"] },
                        { key: '.status.conditions.[] | select( .type == "Ready" ) | .status', operator: "NotIn", values: ["True"] },
                    ],
                },
                delay: { durationMilliseconds: Math.round(opts.teacherStartSeconds * 1000) },
                next: {
                    statusTemplate: [
                        "{{ $now := Now }}",
                        "conditions:",
                        "- lastTransitionTime: {{ $now | Quote }}",
                        '  status: "True"',
                        "  type: Ready",
                        "- lastTransitionTime: {{ $now | Quote }}",
                        '  status: "True"',
                        "  type: ContainersReady",
                        "containerStatuses:",
                        "{{ range .status.containerStatuses }}",
                        "- image: {{ .image | Quote }}",
                        "  name: {{ .name | Quote }}",
                        "  ready: true",
                        "  started: true",
                        "  restartCount: 0",
                        "  state:",
                        "    running:",
                        "      startedAt: {{ .state.running.startedAt | Quote }}",
                        "{{ end }}",
                    ].join("\n") + "\n",
                },
            },
        };
        out.push(start, loaded);
    }
    return out;
}

/**
 * Job pods labelled cot-vr/stage=<stage> (and cot-vr/variant=<variant> when given; the most specific
 * entry wins) succeed `seconds` after they start; with `teacherStartSeconds`, teacher pods are Running
 * at once and Ready that much later. Everything else keeps the cluster's defaults (kwok/stages.yaml,
 * Job pods after COT_E2E_JOB_MS); `applyStageDurations(kc, [])` restores them. Call it while no pod
 * is between stages: it replaces the Stages one after the other.
 */
export async function applyStageDurations(kubeconfig: string, durations: StageDuration[], opts: { teacherStartSeconds?: number } = {}): Promise<void> {
    // Keep the default Job time the cluster was started with (cluster.sh: COT_E2E_JOB_MS).
    const current = JSON.parse(kubectlSync(kubeconfig, ["get", "stages.kwok.x-k8s.io", "pod-complete", "-o", "json"]));
    const defaultCompleteMs = current.spec?.delay?.durationMilliseconds as number | undefined;
    const stages = podStages(durations, { ...opts, defaultCompleteMs });
    const wanted = new Set(stages.map((s) => s.metadata.name));
    // Stale simulated stages first, so that no pod matches two completion stages (kwok would pick one at random).
    const existing = kubectlSync(kubeconfig, ["get", "stages.kwok.x-k8s.io", "-l", `${SIM_LABEL}=true`, "-o", "name"]).split("\n").filter(Boolean);
    const stale = existing.filter((n) => !wanted.has(n.replace(/^.*\//, "")));
    if (stale.length) kubectlSync(kubeconfig, ["delete", ...stale, "--wait=true"]);
    // Defaults (narrowed) before the specific ones, for the same reason.
    const apply = (objs: any[]) => kubectlSync(kubeconfig,
        ["apply", "--server-side", "--force-conflicts", `--field-manager=${STAGE_FIELD_MANAGER}`, "-f", "-"],
        objs.map((o) => YAML.stringify(o)).join("---\n"));
    apply(stages.filter((s) => !s.metadata.labels?.[SIM_LABEL]));
    const specific = stages.filter((s) => s.metadata.labels?.[SIM_LABEL]);
    if (specific.length) apply(specific);
    // kwok reads Stages through an informer: give it a moment to see them before pods need them.
    await new Promise((r) => setTimeout(r, 500));
}

// ---------------------------------------------------------------------------------------------------
// Watching pods

type Time = string | Date | undefined | null;
const ms = (t: Time) => (t ? new Date(t).getTime() : NaN);

export function loadKubeConfig(kubeconfig: string): k8s.KubeConfig {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig);
    return kc;
}

/**
 * List and watch the objects of a collection path (e.g. /api/v1/namespaces/NS/pods; a watch without
 * resourceVersion starts with every existing object), re-watching from the last resourceVersion when
 * the server closes the stream.
 */
export function watchObjects(kc: k8s.KubeConfig, apiPath: string, labelSelector: string | undefined,
    onEvent: (type: string, obj: any) => void): { stop(): void; synced: Promise<void> } {
    const watch = new k8s.Watch(kc);
    let rv: string | undefined;
    let stopped = false;
    let current: AbortController | undefined;
    let markSynced: () => void = () => {};
    const synced = new Promise<void>((r) => (markSynced = r));
    const start = () => {
        if (stopped) return;
        watch.watch(apiPath, { labelSelector, resourceVersion: rv, allowWatchBookmarks: true },
            (type, obj) => {
                if (obj?.metadata?.resourceVersion) rv = obj.metadata.resourceVersion;
                if (type === "BOOKMARK") return;
                if (type === "ERROR") { rv = undefined; return; } // 410 Gone: start over from a fresh list
                onEvent(type, obj);
            },
            () => { if (!stopped) setTimeout(start, 200); })
            .then((c) => { current = c; markSynced(); if (stopped) c.abort(); })
            .catch(() => { if (!stopped) setTimeout(start, 500); });
    };
    start();
    return { stop: () => { stopped = true; current?.abort(); }, synced };
}

/** watchObjects of a namespace's pods. */
export function watchPods(kc: k8s.KubeConfig, namespace: string, labelSelector: string | undefined,
    onEvent: (type: string, pod: any) => void): { stop(): void; synced: Promise<void> } {
    return watchObjects(kc, `/api/v1/namespaces/${namespace}/pods`, labelSelector, onEvent);
}

// ---------------------------------------------------------------------------------------------------
// The generation holds the teacher

export interface HoldRun {
    pod: string;
    /** Wall-clock ms: the hold started (pod seen Running) and teacher_scale.py exited. */
    started: number;
    ended?: number;
    exitCode?: number | null;
    output: string;
}

const TEACHER_SCALE = path.join(ROOT, "images", "datagen", "teacher_scale.py");

/**
 * teacher_scale.py's API flags for calls as ServiceAccount `account` (so they go through its Role):
 * the API server's URL, its CA (written to `dir` when the kubeconfig inlines it) and a fresh token.
 */
async function accountApiArgs(kc: k8s.KubeConfig, dir: string, namespace: string, account: string): Promise<string[]> {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("the kubeconfig has no current cluster");
    let caFile = cluster.caFile;
    if (!caFile && cluster.caData) {
        caFile = path.join(dir, "ca.crt");
        fs.writeFileSync(caFile, Buffer.from(cluster.caData, "base64"));
    }
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const tok = await core.createNamespacedServiceAccountToken({ name: account, namespace, body: { spec: { audiences: [], expirationSeconds: 3600 } } });
    const tokenFile = fs.mkdtempSync(path.join(dir, `${account}-`)) + "/token";
    fs.writeFileSync(tokenFile, tok.status?.token ?? "", { mode: 0o600 });
    return ["--api", cluster.server, "--token-file", tokenFile, ...(caFile ? ["--ca-file", caFile] : [])];
}

/**
 * The teacher's watchdog sidecar as the Deployment runs it (kwok runs no containers): its container's
 * arguments from the Deployment in the API server, with a local record file and `grace`/`interval`
 * in seconds, as the teacher's own ServiceAccount `<run>-teacher`. Resolves when it exits.
 */
export async function runTeacherWatchdog(kubeconfig: string, namespace: string, run: string, o: { grace: number; interval: number }):
    Promise<Stoppable & { exited: Promise<{ code: number | null; output: string }>; record: string }> {
    const kc = loadKubeConfig(kubeconfig);
    const apps = kc.makeApiClient(k8s.AppsV1Api);
    const dep = await apps.readNamespacedDeployment({ name: `${run}-teacher`, namespace });
    const release = dep.spec?.template.spec?.containers.find((c) => c.name === "release");
    if (!release?.args) throw new Error(`deployment ${namespace}/${run}-teacher has no release container`);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cot-vr-watchdog-"));
    const record = path.join(tmp, "teacher-record.jsonl");
    const args = [...release.args];
    const set = (flag: string, value: string) => {
        const i = args.indexOf(flag);
        if (i < 0) throw new Error(`release container args lack ${flag}: ${args.join(" ")}`);
        args[i + 1] = value;
    };
    set("--record", record);
    set("--grace", String(o.grace));
    args.push("--interval", String(o.interval));
    const i = args.indexOf("watch");
    args.splice(i, 0, ...await accountApiArgs(kc, tmp, namespace, `${run}-teacher`));
    const child = spawn("python3", [TEACHER_SCALE, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const exited = new Promise<{ code: number | null; output: string }>((resolve) => child.on("close", (code) => resolve({ code, output })));
    return {
        exited,
        record,
        stop: async () => {
            if (child.exitCode === null) child.kill("SIGTERM");
            await exited;
            fs.rmSync(tmp, { recursive: true, force: true });
        },
    };
}

/**
 * While a generation pod (cot-vr/stage=generate) of `namespace` is Running, run the release code of
 * the real generation, `teacher_scale.py hold`, against the API server with a token of the
 * generation's ServiceAccount `<run>-generate` (so the scale calls go through its Role). Its command
 * (`cat`) ends when this watcher closes its stdin: the moment the pod leaves Running (succeeded,
 * failed or deleted), or when this process dies -- then teacher_scale.py scales the teacher to 0.
 */
export function holdTeacherWhileGenerating(kubeconfig: string, namespace: string, run: string): Stoppable & { runs: HoldRun[] } {
    const kc = loadKubeConfig(kubeconfig);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cot-vr-hold-"));
    const runs: HoldRun[] = [];
    const children = new Map<string, { child?: ChildProcess; exited: Promise<void>; release: () => void }>();

    const begin = (pod: any) => {
        const uid = pod.metadata.uid as string;
        const rec: HoldRun = { pod: pod.metadata.name, started: Date.now(), output: "" };
        runs.push(rec);
        let released = false;
        const entry: { child?: ChildProcess; exited: Promise<void>; release: () => void } = {
            exited: Promise.resolve(),
            release: () => { released = true; entry.child?.stdin?.end(); },
        };
        children.set(uid, entry);
        entry.exited = (async () => {
            const args = [
                TEACHER_SCALE, "--namespace", namespace, "--deployment", `${run}-teacher`,
                ...await accountApiArgs(kc, tmp, namespace, `${run}-generate`),
                "--record", path.join(tmp, "teacher-record.jsonl"),
                "hold", "--", "cat",
            ];
            const child = spawn("python3", args, { stdio: ["pipe", "pipe", "pipe"] });
            entry.child = child;
            child.stdout.on("data", (d) => (rec.output += d));
            child.stderr.on("data", (d) => (rec.output += d));
            if (released) child.stdin.end();
            await new Promise<void>((resolve) => child.on("close", (code) => { rec.exitCode = code; rec.ended = Date.now(); resolve(); }));
        })().catch((e) => { rec.output += `\n${e?.body ? JSON.stringify(e.body) : e}`; rec.exitCode = -1; rec.ended = Date.now(); });
    };

    const w = watchPods(kc, namespace, `${STAGE_LABEL}=generate`, (type, pod) => {
        const uid = pod.metadata.uid as string;
        const running = type !== "DELETED" && pod.status?.phase === "Running" && !pod.metadata.deletionTimestamp;
        if (running && !children.has(uid)) begin(pod);
        else if (!running) children.get(uid)?.release();
    });
    return {
        runs,
        stop: async () => {
            w.stop();
            for (const c of children.values()) c.release();
            await Promise.all([...children.values()].map((c) => c.exited));
            fs.rmSync(tmp, { recursive: true, force: true });
        },
    };
}

// ---------------------------------------------------------------------------------------------------
// GPU timeline

export interface PodInterval {
    pod: string;
    stage?: string;
    variant?: string;
    gpus: number;
    /** ms: PodScheduled=True (the GPUs are the pod's from then on). */
    scheduled: number;
    /** ms: the last container's finishedAt, or the deletion request, or (still holding) undefined. */
    finished?: number;
    /** ms: the containers ran (Job pods: the work). */
    started?: number;
    phase?: string;
}

export function gpuCount(pod: any, resource: string): number {
    let n = 0;
    for (const c of pod.spec?.containers ?? []) {
        const q = c.resources?.limits?.[resource] ?? c.resources?.requests?.[resource];
        if (q !== undefined) n += Number(q);
    }
    return n;
}

/** A pod's interval as the API server has it (NaN scheduled: never scheduled). */
export function podInterval(pod: any, resource: string): PodInterval {
    const cond = (pod.status?.conditions ?? []).find((c: any) => c.type === "PodScheduled" && c.status === "True");
    const statuses = pod.status?.containerStatuses ?? [];
    const ends = statuses.map((c: any) => ms(c.state?.terminated?.finishedAt)).filter((x: number) => !Number.isNaN(x));
    // status.startTime: kwok's completion stage rewrites the containers' startedAt to the end time.
    const starts = [ms(pod.status?.startTime), ...statuses.map((c: any) => ms(c.state?.running?.startedAt))].filter((x: number) => !Number.isNaN(x));
    let finished: number | undefined;
    if (["Succeeded", "Failed"].includes(pod.status?.phase) && ends.length) finished = Math.max(...ends);
    else if (pod.metadata?.deletionTimestamp) {
        // deletionTimestamp is the end of the grace period: the request came that much earlier.
        finished = ms(pod.metadata.deletionTimestamp) - 1000 * Number(pod.metadata.deletionGracePeriodSeconds ?? 0);
    }
    return {
        pod: pod.metadata.name,
        stage: pod.metadata.labels?.[STAGE_LABEL],
        variant: pod.metadata.labels?.[VARIANT_LABEL],
        gpus: gpuCount(pod, resource),
        scheduled: ms(cond?.lastTransitionTime),
        finished,
        started: starts.length ? Math.min(...starts) : undefined,
        phase: pod.status?.phase,
    };
}

export interface GpuTimeline extends Stoppable {
    /** Resolves once the watch has started (every pod that existed then is in). */
    readonly synced: Promise<void>;
    /** Every pod seen, GPU or not, latest state (deleted pods included). */
    allPods(): PodInterval[];
    /** Every scheduled GPU pod; one still holding its GPUs ends at `now`. */
    gpuPods(now?: number): PodInterval[];
}

/**
 * Records every pod of `namespace` from the API server (watched from now on, so that pods the
 * ReplicaSet deletes when the teacher scales down are kept): scheduled (PodScheduled) -> finished
 * (containers' finishedAt, the deletion request, or still running).
 */
export function gpuTimeline(kubeconfig: string, namespace: string, gpuResource = "amd.com/gpu"): GpuTimeline {
    const kc = loadKubeConfig(kubeconfig);
    const pods = new Map<string, PodInterval>();
    const w = watchPods(kc, namespace, undefined, (type, pod) => {
        const iv = podInterval(pod, gpuResource);
        if (type === "DELETED" && iv.finished === undefined) iv.finished = Date.now();
        const old = pods.get(pod.metadata.uid);
        // a pod forgets nothing: keep a finish seen earlier (e.g. before kwok removed the pod)
        if (old?.finished !== undefined && iv.finished === undefined) iv.finished = old.finished;
        if (old?.started !== undefined) iv.started = Math.min(old.started, iv.started ?? Infinity);
        pods.set(pod.metadata.uid, iv);
    });
    return {
        synced: w.synced,
        stop: async () => w.stop(),
        allPods: () => [...pods.values()],
        gpuPods: (now = Date.now()) => [...pods.values()]
            .filter((p) => p.gpus > 0 && !Number.isNaN(p.scheduled))
            .map((p) => ({ ...p, finished: p.finished ?? now })),
    };
}

export interface GpuFigures {
    /** GPU-hours the pods held (scheduled -> finished x GPUs). */
    held: number;
    /** GPU-hours of work: Job pods' run time; the teacher's only while a generation pod runs. */
    work: number;
    ratio: number;
    /** Hours from the first pod scheduled to the last pod's end (every pod of the run, GPU or not). */
    makespan: number;
    /** GPU pods still holding GPUs at `now`. */
    holding: string[];
}

const overlap = (a0: number, a1: number, b0: number, b1: number) => Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));

/** GPU figures of a timeline; `secondsPerHour`: 3600 for real time, 1 when 1 s simulates an hour. */
export function gpuFigures(all: PodInterval[], opts: { now?: number; secondsPerHour?: number } = {}): GpuFigures {
    const now = opts.now ?? Date.now();
    const hour = 1000 * (opts.secondsPerHour ?? 3600);
    const gpu = all.filter((p) => p.gpus > 0 && !Number.isNaN(p.scheduled));
    const end = (p: PodInterval) => p.finished ?? now;
    const generating = all.filter((p) => p.stage === "generate" && p.started !== undefined).map((p) => [p.started!, end(p)] as const);
    let held = 0;
    let work = 0;
    for (const p of gpu) {
        held += (end(p) - p.scheduled) * p.gpus;
        if (p.stage === "teacher") {
            for (const [g0, g1] of generating) work += overlap(p.scheduled, end(p), g0, g1) * p.gpus;
        } else {
            work += (end(p) - (p.started ?? p.scheduled)) * p.gpus;
        }
    }
    // From the first pod scheduled to the last pod that ended (a teacher kept serving never ends).
    const timed = all.filter((p) => !Number.isNaN(p.scheduled));
    const ended = timed.filter((p) => p.finished !== undefined);
    const makespan = ended.length ? Math.max(...ended.map(end)) - Math.min(...timed.map((p) => p.scheduled)) : 0;
    return {
        held: held / hour,
        work: work / hour,
        ratio: work > 0 ? held / work : NaN,
        makespan: makespan / hour,
        holding: gpu.filter((p) => p.finished === undefined).map((p) => p.pod),
    };
}

/** The longest path through the stage DAG, each node taking `seconds(node)`. */
export function criticalPath(nodes: StageNode[], seconds: (n: StageNode) => number): { seconds: number; path: { id: string; seconds: number }[] } {
    const best = new Map<string, { total: number; path: { id: string; seconds: number }[] }>();
    // stageGraph lists every dependency before its dependents
    for (const n of nodes) {
        const s = seconds(n);
        let prev: { total: number; path: { id: string; seconds: number }[] } = { total: 0, path: [] };
        for (const d of n.deps) {
            const b = best.get(d);
            if (!b) throw new Error(`${n.id} depends on ${d}, which comes later or is missing`);
            if (b.total > prev.total) prev = b;
        }
        best.set(n.id, { total: prev.total + s, path: [...prev.path, { id: n.id, seconds: s }] });
    }
    let top = { total: 0, path: [] as { id: string; seconds: number }[] };
    for (const b of best.values()) if (b.total > top.total) top = b;
    return { seconds: top.total, path: top.path };
}

/** The (stage, variant) a DAG node's Job pods carry: the key of its entry in a durations list. */
export function nodeLabels(n: StageNode): { stage: string; variant?: string } {
    switch (n.kind) {
        case "download": return { stage: "download", variant: n.size };
        case "train": return { stage: "train", variant: n.variant };
        case "sample":
        case "evaluate": return { stage: n.kind, variant: n.model.name };
        default: return { stage: n.kind };
    }
}

/** Seconds of a node under `durations` (most specific entry; none: 0). */
export function durationOf(durations: StageDuration[], n: StageNode): number {
    const { stage, variant } = nodeLabels(n);
    return (durations.find((d) => d.stage === stage && d.variant === variant) ?? durations.find((d) => d.stage === stage && !d.variant))?.seconds ?? 0;
}

// `npm run rehearse -- (--stack <name> | --config <Pulumi.<stack>.yaml>) [--like <kubeconfig>]
//      [--scale <simulated seconds per real hour>] [--parallel N] [--bench <file>]... [--plan-only] [--keep]`
//
// Runs the REAL `pulumi up` of a stack on a local control plane with simulated GPU nodes (sim/: the
// toolchain, cluster.sh, kwok; the e2e tier runs the same), each Job running for its estimated duration
// (scripts/estimate.ts) scaled down, then prints the order stages ran in, a GPU timeline, makespan,
// GPU-hours and cost. Throw-away state: a local file backend and PULUMI_HOME in a temp dir; the
// stack's cluster.kubeconfig/context are pointed at the local cluster. Nothing is written to the
// user's Pulumi state or cluster (--like only reads nodes and StorageClasses).
import * as k8s from "@kubernetes/client-node";
import { InvalidArgumentError, Option } from "commander";
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as YAML from "yaml";
import { Settings } from "../config";
import type { Measured } from "../config/measured";
import { LABELS, PROJECT, VOLUME_NAMES } from "../contract";
import { gpuFigures, PodTimeline } from "../sim/gpu";
import { applyStageDurations } from "../sim/stages";
import { holdTeacherWhileGenerating } from "../sim/teacher";
import { loadKubeConfig, watchObjects, Watching, watchPods } from "../sim/watch";
import { fmtDuration } from "./duration";
import {
    EstimateTarget, estimateStages, parseBench, plan, pulumiDefaultParallel, requiredParallel, stageGraph, StageEstimate, teacherLoadSeconds,
    timeoutProblems,
} from "./estimate";
import {
    ClassShape, classManifest, classShape, claimProblems, defaultNodes, gpusPerNodeProblems, Interval, keysToChange, neverSchedulable, nodeManifest, NodeShape,
    nodeShape, textTimeline,
} from "./rehearse-core";
import { readStackFile, StackFile, stackFilePath, stackSettings } from "../config/stackfile";
import { CLI_EXIT, CliError, command, runCli, unknownStack } from "./cli";

const ROOT = path.resolve(__dirname, "..");

/**
 * Draws the GPU timeline with the report's own chart (images/trainer/report.py render_timeline), so a
 * rehearsal and a real run's report look alike. Needs python3 with matplotlib; says so otherwise.
 */
function timelinePng(stack: string, rows: Interval[], scale: number, gpuHoursTotal: number): string {
    const t0 = Date.UTC(2026, 0, 1);
    const iso = (simSec: number) => new Date(t0 + (simSec / scale) * 3600 * 1000).toISOString().replace(/\.\d+Z$/, "Z");
    const report = {
        run: `${stack} (rehearsal)`,
        total_gpu_hours: gpuHoursTotal,
        jobs: rows.map((r) => ({ job: r.name, stage: r.stage, variant: r.variant ?? null, gpus: r.gpus, start: iso(r.start), seconds: ((r.end - r.start) / scale) * 3600 })),
    };
    const out = path.join(ROOT, "out", "rehearse", stack);
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, "timeline.json"), JSON.stringify(report, null, 2));
    const png = path.join(out, "gpu_timeline.png");
    const code = [
        "import json, sys",
        `sys.path[:0] = [${JSON.stringify(path.join(ROOT, "images", "trainer"))}, ${JSON.stringify(path.join(ROOT, "images", "common"))}]`,
        "import report",
        `data = report.render_timeline(json.load(open(${JSON.stringify(path.join(out, "timeline.json"))})))`,
        `open(${JSON.stringify(png)}, "wb").write(data)`,
    ].join("\n");
    // python3, else the Python tier's venv (`npm test` makes it; it has matplotlib).
    const venvs = ((): string[] => {
        const dir = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "cot-vr-py");
        try {
            return fs.readdirSync(dir).map((d) => path.join(dir, d, "bin", "python")).filter((p) => fs.existsSync(p));
        } catch {
            return [];
        }
    })();
    let r = spawnSync("python3", ["-c", code], { encoding: "utf8" });
    for (const py of venvs) if (r.status !== 0) r = spawnSync(py, ["-c", code], { encoding: "utf8" });
    return r.status === 0
        ? `timeline PNG: ${path.relative(process.cwd(), png)} (the report's chart)`
        : `timeline PNG: not drawn (python3 with matplotlib is needed: ${(r.stderr || r.error?.message || "").trim().split("\n").pop()}); the rows are in ${path.relative(process.cwd(), path.join(out, "timeline.json"))}`;
}
const SIM = path.join(ROOT, "sim");
/** Without --scale, the estimated makespan is simulated in about this many seconds (the blog's ~36 h:
 * ~3.3 s per real hour), never faster than 1 s per real hour nor slower than real time. */
const TARGET_SIM_SECONDS = 120;
export function defaultScale(makespanSeconds: number): number {
    const hours = makespanSeconds / 3600;
    return hours > 0 ? Math.min(3600, Math.max(1, TARGET_SIM_SECONDS / hours)) : 60;
}
/** A pod that no node can ever hold is reported once the scheduler said why (or after this long). */
const UNSCHEDULABLE_GRACE_MS = 4000;

const say = (msg: string) => console.log(`[rehearse] ${msg}`);
/** Why the real run would fail or stall: printed whole (it lists the keys to change), exit 1. */
class Failure extends CliError {
    constructor(message: string) {
        super(`[rehearse] FAILED: ${message}`, CLI_EXIT.failed);
    }
}

interface Args {
    stackFile: string;
    like?: string;
    scale?: number;
    parallel?: number;
    bench: string[];
    /** Estimate the fine-tunes on the GPU each was measured on (no MI300X conversion). */
    target: EstimateTarget;
    planOnly: boolean;
    keep: boolean;
}

function parse(argv: string[]): Args {
    const cmd = command("rehearse", "Run the REAL `pulumi up` of a stack on a local control plane with simulated MI300X nodes (kwok), each Job running for its estimated duration scaled down; print the plan, the order stages ran in, a GPU timeline, makespan, GPU-hours and cost. Never touches your Pulumi state or cluster (--like only reads nodes and StorageClasses). Exit codes: 0 rehearsed, 1 the run would fail or stall (the reason names the key to change), 2 bad options, 3 --like's cluster cannot be reached.", [
        "npm run rehearse -- --stack blog",
        "npm run rehearse -- --stack blog --plan-only",
        "npm run rehearse -- --stack blog --like ~/.kube/config --parallel 8",
    ])
        .addOption(new Option("--stack <name>", "a shipped stack (stacks/Pulumi.<name>.yaml)").conflicts("config"))
        .addOption(new Option("--config <file>", "a stack file elsewhere (Pulumi.<stack>.yaml)"))
        .option("--like <kubeconfig>", "copy this cluster's nodes and StorageClasses into the simulation (read only)")
        .addOption(new Option("--scale <seconds>", "simulated seconds per real hour (default: the run takes about two minutes)").argParser(positive))
        .addOption(new Option("--parallel <n>", "the --parallel you will give pulumi up (default: pulumi's, 4 x CPUs)").argParser(positive))
        .option("--bench <file...>", "fine-tune throughput measured by images/trainer/bench_finetune.py (its JSON or COTVR_BENCH log), before bench/results/; an MI300X result needs no conversion")
        .option("--on-measured-gpu", "estimate each fine-tune on the GPU its measurement came from (no MI300X conversion), to check against the benchmark's own projection", false)
        .option("--plan-only", "print the plan and its checks, build and start nothing", false)
        .option("--keep", "leave the local cluster running and print its KUBECONFIG", false);
    const v = cmd.parse(argv, { from: "user" }).opts<{ stack?: string; config?: string; like?: string; scale?: number; parallel?: number; bench?: string[]; onMeasuredGpu: boolean; planOnly: boolean; keep: boolean }>();
    if (!v.stack && !v.config) cmd.error("error: give --stack <name> or --config <file>");
    const stackFile = v.config ? path.resolve(v.config) : stackFilePath(v.stack!);
    if (!fs.existsSync(stackFile)) throw v.config ? new CliError(`no stack file ${stackFile}`, CLI_EXIT.usage) : unknownStack(v.stack!);
    return { stackFile, like: v.like, scale: v.scale, parallel: v.parallel, bench: v.bench ?? [], target: v.onMeasuredGpu ? "measured" : "mi300x", planOnly: v.planOnly, keep: v.keep };
}

/** A number above 0, for --scale and --parallel. */
function positive(v: string): number {
    const n = Number(v);
    if (!(n > 0)) throw new InvalidArgumentError("must be a number above 0");
    return n;
}

// ---------------------------------------------------------------------------------------------------
// Processes

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv, opts: { cwd?: string; input?: string } = {}) {
    const r = spawnSync(cmd, args, { cwd: opts.cwd ?? ROOT, env, input: opts.input, encoding: "utf8", maxBuffer: 256 << 20 });
    if (r.error) throw r.error;
    return { code: r.status ?? -1, out: (r.stdout ?? "") + (r.stderr ?? ""), stdout: r.stdout ?? "" };
}

function must(r: { code: number; out: string }, what: string): string {
    if (r.code !== 0) throw new Failure(`${what} failed (exit ${r.code}):\n${r.out.slice(-4000)}`);
    return r.out;
}

/** PATH with the e2e toolchain, built on first use; its build log lines stream to the terminal. */
async function toolchainPath(): Promise<string> {
    say("toolchain: sim/toolchain.sh (the first run downloads Pulumi, the Kubernetes provider, etcd, kube-apiserver, ...: a minute or two with internet; else it builds them from the Go module proxy: 20-40 minutes; cached after)");
    const t0 = Date.now();
    const cache = process.env.COT_E2E_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "cot-vr-e2e");
    const p = spawn("bash", ["-c", `eval "$(bash "$1" --env)" && printf '%s' "$PATH"`, "toolchain", path.join(SIM, "toolchain.sh")], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    // Visible progress during a cold build: every 30 s, the newest build log's last line.
    const ticker = setInterval(() => {
        let newest: { f: string; m: number } | undefined;
        for (const f of fs.existsSync(cache) ? fs.readdirSync(cache) : []) {
            if (!f.endsWith(".build.log")) continue;
            const m = fs.statSync(path.join(cache, f)).mtimeMs;
            if (!newest || m > newest.m) newest = { f, m };
        }
        const last = newest ? fs.readFileSync(path.join(cache, newest.f), "utf8").trim().split("\n").pop()?.slice(0, 120) : "";
        say(`toolchain: still installing (${Math.round((Date.now() - t0) / 60000)} min) ${newest ? `${newest.f.replace(".build.log", "")}: ${last}` : ""}`);
    }, 30000);
    const code = await new Promise<number>((res) => p.on("close", (c) => res(c ?? 1)));
    clearInterval(ticker);
    if (code !== 0 || !out) throw new Failure("the e2e toolchain could not be installed (see above); it needs the official downloads or Go and the Go module proxy");
    return out;
}

// ---------------------------------------------------------------------------------------------------
// The real cluster (--like): read only

async function readLike(kubeconfig: string): Promise<{ nodes: NodeShape[]; classes: ClassShape[]; context: string }> {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const storage = kc.makeApiClient(k8s.StorageV1Api);
    const [nodes, classes] = await Promise.all([core.listNode(), storage.listStorageClass()]);
    // Enough nodes to show the pool's shape without simulating a thousand-node cluster.
    const items = nodes.items.slice(0, 64);
    return {
        nodes: items.map((n, i) => nodeShape(n as any, i)),
        classes: classes.items.map((c) => classShape(c as any)),
        context: kc.getCurrentContext(),
    };
}

/** The classes of sim/kwok/storageclasses.yaml (provisioner modes unknown: any mode binds). */
function e2eClasses(): ClassShape[] {
    const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(SIM, "kwok", "storageclasses.yaml"), "utf8")).map((d) => d.toJS());
    return docs.filter(Boolean).map((c) => ({ ...classShape(c), modes: undefined }));
}


// ---------------------------------------------------------------------------------------------------
// Watching the update

/**
 * The update's pods and claims, watched through the API (no polling): every pod's interval for the
 * GPU timeline, and the pods that can never be scheduled or wait for a claim that never binds.
 */
class UpdateWatch {
    readonly timeline: PodTimeline;
    failure?: string;
    private readonly pods = new Map<string, any>();
    private readonly claims = new Map<string, any>();
    private readonly pendingSince = new Map<string, number>();
    private watches: Watching[] = [];
    private timer?: NodeJS.Timeout;
    constructor(private kubeconfig: string, private ns: string, private nodes: NodeShape[], private s: Settings, private onFail: () => void) {
        this.timeline = new PodTimeline(s.cluster.gpuResource);
    }

    async start(): Promise<void> {
        const kc = loadKubeConfig(this.kubeconfig);
        this.watches = [
            watchPods(kc, this.ns, undefined, (type, pod) => {
                this.timeline.record(type, pod);
                if (type === "DELETED") this.pods.delete(pod.metadata.uid);
                else this.pods.set(pod.metadata.uid, pod);
                this.checkScheduling(pod, Date.now());
            }),
            watchObjects(kc, `/api/v1/namespaces/${this.ns}/persistentvolumeclaims`, undefined, (type, c) => {
                if (type === "DELETED") this.claims.delete(c.metadata.name);
                else this.claims.set(c.metadata.name, c);
            }),
        ];
        await Promise.all(this.watches.map((w) => w.synced));
        // The verdicts below wait for grace periods that run out between events.
        this.timer = setInterval(() => {
            const now = Date.now();
            for (const p of this.pods.values()) this.checkScheduling(p, now);
        }, 1000);
    }

    async stop(): Promise<void> {
        if (this.timer) clearInterval(this.timer);
        // the last pods' final states may still be on their way
        await new Promise((r) => setTimeout(r, 300));
        for (const w of this.watches) w.stop();
    }

    private checkScheduling(p: any, now: number): void {
        const cond = (p.status?.conditions ?? []).find((c: any) => c.type === "PodScheduled" && c.status === "False");
        if (!cond || this.failure || !this.pods.has(p.metadata.uid)) {
            this.pendingSince.delete(p.metadata.uid);
            return;
        }
        const since = this.pendingSince.get(p.metadata.uid) ?? now;
        this.pendingSince.set(p.metadata.uid, since);
        const owner = p.metadata.ownerReferences?.[0];
        const labels = p.metadata.labels ?? {};
        const what = `pod ${p.metadata.name} (${owner ? `${owner.kind} ` : ""}stage ${labels[LABELS.stage] ?? "?"}${labels[LABELS.variant] ? ` ${labels[LABELS.variant]}` : ""})`;
        // A claim that never binds: the scheduler says "unbound immediate PersistentVolumeClaims".
        const unbound = [...this.claims.values()].filter((c) => c.status?.phase !== "Bound" && (p.spec.volumes ?? []).some((v: any) => v.persistentVolumeClaim?.claimName === c.metadata.name));
        if (unbound.length && now - since > 15000) {
            const vols = unbound.map((c) => `${c.metadata.name} (class ${c.spec.storageClassName ?? "none"}, ${c.spec.accessModes?.join(",")})`);
            this.fail(`${what} waits for claims that never bound: ${vols.join("; ")}\n  scheduler: ${cond.message}\n  change: ${PROJECT}:storage.storageClass or ${PROJECT}:storage.<volume>.accessMode / existingClaim`);
            return;
        }
        const never = neverSchedulable(p, this.nodes, this.s.cluster.gpuResource);
        if (never && (cond.message || now - since > UNSCHEDULABLE_GRACE_MS)) {
            const keys = keysToChange(never);
            this.fail(`${what} can never be scheduled on these nodes\n  scheduler: ${cond.message ?? cond.reason}\n  per node:\n${never.map((l) => `    ${l}`).join("\n")}\n  change: ${keys.join(", ")}`);
        }
    }

    private fail(msg: string): void {
        this.failure = msg;
        this.onFail();
    }
}

// ---------------------------------------------------------------------------------------------------
// Phases: preflight (no cluster), cluster, deploy, summary

interface Rehearsal {
    a: Args;
    sf: StackFile;
    s: Settings;
    est: StageEstimate[];
    scale: number;
    need: { parallel: number; gpuJobs: number };
    /** The --parallel `pulumi up` runs with. */
    given: number;
    parallelNote: string;
    /** The cluster to simulate: the default one, or the shape of --like's. */
    nodes: NodeShape[];
    classes: ClassShape[];
    /** Measurements given with --bench. */
    bench: Measured[];
}

/** The blog stack's estimate beside this stack's, for a stack that is not the blog's (e.g. blog-node:
 * the same math on one node's GPUs): the same estimator, the same measurements. */
export function blogComparison(s: Settings, bench: readonly Measured[] = []): string | undefined {
    const file = stackFilePath("blog");
    if (s.stack === "blog" || !fs.existsSync(file)) return undefined;
    const { settings: blog } = stackSettings(readStackFile(file), { placeholderSecrets: true });
    const mine = plan(stageGraph(s), estimateStages(s, { bench }));
    const theirs = plan(stageGraph(blog), estimateStages(blog, { bench }));
    const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : "-");
    return `next to the blog stack (one GPU per fine-tune, one teacher): makespan ${fmtDuration(mine.makespan)} vs ${fmtDuration(theirs.makespan)} (${ratio(mine.makespan, theirs.makespan)}), ` +
        `${mine.gpuHours.toFixed(1)} vs ${theirs.gpuHours.toFixed(1)} GPU-hours (${ratio(mine.gpuHours, theirs.gpuHours)}), at most ${mine.peakGpus} vs ${theirs.peakGpus} GPUs at once (estimates)`;
}

function printPlan(s: Settings, est: StageEstimate[], scale: number, target: EstimateTarget, bench: readonly Measured[] = []): void {
    const p = plan(stageGraph(s), est);
    const where = target === "mi300x" ? "on MI300X" : "on MI300X, fine-tunes on the GPU each was measured on (--on-measured-gpu)";
    say(`estimated durations ${where} (estimates: see scripts/estimate.ts; fine-tunes from bench/results/, --bench comes first):`);
    for (const e of p.stages) {
        console.log(`  ${e.id.padEnd(28)} ${fmtDuration(e.seconds).padStart(6)}  ${e.gpus ? `${e.gpus} GPU` : "     "}  ${e.basis}`);
    }
    say(`estimate with unlimited GPUs: makespan ${fmtDuration(p.makespan)}, ${p.gpuHours.toFixed(1)} GPU-hours, at most ${p.peakGpus} GPUs at once; critical path ${p.criticalPath.join(" -> ")}`);
    const blog = blogComparison(s, bench);
    if (blog) say(blog);
    say(`simulated at ${scale.toPrecision(3)} s per real hour (--scale): about ${Math.round(p.makespan / 3600 * scale)} s`);
}

/** Everything that needs no cluster: the plan, timeouts, --parallel, the cluster's shape, claims. */
async function preflight(argv: string[]): Promise<Rehearsal> {
    const a = parse(argv);
    const sf = readStackFile(a.stackFile);
    const { settings: s } = stackSettings(sf, { placeholderSecrets: true });
    const bench = a.bench.flatMap((f) => parseBench(fs.readFileSync(f, "utf8"), f));
    const graph = stageGraph(s);
    const est = estimateStages(s, { bench, target: a.target });
    const scale = a.scale ?? defaultScale(plan(graph, est).makespan);
    say(`stack ${sf.stack} (${path.relative(process.cwd(), a.stackFile) || a.stackFile}), run ${s.run}, namespace ${s.cluster.namespace}`);
    printPlan(s, est, scale, a.target, bench);

    const tp = timeoutProblems(s, est);
    if (tp.length) throw new Failure(`a stage would be cut off by its timeout:\n${tp.map((x) => `  - ${x}`).join("\n")}`);

    const need = requiredParallel(graph, est);
    const given = a.parallel ?? pulumiDefaultParallel(os.cpus().length);
    const parallelNote = `this stack needs pulumi up --parallel >= ${need.parallel} (up to ${need.parallel} awaited Jobs can run at once, ${need.gpuJobs} of them on GPUs; each holds an engine slot for its whole run)`;
    say(parallelNote);
    if (given < need.parallel) {
        say(`WARNING: --parallel ${given}${a.parallel ? "" : ` (pulumi's default here: 4 x ${os.cpus().length} CPUs)`} would serialise stages: run pulumi up --parallel ${need.parallel}`);
    }

    let nodes = defaultNodes();
    let classes = e2eClasses();
    if (a.like) {
        const like = await readLike(a.like);
        say(`--like ${a.like} (context ${like.context}): ${like.nodes.length} nodes, ${like.nodes.filter((n) => Number(n.allocatable[s.cluster.gpuResource] ?? 0) > 0).length} with ${s.cluster.gpuResource}; StorageClasses ${like.classes.map((c) => `${c.name}${c.isDefault ? " (default)" : ""}`).join(", ") || "none"} (read only)`);
        nodes = like.nodes;
        classes = like.classes;
    }
    const gp = gpusPerNodeProblems(s, nodes);
    if (gp.length) throw new Failure(`a fine-tune asks for more GPUs than any node has:\n${gp.map((x) => `  - ${x}`).join("\n")}`);
    const cp = claimProblems(s, classes);
    if (cp.length) throw new Failure(`a volume claim would never bind:\n${cp.map((x) => `  - ${x}`).join("\n")}`);
    return { a, sf, s, est, scale, need, given, parallelNote, nodes, classes, bench };
}

/** The throw-away local cluster, its work dir and the environment of every command run against it. */
interface LocalCluster {
    work: string;
    dir: string;
    kubeconfig: string;
    env: NodeJS.ProcessEnv;
    /** Stops what was started (all of it, or, with --keep, nothing: it says where it is). */
    teardown(): Promise<void>;
    /** Stopped with the cluster, before it (the teacher scaler of the simulation). */
    onTeardown(stop: () => Promise<void> | void): void;
}

/** The toolchain, a work dir, the control plane (sim/cluster.sh) with the simulated nodes and classes. */
async function cluster(r: Rehearsal): Promise<LocalCluster> {
    const { a, s, nodes, classes } = r;
    const pathEnv = await toolchainPath();
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "cot-vr-rehearse-"));
    const dir = path.join(work, "cluster");
    const kubeconfig = path.join(dir, "kubeconfig");
    const env: NodeJS.ProcessEnv = {
        ...process.env, PATH: pathEnv, KUBECONFIG: kubeconfig,
        PULUMI_BACKEND_URL: `file://${path.join(work, "state")}`, PULUMI_HOME: path.join(work, "pulumi-home"),
        PULUMI_CONFIG_PASSPHRASE: "rehearsal", PULUMI_SKIP_UPDATE_CHECK: "true", PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
        PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true", NO_COLOR: "1",
    };
    for (const d of ["state", "pulumi-home"]) fs.mkdirSync(path.join(work, d), { recursive: true });
    const stops: (() => Promise<void> | void)[] = [];
    let up = false;
    let done = false;
    const c: LocalCluster = {
        work, dir, kubeconfig, env,
        onTeardown: (stop) => void stops.push(stop),
        teardown: async () => {
            if (done) return;
            done = true;
            for (const stop of stops) await Promise.resolve().then(stop).catch(() => undefined);
            if (a.keep) {
                say(`kept: KUBECONFIG=${kubeconfig}; stop with: bash sim/cluster.sh stop ${dir}; work dir ${work}`);
            } else if (up) {
                sh("bash", [path.join(SIM, "cluster.sh"), "stop", dir], env);
                fs.rmSync(work, { recursive: true, force: true });
            }
        },
    };
    const onSignal = () => void c.teardown().then(() => process.exit(130));
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
        say("starting the local control plane (sim/cluster.sh)");
        up = true;
        must(sh("bash", [path.join(SIM, "cluster.sh"), "start", dir], env), "cluster.sh start");
        // Replace the e2e tier's nodes and classes by the simulated cluster's.
        const kubectl = (args: string[], input?: string) => must(sh("kubectl", args, env, { input }), `kubectl ${args.slice(0, 3).join(" ")}`);
        kubectl(["delete", "nodes", "--all", "--wait=false"]);
        kubectl(["delete", "storageclasses", "--all"]);
        const docs = [...nodes.map(nodeManifest), ...classes.map(classManifest)];
        kubectl(["create", "-f", "-"], docs.map((d) => YAML.stringify(d)).join("---\n"));
        kubectl(["wait", "--for=condition=Ready", "node", "--all", "--timeout=60s"]);
        for (let i = 0; i < 100; i++) {
            if (!/node\.kubernetes\.io\//.test(kubectl(["get", "nodes", "-o", "jsonpath={.items[*].spec.taints[*].key}"]))) break;
            await new Promise((res) => setTimeout(res, 300));
        }
        say(`simulated nodes: ${nodes.map((n) => `${n.name}${n.allocatable[s.cluster.gpuResource] ? ` (${n.allocatable[s.cluster.gpuResource]} GPUs)` : ""}`).join(", ")}`);

        // What the stack expects to exist already: its namespace (createNamespace false) and existing claims.
        const ns = s.cluster.namespace;
        const existing = VOLUME_NAMES.filter((v) => s.storage[v].existingClaim);
        if (!s.cluster.createNamespace || existing.length) kubectl(["create", "namespace", ns]);
        for (const v of existing) {
            const vol = s.storage[v];
            kubectl(["create", "-f", "-"], YAML.stringify({
                apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name: vol.existingClaim, namespace: ns },
                spec: { accessModes: [vol.accessMode], resources: { requests: { storage: vol.size } }, ...(s.storage.storageClass ? { storageClassName: s.storage.storageClass } : {}) },
            }));
            say(`storage.${v}.existingClaim ${vol.existingClaim}: created in the simulation (on your cluster it must exist in namespace ${ns})`);
        }
        return c;
    } catch (e) {
        await c.teardown();
        throw e;
    }
}

interface Deployed {
    timeline: PodTimeline;
    /** Wall-clock ms: `pulumi up` started and returned. */
    t0: number;
    t1: number;
}

/** A copy of the project with the stack pointed at the local cluster, simulated durations, the real `pulumi up`. */
async function deploy(r: Rehearsal, c: LocalCluster): Promise<Deployed> {
    const { a, sf, s, est, scale, nodes } = r;
    const { env, work, kubeconfig } = c;
    const proj = path.join(work, "project");
    fs.mkdirSync(path.join(proj, "stacks"), { recursive: true });
    for (const e of fs.readdirSync(ROOT)) {
        // sim/ travels: the program's preview notes use the estimator, which reads sim/critical-path.ts.
        if (["node_modules", ".git", "render", "out", ".ci", "images", "test", "stacks"].includes(e)) continue;
        fs.cpSync(path.join(ROOT, e), path.join(proj, e), { recursive: true });
    }
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(proj, "node_modules"));
    fs.copyFileSync(a.stackFile, path.join(proj, "stacks", `Pulumi.${sf.stack}.yaml`));
    const pulumi = (...args: string[]) => must(sh("pulumi", [...args, "--stack", sf.stack, "--non-interactive"], env, { cwd: proj }), `pulumi ${args[0]} ${args[1] ?? ""}`);
    must(sh("pulumi", ["stack", "init", sf.stack, "--non-interactive"], env, { cwd: proj }), "pulumi stack init");
    pulumi("config", "set-all", "--path", "--plaintext", `${PROJECT}:cluster.kubeconfig=${kubeconfig}`, "--plaintext", `${PROJECT}:cluster.context=e2e`);
    for (const k of sf.unsetSecrets) {
        const key = k.slice(PROJECT.length + 1);
        if (key === "hfToken" || (key === "wandbApiKey" && s.trainings.some(([, v]) => v.metricLogger === "wandb")) || (key === "registryPassword" && s.images.build)) {
            pulumi("config", "set", "--secret", k, "rehearsal-placeholder");
        }
    }

    // Simulated durations.
    const durations = est.filter((e) => e.stage !== "teacher").map((e) => ({ stage: e.stage, variant: e.variant, seconds: e.seconds / 3600 * scale }));
    // The teacher pod turns Ready after its estimated start; the generation's estimate includes it.
    await applyStageDurations(kubeconfig, durations, { teacherStartSeconds: teacherLoadSeconds() / 3600 * scale });
    if (s.stages.generate && !s.teacher.keep) {
        const hold = holdTeacherWhileGenerating(kubeconfig, s.cluster.namespace, s.run);
        c.onTeardown(() => hold.stop());
    }

    const upArgs = ["up", "--yes", "--skip-preview", "--stack", sf.stack, "--non-interactive"];
    if (a.parallel) upArgs.push("--parallel", String(a.parallel));
    let up: ReturnType<typeof spawn> | undefined;
    const watch = new UpdateWatch(kubeconfig, s.cluster.namespace, nodes, s, () => up?.kill("SIGINT"));
    await watch.start();
    say(`pulumi ${upArgs.join(" ")} (real engine, throw-away backend in ${work})`);
    up = spawn("pulumi", upArgs, { cwd: proj, env, stdio: ["ignore", "pipe", "pipe"] });
    let upOut = "";
    const log = fs.createWriteStream(path.join(work, "pulumi-up.log"));
    up.stdout!.on("data", (d) => { upOut += d; log.write(d); });
    up.stderr!.on("data", (d) => { upOut += d; log.write(d); });
    const t0 = Date.now();
    const code = await new Promise<number>((res) => up!.on("close", (x) => res(x ?? 1)));
    const t1 = Date.now();
    await watch.stop();
    log.end();
    if (watch.failure) throw new Failure(`the real run would stall here:\n  ${watch.failure}`);
    if (code !== 0) throw new Failure(`pulumi up failed (exit ${code}):\n${upOut.slice(-5000)}`);
    return { timeline: watch.timeline, t0, t1 };
}

/** What happened: the order stages ran in, the GPU timeline, makespan, GPU-hours, cost. */
function summary(r: Rehearsal, d: Deployed): void {
    const { s, scale, need, given, parallelNote } = r;
    const { timeline, t0, t1 } = d;
    const pods = timeline.all();
    // From the first pod scheduled: the engine's own start (seconds) would read as an hour at this scale.
    const first = Math.min(...pods.flatMap((p) => [p.scheduled, p.started ?? Infinity]).filter((t) => !Number.isNaN(t)));
    const tStart = Number.isFinite(first) ? first : t0;
    const sec = (t: number) => (t - tStart) / 1000;
    const digits = sec(t1) / scale < 3 ? 2 : 1;
    const hours = (simSec: number) => (simSec / scale).toFixed(digits);

    console.log("\nStages in the order they ran (estimated real hours from the start of the update):");
    const ran = pods.filter((p) => p.started !== undefined).sort((x, y) => x.started! - y.started!);
    for (const p of ran) {
        console.log(`  ${hours(sec(p.started!)).padStart(6)} - ${hours(sec(p.finished ?? t1)).padStart(6)} h  ${p.stage ?? "?"}${p.variant ? ` ${p.variant}` : ""}${p.gpus ? `  (${p.gpus} GPU)` : ""}`);
    }
    // The GPU rows: the intervals the pods held their GPUs (sim/gpu.ts), as `status` counts them.
    const rows: Interval[] = timeline.gpuPods(t1).map((p) => ({
        name: p.pod, stage: p.stage ?? "?", variant: p.variant, gpus: p.gpus, node: p.node, start: sec(p.scheduled), end: sec(p.finished!),
    }));
    console.log("\nGPU timeline (one row per GPU pod):");
    console.log(textTimeline(rows, { scale, digits }));
    const makespan = sec(t1) / scale;
    const gh = gpuFigures(pods, { now: t1, secondsPerHour: scale }).held;
    console.log(`\nmakespan ${makespan.toFixed(digits)} h (first pod to the end of pulumi up, simulated; the scheduler's and engine's latency between stages counts x${(3600 / scale).toFixed(0)})`);
    console.log(`GPU-hours ${gh.toFixed(digits)}`);
    const blog = blogComparison(s, r.bench);
    if (blog) console.log(blog);
    const price = s.cluster.gpuHourPrice;
    console.log(price ? `cost ${(gh * price.amount).toFixed(2)} ${price.currency} at ${price.amount} ${price.currency} per GPU-hour` : `cost: set ${PROJECT}:cluster.gpuHourPrice to see it`);
    console.log(parallelNote);
    if (given < need.parallel) console.log(`WARNING: with --parallel ${given} the engine serialised stages; use --parallel ${need.parallel}`);
    console.log(timelinePng(s.stack, rows, scale, gh));
}

async function main(argv: string[]): Promise<number> {
    const r = await preflight(argv);
    if (r.a.planOnly) return CLI_EXIT.ok;
    const c = await cluster(r);
    try {
        summary(r, await deploy(r, c));
        return 0;
    } finally {
        await c.teardown();
    }
}

if (require.main === module) runCli(main);

export { main };

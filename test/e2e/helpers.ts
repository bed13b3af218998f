// Helpers of the e2e suite: a throw-away copy of the project per stack, the `pulumi` CLI on a local
// file backend, kubectl against the e2e cluster (sim/cluster.sh), and a pod monitor.
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { STAGE_NAMES } from "../../contract";

export const ROOT = path.resolve(__dirname, "../..");
export const WORK = process.env.COT_E2E_WORK ?? "";
export const CLUSTER = process.env.COT_E2E_CLUSTER ?? "";
export const KUBECONFIG = CLUSTER ? path.join(CLUSTER, "kubeconfig") : "";
export const PROJECT = "cot-vr";

export function requireCluster(): void {
    if (!WORK || !fs.existsSync(KUBECONFIG)) {
        throw new Error("no e2e cluster: run the suite with `bash test/e2e/run.sh` (it builds the toolchain and starts the cluster)");
    }
}

/** Environment of every pulumi/kubectl call: local file backend, no network, the e2e cluster. */
export function pulumiEnv(): NodeJS.ProcessEnv {
    const state = path.join(WORK, "state");
    fs.mkdirSync(state, { recursive: true });
    fs.mkdirSync(path.join(WORK, "pulumi-home"), { recursive: true });
    return {
        ...process.env,
        KUBECONFIG,
        PULUMI_BACKEND_URL: `file://${state}`,
        PULUMI_CONFIG_PASSPHRASE: "e2e-passphrase",
        PULUMI_SKIP_UPDATE_CHECK: "true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
        PULUMI_HOME: path.join(WORK, "pulumi-home"),
        PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
        NO_COLOR: "1",
    };
}

export interface Result {
    code: number;
    stdout: string;
    stderr: string;
    out: string;
    seconds: number;
}

export function run(cmd: string, args: string[], opts: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {}): Result {
    const t0 = Date.now();
    const r = spawnSync(cmd, args, {
        cwd: opts.cwd ?? ROOT,
        env: opts.env ?? pulumiEnv(),
        input: opts.input,
        encoding: "utf8",
        maxBuffer: 256 * 1024 * 1024,
    });
    if (r.error) throw r.error;
    const res = { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, out: r.stdout + r.stderr, seconds: (Date.now() - t0) / 1000 };
    fs.appendFileSync(path.join(WORK, "commands.log"),
        `\n$ (${opts.cwd ?? ROOT}) ${cmd} ${args.join(" ")}\n-> exit ${res.code} in ${res.seconds}s\n${res.out}\n`);
    return res;
}

/** Like run, without blocking the event loop (so a monitor can poll the cluster meanwhile). */
export function runAsync(cmd: string, args: string[], opts: { cwd?: string; signal?: AbortSignal } = {}): Promise<Result> {
    const t0 = Date.now();
    return new Promise((resolve, reject) => {
        // aborted: SIGINT, which pulumi handles as a graceful cancel
        const p = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: pulumiEnv(), signal: opts.signal, killSignal: "SIGINT" });
        let stdout = "";
        let stderr = "";
        p.stdout.on("data", (d) => (stdout += d));
        p.stderr.on("data", (d) => (stderr += d));
        p.on("error", (e) => { if (e.name !== "AbortError") reject(e); });
        p.on("close", (code) => {
            const res = { code: code ?? -1, stdout, stderr, out: stdout + stderr, seconds: (Date.now() - t0) / 1000 };
            fs.appendFileSync(path.join(WORK, "commands.log"),
                `\n$ (${opts.cwd ?? ROOT}) ${cmd} ${args.join(" ")}\n-> exit ${res.code} in ${res.seconds}s\n${res.out}\n`);
            resolve(res);
        });
    });
}

export function must(r: Result, what: string): Result {
    if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.out.slice(-6000)}`);
    return r;
}

export function kubectl(...args: string[]): Result {
    return run("kubectl", args);
}

export function kubectlJson<T = any>(...args: string[]): T {
    return JSON.parse(must(kubectl(...args, "-o", "json"), `kubectl ${args.join(" ")}`).stdout) as T;
}

/**
 * A copy of the project in the work dir (node_modules linked), so stack files and Pulumi.yaml can be
 * changed and stacks created without touching the repository.
 */
export function projectCopy(name: string): string {
    const dir = path.join(WORK, "projects", name);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const skip = new Set(["node_modules", ".git", "render", "out", ".ci", "images", "test"]);
    for (const e of fs.readdirSync(ROOT)) {
        if (skip.has(e)) continue;
        fs.cpSync(path.join(ROOT, e), path.join(dir, e), { recursive: true });
    }
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
    return dir;
}

export interface Stack {
    dir: string;
    name: string;
    pulumi(...args: string[]): Result;
    pulumiAsync(args: string[], signal?: AbortSignal): Promise<Result>;
    setConfig(key: string, value: string, opts?: { secret?: boolean; path?: boolean; type?: "string" | "bool" | "int" | "float" }): void;
    /** Several plain values by path in one call (`pulumi config set-all --path`). */
    setConfigPaths(values: Record<string, string>): void;
}

/**
 * `pulumi stack init` of a stack in a project copy. `stackFile` is the shipped stack file to start
 * from (copied into the copy's stacks/ under the new name); the cluster settings are pointed at the
 * e2e cluster and the secrets get placeholder values.
 */
export function initStack(name: string, opts: { from?: string; stackFileText?: string; namespace?: string; copy?: string } = {}): Stack {
    const dir = opts.copy ?? projectCopy(name);
    const stacksDir = path.join(dir, "stacks");
    fs.mkdirSync(stacksDir, { recursive: true });
    const file = path.join(stacksDir, `Pulumi.${name}.yaml`);
    if (opts.stackFileText !== undefined) fs.writeFileSync(file, opts.stackFileText);
    else if (opts.from) fs.copyFileSync(path.join(ROOT, "stacks", `Pulumi.${opts.from}.yaml`), file);
    const st: Stack = {
        dir,
        name,
        pulumi: (...args) => run("pulumi", [...args, "--stack", name, "--non-interactive"], { cwd: dir }),
        pulumiAsync: (args, signal) => runAsync("pulumi", [...args, "--stack", name, "--non-interactive"], { cwd: dir, signal }),
        setConfig: (key, value, o = {}) => {
            const a = ["config", "set", `${PROJECT}:${key}`, value];
            if (o.path) a.push("--path");
            if (o.secret) a.push("--secret");
            if (o.type) a.push("--type", o.type);
            must(st.pulumi(...a), `pulumi config set ${key}`);
        },
        setConfigPaths: (values) => {
            const a = ["config", "set-all", "--path"];
            for (const [k, v] of Object.entries(values)) a.push("--plaintext", `${PROJECT}:${k}=${v}`);
            must(st.pulumi(...a), `pulumi config set-all ${Object.keys(values).join(" ")}`);
        },
    };
    must(run("pulumi", ["stack", "init", name, "--non-interactive"], { cwd: dir }), `pulumi stack init ${name}`);
    return st;
}

/** `npm run status -- --config <the stack's file> --json` from the project copy's stack file. */
export async function statusJson(st: Stack): Promise<{ code: Result["code"]; readonly json: any; out: string }> {
    const r = await runAsync(path.join(ROOT, "node_modules/.bin/tsx"), [path.join(ROOT, "scripts/status.ts"), "--config", path.join(st.dir, "stacks", `Pulumi.${st.name}.yaml`), "--json"]);
    // Parsed when read, so a caller can check the exit code (and show the output) first.
    return { code: r.code, get json() { return JSON.parse(r.stdout); }, out: r.out };
}

/**
 * Only the 11B's download and one sample of it (the sample waits for the download and is never
 * created when it fails), on the given trainer image, with the download's timeout: enough to stand
 * for any stage's Job.
 */
export function downloadOnly(st: Stack, trainerImage: string, downloadTimeout: string): void {
    st.setConfigPaths({
        ...Object.fromEntries(STAGE_NAMES.map((s) => [`stages.${s}`, String(s === "download" || s === "sample")])),
        "sample.variants[0]": "base-11b",
        "images.trainer": trainerImage,
        "timing.download.timeout": downloadTimeout,
    });
}

/** Point a stack at the e2e cluster (kubeconfig, context, namespace) and give it placeholder secrets. */
export function useE2eCluster(st: Stack, namespace: string): void {
    st.setConfigPaths({ "cluster.kubeconfig": KUBECONFIG, "cluster.context": "e2e", "cluster.namespace": namespace });
    st.setConfig("hfToken", "hf_e2e_placeholder_token", { secret: true });
}

// ---------------------------------------------------------------------------------------------------
// Cluster observations

export interface PodSample {
    t: number;
    pods: any[];
}

/** Polls the namespace's pods while an update runs, for scheduling assertions afterwards. */
export class PodMonitor {
    samples: PodSample[] = [];
    /** Called with each sample. */
    onSample?: (pods: any[]) => void;
    private timer?: NodeJS.Timeout;
    private busy = false;
    constructor(private namespace: string, private everyMs = 500) {}
    start(): void {
        this.timer = setInterval(() => {
            if (this.busy) return;
            this.busy = true;
            const p = spawn("kubectl", ["-n", this.namespace, "get", "pods", "-o", "json"], { env: pulumiEnv() });
            let out = "";
            p.stdout.on("data", (d) => (out += d));
            p.on("close", (code) => {
                this.busy = false;
                if (code === 0) {
                    try {
                        const pods = JSON.parse(out).items;
                        this.samples.push({ t: Date.now(), pods });
                        this.onSample?.(pods);
                    } catch {
                        /* partial output: skip the sample */
                    }
                }
            });
        }, this.everyMs);
    }
    stop(): void {
        if (this.timer) clearInterval(this.timer);
    }
    /** Every pod seen, latest state. */
    allPods(): any[] {
        const m = new Map<string, any>();
        for (const s of this.samples) for (const p of s.pods) m.set(p.metadata.uid, p);
        return [...m.values()];
    }
}

export function gpuRequest(pod: any, resource = "amd.com/gpu"): number {
    let n = 0;
    for (const c of pod.spec.containers ?? []) {
        const q = c.resources?.limits?.[resource] ?? c.resources?.requests?.[resource];
        if (q !== undefined) n += Number(q);
    }
    return n;
}

export function ts(s: string | undefined): number {
    return s ? Date.parse(s) : NaN;
}

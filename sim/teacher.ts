// The generation's teacher scaler, run for the simulated cluster's pods (kwok runs no containers):
// the real images/datagen/teacher_scale.py, through the API server with the ServiceAccount token and
// Role the real pod has, so that what it does to the teacher Deployment is what a real run does.
//
//   holdTeacherWhileGenerating   `teacher_scale.py hold` while a generation pod is Running
//   runTeacherWatchdog           the teacher's `release` sidecar (`teacher_scale.py watch`, its args
//                                from the deployed Deployment)
import * as k8s from "@kubernetes/client-node";
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { LABELS, selector } from "../contract";
import { loadKubeConfig, watchPods } from "./watch";

const ROOT = path.resolve(__dirname, "..");

export interface Stoppable {
    /** Stops watching; any hold still running releases the teacher first. */
    stop(): Promise<void>;
}

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
export async function accountApiArgs(kc: k8s.KubeConfig, dir: string, namespace: string, account: string): Promise<string[]> {
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
 * While a generation pod (stage label generate) of `namespace` is Running, run the release code of
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
        // teacher.replicas, as the generation's own args say (generate_cot.py --teacher-replicas).
        const gargs: string[] = pod.spec?.containers?.[0]?.args ?? [];
        const at = gargs.indexOf("--teacher-replicas");
        const replicas = at >= 0 ? gargs[at + 1] : "1";
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
                "hold", "--replicas", replicas, "--", "cat",
            ];
            const child = spawn("python3", args, { stdio: ["pipe", "pipe", "pipe"] });
            entry.child = child;
            child.stdout.on("data", (d) => (rec.output += d));
            child.stderr.on("data", (d) => (rec.output += d));
            if (released) child.stdin.end();
            await new Promise<void>((resolve) => child.on("close", (code) => { rec.exitCode = code; rec.ended = Date.now(); resolve(); }));
        })().catch((e) => { rec.output += `\n${e?.body ? JSON.stringify(e.body) : e}`; rec.exitCode = -1; rec.ended = Date.now(); });
    };

    const w = watchPods(kc, namespace, selector({ [LABELS.stage]: "generate" }), (type, pod) => {
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

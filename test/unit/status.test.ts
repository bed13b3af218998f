// `npm run status`: log parsing against logs recorded from the images' own Progress class and real
// program failures (test/fixtures/status, rewritten by record.py), rows, GPU-hours, ETA, cost and
// failure reasons from a cluster state in the API's shape, and the text screen (a file snapshot).
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { labels } from "../../components/naming";
import { LABELS, selector, StageName, STAGES, WATCHDOG_GRACE_SECONDS } from "../../contract";
import {
    bar, deriveStatus, DeploymentObject, failureReason, gpuHourPrice, JobObject, lastErrorLine, lastProgress,
    parseProgress, PodObject, podGpuHours, renderStatus, Snapshot,
} from "../../scripts/status-core";
import { stubKubeconfig } from "./stub-kubeconfig";

const FIX = path.join(__dirname, "../fixtures/status");
const log = (name: string) => fs.readFileSync(path.join(FIX, `${name}.log`), "utf8");
const expected = JSON.parse(fs.readFileSync(path.join(FIX, "expected.json"), "utf8")) as Record<string, { records: number; last: unknown }>;

const NS = "cot-vr";
const RUN = "blog";
const GPU = "amd.com/gpu";
const T = (hms: string) => `2026-05-04T${hms}Z`;
const H = (from: string, to: string) => (Date.parse(T(to)) - Date.parse(T(from))) / 3.6e6;

// ---------------------------------------------------------------------------------------------------
// A cluster state in the shape the API server returns (metadata, spec, status as `kubectl get -o json`).

function job(stage: string, variant: string, hash: string, o: { created: string; start?: string; completed?: string; failed?: { reason: string; message: string; at: string }; active?: number; deadline?: number }): JobObject {
    // Named as the program names Jobs: `<run>-<jobWord>-<variant>-<hash>` (evaluate: "eval").
    const name = [RUN, STAGES[stage as StageName].jobWord, variant, hash].join("-");
    const conditions = [];
    if (o.completed) conditions.push({ type: "Complete", status: "True", lastTransitionTime: T(o.completed) });
    if (o.failed) conditions.push({ type: "Failed", status: "True", reason: o.failed.reason, message: o.failed.message, lastTransitionTime: T(o.failed.at) });
    return {
        metadata: { name, uid: `uid-${name}`, labels: labels(RUN, stage, variant, hash), creationTimestamp: T(o.created) },
        spec: { backoffLimit: 0, activeDeadlineSeconds: o.deadline ?? 86400 },
        status: {
            startTime: o.start ? T(o.start) : undefined,
            completionTime: o.completed ? T(o.completed) : undefined,
            active: o.active,
            succeeded: o.completed ? 1 : undefined,
            failed: o.failed ? 1 : undefined,
            conditions,
        },
    };
}

interface PodOpts {
    created: string;
    scheduled?: string;
    unschedulable?: string;
    gpus?: number;
    phase: "Pending" | "Running" | "Succeeded" | "Failed";
    finished?: string;
    exitCode?: number;
    reason?: string;
    podReason?: string;
    podMessage?: string;
    waiting?: string;
}

function pod(owner: { kind: string; name: string; uid: string }, podName: string, lbl: Record<string, string>, o: PodOpts): PodObject {
    const conditions = [];
    if (o.scheduled) conditions.push({ type: "PodScheduled", status: "True", lastTransitionTime: T(o.scheduled) });
    if (o.unschedulable) conditions.push({ type: "PodScheduled", status: "False", reason: "Unschedulable", message: o.unschedulable, lastTransitionTime: T(o.created) });
    const state = o.phase === "Running" ? { running: { startedAt: T(o.scheduled!) } }
        : o.finished ? { terminated: { exitCode: o.exitCode ?? 0, reason: o.reason ?? (o.exitCode ? "Error" : "Completed"), startedAt: T(o.scheduled!), finishedAt: T(o.finished) } }
        : o.waiting ? { waiting: { reason: o.waiting } } : undefined;
    const gpu = o.gpus ? { [GPU]: String(o.gpus) } : {};
    return {
        metadata: { name: podName, labels: lbl, creationTimestamp: T(o.created), ownerReferences: [owner] },
        spec: {
            nodeName: o.scheduled ? (o.gpus ? "mi300x-0" : "cpu-0") : undefined,
            containers: [{ name: owner.kind === "Job" ? "main" : "vllm", resources: { requests: { cpu: "8", memory: "64Gi", ...gpu }, limits: { memory: "64Gi", ...gpu } } }],
        },
        status: {
            phase: o.phase,
            reason: o.podReason,
            message: o.podMessage,
            startTime: o.scheduled ? T(o.scheduled) : undefined,
            conditions,
            containerStatuses: state ? [{ name: owner.kind === "Job" ? "main" : "vllm", state, restartCount: 0 }] : [],
        },
    };
}

function jobPod(j: JobObject, suffix: string, o: PodOpts): PodObject {
    const name = j.metadata!.name!;
    return pod({ kind: "Job", name, uid: j.metadata!.uid! }, `${name}-${suffix}`, { ...j.metadata!.labels!, "batch.kubernetes.io/job-name": name }, o);
}

/** The blog run at 11:00 UTC: models downloaded, base evaluations done (the 90B one failed), teacher serving, CoT generation at 60%. */
function blogAt11(): { snap: Snapshot; now: number } {
    const dl11 = job("download", "11b", "3f2a9c1e", { created: "08:00:00", start: "08:00:01", completed: "08:03:40" });
    const dl90 = job("download", "90b", "c81d0b72", { created: "08:00:00", start: "08:00:01", completed: "08:07:33" });
    const ev11 = job("evaluate", "base-11b", "9e4f1a03", { created: "08:09:58", start: "08:09:58", completed: "08:24:43" });
    const ev90 = job("evaluate", "base-90b", "57b2d8aa", {
        created: "08:14:58", start: "08:14:58",
        failed: { reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit", at: "08:23:02" },
    });
    const gen = job("generate", "cot", "b04c7e19", { created: "08:29:55", start: "08:29:55", active: 1 });
    const teacher: DeploymentObject = {
        metadata: { name: `${RUN}-teacher`, uid: "uid-teacher", labels: labels(RUN, "teacher"), creationTimestamp: T("08:07:38") },
        spec: { replicas: 1 },
        status: { replicas: 1, readyReplicas: 1, availableReplicas: 1, conditions: [{ type: "Available", status: "True" }] },
    };
    const pods = [
        jobPod(dl11, "x7k2p", { created: "08:00:00", scheduled: "08:00:01", phase: "Succeeded", finished: "08:03:38" }),
        jobPod(dl90, "q9d4m", { created: "08:00:00", scheduled: "08:00:01", phase: "Succeeded", finished: "08:07:32" }),
        pod({ kind: "ReplicaSet", name: `${RUN}-teacher-6d5f8b`, uid: "uid-rs" }, `${RUN}-teacher-6d5f8b-tz8wq`, { ...labels(RUN, "teacher"), "pod-template-hash": "6d5f8b" },
            { created: "08:07:39", scheduled: "08:07:40", gpus: 1, phase: "Running" }),
        jobPod(ev11, "h2c8n", { created: "08:09:58", scheduled: "08:09:59", gpus: 1, phase: "Succeeded", finished: "08:24:42" }),
        jobPod(ev90, "m3v6r", { created: "08:14:58", scheduled: "08:14:59", gpus: 1, phase: "Failed", finished: "08:23:01", exitCode: 1 }),
        jobPod(gen, "w5j1s", { created: "08:29:55", scheduled: "08:29:56", phase: "Running" }),
    ];
    const logs: Record<string, string> = {
        // dl11's log is gone (its node was replaced): complete, progress unknown
        [pods[1].metadata!.name!]: log("download-90b.complete"),
        [pods[3].metadata!.name!]: log("evaluate-base-11b.complete"),
        [pods[4].metadata!.name!]: log("evaluate-base-90b.failed"),
        [pods[5].metadata!.name!]: log("generate.running"),
    };
    return {
        snap: { namespace: NS, run: RUN, gpuResource: GPU, jobs: [ev90, gen, dl90, ev11, dl11], pods, deployments: [teacher], logs },
        now: Date.parse(T("11:00:00")),
    };
}

// ---------------------------------------------------------------------------------------------------

describe("progress records in pod logs", () => {
    it("reads the same last record as cotvr_common.parse_progress, for every recorded log", () => {
        const names = Object.keys(expected);
        expect(names.length).toBeGreaterThanOrEqual(6);
        for (const name of names) {
            const text = fs.readFileSync(path.join(FIX, name), "utf8");
            expect(text.split("\n").map(parseProgress).filter(Boolean).length, name).toBe(expected[name].records);
            expect(lastProgress(text) ?? null, name).toEqual(expected[name].last);
        }
    });

    it("reads stage fields of a training record", () => {
        const r = lastProgress(log("train-lora-11b.running"))!;
        expect(r).toMatchObject({ stage: "train", variant: "lora-11b", unit: "steps", done: 4190, total: 7076, epoch: 2, epochs: 2 });
        expect(r.rate).toBeCloseTo(0.31, 6);
    });

    it("ignores what is no record: other lines, broken JSON, other versions; finds records behind a log prefix or a carriage return", () => {
        const rec = log("evaluate-base-11b.complete").split("\n").find((l) => l.startsWith("COTVR_PROGRESS "))!;
        expect(parseProgress("[cotvr] checking /data/cot_chartqa split train")).toBeUndefined();
        expect(parseProgress(rec.slice(0, -5))).toBeUndefined();
        expect(parseProgress(rec.replace('"v": 1', '"v": 2'))).toBeUndefined();
        expect(parseProgress(`2026-05-04T08:10:20.123456789Z stdout F ${rec}`)).toEqual(JSON.parse(rec.slice("COTVR_PROGRESS ".length)));
        // a tqdm bar on stderr, updated with \r, then the record
        expect(lastProgress(`Loading checkpoint shards:  40%|████      | 2/5\r${rec}\rLoading checkpoint shards:  60%|██████    | 3/5`)).toBeDefined();
        expect(lastProgress("no records here\n")).toBeUndefined();
    });

    it("takes the last `<program>: error:` line, after a traceback too", () => {
        expect(lastErrorLine(log("evaluate-base-90b.failed"))).toBe(
            "evaluate.py: error: unexpected RuntimeError: HIP out of memory. Tried to allocate 3.91 GiB. GPU 0 has a total capacity of 191.98 GiB");
        expect(lastErrorLine(log("train-qlora-90b.failed"))).toBe(
            "train.py: error: required input missing: /data/cot_chartqa/.complete.json (did the stage that produces it run and complete?)");
        expect(lastErrorLine(log("generate.running"))).toBeUndefined();
    });
});

describe("GPU-hours", () => {
    it("count scheduled -> finished (or now) x GPUs requested, nothing before scheduling or without GPUs", () => {
        const j = job("train", "lora-11b", "00000000", { created: "09:00:00" });
        const now = Date.parse(T("12:00:00"));
        expect(podGpuHours(jobPod(j, "a", { created: "09:00:00", scheduled: "09:30:00", gpus: 2, phase: "Succeeded", finished: "11:00:00" }), GPU, now)).toBeCloseTo(3, 9);
        expect(podGpuHours(jobPod(j, "b", { created: "09:00:00", scheduled: "10:00:00", gpus: 1, phase: "Running" }), GPU, now)).toBeCloseTo(2, 9);
        expect(podGpuHours(jobPod(j, "c", { created: "09:00:00", unschedulable: "0/3 nodes are available", gpus: 8, phase: "Pending" }), GPU, now)).toBe(0);
        expect(podGpuHours(jobPod(j, "d", { created: "09:00:00", scheduled: "09:00:00", phase: "Succeeded", finished: "10:00:00" }), GPU, now)).toBe(0);
        // another resource name (cluster.gpuResource)
        expect(podGpuHours(jobPod(j, "e", { created: "09:00:00", scheduled: "10:00:00", gpus: 1, phase: "Running" }), "nvidia.com/gpu", now)).toBe(0);
    });

    it("sum a Job's retries and the teacher's pods; client-node Date objects count like API strings", () => {
        const { snap, now } = blogAt11();
        const st = deriveStatus(snap, { now });
        const row = (stage: string, variant: string | null) => st.rows.find((r) => r.stage === stage && r.variant === variant)!;
        expect(row("teacher", null).gpuHours).toBeCloseTo(H("08:07:40", "11:00:00"), 9);
        expect(row("evaluate", "base-11b").gpuHours).toBeCloseTo(H("08:09:59", "08:24:42"), 9);
        expect(row("evaluate", "base-90b").gpuHours).toBeCloseTo(H("08:14:59", "08:23:01"), 9);
        expect(row("generate", "cot").gpuHours).toBe(0);
        expect(st.totals.gpuHours).toBeCloseTo(H("08:07:40", "11:00:00") + H("08:09:59", "08:24:42") + H("08:14:59", "08:23:01"), 9);

        const dated = structuredClone(snap);
        for (const p of dated.pods) {
            for (const c of p.status!.conditions!) c.lastTransitionTime = new Date(c.lastTransitionTime as string);
            for (const c of p.status!.containerStatuses!) if (c.state?.terminated) c.state.terminated.finishedAt = new Date(c.state.terminated.finishedAt as string);
        }
        expect(deriveStatus(dated, { now }).totals.gpuHours).toBeCloseTo(st.totals.gpuHours, 9);
    });
});

describe("rows of a recorded cluster state", () => {
    const { snap, now } = blogAt11();
    const st = deriveStatus(snap, { now, price: { amount: 2.5, currency: "USD" } });
    const row = (stage: string, variant: string | null) => st.rows.find((r) => r.stage === stage && r.variant === variant)!;

    it("one row per stage/variant, in pipeline order, with states", () => {
        expect(st.rows.map((r) => [r.stage, r.variant, r.state])).toEqual([
            ["download", "11b", "complete"],
            ["download", "90b", "complete"],
            ["teacher", null, "ready"],
            ["generate", "cot", "running"],
            ["evaluate", "base-11b", "complete"],
            ["evaluate", "base-90b", "failed"],
        ]);
    });

    it("progress from the latest record; unknown where the log is gone", () => {
        expect(row("download", "11b").progress).toBeNull();
        expect(row("download", "11b").fraction).toBe(1);
        expect(row("generate", "cot").progress).toMatchObject({ done: 17020, total: 28299, unit: "rows" });
        expect(row("generate", "cot").fraction).toBeCloseTo(17020 / 28299, 9);
        expect(row("evaluate", "base-90b").progress).toMatchObject({ done: 700, total: 2500 });
    });

    it("ETA from the rate, counted from the record's time; the teacher goes when the generation ends", () => {
        const eta = (28299 - 17020) / lastProgress(log("generate.running"))!.rate! - (Date.parse(T("11:00:00")) - Date.parse(T("10:59:37"))) / 1000;
        expect(row("generate", "cot").etaSeconds).toBeCloseTo(eta, 6);
        expect(row("teacher", null).etaSeconds).toBeCloseTo(eta, 6);
        expect(row("teacher", null).projectedGpuHours).toBeCloseTo(H("08:07:40", "11:00:00") + eta / 3600, 9);
        expect(row("evaluate", "base-11b").projectedGpuHours).toBe(row("evaluate", "base-11b").gpuHours);
        expect(st.totals.projectedComplete).toBe(true);
        expect(st.totals.projectedGpuHours).toBeCloseTo(st.totals.gpuHours + eta / 3600, 9);
    });

    it("a teacher up with no generation pod says its watchdog will free it, and when; a kept teacher does not", () => {
        const watched: DeploymentObject = {
            ...snap.deployments[0],
            spec: { replicas: 1, template: { spec: { containers: [{ name: "vllm" }, { name: "release", args: ["watch", "--grace", String(WATCHDOG_GRACE_SECONDS)] }] } } },
        };
        const generating = deriveStatus({ ...snap, deployments: [watched] }, { now });
        expect(generating.rows.find((r) => r.stage === "teacher")!.detail).toBeUndefined();
        const orphan = { ...snap, deployments: [watched], jobs: snap.jobs.filter((j) => j.metadata?.labels?.[LABELS.stage] !== "generate") };
        expect(deriveStatus(orphan, { now }).rows.find((r) => r.stage === "teacher")!.detail)
            .toBe(`no generation pod: its watchdog scales it to 0 10 min after the last one (kubectl logs -n ${NS} deploy/${RUN}-teacher -c release)`);
        // teacher.keep: no watchdog, the teacher serves on purpose.
        expect(deriveStatus({ ...orphan, deployments: snap.deployments }, { now }).rows.find((r) => r.stage === "teacher")!.detail).toBeUndefined();
    });

    it("a record older than 10 minutes gives no ETA and says so", () => {
        const later = deriveStatus(snap, { now: now + 3 * 3600e3 });
        const gen = later.rows.find((r) => r.stage === "generate")!;
        expect(gen.progressAgeSeconds).toBe(3 * 3600 + 23);
        expect(gen.etaSeconds).toBeNull();
        expect(gen.projectedGpuHours).toBeNull();
        expect(later.totals.projectedComplete).toBe(false); // the total is then a lower bound ("≥")
        expect(renderStatus(later)).toMatch(/generate +running .* \? +- +no record for 3h00m; shard 4\/6/);
    });

    it("cost so far and projected with cluster.gpuHourPrice, none without", () => {
        expect(st.totals.cost!.amount).toBeCloseTo(st.totals.gpuHours * 2.5, 9);
        expect(st.totals.cost!.projected).toBeCloseTo(st.totals.projectedGpuHours * 2.5, 9);
        expect(st.totals.cost!.currency).toBe("USD");
        expect(deriveStatus(snap, { now }).totals.cost).toBeNull();
        expect(gpuHourPrice({ namespace: "x", gpuHourPrice: { amount: 1.99, currency: "EUR" } })).toEqual({ amount: 1.99, currency: "EUR" });
        expect(gpuHourPrice({ namespace: "x" })).toBeUndefined();
        expect(gpuHourPrice({ gpuHourPrice: { amount: "2", currency: "USD" } })).toBeUndefined();
    });

    it("a failed stage: reason from the exit code, the error line, the command for the whole log", () => {
        expect(row("evaluate", "base-90b").failure).toEqual({
            reason: "exit 1: failed (the upstream tool failed)",
            exitCode: 1,
            errorLine: "evaluate.py: error: unexpected RuntimeError: HIP out of memory. Tried to allocate 3.91 GiB. GPU 0 has a total capacity of 191.98 GiB",
            logsCommand: "kubectl logs -n cot-vr job/blog-eval-base-90b-57b2d8aa",
        });
    });

    it("renders the screen", async () => {
        const text = renderStatus(st);
        expect(text.split("\n").filter((l) => l.includes("█")).every((l) => l.includes(bar(1)) || l.includes("░"))).toBe(true);
        await expect(text + "\n").toMatchFileSnapshot("__snapshots__/status-screen.txt");
        await expect(renderStatus(deriveStatus(snap, { now })) + "\n").toMatchFileSnapshot("__snapshots__/status-screen-no-price.txt");
    });

    it("colours the states and fits the terminal's width only when asked", () => {
        const plain = renderStatus(st);
        expect(plain).not.toMatch(/\x1b\[/);
        const coloured = renderStatus(st, { color: true });
        expect(coloured).toMatch(/\x1b\[32mcomplete\x1b\[39m/);
        expect(coloured).toMatch(/\x1b\[31mfailed\x1b\[39m/);
        // Without its colours the screen is the plain one.
        expect(coloured.replace(/\x1b\[[0-9;]*m/g, "")).toBe(plain);
        const narrow = renderStatus(st, { width: 60 });
        expect(narrow.split("\n").every((l) => [...l].length <= 60)).toBe(true);
        expect(narrow).toContain("…");
        expect(narrow.split("\n").length).toBe(plain.split("\n").length);
    });

    it("--json carries the same rows (documented shape v1)", () => {
        const j = JSON.parse(JSON.stringify(st));
        expect(j.v).toBe(1);
        expect(Object.keys(j).sort()).toEqual(["at", "namespace", "rows", "run", "totals", "v"]);
        expect(Object.keys(j.rows[0]).sort()).toEqual(
            ["cost", "etaSeconds", "fraction", "gpuHours", "gpus", "kind", "name", "pods", "progress", "progressAgeSeconds", "projectedGpuHours", "stage", "state", "variant"]);
        expect(j.at).toBe("2026-05-04T11:00:00Z");
    });
});

describe("failure reasons", () => {
    const failedAt = { reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit", at: "12:00:00" };
    const fails = (p: Omit<PodOpts, "created">, jobFailed = failedAt) => {
        const j = job("train", "qlora-90b", "5be1c0de", { created: "10:00:00", start: "10:00:00", failed: jobFailed });
        return failureReason(j, [jobPod(j, "a", { created: "10:00:00", scheduled: "10:00:01", gpus: 1, ...p })]);
    };
    it("names the programs' exit codes", () => {
        expect(fails({ phase: "Failed", finished: "10:00:09", exitCode: 3 }, { reason: "PodFailurePolicy", message: "Container main for pod cot-vr/x failed with exit code 3 matching FailJob rule at index 0", at: "10:00:10" }))
            .toBe("exit 3: missing input");
        for (const [code, meaning] of [[2, "bad arguments"], [4, "incomplete download"], [5, "no metrics"], [6, "dataset check failed"]] as const) {
            expect(fails({ phase: "Failed", finished: "10:01:00", exitCode: code })).toBe(`exit ${code}: ${meaning}`);
        }
    });
    it("OOMKilled, Evicted, DeadlineExceeded", () => {
        expect(fails({ phase: "Failed", finished: "11:00:00", exitCode: 137, reason: "OOMKilled" })).toBe("OOMKilled (exit 137): the container ran out of memory");
        expect(fails({ phase: "Failed", podReason: "Evicted", podMessage: "The node was low on resource: ephemeral-storage." }))
            .toBe("Evicted: The node was low on resource: ephemeral-storage.");
        expect(fails({ phase: "Failed", finished: "12:00:00", exitCode: 143 }, { reason: "DeadlineExceeded", message: "Job was active longer than specified deadline", at: "12:00:00" }))
            .toBe("DeadlineExceeded: ran past activeDeadlineSeconds (24h00m, timing.<stage>.timeout)");
    });
    it("a pending row says why it waits", () => {
        const j = job("sample", "base-90b", "aa00bb11", { created: "10:00:00", start: "10:00:00", active: 1 });
        const p = jobPod(j, "a", { created: "10:00:00", unschedulable: "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient amd.com/gpu.", gpus: 8, phase: "Pending" });
        const st = deriveStatus({ namespace: NS, run: RUN, gpuResource: GPU, jobs: [j], pods: [p], deployments: [], logs: {} }, { now: Date.parse(T("10:05:00")) });
        expect(st.rows[0]).toMatchObject({ state: "pending", gpuHours: 0, projectedGpuHours: null });
        expect(st.rows[0].detail).toContain("Unschedulable: 0/3 nodes are available");
        expect(st.totals.projectedComplete).toBe(false);
    });
});

/** A stand-in API server that answers the list and log calls from a snapshot. */
async function stubApi(snap: Snapshot) {
    const http = await import("http");
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
        const u = new URL(req.url!, "http://x");
        seen.push(`${u.pathname}?${u.searchParams}`);
        const list = (kind: string, apiVersion: string, items: unknown[]) => {
            res.setHeader("content-type", "application/json");
            res.end(JSON.stringify({ apiVersion, kind, metadata: {}, items }));
        };
        const m = /^\/api\/v1\/namespaces\/cot-vr\/pods\/([^/]+)\/log$/.exec(u.pathname);
        if (u.pathname === "/apis/batch/v1/namespaces/cot-vr/jobs") return list("JobList", "batch/v1", snap.jobs);
        if (u.pathname === "/api/v1/namespaces/cot-vr/pods") return list("PodList", "v1", snap.pods);
        if (u.pathname === "/apis/apps/v1/namespaces/cot-vr/deployments") return list("DeploymentList", "apps/v1", snap.deployments);
        if (m && snap.logs[m[1]] !== undefined) {
            res.setHeader("content-type", "text/plain");
            return res.end(snap.logs[m[1]]);
        }
        res.statusCode = 404;
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404 }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const kubeconfig = stubKubeconfig(`http://127.0.0.1:${port}`);
    return { seen, kubeconfig, close: () => server.close() };
}

describe("the I/O half reads the API through @kubernetes/client-node", () => {
    /** The query string of a label selector, as the client encodes it. */
    const query = (labels: Record<string, string>) => new URLSearchParams({ labelSelector: selector(labels) }).toString();
    it("lists the run's Jobs, pods and teacher, tails each Job's newest pod log (container main), and derives the same rows", async () => {
        const { Cluster } = await import("../../scripts/status");
        const { snap, now } = blogAt11();
        const api = await stubApi(snap);
        try {
            // cluster.kubeconfig given as the file's contents
            const cluster = new Cluster({ namespace: NS, run: RUN, gpuResource: GPU, kubeconfig: api.kubeconfig, context: "stub" });
            const got = await cluster.snapshot();
            expect(api.seen.filter((s) => s.includes("labelSelector")).sort()).toEqual([
                `/api/v1/namespaces/cot-vr/pods?${query({ [LABELS.run]: "blog" })}`,
                `/apis/apps/v1/namespaces/cot-vr/deployments?${query({ [LABELS.run]: "blog", [LABELS.stage]: "teacher" })}`,
                `/apis/batch/v1/namespaces/cot-vr/jobs?${query({ [LABELS.run]: "blog" })}`,
            ]);
            const logReads = api.seen.filter((s) => s.includes("/log?"));
            expect(logReads.length, "one log read per Job").toBe(5);
            for (const s of logReads) {
                const q = new URLSearchParams(s.split("?")[1]);
                expect([q.get("container"), q.get("tailLines"), q.get("limitBytes")]).toEqual(["main", "300", "1048576"]);
            }
            expect(Object.keys(got.logs).sort()).toEqual(Object.keys(snap.logs).sort());
            const a = deriveStatus(got, { now });
            // the printed command reaches the same cluster (a kubeconfig given as contents has no path to print)
            expect(got.kubectlFlags).toEqual(["--context", "stub"]);
            expect(a.rows.find((r) => r.failure)!.failure!.logsCommand).toBe("kubectl --context stub logs -n cot-vr job/blog-eval-base-90b-57b2d8aa");
            const b = deriveStatus({ ...snap, kubectlFlags: got.kubectlFlags }, { now });
            expect(renderStatus(a)).toBe(renderStatus(b));
            expect(a.totals).toEqual(b.totals);
        } finally {
            api.close();
        }
    });

    it("the command: --json from a stack file, exit 1 with a failed stage; --report prints the Job table", { timeout: 120_000 }, async () => {
        const { execFile } = await import("child_process");
        const os = await import("os");
        const { snap } = blogAt11();
        const api = await stubApi(snap);
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "status-"));
        const file = path.join(dir, "Pulumi.stub.yaml");
        // the smoke stack, pointed at the stand-in API server
        const YAML = await import("yaml");
        const doc = YAML.parse(fs.readFileSync(path.join(__dirname, "../../stacks/Pulumi.smoke.yaml"), "utf8"));
        doc.config["cot-vr:run"] = RUN;
        doc.config["cot-vr:cluster"] = { ...(doc.config["cot-vr:cluster"] ?? {}), namespace: NS, kubeconfig: api.kubeconfig, context: "stub" };
        fs.writeFileSync(file, YAML.stringify(doc));
        const cli = (...args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
            execFile(path.join(__dirname, "../../node_modules/.bin/tsx"), [path.join(__dirname, "../../scripts/status.ts"), "--config", file, ...args],
                { encoding: "utf8" }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }));
        });
        try {
            const j = await cli("--json");
            expect(j.stderr).toBe("");
            expect(j.code).toBe(1);
            const st = JSON.parse(j.stdout);
            expect(st.rows.map((r: { state: string }) => r.state)).toEqual(["complete", "complete", "ready", "running", "complete", "failed"]);
            expect(st.totals.gpuHours).toBeGreaterThan(3.2);
            const r = await cli("--report");
            expect(r.stdout).toContain("| evaluate | base-90b | failed |");
            expect(r.stdout).toContain("No report Job in the cluster");
        } finally {
            api.close();
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});

describe("progress from the real tools' logs (test/fixtures/logs, captured by the Python tier)", () => {
    const dir = path.join(__dirname, "..", "fixtures", "logs");
    const cases: [string, string, string][] = [
        ["train.log", "train", "steps"],
        ["train-resumed.log", "train", "steps"],
        ["evaluate.log", "evaluate", "requests"],
        ["sample.log", "sample", "tokens"],
        ["download-hf-transfer-1.log", "download", "bytes"],
    ];
    for (const [file, stage, unit] of cases) {
        it(`reads the last record of ${file} between the tool's own output`, () => {
            const text = fs.readFileSync(path.join(dir, file), "utf8");
            const rec = lastProgress(text)!;
            expect(rec).toMatchObject({ v: 1, stage, unit });
            // The run finished: its last record says so.
            expect(rec.done).toBe(rec.total);
            // The records are mixed with upstream output (tqdm bars, torchtune/lm-eval logs).
            expect(text.split(/\r\n|\n|\r/).filter((l) => l.trim() && !parseProgress(l)).length).toBeGreaterThan(0);
        });
    }
});

describe("a fine-tune on several GPUs", () => {
    it("shows the pod's GPU count beside the stage and counts its GPU-hours x N", () => {
        const j = job("train", "lora-11b", "e2e40601", { created: "09:00:00", start: "09:00:01", active: 1 });
        const p = jobPod(j, "r8n2k", { created: "09:00:00", scheduled: "09:00:01", gpus: 8, phase: "Running" });
        const st = deriveStatus({ namespace: NS, run: RUN, gpuResource: GPU, jobs: [j], pods: [p], deployments: [], logs: {} }, { now: Date.parse(T("10:00:01")) });
        expect(renderStatus(st)).toMatch(/^train lora-11b \(8 GPUs\) +running/m);
        expect(st.totals.gpuHours).toBeCloseTo(8, 6);
        const one = jobPod(j, "r8n2k", { created: "09:00:00", scheduled: "09:00:01", gpus: 1, phase: "Running" });
        const st1 = deriveStatus({ namespace: NS, run: RUN, gpuResource: GPU, jobs: [j], pods: [one], deployments: [], logs: {} }, { now: Date.parse(T("10:00:01")) });
        expect(renderStatus(st1)).toMatch(/^train lora-11b +running/m);
    });
});

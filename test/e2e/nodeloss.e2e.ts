// Node loss on a real control plane: a simulated MI300X node is deleted while the smoke stack's lora-11b
// fine-tune runs on it. kube-controller-manager's pod GC deletes the orphaned pod (after its 40 s
// quarantine, checked every 20 s) and marks it DisruptionTarget=True (DeletionByPodGC); the Job's
// podFailurePolicy (components/job.ts: Ignore on DisruptionTarget) must make the Job controller
// re-create the pod without counting a failure (after the Job controller's 10 s pod-failure backoff,
// which it applies to ignored failures too), and the update must finish as if nothing happened.
// Everything asserted is what the API server showed (watched, so pods that go away are kept).
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { initStack, kubectl, kubectlJson, KUBECONFIG, must, requireCluster, Result, run, Stack, ts, useE2eCluster } from "./helpers";
import { applyStageDurations } from "../../sim/stages";
import { loadKubeConfig, watchObjects, watchPods } from "../../sim/watch";
import { LABELS, selector } from "../../contract";

const NS = "cot-vr-e2e-nodeloss";
// Pod GC (kube-controller-manager 1.34, podgc/gc_controller.go) sees the orphan on its next 20 s pass
// and deletes it on the first pass after a 40 s quarantine: up to 80 s after the node went (measured
// 76 s). The fine-tune must outlast that, so that the first pod is still Running when pod GC takes it
// (kwok could otherwise finish it first) and the replacement's run is clearly its own.
const TRAIN_SECONDS = Number(process.env.COT_E2E_NODELOSS_TRAIN_SECONDS ?? 120);
const SELECTOR = selector({ [LABELS.stage]: "train", [LABELS.variant]: "lora-11b" });
// The update would otherwise wait up to the train timeout (2 h) for a pod that never comes back.
const UP_LIMIT_MS = 10 * 60 * 1000;

interface PodSeen {
    name: string;
    uid: string;
    owner?: string;
    created: number;
    nodes: Set<string>;
    phases: Set<string>;
    /** Every condition seen True, by type (the last one of its type). */
    conditions: Map<string, any>;
    /** ms the watch first saw it Running. */
    runningAt?: number;
    deleted?: number;
    last: any;
}

interface JobSeen {
    name: string;
    uid: string;
    maxFailed: number;
    conditions: Map<string, any>;
    last: any;
}

/** What `kubectl create` needs to bring a deleted kwok node back as it was (kwok makes it Ready again). */
function nodeForCreate(n: any): any {
    return {
        apiVersion: "v1",
        kind: "Node",
        metadata: { name: n.metadata.name, labels: n.metadata.labels, annotations: n.metadata.annotations },
        // the node lifecycle controller's own taints (not-ready, unreachable) are not part of the node
        spec: { taints: (n.spec?.taints ?? []).filter((t: any) => !t.key.startsWith("node.kubernetes.io/")) },
        status: { allocatable: n.status.allocatable, capacity: n.status.capacity, nodeInfo: n.status.nodeInfo },
    };
}

async function recreateNode(node: any): Promise<void> {
    const name = node.metadata.name;
    if (kubectl("get", "node", name).code !== 0) {
        must(run("kubectl", ["create", "-f", "-"], { input: JSON.stringify(nodeForCreate(node)) }), `re-create node ${name}`);
    }
    // As cluster.sh: Ready, and the lifecycle controller's not-ready taint gone, before the next test schedules.
    must(kubectl("wait", "--for=condition=Ready", `node/${name}`, "--timeout=90s"), `node ${name} Ready`);
    const end = Date.now() + 90_000;
    for (;;) {
        const taints = (kubectlJson("get", "node", name).spec?.taints ?? []) as any[];
        if (!taints.some((t) => t.key.startsWith("node.kubernetes.io/"))) return;
        if (Date.now() > end) throw new Error(`node ${name} still tainted: ${JSON.stringify(taints)}`);
        await new Promise((r) => setTimeout(r, 500));
    }
}

const isTrue = (c: any) => c.status === "True";

describe("node loss during a fine-tune", () => {
    let st: Stack;
    /** The node this test deleted (as it was), re-created in afterAll whatever happened. */
    let lost: any;

    beforeAll(() => {
        requireCluster();
        st = initStack("nodeloss", { from: "smoke" });
        useE2eCluster(st, NS);
    });
    afterAll(async () => {
        try {
            if (lost) await recreateNode(lost);
        } finally {
            await applyStageDurations(KUBECONFIG, []);
        }
    });

    test("GPU node deleted under the lora-11b train pod: pod re-created elsewhere, Job not failed, no retry counted, up succeeds, nothing re-created", async () => {
        const gpuNodesBefore = (kubectlJson("get", "nodes").items as any[]).filter((n) => Number(n.status.allocatable?.["amd.com/gpu"] ?? 0) > 0);
        expect(gpuNodesBefore.length, "GPU nodes to move to").toBeGreaterThanOrEqual(2);
        await applyStageDurations(KUBECONFIG, [{ stage: "train", variant: "lora-11b", seconds: TRAIN_SECONDS }]);

        const kc = loadKubeConfig(KUBECONFIG);
        const pods = new Map<string, PodSeen>();
        const jobs = new Map<string, JobSeen>();
        let deletion: { node: string; pod: string; podUid: string; at: number; result?: string } | undefined;

        const podWatch = watchPods(kc, NS, SELECTOR, (type, pod) => {
            const uid = pod.metadata.uid as string;
            const seen: PodSeen = pods.get(uid) ?? {
                name: pod.metadata.name, uid, owner: pod.metadata.ownerReferences?.find((o: any) => o.kind === "Job")?.uid,
                created: ts(pod.metadata.creationTimestamp), nodes: new Set(), phases: new Set(), conditions: new Map(), last: pod,
            };
            pods.set(uid, seen);
            seen.last = pod;
            if (pod.spec?.nodeName) seen.nodes.add(pod.spec.nodeName);
            if (pod.status?.phase) seen.phases.add(pod.status.phase);
            for (const c of pod.status?.conditions ?? []) if (isTrue(c)) seen.conditions.set(c.type, c);
            if (type === "DELETED") seen.deleted = Date.now();
            const running = type !== "DELETED" && pod.status?.phase === "Running" && !pod.metadata.deletionTimestamp;
            if (running && seen.runningAt === undefined) seen.runningAt = Date.now();
            // The first time the fine-tune runs on a node: take that node away.
            if (running && !deletion && pod.spec?.nodeName) {
                const node = pod.spec.nodeName as string;
                lost = kubectlJson("get", "node", node);
                deletion = { node, pod: pod.metadata.name, podUid: uid, at: Date.now() };
                const r = kubectl("delete", "node", node, "--wait=false");
                deletion.result = r.out.trim();
                if (r.code !== 0) lost = undefined;
            }
        });
        const jobWatch = watchObjects(kc, `/apis/batch/v1/namespaces/${NS}/jobs`, SELECTOR, (type, job) => {
            const uid = job.metadata.uid as string;
            const seen: JobSeen = jobs.get(uid) ?? { name: job.metadata.name, uid, maxFailed: 0, conditions: new Map(), last: job };
            jobs.set(uid, seen);
            seen.last = job;
            seen.maxFailed = Math.max(seen.maxFailed, Number(job.status?.failed ?? 0));
            for (const c of job.status?.conditions ?? []) if (isTrue(c)) seen.conditions.set(c.type, c);
        });
        await Promise.all([podWatch.synced, jobWatch.synced]);

        const abort = new AbortController();
        const limit = setTimeout(() => abort.abort(), UP_LIMIT_MS);
        let up: Result | undefined;
        try {
            up = await st.pulumiAsync(["up", "--yes", "--skip-preview"], abort.signal);
        } finally {
            clearTimeout(limit);
            // let the last events arrive
            await new Promise((r) => setTimeout(r, 1000));
            podWatch.stop();
            jobWatch.stop();
        }
        const upReturned = Date.now();

        // Timeline, for the report and for whoever reads a failure.
        const rel = (t?: number) => (t === undefined || Number.isNaN(t) ? "-" : `${((t - (deletion?.at ?? 0)) / 1000).toFixed(1)} s`);
        const lines = [...pods.values()].sort((a, b) => a.created - b.created).map((p) => {
            const dt = p.conditions.get("DisruptionTarget");
            return `${p.name} nodes=${[...p.nodes].join(",")} phases=${[...p.phases].join(",")} created=${rel(p.created)} ` +
                `running=${rel(p.runningAt)} deleted=${rel(p.deleted)} ` +
                `DisruptionTarget=${dt ? `${dt.reason} at ${rel(ts(dt.lastTransitionTime))}` : "none"} ` +
                `finished=${rel(Math.max(...(p.last.status?.containerStatuses ?? []).map((c: any) => ts(c.state?.terminated?.finishedAt))))}`;
        });
        for (const j of jobs.values()) {
            lines.push(`Job ${j.name}: max status.failed ${j.maxFailed}, conditions seen ${[...j.conditions.keys()].join(",") || "none"}, ` +
                `final status ${JSON.stringify({ active: j.last.status?.active, failed: j.last.status?.failed, succeeded: j.last.status?.succeeded })}`);
        }
        lines.push(`node ${deletion?.node} deleted at 0 s (${deletion?.result}); up returned at ${rel(upReturned)} (exit ${up?.code}, ${up?.seconds}s)`);
        const timeline = lines.join("\n");
        console.log(`[nodeloss]\n${timeline}`);

        expect(deletion, "the lora-11b train pod was seen Running on a node").toBeDefined();
        expect(lost, `node ${deletion!.node} deleted: ${deletion!.result}`).toBeDefined();
        must(up!, "pulumi up (node lost during the fine-tune)");

        // One Job, never re-created, never failed, no failure counted.
        expect(jobs.size, `lora-11b train Jobs seen\n${timeline}`).toBe(1);
        const job = [...jobs.values()][0];
        expect(job.conditions.has("Failed"), `Job ${job.name} got Failed: ${JSON.stringify(job.conditions.get("Failed"))}\n${timeline}`).toBe(false);
        expect(job.conditions.has("FailureTarget"), `Job ${job.name} got FailureTarget\n${timeline}`).toBe(false);
        expect(job.maxFailed, `Job ${job.name} status.failed (retries used)\n${timeline}`).toBe(0);
        expect(job.conditions.has("Complete"), `Job ${job.name} complete\n${timeline}`).toBe(true);
        expect(Number(job.last.status?.succeeded ?? 0)).toBe(1);

        // The first pod was taken by pod GC as a disruption.
        const first = pods.get(deletion!.podUid)!;
        const dt = first.conditions.get("DisruptionTarget");
        expect(dt, `DisruptionTarget on ${first.name}\n${timeline}`).toBeDefined();
        expect(dt.reason).toBe("DeletionByPodGC");
        expect(first.phases.has("Succeeded"), `${first.name} must not have finished on the lost node\n${timeline}`).toBe(false);

        // Exactly one replacement, on another node, that ran and finished the fine-tune.
        const others = [...pods.values()].filter((p) => p.uid !== first.uid && p.owner === job.uid);
        expect(others.length, `replacement pods of ${job.name}\n${timeline}`).toBe(1);
        const repl = others[0];
        expect([...repl.nodes], `${repl.name} placed`).toHaveLength(1);
        expect([...repl.nodes][0], `${repl.name} on another node`).not.toBe(deletion!.node);
        expect(repl.runningAt, `${repl.name} ran`).toBeDefined();
        expect(repl.created, "created after the node loss").toBeGreaterThanOrEqual(Math.floor(deletion!.at / 1000) * 1000);
        expect(repl.phases.has("Succeeded"), `${repl.name} succeeded\n${timeline}`).toBe(true);

        // The next update re-creates nothing: same objects (by uid), no planned change, also after a refresh.
        const uids = () => new Map((kubectlJson("-n", NS, "get", "jobs,deployments,services,configmaps,persistentvolumeclaims,serviceaccounts").items as any[])
            .map((o) => [`${o.kind}/${o.metadata.name}`, o.metadata.uid]));
        const before = uids();
        expect(before.get(`Job/${job.name}`), "the same Job object").toBe(job.uid);
        must(st.pulumi("preview", "--expect-no-changes"), "pulumi preview --expect-no-changes");
        must(st.pulumi("preview", "--refresh", "--expect-no-changes"), "pulumi preview --refresh --expect-no-changes");
        must(st.pulumi("up", "--yes", "--skip-preview", "--expect-no-changes"), "pulumi up --expect-no-changes");
        expect(uids()).toEqual(before);
    });
});

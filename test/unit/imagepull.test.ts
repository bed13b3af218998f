// The image-pull watch of `pulumi up`: which waiting states fail a Job and after how long
// (scripts/imagepull.ts), the watcher's API calls against a stand-in API server
// (scripts/imagewatch.ts), and how `status` shows it, from objects recorded on the e2e cluster
// (test/fixtures/status/imagepull.json).
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { labels } from "../../components/naming";
import { ANNOTATIONS, IMAGE_PULL_GRACE_SECONDS, LABELS } from "../../contract";
import { classifyWaiting, failJobPatch, parseFailure, PullJob, PullJudge, PullPod } from "../../scripts/imagepull";
import { startImageWatch, verdictMessage } from "../../scripts/imagewatch";
import { deriveStatus, JobObject, PodObject, renderStatus } from "../../scripts/status-core";
import { stubKubeconfig } from "./stub-kubeconfig";

const rec = JSON.parse(fs.readFileSync(path.join(__dirname, "../fixtures/status/imagepull.json"), "utf8")) as {
    pendingJob: JobObject & PullJob; pendingPods: (PodObject & PullPod)[]; failedJob: JobObject & PullJob;
};
const JOB = rec.pendingJob.metadata!.name!;
const IMAGE = "registry.example.com/my-team/cot-vr-trainer:0.1.0-does-not-exist";

describe("which waiting states fail a Job", () => {
    // Messages as kubelet 1.34 writes them (the CRI runtime's error; "Back-off pulling image ...: <that>").
    const fatal: [string, string][] = [
        ["ErrImagePull", `rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/library/x:1": failed to resolve reference "docker.io/library/x:1": docker.io/library/x:1: not found`],
        ["ImagePullBackOff", `Back-off pulling image "ghcr.io/me/x:1": ErrImagePull: failed to pull and unpack image "ghcr.io/me/x:1": failed to resolve reference "ghcr.io/me/x:1": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://ghcr.io/token?scope=repository%3Ame%2Fx%3Apull&service=ghcr.io: 401 Unauthorized`],
        ["ErrImagePull", `rpc error: code = Unknown desc = Error response from daemon: pull access denied for x, repository does not exist or may require 'docker login': denied: requested access to the resource is denied`],
        ["ErrImagePull", `rpc error: code = Unknown desc = failed to pull and unpack image "r.example/x:1": failed to copy: httpReadSeeker: failed open: unexpected status code https://r.example/v2/x/manifests/1: 403 Forbidden`],
        ["ErrImagePull", `reading manifest 1 in quay.io/me/x: manifest unknown`],
        ["InvalidImageName", `Failed to apply default image tag "Bad:Name": couldn't parse image name "Bad:Name": invalid reference format: repository name must be lowercase`],
        ["ErrImageNeverPull", `Container image "x:1" is not present with pull policy of Never`],
        ["SignatureValidationFailed", "image pull failed for x:1 because the signature validation failed: untrusted"],
    ];
    const transient: [string, string][] = [
        ["ErrImagePull", `rpc error: code = DeadlineExceeded desc = failed to pull and unpack image "r.example/x:1": failed to resolve reference "r.example/x:1": failed to do request: Head "https://r.example/v2/x/manifests/1": dial tcp 10.0.0.9:443: i/o timeout`],
        ["ImagePullBackOff", `Back-off pulling image "r.example/x:1": ErrImagePull: failed to do request: Head "https://r.example/v2/x/manifests/1": dial tcp: lookup r.example on 10.96.0.10:53: server misbehaving`],
        ["ErrImagePull", `rpc error: code = Unknown desc = failed to pull and unpack image "docker.io/library/x:1": unexpected status code 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit`],
        ["ErrImagePull", "unexpected status from HEAD request to https://r.example/v2/x/manifests/1: 503 Service Unavailable"],
        ["ImagePullBackOff", `Back-off pulling image "x:1"`],
        ["RegistryUnavailable", "image pull failed for x:1 because the registry is unavailable: connection refused"],
    ];
    it.each(fatal)("%s is fatal: %s", (reason, message) => expect(classifyWaiting(reason, message)).toBe("fatal"));
    it.each(transient)("%s may heal: %s", (reason, message) => expect(classifyWaiting(reason, message)).toBe("transient"));
    it("other waiting reasons are no pull failure", () => {
        for (const r of ["ContainerCreating", "PodInitializing", "CrashLoopBackOff", "CreateContainerConfigError", undefined]) expect(classifyWaiting(r, "not found")).toBeUndefined();
    });
});

// ---------------------------------------------------------------------------------------------------

const T0 = Date.parse("2026-05-04T10:00:00Z");
const S = 1000;
let uid = 0;

function job(stage: string, variant: string | undefined, o: { done?: "Complete" | "Failed"; annotated?: boolean } = {}): PullJob {
    const name = `blog-${stage}${variant ? `-${variant}` : ""}-0000`;
    return {
        metadata: { name, uid: `uid-${name}`, labels: labels("blog", stage, variant), ...(o.annotated ? { annotations: { [ANNOTATIONS.failure]: "{}" } } : {}) },
        status: { conditions: o.done ? [{ type: o.done, status: "True" }] : [] },
    };
}
function pod(owner: PullJob | "teacher", waiting?: { reason: string; message?: string }, image = "x:1"): PullPod {
    const isJob = owner !== "teacher";
    const lbl = isJob ? owner.metadata!.labels! : labels("blog", "teacher");
    return {
        metadata: { name: `p${++uid}`, uid: `pod-${uid}`, labels: lbl, ownerReferences: [isJob ? { kind: "Job", name: owner.metadata!.name!, uid: owner.metadata!.uid! } : { kind: "ReplicaSet", name: "blog-teacher-1" }] },
        spec: { containers: [{ name: isJob ? "main" : "vllm", image }] },
        status: { phase: "Pending", containerStatuses: [{ name: isJob ? "main" : "vllm", state: waiting ? { waiting } : {} }] },
    };
}
const NOT_FOUND = { reason: "ErrImagePull", message: "rpc error: code = NotFound desc = x:1: not found" };
const TIMEOUT = { reason: "ImagePullBackOff", message: `Back-off pulling image "x:1": ErrImagePull: dial tcp 10.0.0.9:443: i/o timeout` };

describe("PullJudge: after how long, and which Job", () => {
    it("a pull the registry refuses fails the Job at the first look, once", () => {
        const j = job("train", "lora-11b");
        const judge = new PullJudge(new Set([j.metadata!.name!]));
        const p = pod(j, NOT_FOUND);
        const v = judge.observe([j], [p], T0);
        expect(v).toEqual([{ action: "fail", job: j.metadata!.name, failure: expect.objectContaining({ v: 1, reason: "ErrImagePull", image: "x:1", container: "main", kind: "fatal", stage: "train", failingSeconds: 0 }) }]);
        expect(judge.observe([j], [p], T0 + 5 * S)).toEqual([]);
    });

    it(`a pull that may heal is tolerated for ${IMAGE_PULL_GRACE_SECONDS / 60} minutes of failing, then fails the Job; one that heals starts over`, () => {
        const j = job("evaluate", "base-11b");
        const judge = new PullJudge(new Set([j.metadata!.name!]));
        const p = pod(j, TIMEOUT);
        expect(judge.observe([j], [p], T0)).toEqual([]);
        expect(judge.observe([j], [p], T0 + (IMAGE_PULL_GRACE_SECONDS - 1) * S)).toEqual([]);
        const v = judge.observe([j], [p], T0 + IMAGE_PULL_GRACE_SECONDS * S);
        expect(v).toHaveLength(1);
        expect(v[0]).toMatchObject({ action: "fail", failure: { kind: "transient", failingSeconds: IMAGE_PULL_GRACE_SECONDS } });

        const j2 = job("sample", "base-11b");
        const judge2 = new PullJudge(new Set([j2.metadata!.name!]));
        const p2 = pod(j2, TIMEOUT);
        judge2.observe([j2], [p2], T0);
        const pulling = { ...p2, status: { phase: "Pending", containerStatuses: [{ name: "main", state: { waiting: { reason: "ContainerCreating" } } }] } };
        judge2.observe([j2], [pulling], T0 + 300 * S);
        expect(judge2.observe([j2], [p2], T0 + 700 * S)).toEqual([]);
        expect(judge2.observe([j2], [p2], T0 + (700 + IMAGE_PULL_GRACE_SECONDS - 1) * S)).toEqual([]);
        expect(judge2.observe([j2], [p2], T0 + (700 + IMAGE_PULL_GRACE_SECONDS) * S)).toHaveLength(1);
    });

    it("never touches a Job of another update, a finished Job, or one already failed for its image", () => {
        const other = job("train", "old");
        const done = job("train", "done", { done: "Complete" });
        const annotated = job("train", "annotated", { annotated: true });
        const judge = new PullJudge(new Set([done, annotated].map((j) => j.metadata!.name!)));
        expect(judge.observe([other, done, annotated], [pod(other, NOT_FOUND), pod(done, NOT_FOUND), pod(annotated, NOT_FOUND)], T0)).toEqual([]);
    });

    it("a Running or deleted pod, or another container's pull, is no verdict", () => {
        const j = job("report", undefined);
        const judge = new PullJudge(new Set([j.metadata!.name!]));
        const running = pod(j, NOT_FOUND);
        running.status!.phase = "Running";
        const deleted = pod(j, NOT_FOUND);
        deleted.metadata!.deletionTimestamp = "2026-05-04T10:00:00Z";
        expect(judge.observe([j], [running, deleted, pod(j)], T0)).toEqual([]);
    });

    it("a teacher that cannot pull vLLM fails the generation that holds it; with no generation (teacher.keep) it is reported once", () => {
        const gen = job("generate", "cot");
        const judge = new PullJudge(new Set([gen.metadata!.name!]));
        const t = pod("teacher", NOT_FOUND, "rocm/vllm:does-not-exist");
        const v = judge.observe([gen], [pod(gen), t], T0);
        expect(v).toEqual([{ action: "fail", job: gen.metadata!.name, failure: expect.objectContaining({ stage: "teacher", image: "rocm/vllm:does-not-exist", container: "vllm" }) }]);
        expect(verdictMessage(v[0], { vllm: "rocm/vllm:does-not-exist" })).toMatch(/^Job blog-generate-cot-0000: its teacher's image "rocm\/vllm:does-not-exist" cannot be pulled: .*fix cot-vr:images\.vllm in the stack config/);

        const kept = new PullJudge(new Set());
        const w = kept.observe([], [t], T0);
        expect(w).toEqual([{ action: "warn", key: expect.any(String), failure: expect.objectContaining({ stage: "teacher" }) }]);
        expect(kept.observe([], [t], T0 + 5 * S)).toEqual([]);
        expect(verdictMessage(w[0])).toMatch(/^teacher pod p\d+: image "rocm\/vllm:does-not-exist" cannot be pulled/);
    });

    it("a patch that failed is tried again at the next look", () => {
        const j = job("train", "lora-11b");
        const judge = new PullJudge(new Set([j.metadata!.name!]));
        const p = pod(j, NOT_FOUND);
        expect(judge.observe([j], [p], T0)).toHaveLength(1);
        judge.retry(j.metadata!.name!);
        expect(judge.observe([j], [p], T0 + 5 * S)).toHaveLength(1);
    });

    it("fails a Job by an activeDeadlineSeconds already past, the reason in the annotation", () => {
        const f = { v: 1 as const, reason: "ErrImagePull", image: "x:1", container: "main", pod: "p", message: "not found", kind: "fatal" as const, failingSeconds: 0 };
        const patch = failJobPatch(f);
        expect(patch.spec).toEqual({ activeDeadlineSeconds: 1 });
        expect(parseFailure(patch.metadata.annotations)).toEqual(f);
        expect(parseFailure({ [ANNOTATIONS.failure]: "not json" })).toBeUndefined();
        expect(parseFailure(undefined)).toBeUndefined();
    });

    it("decides on the recorded objects: the fine-tune's pod in ImagePullBackOff (not found) fails its Job", () => {
        const judge = new PullJudge(new Set([JOB]));
        const v = judge.observe([rec.pendingJob], rec.pendingPods, Date.now());
        expect(v).toEqual([{ action: "fail", job: JOB, failure: expect.objectContaining({ reason: "ImagePullBackOff", image: IMAGE, kind: "fatal", stage: "train" }) }]);
    });
});

// ---------------------------------------------------------------------------------------------------

describe("the watcher, against a stand-in API server", () => {
    it("lists the run's Jobs and Pods, merge-patches the Job it fails, warns; a refused patch only warns, and the watch never holds the process", async () => {
        const seen: { method: string; path: string; type?: string; body?: string }[] = [];
        let patchStatus = 200;
        const server = http.createServer((req, res) => {
            let body = "";
            req.on("data", (d) => (body += d));
            req.on("end", () => {
                const u = new URL(req.url!, "http://x");
                seen.push({ method: req.method!, path: `${u.pathname}?${u.searchParams}`, type: req.headers["content-type"], body });
                res.setHeader("content-type", "application/json");
                if (req.method === "GET" && u.pathname === "/apis/batch/v1/namespaces/cot-vr/jobs") return res.end(JSON.stringify({ kind: "JobList", apiVersion: "batch/v1", metadata: {}, items: [rec.pendingJob] }));
                if (req.method === "GET" && u.pathname === "/api/v1/namespaces/cot-vr/pods") return res.end(JSON.stringify({ kind: "PodList", apiVersion: "v1", metadata: {}, items: rec.pendingPods }));
                if (req.method === "PATCH") {
                    res.statusCode = patchStatus;
                    return res.end(JSON.stringify(patchStatus === 200 ? rec.failedJob : { kind: "Status", apiVersion: "v1", status: "Failure", reason: "Forbidden", code: 403 }));
                }
                res.statusCode = 404;
                res.end("{}");
            });
        });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        const kubeconfig = stubKubeconfig(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
        try {
            const run = async () => {
                const warnings: string[] = [];
                const w = startImageWatch({ kubeconfig, namespace: "cot-vr", run: "blog", stack: "blog", jobs: [JOB], intervalMs: 50, configured: { trainer: IMAGE }, log: { info: () => {}, warn: (m) => warnings.push(m) } });
                const until = Date.now() + 10_000;
                while (w.looks < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
                w.stop();
                return warnings;
            };
            const warnings = await run();
            const patches = seen.filter((s) => s.method === "PATCH");
            expect(patches).toHaveLength(1);
            expect(patches[0].path).toMatch(new RegExp(`^/apis/batch/v1/namespaces/cot-vr/jobs/${JOB}\\?fieldManager=cot-vr-imagewatch$`));
            expect(patches[0].type).toBe("application/merge-patch+json");
            const body = JSON.parse(patches[0].body!);
            expect(body.spec).toEqual({ activeDeadlineSeconds: 1 });
            expect(parseFailure(body.metadata.annotations)).toMatchObject({ image: IMAGE, kind: "fatal" });
            expect(seen.find((s) => s.path.startsWith("/api/v1/namespaces/cot-vr/pods"))!.path).toContain(`labelSelector=${encodeURIComponent(`${LABELS.run}=blog`)}`);
            expect(warnings).toEqual([expect.stringMatching(new RegExp(`^Job ${JOB}: image "${IMAGE}" cannot be pulled: ImagePullBackOff: .*not found\\. Failing the Job now instead of waiting out its timeout; fix cot-vr:images\\.trainer`))]);

            seen.length = 0;
            patchStatus = 403;
            const refused = await run();
            expect(seen.filter((s) => s.method === "PATCH").length).toBeGreaterThanOrEqual(2);
            expect(refused).toEqual([expect.stringMatching(/could not be failed \(the API server refused the read \(403\).*needs patch on jobs/)]);
        } finally {
            server.close();
        }
    });

    it("an unreachable cluster is one warning, not an error", async () => {
        const warnings: string[] = [];
        const w = startImageWatch({ kubeconfig: stubKubeconfig("http://127.0.0.1:1"), namespace: "cot-vr", run: "blog", stack: "blog", jobs: [JOB], intervalMs: 20, log: { info: () => {}, warn: (m) => warnings.push(m) } });
        const until = Date.now() + 10_000;
        while (w.looks < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
        w.stop();
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toMatch(/^image-pull watch: .*holds its Job until the stage's timeout/);
    });
});

// ---------------------------------------------------------------------------------------------------

describe("status shows why", () => {
    const snap = (jobs: JobObject[], pods: PodObject[]) => ({ namespace: "cot-vr", run: "blog", gpuResource: "amd.com/gpu", jobs, pods, deployments: [], logs: {}, images: { trainer: IMAGE, datagen: "d:1", vllm: "v:1" } });

    it("a pod waiting on the pull: the image, the kubelet's message, and the key to fix", () => {
        const st = deriveStatus(snap([rec.pendingJob], rec.pendingPods), { now: Date.now() });
        const row = st.rows[0];
        expect(row).toMatchObject({ stage: "train", variant: "lora-11b", state: "pending" });
        expect(row.detail).toMatch(new RegExp(`^image "${IMAGE}" cannot be pulled: ImagePullBackOff: Back-off pulling image .*: not found$`));
        expect(row.imagePull).toMatchObject({ image: IMAGE, container: "main", reason: "ImagePullBackOff", kind: "fatal", stage: "train" });
        expect(row.imagePull!.next).toMatch(/^fix cot-vr:images\.trainer in the stack config, or check that it was pushed and that cluster\.imagePullSecrets/);
        const text = renderStatus(st);
        expect(text).toContain(`  ! image "${IMAGE}" cannot be pulled: ImagePullBackOff`);
        expect(text).toContain("    it will not heal; next: fix cot-vr:images.trainer in the stack config");
    });

    it("the Job pulumi up failed (its pod gone): the reason from the annotation, not the deadline; --json carries it", () => {
        const st = deriveStatus(snap([rec.failedJob], []), { now: Date.now() });
        const row = st.rows[0];
        expect(row.state).toBe("failed");
        expect(row.failure!.reason).toMatch(new RegExp(`^image pull failed, so pulumi up failed the Job: image "${IMAGE}" cannot be pulled: ImagePullBackOff: .*not found$`));
        expect(row.failure!.reason).not.toContain("activeDeadlineSeconds");
        expect(row.failure!.next).toMatch(/^fix cot-vr:images\.trainer/);
        const j = JSON.parse(JSON.stringify(st));
        expect(j.rows[0].imagePull).toMatchObject({ image: IMAGE, reason: "ImagePullBackOff", kind: "fatal" });
        const text = renderStatus(st);
        expect(text).toContain("  ✗ image pull failed, so pulumi up failed the Job");
        expect(text).toContain("    next: fix cot-vr:images.trainer in the stack config");
        expect(text).not.toContain("full log:");
    });

    it("a teacher that cannot pull vLLM says so on its row", () => {
        const t = pod("teacher", NOT_FOUND, "rocm/vllm:does-not-exist") as PodObject;
        const st = deriveStatus({
            ...snap([], [t]),
            images: { vllm: "rocm/vllm:does-not-exist" },
            deployments: [{ metadata: { name: "blog-teacher", labels: labels("blog", "teacher") }, spec: { replicas: 1 }, status: { replicas: 1 } }],
        }, { now: T0 });
        expect(st.rows[0]).toMatchObject({ kind: "Deployment", state: "pending", imagePull: { image: "rocm/vllm:does-not-exist", stage: "teacher" } });
        expect(st.rows[0].detail).toMatch(/^image "rocm\/vllm:does-not-exist" cannot be pulled/);
        expect(st.rows[0].imagePull!.next).toMatch(/^fix cot-vr:images\.vllm/);
    });
});

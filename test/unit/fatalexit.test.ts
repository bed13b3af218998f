// A Job its podFailurePolicy failed on a bad input (reason PodFailurePolicy, which the provider's Job
// await does not count as an error): which Jobs (scripts/fatalexit.ts), the watcher's calls against a
// stand-in API server (scripts/imagewatch.ts), and how `status` shows it. Objects as the e2e cluster
// (kube-controller-manager 1.34) wrote them in badinput.e2e.ts.
import * as http from "http";
import { describe, expect, it } from "vitest";
import { labels } from "../../components/naming";
import { ANNOTATIONS, EXIT_MEANINGS } from "../../contract";
import { describeExit, ExitJob, exitFailure, ExitPod, exitStatusPatch, parseExitFailure, TAIL_CHARS } from "../../scripts/fatalexit";
import { startImageWatch } from "../../scripts/imagewatch";
import { deriveStatus, failureReason, JobObject, PodObject } from "../../scripts/status-core";
import { stubKubeconfig } from "./stub-kubeconfig";

const NAME = "smoke-download-11b-2b74189d";
const POD = `${NAME}-4hm4b`;
const CTRL = `Container main for pod cot-vr/${POD} failed with exit code 3 matching FailJob rule at index 0`;

function job(o: { reason?: string; code?: number; annotations?: Record<string, string> } = {}): ExitJob & JobObject {
    const reason = o.reason ?? "PodFailurePolicy";
    const message = CTRL.replace("exit code 3", `exit code ${o.code ?? 3}`);
    return {
        metadata: { name: NAME, uid: "uid-1", labels: labels("smoke", "download", "11b"), creationTimestamp: "2026-12-03T13:33:05Z", ...(o.annotations ? { annotations: o.annotations } : {}) },
        spec: { activeDeadlineSeconds: 14400 },
        status: {
            startTime: "2026-12-03T13:33:05Z", failed: 1,
            conditions: [
                { type: "FailureTarget", status: "True", reason: "PodFailurePolicy", message, lastTransitionTime: "2026-12-03T13:33:09Z" },
                { type: "Failed", status: "True", reason, message, lastTransitionTime: "2026-12-03T13:33:09Z" },
            ],
        },
    } as ExitJob & JobObject;
}
function pod(code = 3, owner = "uid-1"): ExitPod & PodObject {
    return {
        metadata: { name: POD, labels: labels("smoke", "download", "11b"), ownerReferences: [{ kind: "Job", name: NAME, uid: owner }], creationTimestamp: "2026-12-03T13:33:05Z" },
        status: { phase: "Failed", containerStatuses: [{ name: "main", state: { terminated: { exitCode: code, reason: "Error" } } }] },
    } as ExitPod & PodObject;
}

describe("which Jobs a bad input failed", () => {
    it("Failed with reason PodFailurePolicy and a fatal code: the code, its meaning, the reason's tail", () => {
        const f = exitFailure(job(), [pod()])!;
        expect(f).toEqual({ v: 1, kind: "exit", exitCode: 3, meaning: EXIT_MEANINGS[3], pod: POD, container: "main", tail: CTRL, stage: "download" });
        // The program's error line, when its log was read, is the better tail.
        expect(exitFailure(job(), [pod()], "download.py: error: no such model repo: x/y")!.tail).toBe("download.py: error: no such model repo: x/y");
        expect(describeExit(f)).toBe(`exit 3: missing input: ${CTRL}`);
        // The pod gone: the controller's message names the code.
        expect(exitFailure(job(), [])).toMatchObject({ exitCode: 3, pod: "" });
        // A long tail is clipped at its start.
        expect(exitFailure(job(), [pod()], "x".repeat(1000))!.tail).toHaveLength(TAIL_CHARS);
    });
    it("nothing else: other reasons, other codes, other Jobs' pods", () => {
        for (const reason of ["BackoffLimitExceeded", "DeadlineExceeded"]) expect(exitFailure(job({ reason }), [pod()])).toBeUndefined();
        expect(exitFailure(job({ code: 1 }), [pod(1)])).toBeUndefined();
        expect(exitFailure(job(), [pod(3, "uid-other")])).toMatchObject({ pod: "" });
    });
    it("the status patch only rewrites a condition still Failed/PodFailurePolicy", () => {
        const f = exitFailure(job(), [pod()])!;
        const ops = exitStatusPatch(1, f);
        expect(ops.slice(0, 3)).toEqual([
            { op: "test", path: "/status/conditions/1/type", value: "Failed" },
            { op: "test", path: "/status/conditions/1/reason", value: "PodFailurePolicy" },
            { op: "replace", path: "/status/conditions/1/reason", value: "DeadlineExceeded" },
        ]);
        expect(ops[3]).toMatchObject({ op: "replace", path: "/status/conditions/1/message" });
        expect(ops[3].value).toMatch(/^exit 3: missing input: Container main .* reason PodFailurePolicy: see its FailureTarget condition.*fix the input/);
    });
    it("an image-pull annotation is not an exit", () => {
        expect(parseExitFailure({ [ANNOTATIONS.failure]: JSON.stringify({ v: 1, image: "x:1", reason: "ErrImagePull" }) })).toBeUndefined();
        expect(parseExitFailure({ [ANNOTATIONS.failure]: "{" })).toBeUndefined();
    });
});

describe("status says why after the reason was rewritten", () => {
    const f = exitFailure(job(), [pod()])!;
    const rewritten = () => {
        const j = job({ reason: "DeadlineExceeded", annotations: { [ANNOTATIONS.failure]: JSON.stringify(f) } });
        return j;
    };
    it("the exit, not DeadlineExceeded; with the pod or without", () => {
        expect(failureReason(rewritten(), [pod()])).toBe(`bad input: exit 3: missing input: ${CTRL}`);
        const st = deriveStatus({ namespace: "cot-vr", run: "smoke", gpuResource: "amd.com/gpu", jobs: [rewritten()], pods: [], deployments: [], logs: {} }, { now: Date.now() });
        expect(st.rows[0].state).toBe("failed");
        expect(st.rows[0].failure).toMatchObject({ reason: `bad input: exit 3: missing input: ${CTRL}`, exitCode: 3, next: expect.stringMatching(/fix the input/) });
    });
});

describe("the watcher ends the await, against a stand-in API server", () => {
    it("annotates the Job, JSON-patches its status once, warns; a refused status patch warns what to do", async () => {
        const seen: { method: string; path: string; type?: string; body: string }[] = [];
        let statusCode = 200;
        let current: ExitJob = job();
        // The first look of each watch sees no Job yet (the update has not created it), unless `old`.
        let lists = 0;
        let old = false;
        const server = http.createServer((req, res) => {
            let body = "";
            req.on("data", (d) => (body += d));
            req.on("end", () => {
                const u = new URL(req.url!, "http://x");
                seen.push({ method: req.method!, path: u.pathname, type: req.headers["content-type"], body });
                res.setHeader("content-type", "application/json");
                if (req.method === "GET" && u.pathname === "/apis/batch/v1/namespaces/cot-vr/jobs") return res.end(JSON.stringify({ kind: "JobList", apiVersion: "batch/v1", metadata: {}, items: lists++ === 0 && !old ? [] : [current] }));
                if (req.method === "GET" && u.pathname === "/api/v1/namespaces/cot-vr/pods") return res.end(JSON.stringify({ kind: "PodList", apiVersion: "v1", metadata: {}, items: [pod()] }));
                if (req.method === "GET" && u.pathname.endsWith("/log")) {
                    res.setHeader("content-type", "text/plain");
                    return res.end("loading x/y\ndownload.py: error: no such model repo: x/y\n");
                }
                if (req.method === "PATCH" && u.pathname.endsWith("/status")) {
                    res.statusCode = statusCode;
                    if (statusCode === 200) current = { ...current, status: { conditions: [current.status!.conditions![0], { type: "Failed", status: "True", reason: "DeadlineExceeded" }] } };
                    return res.end(JSON.stringify(statusCode === 200 ? current : { kind: "Status", apiVersion: "v1", status: "Failure", reason: "Forbidden", code: 403 }));
                }
                if (req.method === "PATCH") {
                    const ann = JSON.parse(body).metadata.annotations;
                    current = { ...current, metadata: { ...current.metadata, annotations: ann } };
                    return res.end(JSON.stringify(current));
                }
                res.statusCode = 404;
                res.end("{}");
            });
        });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        const kubeconfig = stubKubeconfig(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
        const run = async () => {
            lists = 0;
            const warnings: string[] = [];
            const w = startImageWatch({ kubeconfig, namespace: "cot-vr", run: "smoke", stack: "smoke", jobs: [NAME], intervalMs: 50, log: { info: () => {}, warn: (m) => warnings.push(m) } });
            const until = Date.now() + 10_000;
            while (w.looks < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
            w.stop();
            return warnings;
        };
        try {
            const warnings = await run();
            const patches = seen.filter((s) => s.method === "PATCH");
            expect(patches.map((p) => [p.path, p.type])).toEqual([
                [`/apis/batch/v1/namespaces/cot-vr/jobs/${NAME}`, "application/merge-patch+json"],
                [`/apis/batch/v1/namespaces/cot-vr/jobs/${NAME}/status`, "application/json-patch+json"],
            ]);
            const f = parseExitFailure(JSON.parse(patches[0].body).metadata.annotations);
            expect(f).toMatchObject({ exitCode: 3, tail: "download.py: error: no such model repo: x/y", pod: POD });
            expect(JSON.parse(patches[1].body)[2]).toEqual({ op: "replace", path: "/status/conditions/1/reason", value: "DeadlineExceeded" });
            expect(warnings).toEqual([`Job ${NAME}: exit 3: missing input: download.py: error: no such model repo: x/y. Ending pulumi up now instead of waiting out its timeout; a bad input fails at once and is not retried: fix the input (the stage's config or what an upstream stage wrote), then pulumi up re-creates the Job`]);

            // Refused (no patch on jobs/status): the annotation stays, the status patch is retried, one warning.
            seen.length = 0;
            current = job();
            statusCode = 403;
            const refused = await run();
            expect(seen.filter((s) => s.path.endsWith("/status")).length).toBeGreaterThanOrEqual(2);
            expect(refused).toEqual([expect.stringMatching(/exit 3: missing input.*could not end its wait .*needs patch on jobs and jobs\/status/)]);

            // Failed before the update's first look: an earlier update's Job, which this one replaces; left alone.
            seen.length = 0;
            current = job();
            old = true;
            expect(await run()).toEqual([]);
            expect(seen.filter((s) => s.method === "PATCH")).toEqual([]);
        } finally {
            server.close();
        }
    });
});

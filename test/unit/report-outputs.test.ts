// The report's headline back in the stack outputs (a ConfigMap the Pulumi program creates empty, the
// report Job patches, and `pulumi up` reads after the Job without registering a resource), and the
// optional notification webhook: a secret that reaches the pods only through the run's Secret.
import * as http from "http";
import * as pulumi from "@pulumi/pulumi";
import { afterEach, describe, expect, it, vi } from "vitest";
import { parseSettings } from "../../config";
import { SECRET_DATA_KEYS } from "../../contract";
import { HEADLINE_KEY, parseHeadline, ReportObservation, reportOutput } from "../../components/report";
import { observeReport, readFailure, ReportTarget, reportStackOutput, reportTarget } from "../../scripts/headline";
import { ensureMocks } from "../../scripts/mockrun";
import { argOf, container, render, settings } from "./helpers";
import { stubKubeconfig } from "./stub-kubeconfig";

const HOOK = "https://hooks.slack.example/services/T000/B000/very-secret-path";
const SMALL = { generate: { limit: 2000 } };

describe("the report's headline in the stack outputs", () => {
    it("creates the headline ConfigMap empty, lets the report patch only it, and registers no read of it", async () => {
        const r = await render(settings(SMALL));
        const cm = r.byKind("ConfigMap").find((c) => c.metadata.name === "blog-report")!;
        expect(cm.data).toBeUndefined();
        expect(r.reg.find((x) => x.name === "cot-vr-report-headline")!.ignoreChanges).toEqual(["data"]);
        const role = r.byKind("Role").find((x) => x.metadata.name === "blog-report")!;
        expect(role.rules).toContainEqual({ apiGroups: [""], resources: ["configmaps"], resourceNames: ["blog-report"], verbs: ["patch"] });
        expect(role.rules.flatMap((x: any) => x.verbs)).not.toContain("create");
        expect(argOf(container(r.job("report")).args, "--headline-configmap")).toBe("blog-report");
        // The Job starts after the ConfigMap exists.
        expect(r.reg.find((x) => x.name === "cot-vr-report-job")!.dependsOn).toContain("cot-vr-report-headline");
        // No read resource (`ConfigMap.get`): one drifts on every refresh once the report wrote to it.
        expect(r.reg.filter((x) => x.read !== undefined)).toEqual([]);
        expect(r.byKind("ConfigMap").filter((c) => c.metadata.name === "blog-report")).toHaveLength(1);
    });
    it("registers no read when the report is not awaited or off", async () => {
        for (const raw of [{ ...SMALL, timing: { report: { await: false } } }, { ...SMALL, stages: { report: false } }]) {
            const r = await render(settings(raw));
            expect(r.reg.filter((x) => x.read !== undefined)).toEqual([]);
        }
    });
    it("parses the record, and gives null while none was written", () => {
        expect(parseHeadline({ [HEADLINE_KEY]: JSON.stringify(REC) })).toEqual(REC);
        expect(parseHeadline(undefined)).toBeNull();
        expect(parseHeadline(null)).toBeNull();
        expect(parseHeadline({})).toBeNull();
        expect(parseHeadline({ [HEADLINE_KEY]: "{torn" })).toBeNull();
        expect(parseHeadline({ [HEADLINE_KEY]: "[1]" })).toBeNull();
    });
    it("takes only the record's fields, type-checked: nothing else in the ConfigMap reaches the stack outputs", () => {
        const extra = { ...REC, webhook: HOOK, scores: { ...REC.scores }, headline: { ...REC.headline, note: HOOK } };
        const parsed = parseHeadline({ [HEADLINE_KEY]: JSON.stringify(extra), other: HOOK });
        expect(parsed).toEqual(REC);
        expect(JSON.stringify(parsed)).not.toContain("very-secret-path");
        for (const bad of [{ scores: { "lora-11b": "0.3" } }, { run: 7 }, { gpuHours: "38" }, { generatedAt: undefined }]) {
            expect(parseHeadline({ [HEADLINE_KEY]: JSON.stringify({ ...REC, ...bad }) }), JSON.stringify(bad)).toBeNull();
        }
        expect(parseHeadline({ [HEADLINE_KEY]: JSON.stringify({ ...REC, headline: null, cost: { amount: 96.3, currency: "USD" } }) }))
            .toMatchObject({ headline: null, cost: { amount: 96.3, currency: "USD" } });
    });
});

const REC = {
    run: "blog", task: "chartqa", metric: "exact_match", scores: { "lora-11b": 0.345, "base-90b": 0.15 },
    headline: { numerator: "lora-11b", denominator: "base-90b", ratio: 2.3 }, gpuHours: 38.5, cost: null, generatedAt: "2026-05-04T10:00:00Z",
};
const DATA = { [HEADLINE_KEY]: JSON.stringify(REC) };
const WHERE: ReportTarget = { stack: "blog", namespace: "cot-vr", job: "blog-report-0123abcd", configMap: "blog-report" };

/** An Output's value, whether it is known, whether it is secret (Pulumi's own fields). */
async function look<T>(o: pulumi.Output<T>): Promise<{ value: T; known: boolean; secret: boolean }> {
    const x = o as any;
    return { value: await x.promise(true), known: await x.isKnown, secret: await x.isSecret };
}

describe("the stack output report", () => {
    it("is ready only with a complete Job and a readable record; otherwise pending, saying why", () => {
        const at = (job: ReportObservation["job"], data: ReportObservation["data"]) => reportOutput({ job, data }, WHERE);
        expect(at("complete", DATA)).toEqual({ status: "ready", job: WHERE.job, ...REC });
        expect(at(null, null)).toEqual({ status: "pending", job: WHERE.job, reason: "no Job blog-report-0123abcd in namespace cot-vr" });
        expect(at("failed", DATA)).toMatchObject({ status: "pending", reason: "the report Job failed: npm run report -- --stack blog" });
        // A Job still running (not awaited) may find an older run's record: not shown as this run's.
        expect(at("running", DATA)).toMatchObject({ status: "pending", reason: expect.stringMatching(/has not finished/) });
        expect(at("complete", null)).toMatchObject({ status: "pending", reason: "no ConfigMap cot-vr/blog-report" });
        expect(at("complete", {})).toMatchObject({ status: "pending", reason: expect.stringMatching(/holds no readable headline\.json/) });
    });

    const job = { id: pulumi.output("cot-vr/blog-report-0123abcd") } as unknown as pulumi.CustomResource;
    afterEach(() => vi.restoreAllMocks());

    it("reads after the Job, at the stack's cluster, into a plain (not secret) output", async () => {
        ensureMocks("blog");
        const s = settings({ cluster: { kubeconfig: "/k/config", context: "mi300x" } });
        const seen: ReportTarget[] = [];
        const out = await look(reportStackOutput(s, job, "blog-report-0123abcd", async (t) => (seen.push(t), { job: "complete", data: DATA })));
        expect(out).toEqual({ value: { status: "ready", job: "blog-report-0123abcd", ...REC }, known: true, secret: false });
        expect(seen).toEqual([{ ...WHERE, kubeconfig: "/k/config", context: "mi300x" }]);
        expect(reportTarget(s, "j").configMap).toBe("blog-report");
    });

    it("says so when the stack runs no report, and reads nothing", async () => {
        const observe = vi.fn();
        const out = await look(reportStackOutput(settings({ stages: { report: false } }), undefined, undefined, observe));
        expect(out.value).toEqual({ status: "pending", reason: "stages.report is off in this stack" });
        expect(observe).not.toHaveBeenCalled();
    });

    it("is unknown in a preview, which reads nothing", async () => {
        ensureMocks("blog");
        vi.spyOn(pulumi.runtime, "isDryRun").mockReturnValue(true);
        const observe = vi.fn();
        expect((await look(reportStackOutput(settings(), job, "j", observe))).known).toBe(false);
        expect(observe).not.toHaveBeenCalled();
    });

    it("never fails the update: a failed or hung read is pending with a reason that carries no credential", async () => {
        ensureMocks("blog");
        const warn = vi.spyOn(pulumi.log, "warn").mockResolvedValue(undefined as never);
        const fail = (e: unknown) => async () => { throw e; };
        const leaky = new SyntaxError("bad kubeconfig near 'token: sk-very-secret-path'");
        const out = await look(reportStackOutput(settings(), job, "j", fail(leaky)));
        expect(out.value).toMatchObject({ status: "pending", job: "j", reason: "could not read the report: SyntaxError (npm run status -- --stack blog reads the same cluster and prints it)" });
        expect(JSON.stringify(warn.mock.calls)).not.toContain("very-secret");
        const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6443"), { code: "ECONNREFUSED" });
        expect((await look(reportStackOutput(settings(), job, "j", fail(refused)))).value)
            .toMatchObject({ status: "pending", reason: expect.stringMatching(/^could not read the report: cannot reach the cluster \(ECONNREFUSED\)/) });
        const hung = await look(reportStackOutput(settings(), job, "j", () => new Promise(() => undefined), 50));
        expect(hung.value).toMatchObject({ status: "pending", reason: "could not read the report: no answer from the API server within 0.05s" });
        expect(readFailure(Object.assign(new Error("Forbidden"), { code: 403 }), "blog")).toMatch(/^the API server refused the read \(403\)/);
        expect(readFailure(Object.assign(new Error("x"), { code: 500 }), "blog")).toBe("the API server answered 500");
    });

    it("reads the Job's state and the ConfigMap through the API, a missing object as null", async () => {
        const objects: Record<string, unknown> = {
            "/apis/batch/v1/namespaces/cot-vr/jobs/blog-report-0123abcd": { kind: "Job", metadata: { name: "blog-report-0123abcd" }, status: { conditions: [{ type: "Complete", status: "True" }] } },
            "/api/v1/namespaces/cot-vr/configmaps/blog-report": { kind: "ConfigMap", metadata: { name: "blog-report" }, data: DATA },
        };
        const paths: string[] = [];
        const server = http.createServer((req, res) => {
            paths.push(`${req.method} ${req.url}`);
            const body = objects[req.url!.split("?")[0]];
            res.writeHead(body ? 200 : 404, { "content-type": "application/json" });
            res.end(JSON.stringify(body ?? { kind: "Status", code: 404, reason: "NotFound" }));
        });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        try {
            const port = (server.address() as { port: number }).port;
            const kubeconfig = stubKubeconfig(`http://127.0.0.1:${port}`);
            expect(await observeReport({ ...WHERE, kubeconfig, context: "stub" })).toEqual({ job: "complete", data: DATA });
            expect(paths).toEqual(["GET /apis/batch/v1/namespaces/cot-vr/jobs/blog-report-0123abcd", "GET /api/v1/namespaces/cot-vr/configmaps/blog-report"]);
            (objects["/apis/batch/v1/namespaces/cot-vr/jobs/blog-report-0123abcd"] as any).status = { active: 1 };
            delete objects["/api/v1/namespaces/cot-vr/configmaps/blog-report"];
            expect(await observeReport({ ...WHERE, kubeconfig, context: "stub" })).toEqual({ job: "running", data: null });
            expect(await observeReport({ ...WHERE, job: "gone", kubeconfig, context: "stub" })).toEqual({ job: null, data: null });
        } finally {
            await new Promise<void>((r) => server.close(() => r()));
        }
    });
});

describe("the notification webhook", () => {
    it("must be set as a secret", () => {
        expect(() => settings({ ...SMALL, notifyWebhook: HOOK }, "blog")).not.toThrow();
        // helpers.settings marks every SECRET_KEYS value as a secret; a plain one is refused like hfToken
        expect(() => parseSettings({ hfToken: "x", notifyWebhook: HOOK, ...SMALL }, { stack: "blog", secretKeys: ["cot-vr:hfToken"] }))
            .toThrow(/cot-vr:notifyWebhook: must be set as a secret/);
    });
    it("reaches every Job as an env var from the Secret, only when set, and never in plain text", async () => {
        const on = await render(settings({ ...SMALL, notifyWebhook: HOOK }));
        expect(JSON.stringify(on.objects)).not.toContain("very-secret-path");
        const secret = on.byKind("Secret").find((x) => x.metadata.name === "blog-secrets")!;
        expect(Object.keys(secret.stringData)).toContain(SECRET_DATA_KEYS.notifyWebhook);
        for (const job of on.byKind("Job")) {
            const env = container(job).env.filter((e: any) => e.name === SECRET_DATA_KEYS.notifyWebhook);
            expect(env, job.metadata.name).toEqual([{ name: "COTVR_NOTIFY_WEBHOOK", valueFrom: { secretKeyRef: { name: "blog-secrets", key: "COTVR_NOTIFY_WEBHOOK", optional: true } } }]);
        }
        const off = await render(settings(SMALL));
        for (const job of off.byKind("Job")) expect(container(job).env.map((e: any) => e.name)).not.toContain(SECRET_DATA_KEYS.notifyWebhook);
        expect(Object.keys(off.byKind("Secret")[0].stringData)).not.toContain(SECRET_DATA_KEYS.notifyWebhook);
    });
    it("under cluster.networkPolicy, opens port 443 to the stages that had no egress for it", async () => {
        const policies = async (raw: Record<string, unknown>) => (await render(settings({ ...SMALL, cluster: { networkPolicy: true }, ...raw }))).byKind("NetworkPolicy");
        expect((await policies({})).map((p) => p.metadata.name)).not.toContain("blog-notify-egress");
        const p = (await policies({ notifyWebhook: HOOK })).find((x) => x.metadata.name === "blog-notify-egress")!;
        expect(p.spec.podSelector.matchExpressions[0].values).toEqual(["benchmark"]);
        expect(p.spec.egress).toEqual([{ ports: [{ protocol: "TCP", port: 443 }] }]);
    });
});

// The report's headline back in the stack outputs (a ConfigMap the Pulumi program creates empty, the
// report Job patches, and the program reads after the Job), and the optional notification webhook:
// a secret that reaches the pods only through the run's Secret.
import { describe, expect, it } from "vitest";
import { parseSettings } from "../../config";
import { SECRET_DATA_KEYS } from "../../contract";
import { HEADLINE_KEY, parseHeadline } from "../../components/report";
import { argOf, container, render, settings } from "./helpers";

const HOOK = "https://hooks.slack.example/services/T000/B000/very-secret-path";
const SMALL = { generate: { limit: 2000 } };

describe("the report's headline in the stack outputs", () => {
    it("creates the headline ConfigMap empty, lets the report patch only it, and reads it back after the Job", async () => {
        const r = await render(settings(SMALL));
        const cm = r.byKind("ConfigMap").find((c) => c.metadata.name === "blog-report")!;
        expect(cm.data).toBeUndefined();
        expect(r.reg.find((x) => x.name === "cot-vr-report-headline")!.ignoreChanges).toEqual(["data"]);
        const role = r.byKind("Role").find((x) => x.metadata.name === "blog-report")!;
        expect(role.rules).toContainEqual({ apiGroups: [""], resources: ["configmaps"], resourceNames: ["blog-report"], verbs: ["patch"] });
        expect(role.rules.flatMap((x: any) => x.verbs)).not.toContain("create");
        expect(argOf(container(r.job("report")).args, "--headline-configmap")).toBe("blog-report");
        // The Job starts after the ConfigMap exists; the read waits for the Job.
        expect(r.reg.find((x) => x.name === "cot-vr-report-job")!.dependsOn).toContain("cot-vr-report-headline");
        // Not read back into the stack: a read resource drifts on every refresh (see the README).
        expect(r.reg.filter((x) => x.read !== undefined)).toEqual([]);
        // a read is not an object the stack creates: render leaves it out
        expect(r.byKind("ConfigMap").filter((c) => c.metadata.name === "blog-report")).toHaveLength(1);
    });
    it("reads nothing when the report is not awaited or off", async () => {
        for (const raw of [{ ...SMALL, timing: { report: { await: false } } }, { ...SMALL, stages: { report: false } }]) {
            const r = await render(settings(raw));
            expect(r.reg.filter((x) => x.read !== undefined)).toEqual([]);
        }
    });
    it("parses the record, and gives null while none was written", () => {
        const rec = { run: "blog", task: "chartqa", metric: "exact_match", scores: { "lora-11b": 0.345, "base-90b": 0.15 }, headline: { numerator: "lora-11b", denominator: "base-90b", ratio: 2.3 }, gpuHours: 38.5, cost: null, generatedAt: "2026-05-04T10:00:00Z" };
        expect(parseHeadline({ [HEADLINE_KEY]: JSON.stringify(rec) })).toEqual(rec);
        expect(parseHeadline(undefined)).toBeNull();
        expect(parseHeadline({})).toBeNull();
        expect(parseHeadline({ [HEADLINE_KEY]: "{torn" })).toBeNull();
        expect(parseHeadline({ [HEADLINE_KEY]: "[1]" })).toBeNull();
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

// index.ts, the entry point of `pulumi up`: config read from the Pulumi runtime, secrets kept secret,
// and a bad stack file stops the program before any resource is registered.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { afterEach, describe, expect, it, vi } from "vitest";
import { STAGE_NAMES } from "../../contract";
import { ensureMocks } from "../../scripts/mockrun";

const registered: string[] = [];

async function runIndex(config: Record<string, string>, secretKeys: string[]) {
    registered.length = 0;
    ensureMocks("blog");
    // Record registrations on top of the shared mocks.
    const monitor = (pulumi.runtime as any).getMonitor();
    const orig = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req: any, cb: any) => {
        registered.push(req.getType());
        return orig(req, cb);
    };
    (pulumi.runtime as any).setAllConfig(config, secretKeys);
    vi.resetModules();
    return import("../../index");
}

afterEach(() => vi.resetModules());

describe("index.ts", () => {
    it("fails on a bad stack file before any resource is registered, naming every bad field", async () => {
        await expect(runIndex({ "cot-vr:teacher": JSON.stringify({ maxNumSeqs: -1 }), "cot-vr:hfToken": "hf_x" }, ["cot-vr:hfToken"]))
            .rejects.toThrow(/Invalid stack configuration \(stacks\/Pulumi\.blog\.yaml\):\n  - cot-vr:teacher\.maxNumSeqs: /);
        expect(registered).toEqual([]);
    });
    it("refuses a token that is not stored as a secret", async () => {
        await expect(runIndex({ "cot-vr:hfToken": "hf_plain" }, [])).rejects.toThrow(/cot-vr:hfToken: must be set as a secret/);
        expect(registered).toEqual([]);
    });
    it("builds the pipeline from a valid stack", async () => {
        // The cluster the report's headline is read from: nothing listens on port 1.
        const kubeconfig = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "kc-")), "config");
        fs.writeFileSync(kubeconfig, [
            "apiVersion: v1", "kind: Config", "current-context: x",
            "clusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]",
            "users: [{name: u, user: {token: t}}]",
            "contexts: [{name: x, context: {cluster: c, user: u}}]",
        ].join("\n"));
        const mod = await runIndex({
            "cot-vr:hfToken": "hf_ok", "cot-vr:generate": JSON.stringify({ limit: 2000 }), "cot-vr:cluster": JSON.stringify({ kubeconfig }),
        }, ["cot-vr:hfToken"]);
        expect(mod.run).toBe("blog");
        // Every stage but the opt-in benchmark, in pipeline order.
        expect(mod.stages).toEqual(STAGE_NAMES.filter((n) => n !== "benchmark"));
        // Outputs name what a user needs next: namespace, teacher, each stage's Job, the status command.
        expect(mod.namespace).toBe("cot-vr");
        expect(mod.teacherUrl).toBe("http://blog-teacher.cot-vr.svc.cluster.local:8000/v1");
        expect(mod.jobs["train:lora-11b"]).toMatch(/^blog-train-lora-11b-[0-9a-f]{8}$/);
        expect(Object.keys(mod.jobs)).toContain("report");
        expect(mod.status).toBe("npm run status -- --stack blog --watch");
        // After the report Job, `up` reads its headline from the stack's cluster; out of reach, the update goes on.
        const report = await new Promise((r) => mod.report.apply(r));
        expect(report).toMatchObject({ status: "pending", job: mod.jobs.report, reason: expect.stringMatching(/^could not read the report: cannot reach the cluster \(ECONNREFUSED\)/) });
        await new Promise((r) => setTimeout(r, 200));
        expect(registered).toContain("kubernetes:batch/v1:Job");
    });
});

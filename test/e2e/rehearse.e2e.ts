// `npm run rehearse` end to end: its own local control plane (cluster.sh), the real `pulumi up` of a
// shipped stack with estimated durations, and its failures. Run by test/e2e/run.sh
// (COT_E2E_FILTER=rehearse for these only); the suite's own cluster is not used.
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";
import { beforeAll, describe, expect, test } from "vitest";
import { requireCluster, ROOT, run, WORK } from "./helpers";

function rehearse(...args: string[]) {
    // The rehearsal makes its own throw-away backend and PULUMI_HOME; only PATH (the toolchain) is passed on.
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1" };
    for (const k of Object.keys(env)) if (k.startsWith("PULUMI_") || k === "KUBECONFIG") delete env[k];
    return run("npx", ["tsx", "scripts/rehearse.ts", ...args], { env });
}

/** A copy of a shipped stack file with some keys changed (YAML paths under cot-vr:). */
function stackVariant(from: string, name: string, change: (cfg: Record<string, any>) => void): string {
    const doc = YAML.parse(fs.readFileSync(path.join(ROOT, "stacks", `Pulumi.${from}.yaml`), "utf8"));
    change(doc.config);
    const dir = path.join(WORK, "rehearse-stacks");
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `Pulumi.${name}.yaml`);
    fs.writeFileSync(file, YAML.stringify(doc));
    return file;
}

describe("npm run rehearse", () => {
    beforeAll(() => requireCluster());

    test("rehearses the smoke stack: stages in DAG order, GPU timeline, makespan, GPU-hours, cost, --parallel", () => {
        const file = stackVariant("smoke", "rehearse-smoke", (c) => {
            c["cot-vr:cluster"] = { gpuHourPrice: { amount: 2, currency: "USD" } };
        });
        const r = rehearse("--config", file, "--scale", "60");
        expect(r.code, r.out.slice(-6000)).toBe(0);
        const out = r.out;
        const order = out.slice(out.indexOf("Stages in the order they ran"), out.indexOf("GPU timeline"));
        const at = (what: string) => {
            const i = order.indexOf(what);
            expect(i, `${what} in\n${order}`).toBeGreaterThan(0);
            return i;
        };
        // DAG order: downloads, generation, fine-tunes, their evaluations, the report.
        expect(at("download 90b")).toBeLessThan(at("generate cot"));
        expect(at("generate cot")).toBeLessThan(at("train lora-11b"));
        expect(at("train lora-11b")).toBeLessThan(at("evaluate lora-11b"));
        expect(at("train qlora-90b")).toBeLessThan(at("evaluate qlora-90b"));
        expect(at("evaluate qlora-90b")).toBeLessThan(at("report"));
        // The teacher held its GPU while the generation ran (the real teacher_scale.py scaled it).
        const timeline = out.slice(out.indexOf("GPU timeline"), out.indexOf("\nmakespan "));
        for (const row of ["teacher", "train lora-11b", "train qlora-90b", "evaluate base-90b", "sample base-11b"]) expect(timeline).toContain(row);
        const makespan = Number(/makespan ([0-9.]+) h/.exec(out)?.[1]);
        const gh = Number(/GPU-hours ([0-9.]+)/.exec(out)?.[1]);
        const cost = Number(/cost ([0-9.]+) USD/.exec(out)?.[1]);
        // The estimate (without queueing) is ~0.55 h; the simulation adds scheduling latency.
        expect(makespan).toBeGreaterThan(0.4);
        expect(makespan).toBeLessThan(3);
        expect(gh).toBeGreaterThan(0);
        expect(cost).toBeCloseTo(2 * gh, 1);
        expect(out).toContain("needs pulumi up --parallel >= 8");
        // Torn down: no cluster left behind.
        expect(out).not.toContain("kept: KUBECONFIG");
    });

    test("GPU pods whose node selector no node matches stop the rehearsal with the scheduler's reason and the key", () => {
        // (A teacher asking more GPUs than a node has is a config error now: 1, 2, 4 or 8 only.)
        const file = stackVariant("smoke", "rehearse-selector", (c) => {
            c["cot-vr:cluster"] = { ...(c["cot-vr:cluster"] ?? {}), nodeSelector: { "amd.com/gpu.device-id": "ffff" } };
        });
        const r = rehearse("--config", file, "--scale", "60");
        expect(r.code).toBe(1);
        expect(r.out).toContain("can never be scheduled");
        expect(r.out).toMatch(/scheduler: 0\/2 nodes are available:.*node affinity\/selector/);
        expect(r.out).toContain("change: cot-vr:cluster.nodeSelector");
    });

    test("a timeout shorter than the estimate fails before any cluster starts", () => {
        const file = stackVariant("smoke", "rehearse-timeout", (c) => {
            c["cot-vr:timing"].generate = { timeout: "1m" };
        });
        const r = rehearse("--config", file);
        expect(r.code).toBe(1);
        expect(r.out).toMatch(/cot-vr:timing\.generate\.timeout is 1m but generate is estimated at (\d+h)?\d+m/);
        expect(r.out).not.toContain("starting the local control plane");
    });
});

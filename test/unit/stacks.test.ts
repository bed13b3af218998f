// The shipped stacks and the render command.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as YAML from "yaml";
import { describe, expect, it } from "vitest";
import { readStackFile, stackFilePath, stackSettings } from "../../config/stackfile";
import { LABELS, STAGE_NAMES } from "../../contract";

const ROOT = path.join(__dirname, "..", "..");
const STACKS = fs.readdirSync(path.join(ROOT, "stacks")).map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)![1]);

function renderCli(args: string[]) {
    return spawnSync(process.execPath, [path.join(ROOT, "node_modules", "tsx", "dist", "cli.mjs"), path.join(ROOT, "scripts", "render.ts"), ...args], { cwd: ROOT, encoding: "utf8" });
}

describe("shipped stacks", () => {
    it("ships blog, smoke, a sweep and the throughput benchmark", () => {
        expect(STACKS).toEqual(expect.arrayContaining(["blog", "smoke", "sweep-rank32", "bench"]));
    });
    it("bench measures the blog's two fine-tunes and nothing else, with no token", () => {
        const { settings, placeholders } = stackSettings(readStackFile(stackFilePath("bench")), { placeholderSecrets: true });
        expect(placeholders).toEqual([]);
        expect(Object.entries(settings.stages).filter(([, on]) => on).map(([k]) => k)).toEqual(["benchmark"]);
        const blog = stackSettings(readStackFile(stackFilePath("blog")), { placeholderSecrets: true }).settings;
        expect(settings.train.variants).toEqual(blog.train.variants);
    });
    for (const stack of STACKS) {
        it(`${stack}: validates, and needs only the secrets a user sets`, () => {
            const { settings, placeholders } = stackSettings(readStackFile(stackFilePath(stack)), { placeholderSecrets: true });
            expect(placeholders.every((p) => p === "cot-vr:hfToken")).toBe(true);
            expect(settings.stack).toBe(stack);
        });
    }
    it("each owns a namespace of its own, or borrows claims in another's without owning it", () => {
        const all = STACKS.map((stack) => stackSettings(readStackFile(stackFilePath(stack)), { placeholderSecrets: true }).settings);
        const owned = all.filter((s) => s.cluster.createNamespace).map((s) => s.cluster.namespace);
        expect(new Set(owned).size, `namespaces: ${owned.join(", ")}`).toBe(owned.length);
        for (const s of all) {
            const borrows = Object.values(s.storage).some((v) => typeof v === "object" && v.existingClaim);
            if (borrows) expect(s.cluster.createNamespace, s.stack).toBe(false);
            else expect(s.cluster.createNamespace, s.stack).toBe(true);
        }
        const ns = (stack: string) => all.find((s) => s.stack === stack)!.cluster.namespace;
        expect([ns("blog"), ns("smoke"), ns("bench")]).toEqual(["cot-vr", "cot-vr-smoke", "cot-vr-bench"]);
        expect(ns("sweep-rank32")).toBe(ns("blog"));
    });
    it("blog runs every stage on the blog's settings", () => {
        const { settings: s } = stackSettings(readStackFile(stackFilePath("blog")), { placeholderSecrets: true });
        // Every stage of the experiment (the benchmark is a stack of its own).
        expect(Object.entries(s.stages).filter(([, on]) => !on).map(([k]) => k)).toEqual(["benchmark"]);
        expect(s.trainings.map(([n]) => n)).toEqual(["lora-11b", "qlora-90b"]);
        expect(s.evaluations.map((r) => r.name)).toEqual(["base-11b", "lora-11b", "base-90b", "qlora-90b"]);
    });
    it("smoke runs every stage on tiny limits, in a dataset folder of its own", () => {
        const { settings: s } = stackSettings(readStackFile(stackFilePath("smoke")), { placeholderSecrets: true });
        expect(Object.entries(s.stages).filter(([, on]) => !on).map(([k]) => k)).toEqual(["benchmark"]);
        expect(s.generate.limit).toBeLessThanOrEqual(16);
        expect(s.generate.datasetName).not.toBe("cot_chartqa");
        for (const [, v] of s.trainings) expect([v.epochs, v.maxStepsPerEpoch]).toEqual([1, 2]);
        expect(s.evaluate.limit).toBeLessThanOrEqual(10);
    });
    it("the sweep shares the blog stack's dataset and downloads and trains a second LoRA rank", () => {
        const blog = stackSettings(readStackFile(stackFilePath("blog")), { placeholderSecrets: true }).settings;
        const { settings: s } = stackSettings(readStackFile(stackFilePath("sweep-rank32")), { placeholderSecrets: true });
        expect(s.stages).toMatchObject({ download: false, teacher: false, generate: false, train: true });
        expect(s.storage.models.existingClaim).toBe(`${blog.run}-models`);
        expect(s.storage.data.existingClaim).toBe(`${blog.run}-data`);
        expect(s.generate.datasetName).toBe(blog.generate.datasetName);
        expect(s.cluster.namespace).toBe(blog.cluster.namespace);
        expect(s.trainings.map(([, v]) => v.loraRank)).toEqual([32]);
        expect(s.run).not.toBe(blog.run);
    });
});

describe("npm run render", () => {
    it("writes one YAML document per object for the blog stack, every stage present", () => {
        const out = fs.mkdtempSync(path.join(os.tmpdir(), "render-"));
        const res = renderCli(["--stack", "blog", "--out", out]);
        expect(res.status, res.stderr).toBe(0);
        const docs = fs.readdirSync(out).map((f) => YAML.parseAllDocuments(fs.readFileSync(path.join(out, f), "utf8")));
        expect(docs.every((d) => d.length === 1)).toBe(true);
        const objs = docs.map((d) => d[0].toJS());
        const stages = new Set(objs.filter((o) => o.kind === "Job").map((o) => o.metadata.labels[LABELS.stage]));
        // Every stage runs a Job but the teacher (a Deployment) and the opt-in benchmark.
        expect([...stages].sort()).toEqual(STAGE_NAMES.filter((n) => n !== "teacher" && n !== "benchmark").sort());
        expect(objs.filter((o) => o.kind === "Deployment")).toHaveLength(1);
    });
    it("redacts secret values from the stack file", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stack-"));
        const file = path.join(dir, "Pulumi.secretive.yaml");
        fs.writeFileSync(file, YAML.stringify({ config: { "cot-vr:hfToken": { secure: "v1:AAAABBBBsecretciphertext" }, "cot-vr:generate": { limit: 2000 } } }));
        const out = path.join(dir, "out");
        const res = renderCli(["--config", file, "--out", out]);
        expect(res.status, res.stderr).toBe(0);
        const all = fs.readdirSync(out).map((f) => fs.readFileSync(path.join(out, f), "utf8")).join("\n");
        expect(all).not.toContain("secretciphertext");
        expect(all).toMatch(/HF_TOKEN: <redacted>/);
    });
    it("fails on a bad config with the same message as pulumi up, and writes nothing", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stack-"));
        const file = path.join(dir, "Pulumi.bad.yaml");
        fs.writeFileSync(file, YAML.stringify({ config: { "cot-vr:teacher": { maxNumSeqs: 0 }, "cot-vr:images": { vllm: "rocm/vllm:latest" } } }));
        const out = path.join(dir, "out");
        const res = renderCli(["--config", file, "--out", out]);
        expect(res.status).toBe(1);
        expect(res.stderr).toContain("Invalid stack configuration");
        expect(res.stderr).toContain("cot-vr:teacher.maxNumSeqs:");
        expect(res.stderr).toContain('cot-vr:images.vllm: must be pinned');
        expect(fs.existsSync(out)).toBe(false);
    });
    it("prints usage without a stack", () => {
        const res = renderCli(["--out", "/tmp/x"]);
        expect(res.status).toBe(2);
        expect(res.stderr).toMatch(/give --stack <name> or --config <file>\n\(--help for usage\)/);
    });
});


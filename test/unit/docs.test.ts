import * as fs from "fs";
import * as path from "path";
import Ajv2020 from "ajv/dist/2020";
import * as YAML from "yaml";
import { describe, expect, it } from "vitest";
import { configRows, JSON_SCHEMA, lineDiff, main, README, readmeWithStacks, readmeWithTable, shippedStacks, stackEstimate, stackJsonSchema, UNDESCRIBED } from "../../scripts/config-docs";
import { estimateStages, plan, requiredParallel, stageGraph } from "../../scripts/estimate";
import { readStackFile, stackFilePath, stackSettings } from "../../config/stackfile";

const STACKS_DIR = path.join(__dirname, "..", "..", "stacks");
const STACK_FILES = fs.readdirSync(STACKS_DIR).filter((f) => /^Pulumi\..+\.yaml$/.test(f));

describe("README config table", () => {
    it("documents every key of the schema, as generated (run `npm run docs -- --write` after changing config/schema.ts)", () => {
        const readme = fs.readFileSync(README, "utf8");
        expect(readme).toBe(readmeWithTable(readme));
    });
    it("has a meaning for every key", () => {
        expect(configRows().filter((r) => !r[3]).map((r) => r[0])).toEqual([]);
        expect(configRows().length).toBeGreaterThan(90);
    });
});

describe("README Stacks table", () => {
    const readme = fs.readFileSync(README, "utf8");
    const table = readme.slice(readme.indexOf("<!-- stacks-table:begin"), readme.indexOf("<!-- stacks-table:end -->"));

    it("has the estimator's makespan, GPU-hours and --parallel for every shipped stack (run `npm run docs -- --write` after changing a stack or the estimator)", () => {
        expect(readme).toBe(readmeWithStacks(readme));
        for (const s of shippedStacks()) {
            const e = stackEstimate(s);
            expect(table).toContain(`| \`${s}\` |`);
            expect(table, s).toMatch(new RegExp(`\\| \`${s}\` \\| [^\\n]+ \\| ${e.makespan} \\| ${e.gpuHours} \\| \`--parallel ${e.parallel}\` \\|`));
            expect(table, s).not.toContain(UNDESCRIBED);
        }
    });
    it("takes its figures from the same plan as the rehearsal and pulumi preview", () => {
        const { settings } = stackSettings(readStackFile(stackFilePath("blog")), { placeholderSecrets: true });
        const graph = stageGraph(settings);
        const est = estimateStages(settings);
        const p = plan(graph, est);
        const e = stackEstimate("blog");
        expect(e.gpuHours).toBe(p.gpuHours.toFixed(1));
        expect(e.parallel).toBe(requiredParallel(graph, est).parallel);
        expect(e.parallel).toBe(8);
    });
    it("keeps the descriptions as written, adds a row for a new stack and drops the row of a removed one", () => {
        const doc = [
            "before",
            "<!-- stacks-table:begin (npm run docs) -->",
            "| stack | what it runs | old |",
            "|---|---|---|",
            "| `gone` | a stack file that was removed | 1h |",
            "| `smoke` | tiny \\| limits | 2h |",
            "<!-- stacks-table:end -->",
            "after",
        ].join("\n");
        const out = readmeWithStacks(doc);
        expect(out.startsWith("before\n<!-- stacks-table:begin")).toBe(true);
        expect(out.endsWith("<!-- stacks-table:end -->\nafter")).toBe(true);
        expect(out).not.toContain("`gone`");
        const rows = out.split("\n").filter((l) => l.startsWith("| `"));
        expect(rows.map((r) => /^\| `([^`]+)`/.exec(r)![1])).toEqual(["smoke", ...shippedStacks().filter((s) => s !== "smoke")]);
        expect(rows[0]).toContain("| tiny \\| limits |");
        expect(rows.slice(1).every((r) => r.includes(UNDESCRIBED))).toBe(true);
        expect(readmeWithStacks(out)).toBe(out);
        expect(() => readmeWithStacks("no markers")).toThrow(/stacks-table:begin/);
    });
});

describe("config/stack.schema.json", () => {
    it("is the JSON Schema of the zod schema, as generated (run `npm run docs -- --write` after changing config/schema.ts)", () => {
        expect(fs.readFileSync(JSON_SCHEMA, "utf8")).toBe(stackJsonSchema());
    });

    const ajv = new Ajv2020({ allErrors: true, strict: true });
    const validate = ajv.compile(JSON.parse(fs.readFileSync(JSON_SCHEMA, "utf8")));
    const errors = (doc: unknown) => (validate(doc) ? [] : validate.errors!.map((e) => `${e.instancePath || "/"} ${e.message}`));

    for (const f of STACK_FILES) {
        it(`${f}: points editors to it on its first line and validates against it`, () => {
            const text = fs.readFileSync(path.join(STACKS_DIR, f), "utf8");
            expect(text.split("\n")[0]).toBe("# yaml-language-server: $schema=../config/stack.schema.json");
            expect(errors(YAML.parse(text))).toEqual([]);
        });
    }
    it("describes a whole stack file: cot-vr:<key> settings, secrets as Pulumi writes them, other namespaces, Pulumi's top-level keys", () => {
        const ok = {
            config: {
                "cot-vr:timing": { train: { timeout: "1h30m" } },
                "cot-vr:hfToken": { secure: "v1:abc" },
                "kubernetes:context": "kind",
                "pulumi:disable-default-providers": ["*"],
            },
            encryptionsalt: "v1:xyz",
            environment: ["my-env"],
        };
        expect(errors(ok)).toEqual([]);
    });
    it("flags what the program would reject: unknown keys, a bad type or duration, a plain secret, settings outside config:", () => {
        expect(errors({ config: { "cot-vr:clustr": {} } })).toEqual(["/config must NOT have additional properties"]);
        expect(errors({ config: { "cot-vr:cluster": { namespace: 5 } } })).toEqual(["/config/cot-vr:cluster/namespace must be string"]);
        expect(errors({ config: { "cot-vr:timing": { train: { timeout: "1.5h" } } } })[0]).toMatch(/^\/config\/cot-vr:timing\/train\/timeout must match pattern/);
        expect(errors({ config: { "cot-vr:hfToken": "hf_plain" } })).toEqual(["/config/cot-vr:hfToken must be object"]);
        expect(errors({ "cot-vr:run": "x" })).toEqual(["/ must NOT have additional properties"]);
        expect(errors({ config: { "kubernets:context": "x" } })).toEqual(["/config must NOT have additional properties"]);
    });
});

describe("npm run docs", () => {
    const cli = (...args: string[]) => {
        const out: string[] = [];
        const err: string[] = [];
        const code = main(args, (s) => out.push(s), (s) => err.push(s));
        return { code, out: out.join("\n"), err: err.join("\n") };
    };
    it("reports up to date and writes nothing when nothing changed, in every mode", () => {
        const before = [README, JSON_SCHEMA].map((f) => fs.statSync(f).mtimeMs);
        for (const mode of [[], ["--check"]]) {
            const r = cli(...mode);
            expect(r).toMatchObject({ code: 0, err: "" });
            expect(r.out).toMatch(/^up to date: .*README\.md, .*stack\.schema\.json$/);
        }
        expect([README, JSON_SCHEMA].map((f) => fs.statSync(f).mtimeMs)).toEqual(before);
    });
    it("--help prints usage, options, exit codes and examples", () => {
        for (const h of ["--help", "-h"]) {
            const r = cli(h);
            expect(r.code).toBe(0);
            expect(r.out).toMatch(/^Usage: npm run docs -- \[--write \| --check\]/);
            for (const o of ["-w, --write", "-c, --check", "-h, --help", "Exit codes:", "Examples:", "npm run docs -- --write"]) expect(r.out).toContain(o);
        }
    });
    it("refuses unknown options, --write with --check and arguments, with commander's one-line error (exit 2)", () => {
        expect(cli("--force")).toMatchObject({ code: 2, err: expect.stringMatching(/^error: unknown option '--force'\n\(--help for usage\)$/) });
        expect(cli("--write", "--check")).toMatchObject({ code: 2, err: expect.stringMatching(/^error: option '-w, --write' cannot be used with option '-c, --check'/) });
        expect(cli("README.md")).toMatchObject({ code: 2, err: expect.stringMatching(/^error: too many arguments/) });
    });
    it("shows a stale file's changed lines, removed before added, with their line numbers", () => {
        expect(lineDiff("a\nb\nc\n", "a\nB\nc\nd\n")).toEqual(["-2: b", "+2: B", "+4: d"]);
        expect(lineDiff("same", "same")).toEqual([]);
        const many = lineDiff("", Array.from({ length: 50 }, (_, i) => String(i)).join("\n"), 10);
        expect(many).toHaveLength(11);
        expect(many[10]).toBe("... 41 more lines");
    });
});

// The run's vocabulary has one home (contract.ts) and one Python twin (images/common/cotvr_contract.py).
// These tests pin the twin to it, and fail on a label key, stage list or exit-code number written as a
// literal anywhere else in the code, where it could drift.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import * as contract from "../../contract";

const ROOT = path.resolve(__dirname, "../..");

function pythonTwin(): Record<string, any> {
    const out = execFileSync("python3", [path.join(ROOT, "images/common/cotvr_contract.py")], { encoding: "utf8" });
    return JSON.parse(out);
}

describe("the Python twin of contract.ts", () => {
    const py = pythonTwin();

    it("has the same label keys, stages, volumes and secret keys", () => {
        const { run, stage, variant, hash } = contract.LABELS;
        expect(py.PROJECT).toBe(contract.PROJECT);
        expect(py.LABELS).toEqual({ run, stage, variant, hash });
        expect(py.STAGE_NAMES).toEqual([...contract.STAGE_NAMES]);
        expect(py.VOLUME_NAMES).toEqual([...contract.VOLUME_NAMES]);
        expect(py.SECRET_DATA_KEYS).toEqual(contract.SECRET_DATA_KEYS);
    });

    it("has the same exit codes, fatal set, record prefixes, marker and watchdog grace", () => {
        expect(py.EXIT).toEqual(contract.EXIT);
        expect(py.FATAL_EXIT_CODES).toEqual([...contract.FATAL_EXIT_CODES]);
        expect(py.PROGRESS_PREFIX).toBe(contract.PROGRESS_PREFIX);
        expect(py.BENCH_PREFIX).toBe(contract.BENCH_PREFIX);
        expect(py.MARKER_NAME).toBe(contract.MARKER_NAME);
        expect(py.WATCHDOG_GRACE_SECONDS).toBe(contract.WATCHDOG_GRACE_SECONDS);
    });

    it("gives every exit code of the programs a meaning, and 0 none", () => {
        for (const code of Object.values(contract.EXIT).filter((c) => c !== 0)) expect(contract.EXIT_MEANINGS[code], `exit ${code}`).toBeDefined();
        expect(contract.EXIT_MEANINGS[0]).toBeUndefined();
    });
});

describe("the stage table", () => {
    it("covers every stage, in a strict order, with dependents and egress among the stages", () => {
        const names = Object.keys(contract.STAGES);
        expect(names).toEqual([...contract.STAGE_NAMES]);
        const orders = contract.STAGE_NAMES.map((n) => contract.STAGES[n].order);
        expect(orders).toEqual([...orders].sort((a, b) => a - b));
        expect(new Set(orders).size).toBe(orders.length);
        for (const n of contract.STAGE_NAMES) {
            for (const d of contract.STAGES[n].dependents) expect(contract.STAGES[d].order, `${n} -> ${d}`).toBeGreaterThan(contract.STAGES[n].order);
        }
        for (const list of Object.values(contract.EGRESS)) for (const n of list) expect(names).toContain(n);
    });

    it("labels each kind of node with its stage and variant", () => {
        expect(contract.stageLabels({ kind: "download", size: "90b" })).toEqual({ stage: "download", variant: "90b" });
        expect(contract.stageLabels({ kind: "generate" })).toEqual({ stage: "generate", variant: "cot" });
        expect(contract.stageLabels({ kind: "teacher" })).toEqual({ stage: "teacher", variant: undefined });
        expect(contract.stageLabels({ kind: "benchmark", variant: "lora-11b" })).toEqual({ stage: "benchmark", variant: "lora-11b" });
        expect(contract.stageLabels({ kind: "evaluate", model: { name: "base-11b" } })).toEqual({ stage: "evaluate", variant: "base-11b" });
    });
});

describe("no copy of the vocabulary outside the contract", () => {
    // Code files of the repository; recorded logs and objects under test/fixtures are data, not code.
    const files = execFileSync("git", ["ls-files", "-z"], { cwd: ROOT, encoding: "utf8" })
        .split("\0")
        .filter((f) => /\.(ts|mts|mjs|js|py|sh|go)$/.test(f) && !f.startsWith("test/fixtures/"))
        .filter((f) => f !== "contract.ts" && f !== "images/common/cotvr_contract.py" && f !== "test/unit/contract.test.ts");
    const stage = `["'](?:${contract.STAGE_NAMES.join("|")})["']`;
    const rules: [string, RegExp][] = [
        ["a label key", new RegExp(`${contract.PROJECT}(?:/|%2F)(?:run|stage|variant|config-hash|failure)\\b`)],
        // Four or more stage names in one list is a copy of the stage table.
        ["a stage list", new RegExp(`[[(]\\s*${stage}(?:\\s*,\\s*${stage}){3,}`)],
        ["an exit-code definition", /\bEXIT_[A-Z_]+\s*=\s*\d/],
        ["an exit-code number", /(?:returncode|exit_?[cC]ode|\.code)\s*[!=]==?\s*[1-6]\b|\b(?:sys\.)?exit\(\s*[2-6]\s*\)|^\s*return [2-6]\s*$/],
        ["the watchdog's grace", /--grace["'],\s*["']600\b|grace\s*[:=]\s*600\b/],
    ];

    it("finds none in the code", () => {
        const found: string[] = [];
        for (const f of files) {
            const lines = fs.readFileSync(path.join(ROOT, f), "utf8").split("\n");
            lines.forEach((line, i) => {
                for (const [what, re] of rules) if (re.test(line)) found.push(`${f}:${i + 1}: ${what}: ${line.trim()}`);
            });
        }
        expect(found).toEqual([]);
    });

    it("would find one", () => {
        const hits = (line: string) => rules.filter(([, re]) => re.test(line)).map(([what]) => what);
        expect(hits(`labels["${contract.LABELS.stage}"]`)).toEqual(["a label key"]);
        expect(hits(`const ORDER = ["download", "teacher", "generate", "train"];`)).toEqual(["a stage list"]);
        expect(hits("EXIT_FAILED = 1")).toEqual(["an exit-code definition"]);
        expect(hits("assert proc.returncode == 3")).toEqual(["an exit-code number"]);
        expect(hits("grace = 600")).toEqual(["the watchdog's grace"]);
    });
});

// The command lines explain themselves: --help with usage, options and an example; one-line errors
// that name the fix; distinct exit codes for a usage error, a failure and a cluster out of reach.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { didYouMean, parseSettings } from "../../config";
import { CLI_EXIT, CliError, failureCode, failureMessage, knownStacks, unreachableCluster } from "../../scripts/cli";

const ROOT = path.join(__dirname, "..", "..");

function cli(script: string, args: string[]) {
    return spawnSync(process.execPath, [path.join(ROOT, "node_modules", "tsx", "dist", "cli.mjs"), path.join(ROOT, "scripts", script), ...args], { cwd: ROOT, encoding: "utf8" });
}

describe("render's command line", () => {
    it("answers --help with usage, options and an example", () => {
        const r = cli("render.ts", ["--help"]);
        expect(r.status).toBe(CLI_EXIT.ok);
        expect(r.stdout).toMatch(/^Usage: npm run render -- \[options\]/);
        expect(r.stdout).toContain("--stack <name>");
        expect(r.stdout).toContain("--out <dir>");
        expect(r.stdout).toMatch(/Examples:\n {2}npm run render -- --stack smoke --out render\/smoke/);
    });

    it("says what is missing, with exit code 2 and no stack trace", () => {
        const r = cli("render.ts", ["--stack", "smoke"]);
        expect(r.status).toBe(CLI_EXIT.usage);
        expect(r.stderr).toContain("required option '--out <dir>' not specified");
        expect(r.stderr).not.toMatch(/\n\s+at /);
    });

    it("lists the stacks there are for an unknown one", () => {
        const r = cli("render.ts", ["--stack", "blgo", "--out", fs.mkdtempSync(path.join(os.tmpdir(), "render-"))]);
        expect(r.status).toBe(CLI_EXIT.usage);
        expect(r.stderr.trim()).toBe(`no stack "blgo": the stacks are ${knownStacks().join(", ")} (stacks/Pulumi.<name>.yaml); or give --config <file>`);
    });

    it("exits 1 with pulumi up's message for a bad stack file", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "render-"));
        const file = path.join(dir, "Pulumi.bad.yaml");
        fs.writeFileSync(file, "config:\n  cot-vr:teacher:\n    maxModelLength: 8192\n");
        const r = cli("render.ts", ["--config", file, "--out", path.join(dir, "out")]);
        expect(r.status).toBe(CLI_EXIT.failed);
        expect(r.stderr).toContain("cot-vr:teacher.maxModelLength: unknown key (did you mean maxModelLen?)");
        expect(fs.existsSync(path.join(dir, "out"))).toBe(false);
    });
});

describe("failures", () => {
    it("give a cluster out of reach its own exit code and one line with the fix", () => {
        const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6443"), { code: "ECONNREFUSED" });
        expect(failureCode(refused)).toBe(CLI_EXIT.unreachable);
        expect(failureMessage(refused)).toBe("cannot reach the cluster (ECONNREFUSED): check KUBECONFIG (or ~/.kube/config), its current context, and that the API server is up");
        const fetchFailed = Object.assign(new TypeError("fetch failed"), { cause: { code: "ENOTFOUND" } });
        expect(unreachableCluster(fetchFailed, "https://k8s.example:6443")?.message).toMatch(/^cannot reach the cluster at https:\/\/k8s.example:6443 \(ENOTFOUND\)/);
        const noFile = Object.assign(new Error("ENOENT: no such file or directory, open '/home/u/.kube/config'"), { code: "ENOENT", path: "/home/u/.kube/config" });
        expect(failureMessage(noFile)).toMatch(/^no kubeconfig at \/home\/u\/.kube\/config: /);
        expect(failureCode(noFile)).toBe(CLI_EXIT.unreachable);
    });

    it("print anything unexpected as one line, not a stack trace", () => {
        expect(failureMessage(new Error("boom\n    at x (y.ts:1:1)"))).toBe("error: boom (COTVR_DEBUG=1 prints the stack trace)");
        expect(failureCode(new Error("boom"))).toBe(CLI_EXIT.failed);
        expect(failureCode(new CliError("stage failed"))).toBe(CLI_EXIT.failed);
    });
});

describe("unknown config keys", () => {
    it("say which key was meant, at any depth", () => {
        const problems = (raw: Record<string, unknown>) => {
            try {
                parseSettings(raw, { stack: "t" });
                return [];
            } catch (e) {
                return (e as { problems: string[] }).problems.filter((p) => p.includes("unknown key"));
            }
        };
        expect(problems({ trian: {} })).toEqual(["cot-vr:trian: unknown key (did you mean train?)"]);
        expect(problems({ timing: { train: { timout: "2h" } } })).toEqual(["cot-vr:timing.train.timout: unknown key (did you mean timeout?)"]);
        expect(problems({ bogus: 1 })).toEqual(["cot-vr:bogus: unknown key"]);
        expect(didYouMean("learningrate", ["learningRate", "loraRank"])).toBe(" (did you mean learningRate?)");
        expect(didYouMean("xyz", ["learningRate"])).toBe("");
    });
});

describe("status's command line", () => {
    const closedPort = () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kc-"));
        const file = path.join(dir, "config");
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        fs.writeFileSync(file, [
            "apiVersion: v1", "kind: Config", "current-context: x",
            "clusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]",
            "users: [{name: u, user: {token: t}}]",
            "contexts: [{name: x, context: {cluster: c, user: u}}]",
        ].join("\n"));
        return file;
    };
    const status = (args: string[], env: NodeJS.ProcessEnv = {}) =>
        spawnSync(process.execPath, [path.join(ROOT, "node_modules", "tsx", "dist", "cli.mjs"), path.join(ROOT, "scripts", "status.ts"), ...args], { cwd: ROOT, encoding: "utf8", env: { ...process.env, ...env } });

    it("answers --help with usage, options and examples", () => {
        const r = status(["--help"]);
        expect(r.status).toBe(CLI_EXIT.ok);
        expect(r.stdout).toMatch(/^Usage: npm run status -- \[options\]/);
        for (const o of ["--stack <name>", "--watch", "--json", "--interval <seconds>", "--report"]) expect(r.stdout).toContain(o);
        expect(r.stdout).toContain("npm run status -- --stack blog --watch");
    });

    it("gives a cluster out of reach exit code 3, not the 1 of a failed stage", () => {
        const r = status(["--stack", "smoke"], { KUBECONFIG: closedPort() });
        expect(r.status).toBe(CLI_EXIT.unreachable);
        expect(r.stderr.trim()).toMatch(/^cannot reach the cluster \(ECONNREFUSED\): check KUBECONFIG/);
        const missing = status(["--stack", "smoke"], { KUBECONFIG: path.join(os.tmpdir(), "no-such-kubeconfig") });
        expect(missing.status).toBe(CLI_EXIT.unreachable);
        expect(missing.stderr).toMatch(/^no kubeconfig at .*no-such-kubeconfig: fix KUBECONFIG/);
    });

    it("refuses a bad interval and an unknown stack as usage errors", () => {
        expect(status(["--stack", "smoke", "--interval", "0"]).status).toBe(CLI_EXIT.usage);
        const r = status(["--stack", "nope"]);
        expect(r.status).toBe(CLI_EXIT.usage);
        expect(r.stderr).toContain('no stack "nope": the stacks are');
    });
});

describe("rehearse's command line", () => {
    it("answers --help, and --plan-only prints the plan and its checks without building or starting anything", () => {
        const help = cli("rehearse.ts", ["--help"]);
        expect(help.status).toBe(CLI_EXIT.ok);
        for (const o of ["--stack <name>", "--like <kubeconfig>", "--plan-only", "--bench <file...>"]) expect(help.stdout).toContain(o);
        const r = cli("rehearse.ts", ["--stack", "blog", "--plan-only"]);
        expect(r.status, r.stderr).toBe(CLI_EXIT.ok);
        expect(r.stdout).toMatch(/estimate with unlimited GPUs: makespan \d+h\d+m, [\d.]+ GPU-hours/);
        expect(r.stdout).toContain("this stack needs pulumi up --parallel >= 8");
        expect(r.stdout + r.stderr).not.toMatch(/toolchain|starting the local control plane/);
    });

    it("stops on a timeout shorter than the estimate with exit 1 and the key", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rehearse-"));
        const file = path.join(dir, "Pulumi.short.yaml");
        fs.writeFileSync(file, "config:\n  cot-vr:stages: {download: false, teacher: false, generate: false, sample: false, evaluate: false, report: false}\n  cot-vr:timing: {train: {timeout: 1h}}\n");
        const r = cli("rehearse.ts", ["--config", file, "--plan-only"]);
        expect(r.status).toBe(CLI_EXIT.failed);
        expect(r.stderr).toMatch(/^\[rehearse\] FAILED: a stage would be cut off by its timeout:\n {2}- cot-vr:timing\.train\.timeout is 1h00m/);
    });
});

describe("fetch's and docs' command lines", () => {
    it("answer --help with usage, options, exit codes and examples", () => {
        for (const [script, usage] of [["fetch.ts", /^Usage: npm run fetch -- \[options\]/], ["config-docs.ts", /^Usage: npm run docs -- \[--write \| --check\]/]] as const) {
            const r = cli(script, ["--help"]);
            expect(r.status, script).toBe(CLI_EXIT.ok);
            expect(r.stdout).toMatch(usage);
            expect(r.stdout).toContain("Exit codes:");
            expect(r.stdout).toContain("Examples:");
        }
    });

    it("exit 2 on bad options, 3 on a cluster out of reach (fetch), one line each and no stack trace", () => {
        for (const [script, args] of [["fetch.ts", []], ["fetch.ts", ["--stack", "smoke", "--timeout", "-1"]], ["fetch.ts", ["--stack", "nope"]], ["config-docs.ts", ["--force"]]] as const) {
            const r = cli(script, [...args]);
            expect(r.status, `${script} ${args.join(" ")}`).toBe(CLI_EXIT.usage);
            expect(r.stderr).not.toMatch(/\n\s+at /);
        }
        const kc = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "kc-")), "config");
        fs.writeFileSync(kc, [
            "apiVersion: v1", "kind: Config", "current-context: x",
            "clusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]",
            "users: [{name: u, user: {token: t}}]",
            "contexts: [{name: x, context: {cluster: c, user: u}}]",
        ].join("\n"));
        const r = spawnSync(process.execPath, [path.join(ROOT, "node_modules", "tsx", "dist", "cli.mjs"), path.join(ROOT, "scripts", "fetch.ts"), "--stack", "smoke"],
            { cwd: ROOT, encoding: "utf8", env: { ...process.env, KUBECONFIG: kc } });
        expect(r.status).toBe(CLI_EXIT.unreachable);
        expect(r.stderr.trim()).toMatch(/^fetch: cannot reach the cluster at https:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\)/);
    });
});

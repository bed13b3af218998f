// A bad input: a stage's program exits with a bad-input code (3, missing input). Its Job's
// podFailurePolicy fails it at once (FailJob, reason PodFailurePolicy), which the provider's Job await
// does not count as an error (docs/FACTS.md); `pulumi up` ends within seconds anyway, because the watch
// (scripts/imagewatch.ts, scripts/fatalexit.ts) rewrites the Failed condition's reason to
// DeadlineExceeded and records the exit in its failure annotation (ANNOTATIONS.failure); `status
// --json` says why; the next `up` re-creates the Job. kwok runs no program: its Stage `pod-exit-code` (sim/kwok/stages.yaml)
// makes a Job pod whose image contains "-exit3" exit 3 two seconds after it runs.
import { beforeAll, describe, expect, test } from "vitest";
import { ANNOTATIONS, EXIT_MEANINGS, LABELS } from "../../contract";
import { downloadOnly, initStack, kubectlJson, must, requireCluster, Stack, statusJson, useE2eCluster } from "./helpers";

const NS = "cot-vr-e2e-badinput";
const STACK = "badinput";
const GOOD = "cot-vr-trainer:0.1.0";
const BAD = "cot-vr-trainer:0.1.0-exit3";
/** The downloads' timeout in this stack: what `up` waited before. */
const TIMEOUT = "4h";
/** `up` must end far below it: engine start, the namespace and volumes, the pod's run (2 s), a look (5 s). */
const UP_BOUND_S = 120;
const MEANING = EXIT_MEANINGS[3];

describe("a stage that exits with a bad-input code", () => {
    let st: Stack;
    beforeAll(() => {
        requireCluster();
        st = initStack(STACK, { from: "smoke" });
        useE2eCluster(st, NS);
        downloadOnly(st, BAD, TIMEOUT);
    });

    const jobs = () => (kubectlJson("-n", NS, "get", "jobs").items as any[]).filter((j) => j.metadata.labels?.[LABELS.stage] === "download");
    const pods = () => (kubectlJson("-n", NS, "get", "pods").items as any[]).filter((p) => p.metadata.labels?.[LABELS.stage] === "download");
    const status = () => statusJson(st);
    const checkFailed = () => {
        const js = jobs();
        expect(js.length, "download Jobs").toBeGreaterThan(0);
        for (const j of js) {
            const conds = j.status.conditions ?? [];
            // The Job controller's own verdict stays in FailureTarget; Failed's reason was rewritten.
            expect(conds.find((c: any) => c.type === "FailureTarget")?.reason, j.metadata.name).toBe("PodFailurePolicy");
            const failed = conds.find((c: any) => c.type === "Failed" && c.status === "True");
            expect(failed?.reason, j.metadata.name).toBe("DeadlineExceeded");
            expect(failed?.message).toContain(`exit 3: ${MEANING}`);
            expect(j.status.failed, `${j.metadata.name}: failed pods`).toBe(1);
            const f = JSON.parse(j.metadata.annotations[ANNOTATIONS.failure]);
            expect(f).toMatchObject({ v: 1, kind: "exit", exitCode: 3, meaning: MEANING, container: "main", stage: "download" });
            expect(f.tail).toMatch(/exit code 3/);
        }
        // No retry of a bad input: one pod per Job.
        expect(pods().length).toBe(js.length);
        return js;
    };

    test(`pulumi up fails within ${UP_BOUND_S} s (the timeout is ${TIMEOUT}), naming the exit's meaning`, async () => {
        const r = await st.pulumiAsync(["up", "--yes", "--skip-preview"]);
        expect(r.code, r.out.slice(-4000)).not.toBe(0);
        expect(r.seconds, r.out.slice(-4000)).toBeLessThan(UP_BOUND_S);
        // The watch's line and the provider's own error for the Job.
        expect(r.out).toContain(`exit 3: ${MEANING}: `);
        expect(r.out).toContain("Ending pulumi up now instead of waiting out its timeout");
        expect(r.out).toMatch(/\[DeadlineExceeded\] exit 3: /);
        checkFailed();
    });

    test("status --json says why; exit 1", async () => {
        const s = await status();
        expect(s.code, s.out.slice(-3000)).toBe(1);
        const rows = (s.json.rows as any[]).filter((r) => r.stage === "download");
        expect(rows.length).toBeGreaterThan(0);
        for (const row of rows) {
            expect(row.state).toBe("failed");
            expect(row.failure.reason).toMatch(new RegExp(`^bad input: exit 3: ${MEANING}: .*exit code 3`));
            expect(row.failure.exitCode).toBe(3);
            expect(row.failure.next).toMatch(/fix the input/);
        }
    });

    test("an up without the fix re-creates the failed Jobs (same names) and fails as fast again", async () => {
        const before = new Map(jobs().map((j) => [j.metadata.name, j.metadata.uid]));
        const r = await st.pulumiAsync(["up", "--yes", "--skip-preview"]);
        expect(r.code, r.out.slice(-4000)).not.toBe(0);
        expect(r.seconds, r.out.slice(-4000)).toBeLessThan(UP_BOUND_S);
        expect(r.out).toMatch(/\[DeadlineExceeded\] exit 3: /);
        const after = checkFailed();
        expect(after.map((j) => j.metadata.name).sort()).toEqual([...before.keys()].sort());
        for (const j of after) expect(j.metadata.uid, `${j.metadata.name} re-created`).not.toBe(before.get(j.metadata.name));
    });

    test("the next pulumi up with the input fixed re-creates the Jobs and succeeds", async () => {
        const before = new Set(jobs().map((j) => j.metadata.uid));
        st.setConfigPaths({ "images.trainer": GOOD });
        const r = await st.pulumiAsync(["up", "--yes", "--skip-preview"]);
        must(r, "pulumi up with the input fixed");
        const js = jobs();
        expect(js.length).toBeGreaterThan(0);
        for (const j of js) {
            expect(before.has(j.metadata.uid), `${j.metadata.name} is a new Job`).toBe(false);
            expect(j.status.conditions?.some((c: any) => c.type === "Complete" && c.status === "True"), j.metadata.name).toBe(true);
            expect(j.metadata.annotations?.[ANNOTATIONS.failure]).toBeUndefined();
        }
        const s = await status();
        expect(s.code, s.out.slice(-3000)).toBe(0);
    });
});

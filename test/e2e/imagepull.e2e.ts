// An image that does not exist: `pulumi up` fails within seconds, not after the stage's timeout, and
// says why; `status --json` says why after the pod is gone; the next `up` with the image fixed
// re-creates the Job and succeeds. kwok pulls nothing: its Stage `pod-image-not-found`
// (sim/kwok/stages.yaml) gives a pod whose image contains "does-not-exist" the kubelet's ErrImagePull /
// ImagePullBackOff with a registry's "not found", as a real node would.
import { beforeAll, describe, expect, test } from "vitest";
import { ANNOTATIONS, LABELS } from "../../contract";
import { downloadOnly, initStack, kubectlJson, must, requireCluster, Stack, statusJson, useE2eCluster } from "./helpers";

const NS = "cot-vr-e2e-imagepull";
const STACK = "imagepull";
const GOOD = "cot-vr-trainer:0.1.0";
const BAD = "cot-vr-trainer:0.1.0-does-not-exist";
/** The downloads' timeout in this stack: what `up` would wait without the watch. */
const TIMEOUT = "4h";
/** `up` must end well before it: engine start, the namespace and volumes, the first look (5 s). */
const UP_BOUND_S = 120;
/** From the Job's creation to its Failed condition. */
const FAIL_BOUND_S = 30;

describe("an image that does not exist", () => {
    let st: Stack;
    beforeAll(() => {
        requireCluster();
        st = initStack(STACK, { from: "smoke" });
        useE2eCluster(st, NS);
        downloadOnly(st, BAD, TIMEOUT);
    });

    const jobs = () => (kubectlJson("-n", NS, "get", "jobs").items as any[]).filter((j) => j.metadata.labels?.[LABELS.stage] === "download");
    const status = () => statusJson(st);

    test(`pulumi up fails within ${UP_BOUND_S} s (the timeout is ${TIMEOUT}), naming the image and the registry's answer`, async () => {
        const r = await st.pulumiAsync(["up", "--yes", "--skip-preview"]);
        expect(r.code, r.out.slice(-4000)).not.toBe(0);
        expect(r.seconds, r.out.slice(-4000)).toBeLessThan(UP_BOUND_S);
        // The watch's line (pulumi.log.warn) and the provider's own error for the Job.
        expect(r.out).toContain(`image "${BAD}" cannot be pulled: `);
        expect(r.out).toMatch(/not found/);
        expect(r.out).toContain("Failing the Job now instead of waiting out its timeout; fix cot-vr:images.trainer in the stack config");
        expect(r.out).toMatch(/DeadlineExceeded/);

        const js = jobs();
        expect(js.length, "download Jobs").toBeGreaterThan(0);
        for (const j of js) {
            const failed = j.status.conditions?.find((c: any) => c.type === "Failed" && c.status === "True");
            expect(failed?.reason, j.metadata.name).toBe("DeadlineExceeded");
            const seconds = (Date.parse(failed.lastTransitionTime) - Date.parse(j.metadata.creationTimestamp)) / 1000;
            expect(seconds, `${j.metadata.name}: created -> Failed`).toBeLessThan(FAIL_BOUND_S);
            const f = JSON.parse(j.metadata.annotations[ANNOTATIONS.failure]);
            expect(f).toMatchObject({ v: 1, image: BAD, container: "main", kind: "fatal", stage: "download" });
            expect(f.reason).toMatch(/^(ErrImagePull|ImagePullBackOff)$/);
        }
        // Nothing of the run left waiting on the pull.
        expect((kubectlJson("-n", NS, "get", "pods").items as any[]).filter((p) => p.status.phase === "Pending")).toEqual([]);
    });

    test("status --json says why, with the key to fix; exit 1", async () => {
        const s = await status();
        expect(s.code, s.out.slice(-3000)).toBe(1);
        const rows = (s.json.rows as any[]).filter((r) => r.stage === "download");
        expect(rows.length).toBeGreaterThan(0);
        for (const row of rows) {
            expect(row.state).toBe("failed");
            expect(row.imagePull).toMatchObject({ image: BAD, container: "main", kind: "fatal" });
            expect(row.failure.reason).toMatch(new RegExp(`^image pull failed, so pulumi up failed the Job: image "${BAD}" cannot be pulled: .*not found`));
            expect(row.failure.next).toMatch(/^fix cot-vr:images\.trainer in the stack config/);
        }
    });

    test("an up without the fix re-creates the failed Jobs (same names) and fails as fast again", async () => {
        const before = new Map(jobs().map((j) => [j.metadata.name, j.metadata.uid]));
        const r = await st.pulumiAsync(["up", "--yes", "--skip-preview"]);
        expect(r.code, r.out.slice(-4000)).not.toBe(0);
        expect(r.seconds, r.out.slice(-4000)).toBeLessThan(UP_BOUND_S);
        expect(r.out).toContain(`image "${BAD}" cannot be pulled: `);
        const after = jobs();
        expect(after.map((j) => j.metadata.name).sort()).toEqual([...before.keys()].sort());
        for (const j of after) {
            expect(j.metadata.uid, `${j.metadata.name} re-created`).not.toBe(before.get(j.metadata.name));
            expect(j.status.conditions?.find((c: any) => c.type === "Failed")?.reason).toBe("DeadlineExceeded");
        }
    });

    test("the next pulumi up with the image fixed re-creates the Jobs and succeeds", async () => {
        const before = new Set(jobs().map((j) => j.metadata.uid));
        st.setConfigPaths({ "images.trainer": GOOD });
        const r = await st.pulumiAsync(["up", "--yes", "--skip-preview"]);
        must(r, "pulumi up with the image fixed");
        const js = jobs();
        expect(js.length).toBeGreaterThan(0);
        for (const j of js) {
            expect(before.has(j.metadata.uid), `${j.metadata.name} is a new Job`).toBe(false);
            expect(j.spec.template.spec.containers[0].image).toBe(GOOD);
            expect(j.status.conditions?.some((c: any) => c.type === "Complete" && c.status === "True"), j.metadata.name).toBe(true);
            expect(j.metadata.annotations?.[ANNOTATIONS.failure]).toBeUndefined();
        }
        const s = await status();
        expect(s.code, s.out.slice(-3000)).toBe(0);
        expect((s.json.rows as any[]).filter((x) => x.stage === "download").every((x) => x.state === "complete" && !x.imagePull)).toBe(true);
    });
});

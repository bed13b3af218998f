// Shipped stacks side by side on one cluster, as the README deploys them: the README's recipe for
// deleting a stack's data ("storage.retainOnDestroy: false, pulumi up, pulumi destroy") applied to
// `smoke` or `sweep-rank32` must leave the blog stack's namespace, claims and volumes alone. Stages
// are off: what is at stake is the namespace and the claims, which every update creates.
// Stack names carry a prefix of their own, so this file shares a run's backend with the others.
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";
import { beforeAll, describe, expect, test } from "vitest";
import { STAGE_NAMES, VOLUME_NAMES } from "../../contract";
import { initStack, KUBECONFIG, kubectl, kubectlJson, must, requireCluster, ROOT, Stack } from "./helpers";

const STAGES = STAGE_NAMES;
const VOLUMES = VOLUME_NAMES;

/** cluster.namespace of a shipped stack file. */
function shippedNamespace(stack: string): string {
    const doc = YAML.parse(fs.readFileSync(path.join(ROOT, "stacks", `Pulumi.${stack}.yaml`), "utf8"));
    return doc.config["cot-vr:cluster"]?.namespace ?? "cot-vr";
}

/** A shipped stack under another stack name, pointed at the e2e cluster, every stage off. */
function shipped(from: string, opts: { name?: string; run?: string; namespace?: string } = {}): Stack {
    const st = initStack(opts.name ?? `iso-${from}`, { from });
    st.setConfigPaths({
        "cluster.kubeconfig": KUBECONFIG,
        "cluster.context": "e2e",
        ...(opts.namespace ? { "cluster.namespace": opts.namespace } : {}),
        ...Object.fromEntries(STAGES.map((s) => [`stages.${s}`, "false"])),
    });
    // The stack name is the default run name; the shipped stacks' claims are named after their runs.
    if (opts.run) st.setConfig("run", opts.run);
    st.setConfig("hfToken", "hf_e2e_placeholder_token", { secret: true });
    return st;
}

/** The README's recipe to delete a stack's data too. */
function deleteWithData(st: Stack): void {
    st.setConfig("storage.retainOnDestroy", "false", { path: true, type: "bool" });
    must(st.pulumi("up", "--yes", "--skip-preview"), `pulumi up ${st.name} (retainOnDestroy false)`);
    must(st.pulumi("destroy", "--yes", "--skip-preview"), `pulumi destroy ${st.name}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Claim name -> bound PV name in a namespace, once every listed claim is Bound (the provisioner takes a second). */
async function boundClaims(ns: string, names: string[]): Promise<Map<string, string>> {
    for (let i = 0; ; i++) {
        const pvcs = kubectlJson("-n", ns, "get", "pvc").items as any[];
        const bound = new Map(pvcs.filter((p) => p.status?.phase === "Bound").map((p) => [p.metadata.name as string, p.spec.volumeName as string]));
        if (names.every((n) => bound.has(n))) return bound;
        if (i >= 60) throw new Error(`claims not Bound in ${ns} after 60s: ${names.filter((n) => !bound.has(n)).join(", ")}`);
        await sleep(1000);
    }
}

/** Phase of a namespace: "Active", "Terminating", or "gone". */
function namespacePhase(ns: string): string {
    const r = kubectl("get", "namespace", ns, "-o", "json");
    if (r.code !== 0) return /NotFound/.test(r.out) ? "gone" : `error: ${r.out}`;
    return JSON.parse(r.stdout).status?.phase ?? "?";
}

describe("stack isolation: deleting one shipped stack with its data leaves the others' data", () => {
    const blogNs = shippedNamespace("blog");
    const blogClaims = VOLUMES.map((v) => `blog-${v}`);
    let blog: Stack;
    let volumes: Map<string, string>;

    /** The blog stack's namespace is active and its claims are bound to the same volumes as before. */
    const expectBlogIntact = async (after: string) => {
        expect(namespacePhase(blogNs), `namespace ${blogNs} after ${after}`).toBe("Active");
        const now = await boundClaims(blogNs, blogClaims);
        for (const c of blogClaims) expect(now.get(c), `claim ${c} after ${after}`).toBe(volumes.get(c));
        const pvs = kubectlJson("get", "pv").items as any[];
        for (const c of blogClaims) {
            const pv = pvs.find((p) => p.metadata.name === volumes.get(c));
            expect(pv?.status?.phase, `PV of ${c} after ${after}`).toBe("Bound");
            expect(pv?.spec?.claimRef, `PV of ${c} after ${after}`).toMatchObject({ namespace: blogNs, name: c });
        }
    };

    beforeAll(() => requireCluster());

    test("blog: its namespace and four claims, bound", async () => {
        blog = shipped("blog", { run: "blog" });
        must(blog.pulumi("up", "--yes", "--skip-preview"), "pulumi up blog");
        volumes = await boundClaims(blogNs, blogClaims);
        expect(namespacePhase(blogNs)).toBe("Active");
    });

    test("smoke in a namespace of its own: the data-deletion recipe deletes only its own namespace and claims", async () => {
        const smokeNs = shippedNamespace("smoke");
        expect(smokeNs).not.toBe(blogNs);
        const smoke = shipped("smoke");
        must(smoke.pulumi("up", "--yes", "--skip-preview"), "pulumi up smoke");
        await boundClaims(smokeNs, VOLUMES.map((v) => `smoke-${v}`));
        await expectBlogIntact("smoke's up");

        deleteWithData(smoke);
        // The recipe did delete smoke's data (so the check below is not vacuous).
        expect(["Terminating", "gone"]).toContain(namespacePhase(smokeNs));
        await expectBlogIntact("smoke's destroy with retainOnDestroy false");
    });

    test("sweep-rank32 borrows the blog's claims in its namespace: it cannot own it, and its destroy leaves it", async () => {
        const sweep = shipped("sweep-rank32");
        // Owning the namespace while deleting data on destroy is refused before anything is created.
        sweep.setConfigPaths({ "cluster.createNamespace": "true", "storage.retainOnDestroy": "false" });
        const refused = sweep.pulumi("preview");
        expect(refused.code).not.toBe(0);
        expect(refused.out).toContain("cot-vr:cluster.createNamespace: true with storage.retainOnDestroy false");
        expect(refused.out).toContain('storage.models.existingClaim "blog-models"');

        // As shipped, the recipe runs and deletes nothing of the blog's.
        sweep.setConfigPaths({ "cluster.createNamespace": "false" });
        must(sweep.pulumi("up", "--yes", "--skip-preview"), "pulumi up sweep-rank32");
        must(sweep.pulumi("destroy", "--yes", "--skip-preview"), "pulumi destroy sweep-rank32");
        await expectBlogIntact("sweep-rank32's destroy with retainOnDestroy false");
    });

    // Last, as it deletes the blog's data: the recipe does delete a namespace's claims on this cluster
    // (the namespace controller runs), so the survivals above are not for want of a deletion.
    test("control: the same recipe on the blog stack itself deletes its namespace and claims", async () => {
        deleteWithData(blog);
        for (let i = 0; i < 60 && namespacePhase(blogNs) !== "gone"; i++) await sleep(1000);
        expect(namespacePhase(blogNs)).toBe("gone");
        const pvs = kubectlJson("get", "pv").items as any[];
        for (const c of blogClaims) {
            const pv = pvs.find((p) => p.metadata.name === volumes.get(c));
            expect(pv?.status?.phase, `PV of ${c}: its claim is gone (the e2e class retains volumes)`).toBe("Released");
        }
    });
});

// Deterministic object names. A Job's name carries a short hash of everything that defines its work,
// so `pulumi preview` shows a replace exactly when a stage's inputs changed, and a hard-killed
// `pulumi up` can never start the same work twice under a new random name.
import { createHash } from "crypto";
import { LABELS, StageName } from "../contract";

export { LABELS };

/** Stable JSON: object keys sorted, so the hash depends on content, not insertion order. */
export function stableJson(v: unknown): string {
    return JSON.stringify(v, (_k, val) =>
        val && typeof val === "object" && !Array.isArray(val)
            ? Object.fromEntries(Object.entries(val).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
            : val,
    );
}

/** First 8 hex digits of the sha256 of the stable JSON of `parts`. */
export function shortHash(...parts: unknown[]): string {
    return createHash("sha256").update(stableJson(parts)).digest("hex").slice(0, 8);
}

/** `<run>-<stage>[-<variant>]-<hash>`; at most 63 characters (a label value). */
export function jobName(run: string, stage: string, variant: string | undefined, hash: string): string {
    const name = [run, stage, variant, hash].filter(Boolean).join("-");
    if (name.length > 63) throw new Error(`object name ${name} is longer than 63 characters; shorten cot-vr:run or the variant name`);
    return name;
}

export function labels(run: string, stage: string, variant?: string, hash?: string): Record<string, string> {
    // The Kubernetes recommended labels, then this project's (selectors use the project's).
    return {
        [LABELS.name]: "cot-vr",
        [LABELS.instance]: run,
        [LABELS.component]: stage,
        [LABELS.partOf]: "cot-vr",
        [LABELS.managedBy]: "pulumi",
        [LABELS.run]: run,
        [LABELS.stage]: stage,
        ...(variant ? { [LABELS.variant]: variant } : {}),
        ...(hash ? { [LABELS.hash]: hash } : {}),
    };
}

/** Deployment and Service name of the teacher. */
export function teacherName(run: string): string {
    return `${run}-teacher`;
}

export function teacherSelector(run: string): Record<string, string> {
    const stage: StageName = "teacher";
    return { [LABELS.run]: run, [LABELS.stage]: stage };
}

/** OpenAI-compatible base URL of the teacher inside the cluster (what the generator calls). */
export function teacherApiBase(run: string, namespace: string, port: number): string {
    return `http://${teacherName(run)}.${namespace}.svc.cluster.local:${port}/v1`;
}

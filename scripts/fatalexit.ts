// The pure half of ending `pulumi up` on a bad input: which Job the Job controller failed by its
// podFailurePolicy (FailJob on a FATAL_EXIT_CODES exit of "main"), why in words, and the two patches
// that make the provider's await end. No I/O: scripts/imagewatch.ts feeds it the API's Jobs and Pods
// during `pulumi up` and sends the patches; `status` (status-core.ts) reads the annotation back.
//
// Why it exists: the provider's Job await errors only on a Failed condition with reason
// BackoffLimitExceeded or DeadlineExceeded; a Job Failed with reason PodFailurePolicy holds `up`
// until the stage's timeout (docs/FACTS.md). The Job is already Failed and no pod retries (FailJob);
// only the Failed condition's reason is rewritten to DeadlineExceeded, with a message that says what
// happened, and the true reason stays in the FailureTarget condition and in ANNOTATIONS.failure.
import { ANNOTATIONS, EXIT_MEANINGS, FATAL_EXIT_CODES, LABELS } from "../contract";

/** Why a Job's bad input failed it, as written in its ANNOTATIONS.failure annotation (JSON). */
export interface ExitFailure {
    v: 1;
    kind: "exit";
    exitCode: number;
    /** EXIT_MEANINGS of the code. */
    meaning: string;
    pod: string;
    container: string;
    /** The program's last `<program>: error: ...` line when its log could be read, else the Job
     * controller's message (which pod, which code, which rule). */
    tail: string;
    /** The stage whose pod it was. */
    stage?: string;
}

/** The most of the reason's tail kept (an annotation and the `up` error stay readable). */
export const TAIL_CHARS = 300;

interface Cond { type: string; status: string; reason?: string; message?: string }
export interface ExitJob {
    metadata?: { name?: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
    status?: { conditions?: Cond[] };
}
export interface ExitPod {
    metadata?: { name?: string; labels?: Record<string, string>; ownerReferences?: { kind: string; name: string; uid?: string }[]; creationTimestamp?: string | Date };
    status?: { phase?: string; containerStatuses?: { name: string; state?: { terminated?: { exitCode: number } } }[] };
}

const MAIN = "main";

export function parseExitFailure(annotations: Record<string, string> | undefined): ExitFailure | undefined {
    const raw = annotations?.[ANNOTATIONS.failure];
    if (!raw) return undefined;
    try {
        const f = JSON.parse(raw) as ExitFailure;
        return f && f.v === 1 && f.kind === "exit" && typeof f.exitCode === "number" ? f : undefined;
    } catch {
        return undefined;
    }
}

/** One line: the exit code, its meaning and the tail of the reason. */
export function describeExit(f: Pick<ExitFailure, "exitCode" | "meaning" | "tail">): string {
    const tail = f.tail.replace(/\s+/g, " ").trim();
    return `exit ${f.exitCode}: ${f.meaning}${tail ? `: ${tail}` : ""}`;
}

function clip(s: string): string {
    const t = s.replace(/\s+/g, " ").trim();
    return t.length > TAIL_CHARS ? `...${t.slice(t.length - TAIL_CHARS + 3)}` : t;
}

/** The index of a Job's Failed=True condition with reason PodFailurePolicy; -1: none. */
export function podFailurePolicyIndex(job: ExitJob): number {
    return job.status?.conditions?.findIndex((c) => c.type === "Failed" && c.status === "True" && c.reason === "PodFailurePolicy") ?? -1;
}

/** A Job's pod whose "main" ended with a bad-input code: the newest, when several. */
export function fatalPod(job: ExitJob, pods: ExitPod[]): { pod: ExitPod; exitCode: number } | undefined {
    const uid = job.metadata?.uid;
    const name = job.metadata?.name;
    const found: { pod: ExitPod; exitCode: number }[] = [];
    for (const p of pods) {
        const owner = p.metadata?.ownerReferences?.find((o) => o.kind === "Job");
        if (!owner || (uid && owner.uid ? owner.uid !== uid : owner.name !== name)) continue;
        const code = p.status?.containerStatuses?.find((c) => c.name === MAIN)?.state?.terminated?.exitCode;
        if (code !== undefined && FATAL_EXIT_CODES.includes(code)) found.push({ pod: p, exitCode: code });
    }
    const t = (x: { pod: ExitPod }) => Date.parse(String(x.pod.metadata?.creationTimestamp ?? 0)) || 0;
    return found.sort((a, b) => t(a) - t(b)).pop();
}

/**
 * The failure of a Job its podFailurePolicy failed for a bad input (Failed, reason PodFailurePolicy,
 * a fatal code), or undefined. `errorLine`: the program's last error line, if read.
 */
export function exitFailure(job: ExitJob, pods: ExitPod[], errorLine?: string): ExitFailure | undefined {
    const i = podFailurePolicyIndex(job);
    if (i < 0) return undefined;
    const cond = job.status!.conditions![i];
    const found = fatalPod(job, pods);
    // The controller's message names the code too ("... failed with exit code 3 matching FailJob rule at index 0").
    const code = found?.exitCode ?? Number(/exit code (\d+)/.exec(cond.message ?? "")?.[1]);
    if (!Number.isInteger(code) || !FATAL_EXIT_CODES.includes(code)) return undefined;
    const stage = job.metadata?.labels?.[LABELS.stage];
    return {
        v: 1,
        kind: "exit",
        exitCode: code,
        meaning: EXIT_MEANINGS[code] ?? "bad input",
        pod: found?.pod.metadata?.name ?? "",
        container: MAIN,
        tail: clip(errorLine || cond.message || ""),
        ...(stage ? { stage } : {}),
    };
}

/** What the user does next. */
export const EXIT_ADVICE = "a bad input fails at once and is not retried: fix the input (the stage's config or what an upstream stage wrote), then pulumi up re-creates the Job";

/** The Failed condition's new message: what `pulumi up` prints after "[DeadlineExceeded] ". */
export function exitConditionMessage(f: ExitFailure): string {
    return `${describeExit(f)} (failed by its podFailurePolicy, reason PodFailurePolicy: see its FailureTarget condition; reason rewritten so pulumi up ends now); ${EXIT_ADVICE}`;
}

/** The merge patch that records the failure on the Job (first: `status` reads it even if the next fails). */
export function exitAnnotationPatch(f: ExitFailure): { metadata: { annotations: Record<string, string> } } {
    return { metadata: { annotations: { [ANNOTATIONS.failure]: JSON.stringify(f) } } };
}

/**
 * The JSON patch of the Job's status that ends the provider's await: the Failed condition at `index`,
 * tested to still be Failed/PodFailurePolicy (else the API server refuses the whole patch), gets
 * reason DeadlineExceeded and the message. Nothing else changes: the Job stays Failed, no pod starts.
 */
export function exitStatusPatch(index: number, f: ExitFailure): { op: string; path: string; value: string }[] {
    const at = `/status/conditions/${index}`;
    return [
        { op: "test", path: `${at}/type`, value: "Failed" },
        { op: "test", path: `${at}/reason`, value: "PodFailurePolicy" },
        { op: "replace", path: `${at}/reason`, value: "DeadlineExceeded" },
        { op: "replace", path: `${at}/message`, value: exitConditionMessage(f) },
    ];
}

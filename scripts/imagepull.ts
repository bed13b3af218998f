// The pure half of the image-pull watch: which waiting states of a container mean "this image will
// not be pulled", after how long, and which Job that fails. No I/O: scripts/imagewatch.ts feeds it the
// API's Jobs and Pods during `pulumi up` and acts on its verdicts; `status` (status-core.ts) renders
// the same facts. Why it exists: Kubernetes never fails a Job whose pod waits on an image pull, and
// the provider's Job await only logs it (docs/FACTS.md), so a typo'd tag would hold `up` for the
// stage's whole timeout.
import { ANNOTATIONS, IMAGE_PULL_GRACE_SECONDS, LABELS } from "../contract";

/** Kubelet waiting reasons of a pull that failed (kubelet pkg/kubelet/images: types.go, image_manager.go). */
export const PULL_REASONS = ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable", "SignatureValidationFailed"] as const;

/** Reasons that never heal by themselves: the pod spec or the node has to change. */
const FATAL_REASONS = new Set(["InvalidImageName", "ErrImageNeverPull", "SignatureValidationFailed"]);

/**
 * What a registry (through containerd or CRI-O) says when the image is not there or not ours to pull:
 * a missing tag or repository, a refused credential. None of these heals by retrying the same pull.
 */
const FATAL_MESSAGE = new RegExp([
    String.raw`\bnot found\b`, // containerd: "...: not found"; "NotFound desc = ..."
    String.raw`code = NotFound`,
    String.raw`manifest unknown`, // OCI distribution error codes
    String.raw`name unknown`,
    String.raw`repository does not exist`, // Docker Hub: "pull access denied, repository does not exist or may require authorization"
    String.raw`pull access denied`,
    String.raw`\bunauthorized\b`, // "401 Unauthorized", "failed to authorize"
    String.raw`failed to authorize`,
    String.raw`\bforbidden\b`, // "403 Forbidden"
    String.raw`\bdenied\b`,
    String.raw`insufficient_scope`,
    String.raw`invalid reference format`,
].join("|"), "i");

/** "fatal": will not heal, fail now; "transient": may heal (a registry hiccup), fail after the grace. */
export type PullKind = "fatal" | "transient";

/** How a container waiting with `reason`/`message` stands; undefined: not an image pull failure. */
export function classifyWaiting(reason: string | undefined, message: string | undefined): PullKind | undefined {
    if (!reason || !(PULL_REASONS as readonly string[]).includes(reason)) return undefined;
    if (FATAL_REASONS.has(reason)) return "fatal";
    if (reason === "RegistryUnavailable") return "transient";
    return message && FATAL_MESSAGE.test(message) ? "fatal" : "transient";
}

// Just the fields read here (@kubernetes/client-node's V1Pod and V1Job fit).
interface Owner { kind: string; name: string; uid?: string }
export interface PullPod {
    metadata?: { name?: string; uid?: string; labels?: Record<string, string>; ownerReferences?: Owner[]; deletionTimestamp?: unknown };
    spec?: { containers?: { name: string; image?: string }[] };
    status?: { phase?: string; containerStatuses?: { name: string; image?: string; state?: { waiting?: { reason?: string; message?: string } } }[] };
}
export interface PullJob {
    metadata?: { name?: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
    status?: { conditions?: { type: string; status: string }[] };
}

/** One container of one pod whose image cannot be pulled. */
export interface PullProblem {
    pod: string;
    podUid: string;
    container: string;
    image: string;
    /** The kubelet's waiting reason (ErrImagePull, ImagePullBackOff, ...). */
    reason: string;
    message: string;
    kind: PullKind;
}

/** The containers of a pod that wait on an image pull that failed. */
export function pullProblems(pod: PullPod): PullProblem[] {
    if (pod.metadata?.deletionTimestamp || (pod.status?.phase && pod.status.phase !== "Pending")) return [];
    const out: PullProblem[] = [];
    for (const c of pod.status?.containerStatuses ?? []) {
        const w = c.state?.waiting;
        const kind = classifyWaiting(w?.reason, w?.message);
        if (!kind) continue;
        const image = pod.spec?.containers?.find((x) => x.name === c.name)?.image ?? c.image ?? "";
        out.push({ pod: pod.metadata?.name ?? "", podUid: pod.metadata?.uid ?? pod.metadata?.name ?? "", container: c.name, image, reason: w!.reason!, message: w!.message ?? "", kind });
    }
    return out;
}

/** Why a Job was failed, as written in its ANNOTATIONS.failure annotation (JSON). */
export interface PullFailure {
    v: 1;
    /** The kubelet's waiting reason. */
    reason: string;
    image: string;
    container: string;
    pod: string;
    message: string;
    kind: PullKind;
    /** The stage whose pod it was: a generation is failed for its teacher's image. */
    stage?: string;
    /** Seconds the pull had been seen failing when the Job was failed. */
    failingSeconds: number;
}

export function parseFailure(annotations: Record<string, string> | undefined): PullFailure | undefined {
    const raw = annotations?.[ANNOTATIONS.failure];
    if (!raw) return undefined;
    try {
        const f = JSON.parse(raw) as PullFailure;
        return f && f.v === 1 && typeof f.image === "string" && typeof f.reason === "string" ? f : undefined;
    } catch {
        return undefined;
    }
}

/** One line: what failed, for the image of which container. */
export function describePull(p: { reason: string; image: string; message: string }): string {
    const msg = p.message.replace(/\s+/g, " ").trim();
    return `image "${p.image}" cannot be pulled: ${p.reason}${msg ? `: ${msg}` : ""}`;
}

/** The stack key that names an image, when the stack's configured images are known. */
export function imageKey(image: string, configured: Record<string, string> | undefined): string | undefined {
    for (const [k, v] of Object.entries(configured ?? {})) if (v === image) return `images.${k}`;
    return undefined;
}

/** What to do about it: the key to fix, or the pull Secret. */
export function pullAdvice(p: { image: string; kind: PullKind }, configured?: Record<string, string>): string {
    const key = imageKey(p.image, configured);
    const fix = key ? `fix cot-vr:${key} in the stack config` : "fix the image in the stack config (cot-vr:images.trainer, images.datagen or images.vllm; with images.build, the push)";
    const secret = "check that it was pushed and that cluster.imagePullSecrets names a Secret that may pull it";
    return p.kind === "fatal" ? `${fix}, or ${secret}; then pulumi up` : `the registry may be down: ${secret}; ${fix.replace(/^fix/, "else fix")}`;
}

/** What the watcher does: fail this Job, or only say so (nothing to fail: a teacher kept serving). */
export type Verdict =
    | { action: "fail"; job: string; failure: PullFailure }
    | { action: "warn"; key: string; failure: PullFailure };

const finished = (j: PullJob) => !!j.status?.conditions?.some((c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True");

/**
 * Remembers since when each container's pull has been failing (watch time: the API keeps no such
 * timestamp) and says which Jobs to fail: a Job pod's own pull at once when fatal, after `graceMs`
 * when it may heal; a teacher pod's pull fails the generation Jobs that wait for it (they hold it),
 * and with none it is only reported. Only Jobs named in `jobs` (this update's) are ever failed.
 */
export class PullJudge {
    private since = new Map<string, number>();
    private done = new Set<string>();

    constructor(private readonly jobs: ReadonlySet<string>, private readonly graceMs = IMAGE_PULL_GRACE_SECONDS * 1000) {}

    observe(jobs: PullJob[], pods: PullPod[], now: number): Verdict[] {
        const seen = new Set<string>();
        const verdicts: Verdict[] = [];
        const byUid = new Map(jobs.map((j) => [j.metadata?.uid, j]));
        const mine = (j: PullJob | undefined): j is PullJob => !!j?.metadata?.name && this.jobs.has(j.metadata.name) && !finished(j) && !j.metadata.annotations?.[ANNOTATIONS.failure];
        for (const pod of pods) {
            for (const p of pullProblems(pod)) {
                const key = `${p.podUid}/${p.container}`;
                seen.add(key);
                const first = this.since.get(key) ?? now;
                this.since.set(key, first);
                const failing = now - first;
                if (p.kind === "transient" && failing < this.graceMs) continue;
                const stage = pod.metadata?.labels?.[LABELS.stage];
                const failure: PullFailure = {
                    v: 1, reason: p.reason, image: p.image, container: p.container, pod: p.pod, message: p.message, kind: p.kind,
                    ...(stage ? { stage } : {}), failingSeconds: Math.round(failing / 1000),
                };
                const owner = pod.metadata?.ownerReferences?.find((o) => o.kind === "Job");
                let targets: PullJob[];
                if (owner) targets = [owner.uid ? byUid.get(owner.uid) : jobs.find((j) => j.metadata?.name === owner.name)].filter(mine);
                else if (stage === "teacher") targets = jobs.filter((j) => j.metadata?.labels?.[LABELS.stage] === "generate").filter(mine);
                else continue;
                if (!targets.length) {
                    if (!owner && !this.done.has(key)) {
                        this.done.add(key);
                        verdicts.push({ action: "warn", key, failure });
                    }
                    continue;
                }
                for (const j of targets) {
                    const name = j.metadata!.name!;
                    if (this.done.has(`job:${name}`)) continue;
                    this.done.add(`job:${name}`);
                    verdicts.push({ action: "fail", job: name, failure });
                }
            }
        }
        // A container no longer failing starts over (its pull worked, or its pod is gone).
        for (const k of [...this.since.keys()]) if (!seen.has(k)) this.since.delete(k);
        return verdicts;
    }

    /** A failed patch is tried again at the next observation. */
    retry(job: string): void {
        this.done.delete(`job:${job}`);
    }
}

/**
 * The patch that fails a running Job now: the reason in ANNOTATIONS.failure, and an
 * activeDeadlineSeconds already past, so the Job controller fails it (DeadlineExceeded), deletes its
 * pod, and the provider's await ends with an error at once (docs/FACTS.md).
 */
export function failJobPatch(f: PullFailure): { metadata: { annotations: Record<string, string> }; spec: { activeDeadlineSeconds: number } } {
    return { metadata: { annotations: { [ANNOTATIONS.failure]: JSON.stringify(f) } }, spec: { activeDeadlineSeconds: 1 } };
}

// The run's vocabulary: the names every process of the project agrees on. The Pulumi program writes
// them into objects, the programs in images/ read and write them inside the pods, and `status`,
// `rehearse`, the estimator and the simulator read them back. One home, so they can never drift.
//
// Ground floor: this file imports nothing of the project. Its Python twin is
// images/common/cotvr_contract.py; test/unit/contract.test.ts pins the two together, and fails on any
// label key, stage list or exit-code number written as a literal elsewhere.

/** Pulumi config namespace of this project (the `name` in Pulumi.yaml); prefix of its label keys. */
export const PROJECT = "cot-vr";

// ---------------------------------------------------------------------------------------------------
// Labels

/** Label keys: the Kubernetes recommended ones, then this project's (selectors use the project's). */
export const LABELS = {
    name: "app.kubernetes.io/name",
    partOf: "app.kubernetes.io/part-of",
    instance: "app.kubernetes.io/instance",
    component: "app.kubernetes.io/component",
    managedBy: "app.kubernetes.io/managed-by",
    run: `${PROJECT}/run`,
    stage: `${PROJECT}/stage`,
    variant: `${PROJECT}/variant`,
    hash: `${PROJECT}/config-hash`,
} as const;

/** `<key>=<value>,...`: a label selector as the API's `labelSelector` parameter takes it. */
export function selector(matchLabels: Record<string, string>): string {
    return Object.entries(matchLabels).map(([k, v]) => `${k}=${v}`).join(",");
}

// ---------------------------------------------------------------------------------------------------
// Stages

export const STAGE_NAMES = ["download", "teacher", "generate", "train", "sample", "evaluate", "report", "benchmark"] as const;
export type StageName = (typeof STAGE_NAMES)[number];

/** What a stage's pods reach besides DNS: Hugging Face and W&B over HTTPS, or the Kubernetes API. */
export type Egress = "https" | "api";

export interface StageInfo {
    /** Position in the pipeline, for display (downloads first, the report last). */
    readonly order: number;
    /** The word in its Job names (`<run>-<word>-<variant>-<hash>`). */
    readonly jobWord: string;
    /** Stages that read what this one writes, when they run in the same update. */
    readonly dependents: readonly StageName[];
    /** Its default `timing.<stage>.timeout`. */
    readonly timeout: string;
    /** The generation's Job carries the variant label "cot"; a stage of one Job per model or variant
     * carries that instead; the teacher and the report carry none. */
    readonly fixedVariant?: string;
}

export const STAGES: Readonly<Record<StageName, StageInfo>> = {
    download: { order: 1, jobWord: "download", dependents: ["teacher", "train", "sample", "evaluate"], timeout: "4h" },
    teacher: { order: 2, jobWord: "teacher", dependents: ["generate"], timeout: "90m" },
    generate: { order: 3, jobWord: "generate", dependents: ["train"], timeout: "24h", fixedVariant: "cot" },
    train: { order: 4, jobWord: "train", dependents: ["sample", "evaluate"], timeout: "48h" },
    sample: { order: 5, jobWord: "sample", dependents: ["report"], timeout: "2h" },
    evaluate: { order: 6, jobWord: "eval", dependents: ["report"], timeout: "24h" },
    report: { order: 7, jobWord: "report", dependents: [], timeout: "30m" },
    benchmark: { order: 8, jobWord: "bench", dependents: [], timeout: "1h" },
};

/** Stages whose pods may open each egress, in the order the NetworkPolicies list them. */
export const EGRESS: Readonly<Record<Egress, readonly StageName[]>> = {
    https: ["download", "generate", "train", "sample", "evaluate"],
    api: ["generate", "teacher", "report"],
};

/** What a DAG node is, as far as its labels go (components/graph.ts StageNode fits this shape). */
export type NodeRef =
    | { readonly kind: "download"; readonly size: string }
    | { readonly kind: "train" | "benchmark"; readonly variant: string }
    | { readonly kind: "sample" | "evaluate"; readonly model: { readonly name: string } }
    | { readonly kind: "teacher" | "generate" | "report" };

/** The stage and variant labels a node's workload carries: its key in status rows and durations. */
export function stageLabels(n: NodeRef): { stage: StageName; variant?: string } {
    switch (n.kind) {
        case "download": return { stage: n.kind, variant: n.size };
        case "train":
        case "benchmark": return { stage: n.kind, variant: n.variant };
        case "sample":
        case "evaluate": return { stage: n.kind, variant: n.model.name };
        default: return { stage: n.kind, variant: STAGES[n.kind].fixedVariant };
    }
}

// ---------------------------------------------------------------------------------------------------
// Volumes

/** The shared volumes, declared once: claims, mounts and volume sizes follow this list. */
export const VOLUME_NAMES = ["models", "data", "checkpoints", "results"] as const;
export type VolumeName = (typeof VOLUME_NAMES)[number];

// ---------------------------------------------------------------------------------------------------
// Exit codes of the programs in images/ (images/README.md)

export const EXIT = {
    ok: 0,
    /** The upstream tool failed. */
    failed: 1,
    /** argparse's own code. */
    badArgs: 2,
    /** A missing input or an unreachable dependency. */
    missingInput: 3,
    incomplete: 4,
    noMetrics: 5,
    checkFailed: 6,
} as const;

/** What a pod's exit code means: the programs' codes, then the signals. */
export const EXIT_MEANINGS: Readonly<Record<number, string>> = {
    [EXIT.failed]: "failed (the upstream tool failed)",
    [EXIT.badArgs]: "bad arguments",
    [EXIT.missingInput]: "missing input",
    [EXIT.incomplete]: "incomplete download",
    [EXIT.noMetrics]: "no metrics",
    [EXIT.checkFailed]: "dataset check failed",
    130: "interrupted",
    137: "killed (SIGKILL)",
    143: "terminated (SIGTERM)",
};

/** Exit codes that mean "bad input": retrying cannot help, so the Job fails at once (FailJob). */
export const FATAL_EXIT_CODES: readonly number[] = [EXIT.badArgs, EXIT.missingInput, EXIT.incomplete, EXIT.noMetrics, EXIT.checkFailed];

// ---------------------------------------------------------------------------------------------------
// Records the programs print and the CLIs read back from pod logs

/** `COTVR_PROGRESS {json}`: one progress record of a stage (images/common/cotvr_common.py Progress). */
export const PROGRESS_PREFIX = "COTVR_PROGRESS ";
/** `COTVR_BENCH {json}`: one throughput measurement of the fine-tune benchmark. */
export const BENCH_PREFIX = "COTVR_BENCH ";
/** Written by a producer last; consumers check it instead of guessing from partial files. */
export const MARKER_NAME = ".complete.json";

// ---------------------------------------------------------------------------------------------------
// Annotations

/** Annotation keys the run writes on its objects. */
export const ANNOTATIONS = {
    /** On a Job that `pulumi up` failed on purpose (an image that cannot be pulled) or whose wait it
     * ended (a bad input): why, as JSON (scripts/imagepull.ts PullFailure, scripts/fatalexit.ts
     * ExitFailure). `status` prints it after the pod is gone. */
    failure: `${PROJECT}/failure`,
} as const;

// ---------------------------------------------------------------------------------------------------
// Image pulls (scripts/imagepull.ts decides, scripts/imagewatch.ts acts during `pulumi up`)

/** Seconds an image pull may keep failing with an error that can heal (a registry's 5xx, a timeout,
 * DNS) before `pulumi up` fails the Job: about five of the kubelet's retries (10 s doubling to 5 min).
 * A pull the registry refuses for good (not found, unauthorized, a bad name) fails it at once. */
export const IMAGE_PULL_GRACE_SECONDS = 600;

// ---------------------------------------------------------------------------------------------------
// The teacher's watchdog

/** Seconds the teacher stays up with no generation pod before its watchdog scales it to 0: longer than
 * a Job's 6-minute retry backoff, so a retried generation finds it still up. */
export const WATCHDOG_GRACE_SECONDS = 600;

// ---------------------------------------------------------------------------------------------------
// Secrets

/** Stack config keys that must be set with `pulumi config set --secret`. */
export const SECRET_KEYS = ["hfToken", "wandbApiKey", "registryPassword", "notifyWebhook"] as const;
export type SecretKey = (typeof SECRET_KEYS)[number];

/** Keys of the run's Secret, as the pods read them. */
export const SECRET_DATA_KEYS = { hfToken: "HF_TOKEN", wandbApiKey: "WANDB_API_KEY", notifyWebhook: "COTVR_NOTIFY_WEBHOOK" } as const;

/** Names of the run's Secrets: the pods' tokens, and the image pull Secret when the program pushes images. */
export function secretNames(run: string): { tokens: string; registry: string } {
    return { tokens: `${run}-secrets`, registry: `${run}-registry` };
}

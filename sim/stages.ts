// kwok Stages that give the simulated cluster's pods the durations of the real stages: kwok pods
// execute nothing, so a Job pod of a stage/variant succeeds N s after it starts, and a teacher pod
// turns Ready N s after it starts (the 90B load).
//
// Stages live in the API server (kwok runs with --enable-crds=Stage, see cluster.sh) so that a run
// can change them on a running cluster; kwok's stage manager picks the change up without a restart.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";
import { LABELS, NodeRef, StageName, stageLabels } from "../contract";

const HERE = __dirname;
/** Field manager of every Stage this module or cluster.sh applies (server-side apply: omitted fields go). */
export const STAGE_FIELD_MANAGER = "cot-vr-e2e";
/** Label of the Stages made here (removed when a later call no longer wants them). */
const SIM_LABEL = "e2e.cot-vr/sim";

export interface StageDuration {
    /** Value of the pod label LABELS.stage. */
    stage: StageName;
    /** Value of LABELS.variant; none: every pod of the stage without a more specific entry. */
    variant?: string;
    seconds: number;
}

function kubectlSync(kubeconfig: string, args: string[], input?: string): string {
    const r = spawnSync("kubectl", ["--kubeconfig", kubeconfig, ...args], { input, encoding: "utf8", maxBuffer: 64 << 20 });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`kubectl ${args.join(" ")} failed (exit ${r.status}): ${r.stderr}`);
    return r.stdout;
}

// ---------------------------------------------------------------------------------------------------
// Stage durations

const jqLabel = (key: string) => `.metadata.labels["${key}"]`;
/** "<stage>/<variant>" of a pod ("" for a missing label), to exclude stage/variant pairs in one expression. */
const JQ_PAIR = `.metadata.labels | ((.["${LABELS.stage}"] // "") + "/" + (.["${LABELS.variant}"] // ""))`;
const notIn = (key: string, values: string[]) => (values.length ? [{ key, operator: "NotIn", values }] : []);

const stageName = (d: { stage: string; variant?: string }) =>
    `sim-complete-${d.stage}${d.variant ? `-${d.variant}` : ""}`.toLowerCase().replace(/[^a-z0-9-]/g, "-");

/** The default stages shipped in kwok/stages.yaml, by name. */
function defaultStages(): Map<string, any> {
    const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(HERE, "kwok", "stages.yaml"), "utf8"))
        .map((d) => d.toJS()).filter((d) => d?.kind === "Stage");
    return new Map(docs.map((d) => [d.metadata.name, d]));
}

/** Replace one piece of a kwok status template, and fail loudly when kwok's template changed shape. */
function replaceOnce(text: string, from: RegExp, to: string): string {
    if (!from.test(text)) throw new Error(`kwok stage template: ${from} not found (kwok/stages.yaml changed?)`);
    return text.replace(from, to);
}

/**
 * The pod Stages for these durations: the defaults of kwok/stages.yaml with the simulated pods taken
 * out of their selectors, one `sim-complete-*` Stage per entry, and with `teacherStartSeconds` two
 * teacher Stages (Running but not Ready at once, Ready after the load). Pure; exported for tests.
 */
export function podStages(durations: StageDuration[], opts: { teacherStartSeconds?: number; defaultCompleteMs?: number } = {}): any[] {
    const defaults = defaultStages();
    const ready = structuredClone(defaults.get("pod-ready"));
    const complete = structuredClone(defaults.get("pod-complete"));
    if (!ready || !complete) throw new Error("kwok/stages.yaml lacks pod-ready or pod-complete");
    const seen = new Set<string>();
    for (const d of durations) {
        const k = `${d.stage}/${d.variant ?? ""}`;
        if (seen.has(k)) throw new Error(`two durations for ${k}`);
        if (!(d.seconds >= 0)) throw new Error(`duration of ${k}: ${d.seconds}`);
        seen.add(k);
    }
    const wide = durations.filter((d) => !d.variant).map((d) => d.stage);
    const pairs = durations.filter((d) => d.variant).map((d) => `${d.stage}/${d.variant}`);
    const baseComplete = complete.spec.selector.matchExpressions as any[];

    complete.spec.selector.matchExpressions = [...baseComplete, ...notIn(jqLabel(LABELS.stage), wide), ...notIn(JQ_PAIR, pairs)];
    if (opts.defaultCompleteMs) complete.spec.delay = { durationMilliseconds: opts.defaultCompleteMs };
    else delete complete.spec.delay;
    const out = [ready, complete];

    for (const d of durations) {
        const s = structuredClone(complete);
        s.metadata = { name: stageName(d), labels: { [SIM_LABEL]: "true" } };
        s.spec.selector = {
            matchLabels: { [LABELS.stage]: d.stage, ...(d.variant ? { [LABELS.variant]: d.variant } : {}) },
            // a stage-wide entry leaves the variants that have their own entry alone
            matchExpressions: [...baseComplete, ...(d.variant ? [] : notIn(JQ_PAIR, pairs.filter((p) => p.startsWith(`${d.stage}/`))))],
        };
        s.spec.delay = { durationMilliseconds: Math.round(d.seconds * 1000) };
        out.push(s);
    }

    if (opts.teacherStartSeconds !== undefined) {
        ready.spec.selector.matchExpressions.push(...notIn(jqLabel(LABELS.stage), ["teacher"]));
        const teacher = { matchLabels: { [LABELS.stage]: "teacher" } };
        // Running (scheduled, holding its GPU, loading weights) but not Ready yet.
        const start = structuredClone(defaults.get("pod-ready"));
        start.metadata = { name: "sim-teacher-start", labels: { [SIM_LABEL]: "true" } };
        start.spec.selector = { ...teacher, matchExpressions: start.spec.selector.matchExpressions };
        let t: string = start.spec.next.statusTemplate;
        t = replaceOnce(t, /status: "True"\n(\s*)type: Ready\n/, 'status: "False"\n$1type: Ready\n');
        t = replaceOnce(t, /status: "True"\n(\s*)type: ContainersReady\n/, 'status: "False"\n$1type: ContainersReady\n');
        t = replaceOnce(t, /(containerStatuses:\n\s*\{\{ range \.spec\.containers \}\}[\s\S]*?)ready: true/, "$1ready: false\n  started: true");
        start.spec.next.statusTemplate = t;
        // Ready after the load: the readiness probe's first success.
        const loaded = {
            apiVersion: "kwok.x-k8s.io/v1alpha1",
            kind: "Stage",
            metadata: { name: "sim-teacher-ready", labels: { [SIM_LABEL]: "true" } },
            spec: {
                resourceRef: { apiGroup: "v1", kind: "Pod" },
                selector: {
                    ...teacher,
                    matchExpressions: [
                        { key: ".metadata.deletionTimestamp", operator: "DoesNotExist" },
                        { key: ".status.phase", operator: "In", values: ["Running"] },
                        { key: '.status.conditions.[] | select( .type == "Ready" ) | .status', operator: "NotIn", values: ["True"] },
                    ],
                },
                delay: { durationMilliseconds: Math.round(opts.teacherStartSeconds * 1000) },
                next: {
                    statusTemplate: [
                        "{{ $now := Now }}",
                        "conditions:",
                        "- lastTransitionTime: {{ $now | Quote }}",
                        '  status: "True"',
                        "  type: Ready",
                        "- lastTransitionTime: {{ $now | Quote }}",
                        '  status: "True"',
                        "  type: ContainersReady",
                        "containerStatuses:",
                        "{{ range .status.containerStatuses }}",
                        "- image: {{ .image | Quote }}",
                        "  name: {{ .name | Quote }}",
                        "  ready: true",
                        "  started: true",
                        "  restartCount: 0",
                        "  state:",
                        "    running:",
                        "      startedAt: {{ .state.running.startedAt | Quote }}",
                        "{{ end }}",
                    ].join("\n") + "\n",
                },
            },
        };
        out.push(start, loaded);
    }
    return out;
}

/**
 * Job pods of stage <stage> (and variant <variant> when given, LABELS.stage/variant; the most specific
 * entry wins) succeed `seconds` after they start; with `teacherStartSeconds`, teacher pods are Running
 * at once and Ready that much later. Everything else keeps the cluster's defaults (kwok/stages.yaml,
 * Job pods after COT_E2E_JOB_MS); `applyStageDurations(kc, [])` restores them. Call it while no pod
 * is between stages: it replaces the Stages one after the other.
 */
export async function applyStageDurations(kubeconfig: string, durations: StageDuration[], opts: { teacherStartSeconds?: number } = {}): Promise<void> {
    // Keep the default Job time the cluster was started with (cluster.sh: COT_E2E_JOB_MS).
    const current = JSON.parse(kubectlSync(kubeconfig, ["get", "stages.kwok.x-k8s.io", "pod-complete", "-o", "json"]));
    const defaultCompleteMs = current.spec?.delay?.durationMilliseconds as number | undefined;
    const stages = podStages(durations, { ...opts, defaultCompleteMs });
    const wanted = new Set(stages.map((s) => s.metadata.name));
    // Stale simulated stages first, so that no pod matches two completion stages (kwok would pick one at random).
    const existing = kubectlSync(kubeconfig, ["get", "stages.kwok.x-k8s.io", "-l", `${SIM_LABEL}=true`, "-o", "name"]).split("\n").filter(Boolean);
    const stale = existing.filter((n) => !wanted.has(n.replace(/^.*\//, "")));
    if (stale.length) kubectlSync(kubeconfig, ["delete", ...stale, "--wait=true"]);
    // Defaults (narrowed) before the specific ones, for the same reason.
    const apply = (objs: any[]) => kubectlSync(kubeconfig,
        ["apply", "--server-side", "--force-conflicts", `--field-manager=${STAGE_FIELD_MANAGER}`, "-f", "-"],
        objs.map((o) => YAML.stringify(o)).join("---\n"));
    apply(stages.filter((s) => !s.metadata.labels?.[SIM_LABEL]));
    const specific = stages.filter((s) => s.metadata.labels?.[SIM_LABEL]);
    if (specific.length) apply(specific);
    // kwok reads Stages through an informer: give it a moment to see them before pods need them.
    await new Promise((r) => setTimeout(r, 500));
}

/**
 * Seconds of a node under `durations`: the entry of its stage and variant (stageLabels), else the
 * stage-wide entry (no variant: it also covers the generation's "cot" and the benchmark's variants),
 * else 0.
 */
export function durationOf(durations: StageDuration[], n: NodeRef): number {
    const { stage, variant } = stageLabels(n);
    return (durations.find((d) => d.stage === stage && d.variant === variant) ?? durations.find((d) => d.stage === stage && !d.variant))?.seconds ?? 0;
}

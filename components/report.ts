// The report: exact_match per evaluated model (the blog's Figure 2), the tuned-11B / base-90B ratio,
// and the GPU time of every stage read from the run's Jobs. It also prints its table to the Job log,
// which `npm run report` reads, and its headline record to the ConfigMap `<run>-report`, which
// `pulumi up` reads back into the stack output `report` (scripts/headline.ts) once the Job is done.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings } from "../config";
import { apiAccount } from "./account";
import { RenderedNode } from "./graph";
import { jobArgs, StageArgs, StageJob } from "./job";
import { jobName, labels, LABELS, shortHash } from "./naming";
import { configFile, programCommand, reportDirs, teacherRecord } from "./paths";
import { storageVolumes } from "./pod";

const CONFIG_KEY = "report.json";
/** Key of the headline record in the headline ConfigMap (report.py HEADLINE_KEY). */
export const HEADLINE_KEY = "headline.json";

/** The ConfigMap the report Job fills with its headline record. */
export function headlineConfigMapName(s: Settings): string {
    return `${s.run}-report`;
}

/** The report's headline record (report.py headline_record): what `pulumi stack output report` shows. */
export interface HeadlineRecord {
    readonly run: string;
    readonly task: string;
    readonly metric: string;
    /** The metric per evaluated model. */
    readonly scores: Record<string, number | null>;
    /** Tuned 11B over base 90B (the blog: 2.3x); null when not computable. */
    readonly headline: { numerator: string; denominator: string; ratio: number | null } | null;
    readonly gpuHours: number | null;
    readonly cost: { amount: number; currency: string } | null;
    readonly generatedAt: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const numOrNull = (v: unknown): v is number | null => v === null || (typeof v === "number" && Number.isFinite(v));

/**
 * The record in the ConfigMap's data, or null while the report has not written one (or it is
 * unreadable). Only the fields above are taken, each type-checked: the record becomes a plain stack
 * output, so nothing else that lands in the ConfigMap may ride along.
 */
export function parseHeadline(data: Record<string, string> | undefined | null): HeadlineRecord | null {
    const text = data?.[HEADLINE_KEY];
    if (!text) return null;
    let rec: unknown;
    try {
        rec = JSON.parse(text);
    } catch {
        return null;
    }
    if (!isObject(rec) || !isObject(rec.scores)) return null;
    const { run, task, metric, generatedAt, gpuHours } = rec;
    if (![run, task, metric, generatedAt].every((x) => typeof x === "string") || !numOrNull(gpuHours ?? null)) return null;
    const scores: Record<string, number | null> = {};
    for (const [k, v] of Object.entries(rec.scores)) {
        if (!numOrNull(v)) return null;
        scores[k] = v;
    }
    const h = rec.headline;
    const headline = isObject(h) && typeof h.numerator === "string" && typeof h.denominator === "string" && numOrNull(h.ratio ?? null)
        ? { numerator: h.numerator, denominator: h.denominator, ratio: (h.ratio ?? null) as number | null }
        : null;
    const c = rec.cost;
    const cost = isObject(c) && typeof c.amount === "number" && typeof c.currency === "string" ? { amount: c.amount, currency: c.currency } : null;
    return { run: run as string, task: task as string, metric: metric as string, scores, headline, gpuHours: (gpuHours ?? null) as number | null, cost, generatedAt: generatedAt as string };
}

/** The stack output `report`: the headline once this run's report Job wrote it, else why not yet. */
export type ReportOutput =
    | ({ readonly status: "ready"; readonly job: string } & HeadlineRecord)
    | { readonly status: "pending"; readonly job?: string; readonly reason: string };

/** What `pulumi up` found in the cluster after the report Job's update: its state and the ConfigMap's data (null: not there). */
export interface ReportObservation {
    readonly job: "complete" | "failed" | "running" | null;
    readonly data: Record<string, string> | null;
}

/** The output for an observation. Ready only once the Job completed: report.py fails the Job when its
 * write fails, so a complete Job means the record is this Job's, not an older run's. */
export function reportOutput(obs: ReportObservation, where: { namespace: string; job: string; configMap: string; stack: string }): ReportOutput {
    const pending = (reason: string): ReportOutput => ({ status: "pending", job: where.job, reason });
    if (obs.job === null) return pending(`no Job ${where.job} in namespace ${where.namespace}`);
    if (obs.job === "failed") return pending(`the report Job failed: npm run report -- --stack ${where.stack}`);
    if (obs.job === "running") return pending("the report Job has not finished (timing.report.await is false?): the next pulumi up reads it");
    if (obs.data === null) return pending(`no ConfigMap ${where.namespace}/${where.configMap}`);
    const rec = parseHeadline(obs.data);
    if (!rec) return pending(`ConfigMap ${where.namespace}/${where.configMap} holds no readable ${HEADLINE_KEY} (a trainer image older than this program?)`);
    return { status: "ready", job: where.job, ...rec };
}

/** The output when nothing is read: the reason only. */
export function pendingReport(reason: string): ReportOutput {
    return { status: "pending", reason };
}

/** What report.py reads besides the evaluation JSONs. */
export function reportSpec(s: Settings) {
    const tuned11b = s.evaluations.find((r) => r.trainVariant && r.size === "11b");
    const base90b = s.evaluations.find((r) => r.name === "base-90b");
    return {
        run: s.run,
        namespace: s.cluster.namespace,
        jobSelector: `${LABELS.run}=${s.run}`,
        gpuResource: s.cluster.gpuResource,
        tasks: s.evaluate.tasks,
        metric: "exact_match",
        variants: s.evaluations.map((r) => ({ name: r.name, size: r.size, tuned: Boolean(r.trainVariant) })),
        // The blog's headline: the tuned 11B scores 2.3x the 90B base.
        headline: tuned11b && base90b ? { numerator: tuned11b.name, denominator: base90b.name } : null,
        teacherGpus: s.teacher.gpus,
        gpuHourPrice: s.cluster.gpuHourPrice ?? null,
    };
}

export function reportArgs(s: Settings): string[] {
    const d = reportDirs(s);
    return [
        "--eval-dir", d.evalDir, "--spec", configFile(CONFIG_KEY), "--namespace", s.cluster.namespace, "--run", s.run, "--out", d.out,
        "--teacher-record", teacherRecord(s), "--headline-configmap", headlineConfigMapName(s),
    ];
}

/** Its inputs are its upstream: the samples and evaluations of this update, whose Job names carry their hashes. */
export class Report extends StageJob {
    constructor(name: string, args: StageArgs<RenderedNode<"report">>, opts?: pulumi.ComponentResourceOptions) {
        const { ctx, upstream } = args;
        const s = ctx.settings;
        super("cot-vr:stages:Report", name, args, (parent) => {
            const lbl = labels(s.run, "report");
            // Created empty here, filled by the Job, which so needs no create right. The data is the Job's
            // (its own field manager): Pulumi never sets or diffs it.
            const headlineCm = new k8s.core.v1.ConfigMap(`${name}-headline`, {
                metadata: { name: headlineConfigMapName(s), namespace: ctx.namespace, labels: lbl },
            }, { parent, ignoreChanges: ["data"] });
            // Read-only access to the namespace's Jobs, for the GPU time of each stage; patch of that one ConfigMap.
            const account = apiAccount(parent, name, ctx, {
                name: `${s.run}-report`, labels: lbl, rules: [
                    { apiGroups: ["batch"], resources: ["jobs"], verbs: ["get", "list"] },
                    { apiGroups: [""], resources: ["configmaps"], resourceNames: [headlineConfigMapName(s)], verbs: ["patch"] },
                ],
            });
            const specJson = JSON.stringify(reportSpec(s), null, 2);
            // The report re-runs whenever an evaluation it reads was replaced.
            const hash = shortHash("report", specJson, ctx.imageIds.trainer, upstream.map((u) => u.jobName!));
            return {
                stage: "report",
                config: { labels: lbl, data: { [CONFIG_KEY]: specJson } },
                extraDependsOn: [account.binding, headlineCm],
                job: (cm) => {
                    const { volumes, volumeMounts } = storageVolumes(ctx, { results: "rw" }, { configMap: cm });
                    return jobArgs(ctx, {
                        name: jobName(s.run, "report", undefined, hash),
                        stage: "report",
                        labels: labels(s.run, "report", undefined, hash),
                        container: {
                            image: ctx.images.trainer,
                            command: programCommand("report.py"),
                            args: reportArgs(s),
                            resources: { requests: { cpu: "1", memory: "2Gi" }, limits: { memory: "2Gi" } },
                            volumeMounts,
                        },
                        volumes,
                        gpu: false,
                        serviceAccountName: account.name,
                    });
                },
            };
        }, opts);
    }
}

// The report: exact_match per evaluated model (the blog's Figure 2), the tuned-11B / base-90B ratio,
// and the GPU time of every stage read from the run's Jobs. It also prints its table to the Job log,
// which `npm run report` reads, and its headline record to the ConfigMap `<run>-report`, which the
// stack outputs read back once the Job is done.
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

/** The record in the ConfigMap's data, or null while the report has not written one (or it is unreadable). */
export function parseHeadline(data: Record<string, string> | undefined): HeadlineRecord | null {
    const text = data?.[HEADLINE_KEY];
    if (!text) return null;
    try {
        const rec = JSON.parse(text);
        return rec && typeof rec === "object" && !Array.isArray(rec) && typeof rec.scores === "object" ? rec as HeadlineRecord : null;
    } catch {
        return null;
    }
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
    /** The headline ConfigMap as read after the Job finished; absent when the report is not awaited. */
    public readonly headline?: k8s.core.v1.ConfigMap;

    constructor(name: string, args: StageArgs<RenderedNode<"report">>, opts?: pulumi.ComponentResourceOptions) {
        const { ctx, upstream } = args;
        const s = ctx.settings;
        let headlineCm: k8s.core.v1.ConfigMap | undefined;
        super("cot-vr:stages:Report", name, args, (parent) => {
            const lbl = labels(s.run, "report");
            // Created empty here, filled by the Job: it always exists, so reading it back never fails an
            // update (a Job from an older image, a simulated cluster), and the Job needs no create right.
            // The data is the Job's (its own field manager): Pulumi never sets or diffs it.
            headlineCm = new k8s.core.v1.ConfigMap(`${name}-headline`, {
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

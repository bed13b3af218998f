// The report: exact_match per evaluated model (the blog's Figure 2), the tuned-11B / base-90B ratio,
// and the GPU time of every stage read from the run's Jobs. It also prints its table to the Job log,
// which `npm run report` reads.
import * as pulumi from "@pulumi/pulumi";
import { Settings } from "../config";
import { apiAccount } from "./account";
import { RenderedNode } from "./graph";
import { jobArgs, StageArgs, StageJob } from "./job";
import { jobName, labels, LABELS, shortHash } from "./naming";
import { configFile, programCommand, reportDirs, teacherRecord } from "./paths";
import { storageVolumes } from "./pod";

const CONFIG_KEY = "report.json";

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
    return ["--eval-dir", d.evalDir, "--spec", configFile(CONFIG_KEY), "--namespace", s.cluster.namespace, "--run", s.run, "--out", d.out, "--teacher-record", teacherRecord(s)];
}

/** Its inputs are its upstream: the samples and evaluations of this update, whose Job names carry their hashes. */
export class Report extends StageJob {
    constructor(name: string, args: StageArgs<RenderedNode<"report">>, opts?: pulumi.ComponentResourceOptions) {
        const { ctx, upstream } = args;
        const s = ctx.settings;
        super("cot-vr:stages:Report", name, args, (parent) => {
            const lbl = labels(s.run, "report");
            // Read-only access to the namespace's Jobs, for the GPU time of each stage.
            const account = apiAccount(parent, name, ctx, {
                name: `${s.run}-report`, labels: lbl, rules: [{ apiGroups: ["batch"], resources: ["jobs"], verbs: ["get", "list"] }],
            });
            const specJson = JSON.stringify(reportSpec(s), null, 2);
            // The report re-runs whenever an evaluation it reads was replaced.
            const hash = shortHash("report", specJson, ctx.imageIds.trainer, upstream.map((u) => u.jobName!));
            return {
                stage: "report",
                config: { labels: lbl, data: { [CONFIG_KEY]: specJson } },
                extraDependsOn: [account.binding],
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

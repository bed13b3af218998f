// The report: exact_match per evaluated model (the blog's Figure 2), the tuned-11B / base-90B ratio,
// and the GPU time of every stage read from the run's Jobs. It also prints its table to the Job log,
// which `npm run report` reads.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings } from "../config";
import { jobName, labels, LABELS, shortHash } from "./naming";
import { resultsDir } from "./paths";
import { jobArgs, stageTimeouts, StageContext, storageVolumes } from "./pod";

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
    };
}

export function reportArgs(s: Settings): string[] {
    const dir = resultsDir(s);
    return ["--eval-dir", `${dir}/eval`, "--spec", "/etc/cotvr/report.json", "--namespace", s.cluster.namespace, "--run", s.run, "--out", `${dir}/report`];
}

export class Report extends pulumi.ComponentResource {
    public readonly job: k8s.batch.v1.Job;

    /** `inputs`: the evaluation (and sample) Jobs of this update, by resource and by name. */
    constructor(name: string, args: { ctx: StageContext; inputs: { job: pulumi.Resource; jobName: string }[] }, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:stages:Report", name, {}, opts);
        const { ctx } = args;
        const s = ctx.settings;
        const lbl = labels(s.run, "report");
        // Read-only access to the namespace's Jobs, for the GPU time of each stage.
        const sa = new k8s.core.v1.ServiceAccount(`${name}-sa`, {
            metadata: { name: `${s.run}-report`, namespace: ctx.namespace, labels: lbl },
        }, { parent: this });
        const role = new k8s.rbac.v1.Role(`${name}-role`, {
            metadata: { name: `${s.run}-report`, namespace: ctx.namespace, labels: lbl },
            rules: [{ apiGroups: ["batch"], resources: ["jobs"], verbs: ["get", "list"] }],
        }, { parent: this });
        const binding = new k8s.rbac.v1.RoleBinding(`${name}-binding`, {
            metadata: { name: `${s.run}-report`, namespace: ctx.namespace, labels: lbl },
            roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name },
            subjects: [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: ctx.namespace }],
        }, { parent: this });
        const specJson = JSON.stringify(reportSpec(s), null, 2);
        const cm = new k8s.core.v1.ConfigMap(`${name}-config`, {
            metadata: { namespace: ctx.namespace, labels: lbl },
            data: { "report.json": specJson },
        }, { parent: this });
        // The report re-runs whenever an evaluation it reads was replaced (their names carry their hashes).
        const hash = shortHash("report", specJson, ctx.imageIds.trainer, args.inputs.map((i) => i.jobName));
        const { volumes, volumeMounts } = storageVolumes(ctx, { results: "rw" }, { configMap: cm.metadata.name });
        const jargs = jobArgs(ctx, {
            name: jobName(s.run, "report", undefined, hash),
            stage: "report",
            labels: labels(s.run, "report", undefined, hash),
            container: {
                image: ctx.images.trainer,
                command: ["python", "/opt/cotvr/report.py"],
                args: reportArgs(s),
                resources: { requests: { cpu: "1", memory: "2Gi" }, limits: { memory: "2Gi" } },
                volumeMounts,
            },
            volumes,
            gpu: false,
            serviceAccountName: sa.metadata.name,
        });
        this.job = new k8s.batch.v1.Job(`${name}-job`, jargs, {
            parent: this,
            dependsOn: [...args.inputs.map((i) => i.job), binding],
            customTimeouts: stageTimeouts(s, "report"),
        });
        this.registerOutputs({});
    }
}

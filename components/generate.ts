// Chain-of-thought dataset generation: synthetic-data-kit's `vqa_add_reasoning` over ChartQA, asking
// the teacher. The wrapper publishes the dataset only when every row passed the check.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings } from "../config";
import { jobArgs, stageJob } from "./job";
import { jobName, labels, shortHash } from "./naming";
import { configFile, datasetDir, programCommand } from "./paths";
import { hfEnv, StageContext, storageVolumes } from "./pod";

const CONFIG_KEY = "sdk.yaml";

export function generateArgs(s: Settings, datasetHash: string): string[] {
    const g = s.generate;
    return [
        "--config", configFile(CONFIG_KEY),
        "--source", g.source,
        "--out", datasetDir(s),
        "--config-hash", datasetHash,
        ...(g.limit ? ["--limit", String(g.limit)] : []),
    ];
}

export function generateJobArgs(ctx: StageContext, configMapName: pulumi.Input<string>): k8s.batch.v1.JobArgs {
    const s = ctx.settings;
    const hash = shortHash(ctx.ids.dataset, ctx.imageIds.datagen);
    const { volumes, volumeMounts } = storageVolumes(ctx, { data: "rw" }, { configMap: configMapName });
    return jobArgs(ctx, {
        name: jobName(s.run, "generate", "cot", hash),
        stage: "generate",
        labels: labels(s.run, "generate", "cot", hash),
        container: {
            image: ctx.images.datagen,
            command: programCommand("generate_cot.py"),
            args: generateArgs(s, ctx.ids.dataset),
            env: hfEnv(ctx),
            resources: { requests: { cpu: "4", memory: "16Gi" }, limits: { memory: "16Gi" } },
            volumeMounts,
        },
        volumes,
        gpu: false,
    });
}

export class Generate extends pulumi.ComponentResource {
    public readonly job: k8s.batch.v1.Job;
    /** The Job's name: it carries the hash of everything the stage's output depends on. */
    public readonly jobName: string;

    constructor(name: string, ctx: StageContext, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:stages:Generate", name, {}, { ...opts, aliases: [{ type: "cot-vr:stages:CotGeneration" }] });
        const { job, jobName } = stageJob(this, name, {
            ctx,
            stage: "generate",
            config: { labels: labels(ctx.settings.run, "generate", "cot"), data: { [CONFIG_KEY]: ctx.recipes.sdk } },
            job: (cm) => generateJobArgs(ctx, cm!),
        }, opts);
        this.job = job;
        this.jobName = jobName;
        this.registerOutputs({ jobName });
    }
}

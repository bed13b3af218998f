// The fine-tune throughput benchmark on the cluster's own GPU: images/trainer/bench_finetune.py
// builds each enabled fine-tune's model from its rendered config with random weights (nothing
// downloaded), runs a few optimizer steps of the blog's settings and of the shipped ones, and
// writes samples/s, memory, MFU and the projected hours. Minutes of GPU time before a GPU-day.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings, TrainVariant } from "../config";
import { jobArgs, stageJob, withoutEdges } from "./job";
import { jobName, labels, shortHash } from "./naming";
import { benchOutputPath, configFile, programCommand } from "./paths";
import { resources, StageContext, storageVolumes } from "./pod";

const CONFIG_KEY = "train.yaml";

export function benchmarkArgs(s: Settings, name: string, v: TrainVariant): string[] {
    return [
        "--config", configFile(CONFIG_KEY),
        // The blog's settings and the shipped ones (the config as rendered), measured in the same run.
        "--settings", "blog,best",
        "--micro-batch", String(v.microBatch),
        "--data", "synthetic",
        "--epochs", String(v.epochs),
        "--json-out", benchOutputPath(s, name),
    ];
}

export function benchmarkJobArgs(ctx: StageContext, name: string, v: TrainVariant, configMapName: pulumi.Input<string>): k8s.batch.v1.JobArgs {
    const s = ctx.settings;
    const hash = shortHash("benchmark", ctx.recipes.train[name], ctx.imageIds.trainer);
    const { volumes, volumeMounts } = storageVolumes(ctx, { results: "rw" }, { configMap: configMapName, shmSize: v.shmSize });
    return jobArgs(ctx, {
        name: jobName(s.run, "bench", name, hash),
        stage: "benchmark",
        labels: labels(s.run, "benchmark", name, hash),
        container: {
            image: ctx.images.trainer,
            command: programCommand("bench_finetune.py"),
            args: benchmarkArgs(s, name, v),
            resources: resources(s, { gpus: 1, cpu: v.cpu, memory: v.memory }),
            volumeMounts,
        },
        volumes,
        gpu: true,
    });
}

export class Benchmark extends pulumi.ComponentResource {
    public readonly job: k8s.batch.v1.Job;
    public readonly jobName: string;

    constructor(name: string, args: { ctx: StageContext; variant: string; train: TrainVariant }, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:stages:Benchmark", name, {}, withoutEdges(opts));
        const { ctx, variant, train } = args;
        const { job, jobName } = stageJob(this, name, {
            ctx,
            stage: "benchmark",
            config: { labels: labels(ctx.settings.run, "benchmark", variant), data: { [CONFIG_KEY]: ctx.recipes.train[variant] } },
            job: (cm) => benchmarkJobArgs(ctx, variant, train, cm!),
        }, opts);
        this.job = job;
        this.jobName = jobName;
        this.registerOutputs({ jobName });
    }
}

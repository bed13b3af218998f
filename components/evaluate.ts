// Sample generation (generate_v2) and ChartQA evaluation (patched eleuther_eval) of base and tuned
// models. Both read a model's checkpoint; a tuned one reads epoch_{epochs-1} of its own fine-tune.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { ModelRef, Settings } from "../config";
import { trainHash } from "./finetune";
import { jobName, labels, shortHash } from "./naming";
import { checkpointOf, resultsDir } from "./paths";
import { GPU_CONTAINER_SECURITY, hfEnv, jobArgs, stageTimeouts, resources, StageContext, storageVolumes } from "./pod";
import { evaluationConfig, generationConfig } from "./recipes";

export type ReadStage = "sample" | "evaluate";

/** Identity of the model a stage reads: the base repo, or the fine-tune's hash. */
function modelIdentity(ctx: StageContext, ref: ModelRef): string {
    const s = ctx.settings;
    return ref.trainVariant ? trainHash(ctx, ref.trainVariant, s.train.variants[ref.trainVariant]) : s.models[ref.size];
}

export function stageConfig(s: Settings, stage: ReadStage, ref: ModelRef): { key: string; yaml: string } {
    return stage === "sample"
        ? { key: "generate.yaml", yaml: generationConfig(s, ref) }
        : { key: "eval.yaml", yaml: evaluationConfig(s, ref) };
}

export function outputPath(s: Settings, stage: ReadStage, ref: ModelRef): string {
    return `${resultsDir(s)}/${stage === "sample" ? "samples" : "eval"}/${ref.name}.json`;
}

export function readStageArgs(s: Settings, stage: ReadStage, ref: ModelRef, hash: string): string[] {
    const common = ["--variant", ref.name, "--out", outputPath(s, stage, ref), "--config-hash", hash, "--require", checkpointOf(s, ref).marker];
    if (stage === "evaluate") return ["--config", "/etc/cotvr/eval.yaml", ...common];
    const x = s.sample;
    const image = x.imagePath
        ? ["--image", x.imagePath]
        : ["--image-dataset", x.imageDataset, "--image-split", x.imageSplit, "--image-index", String(x.imageIndex)];
    return ["--config", "/etc/cotvr/generate.yaml", "--question", x.question, ...image, ...common];
}

export function readStageJobArgs(ctx: StageContext, stage: ReadStage, ref: ModelRef, configMapName: pulumi.Input<string>): k8s.batch.v1.JobArgs {
    const s = ctx.settings;
    const cfg = stageConfig(s, stage, ref);
    const hash = shortHash(stage, ref.name, cfg.yaml, modelIdentity(ctx, ref), ctx.imageIds.trainer);
    const { volumes, volumeMounts } = storageVolumes(
        ctx,
        { models: "ro", data: "rw", checkpoints: "ro", results: "rw" },
        { configMap: configMapName, shmSize: "16Gi" },
    );
    const program = stage === "sample" ? "sample.py" : "evaluate.py";
    return jobArgs(ctx, {
        name: jobName(s.run, stage === "sample" ? "sample" : "eval", ref.name, hash),
        stage,
        labels: labels(s.run, stage, ref.name, hash),
        container: {
            image: ctx.images.trainer,
            command: ["python", `/opt/cotvr/${program}`],
            args: readStageArgs(s, stage, ref, hash),
            env: hfEnv(ctx),
            resources: resources(s, { gpus: 1, cpu: "8", memory: ref.size === "90b" ? "256Gi" : "64Gi" }),
            securityContext: GPU_CONTAINER_SECURITY,
            volumeMounts,
        },
        volumes,
        gpu: true,
    });
}

/** A sample or evaluation Job of one model, with its recipe ConfigMap. */
export class ModelRead extends pulumi.ComponentResource {
    public readonly job: k8s.batch.v1.Job;
    /** The Job's name; it carries the hash of the model and config it reads. */
    public readonly jobName: string;
    public readonly output: string;

    constructor(name: string, args: { ctx: StageContext; stage: ReadStage; model: ModelRef }, opts?: pulumi.ComponentResourceOptions) {
        super(args.stage === "sample" ? "cot-vr:stages:Sample" : "cot-vr:stages:Evaluation", name, {}, opts);
        const { ctx, stage, model } = args;
        const s = ctx.settings;
        const cfg = stageConfig(s, stage, model);
        const cm = new k8s.core.v1.ConfigMap(`${name}-config`, {
            metadata: { namespace: ctx.namespace, labels: labels(s.run, stage, model.name) },
            data: { [cfg.key]: cfg.yaml },
        }, { parent: this });
        const jargs = readStageJobArgs(ctx, stage, model, cm.metadata.name);
        this.jobName = (jargs.metadata as { name: string }).name;
        this.job = new k8s.batch.v1.Job(`${name}-job`, jargs, {
            parent: this,
            // Components do not pass their dependsOn to children: the workload itself waits.
            dependsOn: opts?.dependsOn,
            customTimeouts: stageTimeouts(s, stage),
        });
        this.output = outputPath(s, stage, model);
        this.registerOutputs({ output: this.output });
    }
}

// One torchtune fine-tune per enabled train variant, each on one GPU. A pod that restarts (eviction,
// node loss) resumes from the newest complete epoch; a finished variant is a no-op.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings, TrainVariant } from "../config";
import { datasetHash } from "./cotDataset";
import { jobName, labels, shortHash } from "./naming";
import { COMPLETE, datasetDir, modelDir, trainOutputDir } from "./paths";
import { GPU_CONTAINER_SECURITY, hfEnv, jobArgs, stageTimeouts, resources, secretEnv, StageContext, storageVolumes } from "./pod";
import { trainConfig, trainTemplate } from "./recipes";

/** Hash of everything that decides a fine-tune's result, its dataset included. */
export function trainHash(ctx: StageContext, name: string, v: TrainVariant): string {
    return shortHash("train", name, trainConfig(ctx.settings, name, v), datasetHash(ctx.settings), ctx.imageIds.trainer);
}

export function trainArgs(s: Settings, name: string, v: TrainVariant, hash: string): string[] {
    return [
        "--recipe", trainTemplate(v).recipe,
        "--config", "/etc/cotvr/train.yaml",
        "--output-dir", trainOutputDir(s, name),
        "--epochs", String(v.epochs),
        "--config-hash", hash,
        // Inputs produced by earlier stages, maybe by an earlier update: fail at once if absent.
        "--require", `${datasetDir(s)}/${COMPLETE}`,
        "--require", `${modelDir(s, v.model)}/${COMPLETE}`,
    ];
}

export function trainJobArgs(ctx: StageContext, name: string, v: TrainVariant, configMapName: pulumi.Input<string>): k8s.batch.v1.JobArgs {
    const s = ctx.settings;
    const hash = trainHash(ctx, name, v);
    const { volumes, volumeMounts } = storageVolumes(
        ctx,
        { models: "ro", data: "ro", checkpoints: "rw" },
        { configMap: configMapName, shmSize: v.shmSize },
    );
    const env = [...hfEnv(ctx)];
    if (v.metricLogger === "wandb") env.push(secretEnv(ctx, "WANDB_API_KEY"));
    return jobArgs(ctx, {
        name: jobName(s.run, "train", name, hash),
        stage: "train",
        labels: labels(s.run, "train", name, hash),
        container: {
            image: ctx.images.trainer,
            command: ["python", "/opt/cotvr/train.py"],
            args: trainArgs(s, name, v, hash),
            env,
            resources: resources(s, { gpus: 1, cpu: v.cpu, memory: v.memory }),
            securityContext: GPU_CONTAINER_SECURITY,
            volumeMounts,
        },
        volumes,
        gpu: true,
    });
}

export class FineTune extends pulumi.ComponentResource {
    public readonly job: k8s.batch.v1.Job;
    /** Written by train.py when the last epoch is complete. */
    public readonly marker: string;

    constructor(name: string, args: { ctx: StageContext; variant: string; settings: TrainVariant }, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:stages:FineTune", name, {}, opts);
        const { ctx, variant, settings: v } = args;
        const s = ctx.settings;
        const cm = new k8s.core.v1.ConfigMap(`${name}-config`, {
            metadata: { namespace: ctx.namespace, labels: labels(s.run, "train", variant) },
            data: { "train.yaml": trainConfig(s, variant, v) },
        }, { parent: this });
        this.job = new k8s.batch.v1.Job(`${name}-job`, trainJobArgs(ctx, variant, v, cm.metadata.name), {
            parent: this,
            // Components do not pass their dependsOn to children: the workload itself waits.
            dependsOn: opts?.dependsOn,
            customTimeouts: stageTimeouts(s, "train"),
        });
        this.marker = `${trainOutputDir(s, variant)}/${COMPLETE}`;
        this.registerOutputs({ marker: this.marker });
    }
}

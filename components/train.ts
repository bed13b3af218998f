// One torchtune fine-tune per enabled train variant, each in one pod: on one GPU (the blog's), or on
// `gpus` GPUs of one node through torchrun. A pod that restarts (eviction, node loss) resumes from the
// newest complete epoch; a finished variant is a no-op.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings, TrainVariant } from "../config";
import { multiGpuSpeedup, RCCL_ONE_NODE_ENV } from "../config/facts";
import { SECRET_DATA_KEYS } from "../contract";
import { RenderedNode } from "./graph";
import { jobArgs, StageArgs, StageJob } from "./job";
import { jobName, labels } from "./naming";
import { configFile, datasetMarker, modelMarker, programCommand, trainOutputDir } from "./paths";
import { hfEnv, resources, secretEnv, StageContext, storageVolumes } from "./pod";
import { trainTemplate } from "./recipes";

const CONFIG_KEY = "train.yaml";

export function trainArgs(s: Settings, name: string, v: TrainVariant, hash: string): string[] {
    return [
        "--recipe", trainTemplate(v).recipe,
        "--config", configFile(CONFIG_KEY),
        "--output-dir", trainOutputDir(s, name),
        "--epochs", String(v.epochs),
        "--config-hash", hash,
        // torchrun's processes, one per GPU (train.py launches `tune run --nproc_per_node`).
        ...(v.gpus > 1 ? ["--nproc", String(v.gpus)] : []),
        // Inputs produced by earlier stages, maybe by an earlier update: fail at once if absent.
        "--require", datasetMarker(s),
        "--require", modelMarker(s, v.model),
    ];
}

export function trainJobArgs(ctx: StageContext, node: RenderedNode<"train">, configMapName: pulumi.Input<string>): k8s.batch.v1.JobArgs {
    const s = ctx.settings;
    const { variant: name, train: v, identity: hash } = node;
    const { volumes, volumeMounts } = storageVolumes(
        ctx,
        // data rw: the recipe reads the dataset through `datasets`, which takes a lock file in its cache
        // (HF_HOME on the data volume, shared with every stage); read-only, it fails before the first step.
        { models: "ro", data: "rw", checkpoints: "rw" },
        { configMap: configMapName, shmSize: v.shmSize, hfToken: true },
    );
    const env = [...hfEnv(s)];
    if (v.metricLogger === "wandb") env.push(secretEnv(ctx, SECRET_DATA_KEYS.wandbApiKey));
    if (v.gpus > 1) env.push(...Object.entries(RCCL_ONE_NODE_ENV).map(([name, value]) => ({ name, value })));
    return jobArgs(ctx, {
        name: jobName(s.run, "train", name, hash),
        stage: "train",
        labels: labels(s.run, "train", name, hash),
        container: {
            image: ctx.images.trainer,
            command: programCommand("train.py"),
            args: trainArgs(s, name, v, hash),
            env,
            resources: resources(s, { gpus: v.gpus, cpu: v.cpu, memory: v.memory }),
            volumeMounts,
        },
        volumes,
        gpu: true,
        // N GPUs finish in ~1/speed-up of the time (config/facts.ts MULTI_GPU_SCALING_EFFICIENCY, an assumption).
        deadlineSeconds: v.gpus > 1 ? Math.ceil(s.timing.train.timeout / multiGpuSpeedup(v.gpus)) : undefined,
    });
}

export class Train extends StageJob {
    constructor(name: string, args: StageArgs<RenderedNode<"train">>, opts?: pulumi.ComponentResourceOptions) {
        const { ctx, node } = args;
        super("cot-vr:stages:Train", name, args, () => ({
            stage: "train",
            config: { labels: labels(ctx.settings.run, "train", node.variant), data: { [CONFIG_KEY]: node.recipe } },
            job: (cm) => trainJobArgs(ctx, node, cm!),
        }), { ...opts, aliases: [{ type: "cot-vr:stages:FineTune" }] });
    }
}

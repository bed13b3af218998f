// One Job per model the enabled stages read. The downloader is a no-op when the model folder is
// already complete, so each model is downloaded once, whichever stack or update asks first.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { MODEL_FACTS, ModelSize } from "../config";
import { RenderedNode } from "./graph";
import { jobArgs, StageArgs, StageJob } from "./job";
import { jobName, labels, shortHash } from "./naming";
import { modelDir, programCommand } from "./paths";
import { hfEnv, StageContext, storageVolumes } from "./pod";

/** The container that downloads one model (safetensors shards, config.json, original/tokenizer.model). */
export function downloadContainer(ctx: StageContext, size: ModelSize) {
    const s = ctx.settings;
    return {
        image: ctx.images.trainer,
        command: programCommand("download_model.py"),
        args: [
            "--repo-id", s.models[size],
            "--dest", modelDir(s, size),
            // The original/consolidated*.pth files duplicate the safetensors weights (+100 GB for 90B).
            "--ignore", "original/consolidated*.pth",
            "--require", "config.json",
            "--require", "original/tokenizer.model",
            "--shards", String(MODEL_FACTS[size].shards),
        ],
        env: [...hfEnv(s), { name: "HF_HUB_ENABLE_HF_TRANSFER", value: "1" }],
        resources: { requests: { cpu: "2", memory: "8Gi" }, limits: { memory: "8Gi" } },
    };
}

export function downloadJobArgs(ctx: StageContext, size: ModelSize): k8s.batch.v1.JobArgs {
    const s = ctx.settings;
    const container = downloadContainer(ctx, size);
    const hash = shortHash("download", container.args, ctx.imageIds.trainer);
    const { volumes, volumeMounts } = storageVolumes(ctx, { models: "rw", data: "rw" }, { hfToken: true });
    return jobArgs(ctx, {
        name: jobName(s.run, "download", size, hash),
        stage: "download",
        labels: labels(s.run, "download", size, hash),
        container: { ...container, volumeMounts },
        volumes,
        gpu: false,
    });
}

/** The download Job of one model. */
export class Download extends StageJob {
    constructor(name: string, args: StageArgs<RenderedNode<"download">>, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:stages:Download", name, args, () => ({ stage: "download", job: () => downloadJobArgs(args.ctx, args.node.size) }),
            { ...opts, aliases: [{ type: "cot-vr:stages:ModelDownload" }] });
    }
}

// One Job per model the enabled stages read. The downloader is a no-op when the model folder is
// already complete, so each model is downloaded once, whichever stack or update asks first.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { MODEL_SHARDS, ModelSize } from "../config";
import { jobName, labels, shortHash } from "./naming";
import { COMPLETE, modelDir } from "./paths";
import { hfEnv, jobArgs, stageTimeouts, StageContext, storageVolumes } from "./pod";

/** The container that downloads one model (safetensors shards, config.json, original/tokenizer.model). */
export function downloadContainer(ctx: StageContext, size: ModelSize) {
    const s = ctx.settings;
    const dest = modelDir(s, size);
    return {
        image: ctx.images.trainer,
        command: ["python", "/opt/cotvr/download_model.py"],
        args: [
            "--repo-id", s.models[size],
            "--dest", dest,
            // The original/consolidated*.pth files duplicate the safetensors weights (+100 GB for 90B).
            "--ignore", "original/consolidated*.pth",
            "--require", "config.json",
            "--require", "original/tokenizer.model",
            "--shards", String(MODEL_SHARDS[size]),
        ],
        env: [...hfEnv(ctx), { name: "HF_HUB_ENABLE_HF_TRANSFER", value: "1" }],
        resources: { requests: { cpu: "2", memory: "8Gi" }, limits: { memory: "8Gi" } },
    };
}

export function downloadJobArgs(ctx: StageContext, size: ModelSize): k8s.batch.v1.JobArgs {
    const s = ctx.settings;
    const container = downloadContainer(ctx, size);
    const hash = shortHash("download", container.args, ctx.imageIds.trainer);
    const name = jobName(s.run, "download", size, hash);
    const { volumes, volumeMounts } = storageVolumes(ctx, { models: "rw", data: "rw" });
    return jobArgs(ctx, {
        name,
        stage: "download",
        labels: labels(s.run, "download", size, hash),
        container: { ...container, volumeMounts },
        volumes,
        gpu: false,
    });
}

/** The download Job of one model. */
export class ModelDownload extends pulumi.ComponentResource {
    public readonly job: k8s.batch.v1.Job;
    /** Marker path that readers check. */
    public readonly marker: string;

    constructor(name: string, args: { ctx: StageContext; size: ModelSize }, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:stages:ModelDownload", name, {}, opts);
        const { ctx, size } = args;
        this.job = new k8s.batch.v1.Job(`${name}-job`, downloadJobArgs(ctx, size), {
            parent: this,
            // Components do not pass their dependsOn to children: the workload itself waits.
            dependsOn: opts?.dependsOn,
            customTimeouts: stageTimeouts(ctx.settings, "download"),
        });
        this.marker = `${modelDir(ctx.settings, size)}/${COMPLETE}`;
        this.registerOutputs({ marker: this.marker });
    }
}

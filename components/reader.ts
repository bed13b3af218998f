// What the sample and evaluate stages share: both read one model's checkpoint (base or tuned) on one
// GPU and write one JSON to the results volume.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { ModelRef, READER_MEMORY } from "../config";
import { JobSpec, jobArgs } from "./job";
import { jobName, labels, shortHash } from "./naming";
import { checkpointOf, configFile, programCommand, readOutputPath } from "./paths";
import { hfEnv, resources, StageContext, storageVolumes } from "./pod";

export type ReadStage = "sample" | "evaluate";

export interface ReaderSpec {
    readonly stage: ReadStage;
    readonly model: ModelRef;
    /** Program in the trainer image. */
    readonly program: string;
    /** Its rendered config: the ConfigMap key and text. */
    readonly configKey: string;
    readonly config: string;
    /** The identity of the model it reads (stageIdentities). */
    readonly reads: string;
    /** Arguments before the common ones. */
    readonly args: string[];
}

/** Short name of the stage in Job names (kept from the first release: renaming would re-run Jobs). */
const JOB_STAGE: Record<ReadStage, string> = { sample: "sample", evaluate: "eval" };

export function readerJobArgs(ctx: StageContext, r: ReaderSpec, configMapName: pulumi.Input<string>): k8s.batch.v1.JobArgs {
    const s = ctx.settings;
    const ref = r.model;
    const hash = shortHash(r.stage, ref.name, r.config, r.reads, ctx.imageIds.trainer);
    const { volumes, volumeMounts } = storageVolumes(
        ctx,
        { models: "ro", data: "rw", checkpoints: "ro", results: "rw" },
        { configMap: configMapName, shmSize: "16Gi", hfToken: true },
    );
    return jobArgs(ctx, {
        name: jobName(s.run, JOB_STAGE[r.stage], ref.name, hash),
        stage: r.stage,
        labels: labels(s.run, r.stage, ref.name, hash),
        container: {
            image: ctx.images.trainer,
            command: programCommand(r.program),
            args: [
                "--config", configFile(r.configKey), ...r.args,
                "--variant", ref.name, "--out", readOutputPath(s, r.stage, ref), "--config-hash", hash, "--require", checkpointOf(s, ref).marker,
            ],
            env: hfEnv(s),
            resources: resources(s, { gpus: 1, cpu: s[r.stage].cpu, memory: s[r.stage].memory ?? READER_MEMORY[ref.size] }),
            volumeMounts,
        },
        volumes,
        gpu: true,
    });
}

/** The ConfigMap and Job of one reader (StageJob). */
export function readerJob(ctx: StageContext, r: ReaderSpec): JobSpec {
    return {
        stage: r.stage,
        config: { labels: labels(ctx.settings.run, r.stage, r.model.name), data: { [r.configKey]: r.config } },
        job: (cm) => readerJobArgs(ctx, r, cm!),
    };
}

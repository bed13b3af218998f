// Chain-of-thought dataset generation: synthetic-data-kit's `vqa_add_reasoning` over ChartQA, asking
// the teacher. The wrapper publishes the dataset only when every row passed the check.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings } from "../config";
import { renderTemplate } from "./manifests";
import { jobName, labels, shortHash } from "./naming";
import { COMPLETE, datasetDir } from "./paths";
import { hfEnv, jobArgs, stageTimeouts, StageContext, storageVolumes } from "./pod";
import { teacherApiBase } from "./teacher";

export const SDK_TEMPLATE = "synthetic-data-kit/config.yaml";

/**
 * The synthetic-data-kit config. The model name is the teacher's served name (vLLM answers 404 to any
 * other name, and synthetic-data-kit would then write "ERROR: ..." labels instead of failing).
 */
export function sdkConfig(s: Settings): string {
    const g = s.generate;
    return renderTemplate(SDK_TEMPLATE, {
        "api-endpoint.api_base": teacherApiBase(s),
        "api-endpoint.model": s.teacher.servedModelName,
        "api-endpoint.max_retries": g.maxRetries,
        "api-endpoint.retry_delay": g.retryDelay,
        "generation.temperature": g.temperature,
        "generation.top_p": g.topP,
        "generation.max_tokens": g.maxTokens,
        "generation.batch_size": g.batchSize,
        input_split: g.inputSplit,
        output_split: g.outputSplit,
        ...(g.prompt ? { prompt: g.prompt } : {}),
    });
}

/** Identity of the dataset: everything that decides its content. Fine-tunes hash it into their names. */
export function datasetHash(s: Settings): string {
    const g = s.generate;
    return shortHash("dataset", g.source, g.inputSplit, g.outputSplit, g.limit ?? null, g.datasetName, sdkConfig(s), s.teacher.servedModelName, s.models["90b"]);
}

export function generateArgs(s: Settings): string[] {
    const g = s.generate;
    return [
        "--config", "/etc/cotvr/sdk.yaml",
        "--source", g.source,
        "--out", datasetDir(s),
        "--config-hash", datasetHash(s),
        ...(g.limit ? ["--limit", String(g.limit)] : []),
    ];
}

export function generateJobArgs(ctx: StageContext, configMapName: pulumi.Input<string>): k8s.batch.v1.JobArgs {
    const s = ctx.settings;
    const hash = shortHash(datasetHash(s), ctx.imageIds.datagen);
    const { volumes, volumeMounts } = storageVolumes(ctx, { data: "rw" }, { configMap: configMapName });
    return jobArgs(ctx, {
        name: jobName(s.run, "generate", "cot", hash),
        stage: "generate",
        labels: labels(s.run, "generate", "cot", hash),
        container: {
            image: ctx.images.datagen,
            command: ["python", "/opt/cotvr/generate_cot.py"],
            args: generateArgs(s),
            env: hfEnv(ctx),
            resources: { requests: { cpu: "4", memory: "16Gi" }, limits: { memory: "16Gi" } },
            volumeMounts,
        },
        volumes,
        gpu: false,
    });
}

export interface CotGenerationArgs {
    readonly ctx: StageContext;
}

export class CotGeneration extends pulumi.ComponentResource {
    public readonly job: k8s.batch.v1.Job;
    /** Marker the fine-tunes check before they start. */
    public readonly marker: string;

    constructor(name: string, ctx: StageContext, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:stages:CotGeneration", name, {}, opts);
        const s = ctx.settings;
        // Auto-named: a changed config is a new ConfigMap, and the Job that mounts it is replaced.
        const cm = new k8s.core.v1.ConfigMap(`${name}-config`, {
            metadata: { namespace: ctx.namespace, labels: labels(s.run, "generate", "cot") },
            data: { "sdk.yaml": sdkConfig(s) },
        }, { parent: this });
        this.job = new k8s.batch.v1.Job(`${name}-job`, generateJobArgs(ctx, cm.metadata.name), {
            parent: this,
            // Components do not pass their dependsOn to children: the workload itself waits.
            dependsOn: opts?.dependsOn,
            customTimeouts: stageTimeouts(s, "generate"),
        });
        this.marker = `${datasetDir(s)}/${COMPLETE}`;
        this.registerOutputs({ marker: this.marker });
    }
}

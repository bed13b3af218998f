// The fine-tune throughput benchmark on the cluster's own GPU: images/trainer/bench_finetune.py
// builds each enabled fine-tune's model from its rendered config with random weights (nothing
// downloaded), runs a few optimizer steps of the blog's settings and of the shipped ones, and
// writes samples/s, memory, MFU and the projected hours. Minutes of GPU time before a GPU-day.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { BLOG_MICRO_BATCH, Settings, TrainVariant } from "../config";
import { RenderedNode } from "./graph";
import { jobArgs, StageArgs, StageJob } from "./job";
import { jobName, labels, shortHash } from "./naming";
import { benchOutputPath, configFile, programCommand } from "./paths";
import { resources, StageContext, storageVolumes } from "./pod";

const CONFIG_KEY = "train.yaml";

/** The benchmark's name for a variant's levers (images/trainer/bench_finetune.py SETTINGS). */
export function benchSetting(v: Pick<TrainVariant, "compile" | "compileEncoder" | "activationCheckpointing">): string {
    if (v.activationCheckpointing) return v.compile ? (v.compileEncoder ? "compile_encoder" : "compile") : "blog";
    return v.compile ? (v.compileEncoder ? "best" : "no_ac_compile") : "no_ac";
}

/** The shipped setting as the benchmark names it: levers, micro-batch, and :x for exact tiles. */
export function shippedBenchSetting(v: Pick<TrainVariant, "compile" | "compileEncoder" | "activationCheckpointing" | "exactTiles" | "microBatch">): string {
    return `${benchSetting(v)}:m${v.microBatch}${v.exactTiles ? ":x" : ""}`;
}

export function benchmarkArgs(s: Settings, name: string, v: TrainVariant): string[] {
    return [
        "--config", configFile(CONFIG_KEY),
        // The blog's exact setting and the shipped one (the config as rendered), measured in the same run.
        "--settings", `blog:m${BLOG_MICRO_BATCH[v.model]},${shippedBenchSetting(v)}`,
        "--data", "synthetic",
        "--epochs", String(v.epochs),
        "--json-out", benchOutputPath(s, name),
    ];
}

export function benchmarkJobArgs(ctx: StageContext, node: RenderedNode<"benchmark">, configMapName: pulumi.Input<string>): k8s.batch.v1.JobArgs {
    const s = ctx.settings;
    const { variant: name, train: v } = node;
    const hash = shortHash("benchmark", node.recipe, ctx.imageIds.trainer);
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

export class Benchmark extends StageJob {
    constructor(name: string, args: StageArgs<RenderedNode<"benchmark">>, opts?: pulumi.ComponentResourceOptions) {
        const { ctx, node } = args;
        super("cot-vr:stages:Benchmark", name, args, () => ({
            stage: "benchmark",
            config: { labels: labels(ctx.settings.run, "benchmark", node.variant), data: { [CONFIG_KEY]: node.recipe } },
            job: (cm) => benchmarkJobArgs(ctx, node, cm!),
        }), opts);
    }
}

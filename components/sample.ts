// Sample generation: torchtune's generate_v2 answers the blog's question about one ChartQA chart,
// for a base or tuned model; sample.py writes the decoded answer as JSON.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { ModelRef, Settings } from "../config";
import { ReaderSpec, readerJob } from "./reader";
import { StageContext } from "./pod";
import { withoutEdges } from "./job";

export function sampleSpec(s: Settings, model: ModelRef, config: string): ReaderSpec {
    const x = s.sample;
    const image = x.imagePath
        ? ["--image", x.imagePath]
        : ["--image-dataset", x.imageDataset, "--image-split", x.imageSplit, "--image-index", String(x.imageIndex)];
    return { stage: "sample", model, program: "sample.py", configKey: "generate.yaml", config, args: ["--question", x.question, ...image] };
}

export class Sample extends pulumi.ComponentResource {
    public readonly job: k8s.batch.v1.Job;
    /** The Job's name: it carries the hash of everything the stage's output depends on. */
    public readonly jobName: string;

    constructor(name: string, args: { ctx: StageContext; model: ModelRef }, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:stages:Sample", name, {}, withoutEdges(opts));
        const { ctx, model } = args;
        const { job, jobName } = readerJob(this, name, ctx, sampleSpec(ctx.settings, model, ctx.recipes.sample[model.name]), opts);
        this.job = job;
        this.jobName = jobName;
        this.registerOutputs({ jobName });
    }
}

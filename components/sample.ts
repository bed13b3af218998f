// Sample generation: torchtune's generate_v2 answers the blog's question about one ChartQA chart,
// for a base or tuned model; sample.py writes the decoded answer as JSON.
import * as pulumi from "@pulumi/pulumi";
import { Settings } from "../config";
import { RenderedNode } from "./graph";
import { StageArgs, StageJob } from "./job";
import { ReaderSpec, readerJob } from "./reader";

export function sampleSpec(s: Settings, node: RenderedNode<"sample">): ReaderSpec {
    const x = s.sample;
    const image = x.imagePath
        ? ["--image", x.imagePath]
        : ["--image-dataset", x.imageDataset, "--image-split", x.imageSplit, "--image-index", String(x.imageIndex)];
    return {
        stage: "sample", model: node.model, program: "sample.py", configKey: "generate.yaml", config: node.recipe, reads: node.reads,
        args: ["--question", x.question, ...image],
    };
}

export class Sample extends StageJob {
    constructor(name: string, args: StageArgs<RenderedNode<"sample">>, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:stages:Sample", name, args, () => readerJob(args.ctx, sampleSpec(args.ctx.settings, args.node)), opts);
    }
}

// ChartQA evaluation of a base or tuned model: torchtune's eleuther_eval recipe (patched in the
// trainer image) runs lm-eval; evaluate.py saves the metrics as JSON.
import * as pulumi from "@pulumi/pulumi";
import { RenderedNode } from "./graph";
import { StageArgs, StageJob } from "./job";
import { ReaderSpec, readerJob } from "./reader";

export function evaluateSpec(node: RenderedNode<"evaluate">): ReaderSpec {
    return { stage: "evaluate", model: node.model, program: "evaluate.py", configKey: "eval.yaml", config: node.recipe, reads: node.reads, args: [] };
}

export class Evaluate extends StageJob {
    constructor(name: string, args: StageArgs<RenderedNode<"evaluate">>, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:stages:Evaluate", name, args, () => readerJob(args.ctx, evaluateSpec(args.node)),
            { ...opts, aliases: [{ type: "cot-vr:stages:Evaluation" }] });
    }
}

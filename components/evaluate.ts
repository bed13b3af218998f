// ChartQA evaluation of a base or tuned model: torchtune's eleuther_eval recipe (patched in the
// trainer image) runs lm-eval; evaluate.py saves the metrics as JSON.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { ModelRef } from "../config";
import { ReaderSpec, readerJob } from "./reader";
import { StageContext } from "./pod";
import { withoutEdges } from "./job";

export function evaluateSpec(model: ModelRef, config: string): ReaderSpec {
    return { stage: "evaluate", model, program: "evaluate.py", configKey: "eval.yaml", config, args: [] };
}

export class Evaluate extends pulumi.ComponentResource {
    public readonly job: k8s.batch.v1.Job;
    /** The Job's name: it carries the hash of everything the stage's output depends on. */
    public readonly jobName: string;

    constructor(name: string, args: { ctx: StageContext; model: ModelRef }, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:stages:Evaluate", name, {}, { ...withoutEdges(opts), aliases: [{ type: "cot-vr:stages:Evaluation" }] });
        const { ctx, model } = args;
        const { job, jobName } = readerJob(this, name, ctx, evaluateSpec(model, ctx.recipes.evaluate[model.name]), opts);
        this.job = job;
        this.jobName = jobName;
        this.registerOutputs({ jobName });
    }
}

// Entry point of `pulumi up`: stack config -> validated settings -> the Pipeline component.
// A bad stack file throws here, before any resource is registered.
import * as pulumi from "@pulumi/pulumi";
import { loadSettings } from "./settings";
import { Pipeline } from "./components/pipeline";

const { settings, secrets } = loadSettings();
const pipeline = new Pipeline("cot-vr", { settings, secrets });

export const run = settings.run;
export const namespace = pipeline.namespace;
export const claims = pipeline.claims;
export const teacherUrl = pipeline.teacherUrl;
export const jobs = pipeline.jobs;
export const stages = Object.entries(settings.stages).filter(([, on]) => on).map(([k]) => k);
export const note = pulumi.output("GPU stages run on each `pulumi up`; disable them in the stack to free GPUs, data stays on the volumes.");

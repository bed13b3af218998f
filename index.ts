// Entry point of `pulumi up`: stack config -> validated settings -> the Pipeline component.
// A bad stack file throws here, before any resource is registered.
import * as pulumi from "@pulumi/pulumi";
import { loadSettings } from "./config/pulumi";
import { Pipeline } from "./components/pipeline";
import { previewNotes } from "./scripts/estimate";
import { reportStackOutput } from "./scripts/headline";
import { startImageWatch } from "./scripts/imagewatch";

const { settings, secrets } = loadSettings();

// What the rehearsal knows, preview says: a timeout shorter than its stage's estimate or a --parallel
// that would serialise stages, before any GPU is paid for.
// An estimate is advice: a stack it cannot plan still deploys.
try {
    const notes = previewNotes(settings, Number(process.env.PULUMI_NODEJS_PARALLEL) || undefined);
    for (const w of notes.warnings) pulumi.log.warn(w);
    for (const i of notes.info) pulumi.log.info(i);
} catch (e) {
    pulumi.log.warn(`no estimate for this stack (${e instanceof Error ? e.message : e}); npm run rehearse -- --stack ${pulumi.getStack()} --plan-only says why`);
}
const pipeline = new Pipeline("cot-vr", { settings, secrets });

// An image that cannot be pulled fails its Job within seconds instead of holding `up` (and maybe a
// GPU) for the stage's timeout: Kubernetes never fails such a Job, and the provider only logs it
// (scripts/imagewatch.ts). The same watch ends the wait on a Job failed for a bad input (exit 2-6),
// which the provider does not count as an error (scripts/fatalexit.ts). Only in an update;
// COT_IMAGE_WATCH=0 turns it off (the unit tests do).
if (!pulumi.runtime.isDryRun() && process.env.COT_IMAGE_WATCH !== "0") {
    try {
        startImageWatch({
            namespace: settings.cluster.namespace,
            run: settings.run,
            stack: pulumi.getStack(),
            kubeconfig: settings.cluster.kubeconfig,
            context: settings.cluster.context,
            jobs: Object.values(pipeline.jobs),
            configured: { trainer: settings.images.trainer, datagen: settings.images.datagen, vllm: settings.images.vllm },
            log: { info: (m) => pulumi.log.info(m), warn: (m, job) => pulumi.log.warn(m, job ? pipeline.jobComponents.get(job) : undefined) },
        });
    } catch (e) {
        pulumi.log.warn(`image-pull watch not started (${e instanceof Error ? e.name : e}): an image that cannot be pulled holds its Job until the stage's timeout`);
    }
}

// What a user needs next: where the run is, the teacher's URL, each stage's Job, how to watch it.
export const run = settings.run;
export const namespace = pipeline.namespace;
export const claims = pipeline.claims;
export const teacherUrl = pipeline.teacherUrl;
/** Job name per stage node, e.g. {"train:lora-11b": "blog-train-lora-11b-47eb7410"}. */
export const jobs = pipeline.jobs;
/**
 * The headline numbers (metric per model, tuned-11B / base-90B ratio, GPU-hours, cost) once the report
 * Job wrote them (status "ready"), else status "pending" and why; read again by every `pulumi up`.
 */
export const report = reportStackOutput(settings, pipeline.reportJob, pipeline.jobs.report);
export const stages = Object.entries(settings.stages).filter(([, on]) => on).map(([k]) => k);
export const status = `npm run status -- --stack ${pulumi.getStack()} --watch`;
export const logs = `kubectl logs -n ${settings.cluster.namespace} -f job/<name from jobs>`;
export const fetch = `npm run fetch -- --stack ${pulumi.getStack()}`;

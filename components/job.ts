// How every stage runs (StageJob): its rendered configs in an auto-named ConfigMap and one Job that
// mounts it, waits for the stage's DAG edges and is awaited as long as the stage's timeout. The Job
// skeleton (no TTL, deadline, failure policy) is here too, so all stages run Jobs the same way.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings, StageName } from "../config";
import { FATAL_EXIT_CODES, SECRET_DATA_KEYS } from "../contract";
import { CONTAINER_SECURITY, cpuPodFields, gpuPodFields, podSecurity, pullSecretRefs, scratch, secretEnv, StageContext } from "./pod";

type Container = k8s.types.input.core.v1.Container;
type Volume = k8s.types.input.core.v1.Volume;
type VolumeMount = k8s.types.input.core.v1.VolumeMount;
type EnvVar = k8s.types.input.core.v1.EnvVar;

export interface JobSpecInput {
    readonly name: string;
    readonly stage: StageName;
    readonly labels: Record<string, string>;
    readonly container: Omit<Container, "name">;
    readonly volumes: Volume[];
    /** GPU pods get the ROCm pod fields. */
    readonly gpu: boolean;
    readonly serviceAccountName?: pulumi.Input<string>;
    /** activeDeadlineSeconds when not the stage's timeout (a multi-GPU fine-tune's, scaled by its speed-up). */
    readonly deadlineSeconds?: number;
}

/**
 * A Job that runs once: no TTL (a TTL-deleted Job is re-created, i.e. re-run, by the next `up`),
 * bounded by activeDeadlineSeconds, failing at once on bad-input exit codes, and not counting
 * evictions or node loss (DisruptionTarget) against its retries. Its pod is hardened (podSecurity,
 * CONTAINER_SECURITY) with /tmp as its only writable scratch.
 */
export function jobArgs(ctx: StageContext, j: JobSpecInput): k8s.batch.v1.JobArgs {
    const s = ctx.settings;
    const timing = s.timing[j.stage];
    const annotations: Record<string, string> = { "pulumi.com/timeoutSeconds": String(timing.timeout) };
    if (timing.await) {
        // A Job that failed at the last update is re-created by the next one.
        annotations["pulumi.com/replaceUnready"] = "true";
    } else {
        annotations["pulumi.com/skipAwait"] = "true";
    }
    const tmp = scratch();
    const c = j.container;
    // The webhook only from the Secret, and only when set: the programs' run_main posts a failure for
    // good, the report its results (images/common/cotvr_common.py notify).
    const notify = s.notify ? [secretEnv(ctx, SECRET_DATA_KEYS.notifyWebhook, SECRET_DATA_KEYS.notifyWebhook, true)] : [];
    return {
        metadata: { name: j.name, namespace: ctx.namespace, labels: j.labels, annotations },
        spec: {
            backoffLimit: timing.retries,
            activeDeadlineSeconds: j.deadlineSeconds ?? timing.timeout,
            podFailurePolicy: {
                rules: [
                    { action: "FailJob", onExitCodes: { containerName: "main", operator: "In", values: [...FATAL_EXIT_CODES] } },
                    { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
                ],
            },
            template: {
                metadata: { labels: j.labels },
                spec: {
                    restartPolicy: "Never",
                    serviceAccountName: j.serviceAccountName,
                    ...podSecurity(s, { gpu: j.gpu, apiAccess: j.serviceAccountName !== undefined }),
                    imagePullSecrets: pullSecretRefs(ctx),
                    ...(j.gpu ? gpuPodFields(s) : cpuPodFields(s)),
                    containers: [{
                        ...c,
                        name: "main",
                        imagePullPolicy: s.images.pullPolicy,
                        env: [...((c.env ?? []) as EnvVar[]), ...tmp.env, ...notify],
                        securityContext: CONTAINER_SECURITY,
                        volumeMounts: [...((c.volumeMounts ?? []) as VolumeMount[]), tmp.mount],
                    }],
                    volumes: [...j.volumes, tmp.volume],
                },
            },
        },
    };
}

/** customTimeouts of a stage's workload: the stage's timeout, never the provider's 10-minute default. */
export function stageTimeouts(s: Settings, stage: StageName): pulumi.CustomTimeouts {
    const t = `${Math.ceil(s.timing[stage].timeout / 60)}m`;
    return { create: t, update: t };
}

/** What a stage component gives the nodes that wait for it. */
export interface StageComponent {
    /** What dependents wait for: the stage's Job, or the teacher's Service. */
    readonly ready: pulumi.Resource;
    /** The Job's name when the stage runs one (it carries the hash of everything its output depends on). */
    readonly jobName?: string;
}

/** What every stage component is built from: its graph node, the update's context and its DAG edges. */
export interface StageArgs<N> {
    readonly node: N;
    readonly ctx: StageContext;
    /**
     * The components of the nodes it waits for, in the node's order. Only its workload waits for
     * them, never the component: a component that waited would hold back all its children until the
     * upstream Jobs finished, so a ConfigMap or Role the API server rejects would surface a GPU-day
     * late instead of at the start of the update, and every preview would walk the DAG one level at a time.
     */
    readonly upstream: readonly StageComponent[];
}

export interface JobSpec {
    readonly stage: StageName;
    /** Files of the stage's ConfigMap (mounted at /etc/cotvr) and its labels; none: no ConfigMap. */
    readonly config?: { readonly labels: Record<string, string>; readonly data: Record<string, string> };
    /** The Job's arguments, given its ConfigMap's name. */
    readonly job: (configMapName: pulumi.Input<string> | undefined) => k8s.batch.v1.JobArgs;
    /** Dependencies besides the stage's DAG edges. */
    readonly extraDependsOn?: pulumi.Resource[];
}

/**
 * A stage that runs one Job: its ConfigMap (`<name>-config`, auto-named: a changed config is a new
 * ConfigMap, so the Job that mounts it is replaced) and its Job (`<name>-job`), which alone waits for
 * the DAG edges. `spec` gets the component, parent of what the Job needs first (an API account).
 */
export abstract class StageJob extends pulumi.ComponentResource implements StageComponent {
    public readonly job: k8s.batch.v1.Job;
    /** The Job's name: it carries the hash of everything the stage's output depends on. */
    public readonly jobName: string;
    public readonly ready: pulumi.Resource;

    protected constructor(
        type: string,
        name: string,
        args: StageArgs<unknown>,
        spec: (parent: pulumi.ComponentResource) => JobSpec,
        opts: pulumi.ComponentResourceOptions | undefined,
    ) {
        super(type, name, {}, opts);
        const { ctx } = args;
        const j = spec(this);
        const cm = j.config && new k8s.core.v1.ConfigMap(`${name}-config`, {
            metadata: { namespace: ctx.namespace, labels: j.config.labels },
            data: j.config.data,
        }, { parent: this });
        const jargs = j.job(cm?.metadata.name);
        this.job = new k8s.batch.v1.Job(`${name}-job`, jargs, {
            parent: this,
            dependsOn: [...args.upstream.map((u) => u.ready), ...(j.extraDependsOn ?? [])],
            customTimeouts: stageTimeouts(ctx.settings, j.stage),
        });
        this.ready = this.job;
        // Job names are plain strings built from hashes (naming.ts), known before the update.
        this.jobName = (jargs.metadata as { name: string }).name;
        this.registerOutputs({ jobName: this.jobName });
    }
}

// The vLLM teacher: Llama 3.2 90B Vision served from the models volume on one MI300X (teacher.gpus),
// teacher.replicas times. The Deployment is created with 0 replicas: the generation scales it to
// teacher.replicas while it calls the teacher and back to 0
// when the dataset is published or the generation fails (images/datagen/teacher_scale.py), so the GPU
// is held only while generation needs it. A watchdog beside vLLM releases it if the generation dies
// without doing so (killed on its Job's last try). `teacher.keep` serves it from the stack instead.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings } from "../config";
import { selector, WATCHDOG_GRACE_SECONDS } from "../contract";
import { apiAccount } from "./account";
import { RenderedNode } from "./graph";
import { StageArgs, StageComponent, stageTimeouts } from "./job";
import { LABELS, labels, teacherName, teacherSelector } from "./naming";
import { MOUNTS, modelDir, programCommand, teacherRecord } from "./paths";
import { CONTAINER_SECURITY, gpuPodFields, podSecurity, pullSecretRefs, resources, scratch, StageContext, storageVolumes } from "./pod";

export const TEACHER_PORT_NAME = "http";

/** The watchdog's ServiceAccount, Role and RoleBinding name. */
export function teacherAccountName(s: Settings): string {
    return `${s.run}-teacher`;
}

/** The watchdog lists pods (to see the generation's) and scales its own Deployment, nothing else. */
export function teacherRoleRules(s: Settings): k8s.types.input.rbac.v1.PolicyRule[] {
    return [
        { apiGroups: [""], resources: ["pods"], verbs: ["list"] },
        { apiGroups: ["apps"], resources: ["deployments/scale"], resourceNames: [teacherName(s.run)], verbs: ["get", "patch"] },
    ];
}

/**
 * Whether the watchdog records its release on the results volume like the generation does. Only a
 * ReadWriteMany volume may be mounted by the teacher's pod while the generation's has it: a
 * ReadWriteOnce one on another node, or a ReadWriteOncePod one, would keep the teacher from starting.
 */
export function watchdogRecords(s: Settings): boolean {
    return s.storage.results.accessMode === "ReadWriteMany";
}

/** `teacher_scale.py watch` arguments: release the teacher once the run's generation pods are gone. */
export function watchdogArgs(s: Settings): string[] {
    const holders = selector({ [LABELS.run]: s.run, [LABELS.stage]: "generate" });
    return [
        "--namespace", s.cluster.namespace, "--deployment", teacherName(s.run),
        ...(watchdogRecords(s) ? ["--record", teacherRecord(s)] : []),
        "watch", "--holders", holders, "--grace", String(WATCHDOG_GRACE_SECONDS),
    ];
}

/**
 * The watchdog container and what only it mounts: the results volume (when it records, see
 * watchdogRecords) and a projected token of the teacher's account, so vLLM gets no API token.
 */
function watchdog(ctx: StageContext, tmp: ReturnType<typeof scratch>) {
    const s = ctx.settings;
    const { volumes, volumeMounts } = storageVolumes(ctx, watchdogRecords(s) ? { results: "rw" } : {});
    const token = {
        name: "api-token",
        projected: {
            sources: [
                { serviceAccountToken: { path: "token", expirationSeconds: 3600 } },
                { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
            ],
        },
    };
    const container: k8s.types.input.core.v1.Container = {
        name: "release",
        image: ctx.images.datagen,
        imagePullPolicy: s.images.pullPolicy,
        command: programCommand("teacher_scale.py"),
        args: watchdogArgs(s),
        env: [{ name: "PYTHONUNBUFFERED", value: "1" }, ...tmp.env],
        resources: { requests: { cpu: "50m", memory: "128Mi" }, limits: { memory: "128Mi" } },
        securityContext: CONTAINER_SECURITY,
        volumeMounts: [...volumeMounts, tmp.mount, { name: token.name, mountPath: MOUNTS.serviceAccount, readOnly: true }],
    };
    return { container, volumes: [...volumes, token] };
}

/** `vllm serve` arguments. The rocm/vllm images have no entrypoint, so the command is explicit. */
export function teacherArgs(s: Settings): string[] {
    const t = s.teacher;
    return [
        "serve", modelDir(s, "90b"),
        "--served-model-name", t.servedModelName,
        "--host", "0.0.0.0",
        "--port", String(t.port),
        "--max-model-len", String(t.maxModelLen),
        "--max-num-seqs", String(t.maxNumSeqs),
        "--tensor-parallel-size", String(t.gpus),
        "--gpu-memory-utilization", String(t.gpuMemoryUtilization),
        ...t.extraArgs,
    ];
}

export function teacherDeploymentArgs(ctx: StageContext, serviceAccountName?: pulumi.Input<string>): k8s.apps.v1.DeploymentArgs {
    const s = ctx.settings;
    const t = s.teacher;
    const name = teacherName(s.run);
    const lbl = labels(s.run, "teacher");
    const { volumes, volumeMounts } = storageVolumes(ctx, { models: "ro" }, { shmSize: t.shmSize });
    const tmp = scratch();
    // Loading 165 GiB of weights takes long: the startup probe allows the whole teacher timeout,
    // after which readiness on /health decides.
    const period = 10;
    const startupFailures = Math.max(1, Math.ceil(s.timing.teacher.timeout / period));
    // Held by the generation (not kept): the watchdog comes with it.
    const watch = t.keep ? undefined : watchdog(ctx, tmp);
    return {
        metadata: { name, namespace: ctx.namespace, labels: lbl },
        spec: {
            // Owned by the generation's scaler unless the stack keeps the teacher (ignoreChanges below).
            replicas: t.keep ? t.replicas : 0,
            // Never two teachers on GPUs at once: the old pod goes before the new one starts.
            strategy: { type: "Recreate" },
            selector: { matchLabels: teacherSelector(s.run) },
            template: {
                metadata: { labels: lbl },
                spec: {
                    // No automounted token: only the watchdog mounts one (projected, above).
                    ...podSecurity(s, { gpu: true, apiAccess: false }),
                    serviceAccountName,
                    ...gpuPodFields(s),
                    imagePullSecrets: pullSecretRefs(ctx),
                    containers: [{
                        name: "vllm",
                        image: ctx.images.vllm,
                        imagePullPolicy: s.images.pullPolicy,
                        command: ["vllm"],
                        args: teacherArgs(s),
                        ports: [{ name: TEACHER_PORT_NAME, containerPort: t.port }],
                        env: [{ name: "HF_HUB_OFFLINE", value: "1" }, ...tmp.env],
                        resources: resources(s, { gpus: t.gpus, cpu: t.cpu, memory: t.memory }),
                        securityContext: CONTAINER_SECURITY,
                        volumeMounts: [...volumeMounts, tmp.mount],
                        startupProbe: { httpGet: { path: "/health", port: TEACHER_PORT_NAME }, periodSeconds: period, failureThreshold: startupFailures },
                        readinessProbe: { httpGet: { path: "/health", port: TEACHER_PORT_NAME }, periodSeconds: 10, failureThreshold: 3 },
                        livenessProbe: { httpGet: { path: "/health", port: TEACHER_PORT_NAME }, periodSeconds: 30, failureThreshold: 5 },
                    }, ...(watch ? [watch.container] : [])],
                    volumes: [...volumes, tmp.volume, ...(watch?.volumes ?? [])],
                },
            },
        },
    };
}

export function teacherServiceArgs(ctx: StageContext): k8s.core.v1.ServiceArgs {
    const s = ctx.settings;
    return {
        metadata: {
            name: teacherName(s.run),
            namespace: ctx.namespace,
            labels: labels(s.run, "teacher"),
            // The provider would wait for endpoints, which a teacher at 0 replicas never has.
            annotations: s.teacher.keep ? undefined : { "pulumi.com/skipAwait": "true" },
        },
        spec: {
            selector: teacherSelector(s.run),
            ports: [{ name: TEACHER_PORT_NAME, port: s.teacher.port, targetPort: TEACHER_PORT_NAME }],
        },
    };
}

export class Teacher extends pulumi.ComponentResource implements StageComponent {
    public readonly deployment: k8s.apps.v1.Deployment;
    public readonly service: k8s.core.v1.Service;
    /** The generation waits for the Service (with `keep`, for a ready pod). */
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: StageArgs<RenderedNode<"teacher">>, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:stages:Teacher", name, {}, opts);
        const { ctx } = args;
        const s = ctx.settings;
        const account = s.teacher.keep
            ? undefined
            : apiAccount(this, name, ctx, { name: teacherAccountName(s), labels: labels(s.run, "teacher"), rules: teacherRoleRules(s) });
        this.deployment = new k8s.apps.v1.Deployment(`${name}-deployment`, teacherDeploymentArgs(ctx, account?.name), {
            parent: this,
            // The DAG edges are the workload's, not the component's (StageArgs.upstream).
            dependsOn: args.upstream.map((u) => u.ready),
            customTimeouts: stageTimeouts(ctx.settings, "teacher"),
            // The generation scales the teacher: neither `up` nor `up --refresh` may undo that.
            ignoreChanges: ctx.settings.teacher.keep ? [] : ["spec.replicas"],
        });
        // After the Deployment: with `keep`, the provider waits for the Service's endpoints (a ready pod).
        this.service = new k8s.core.v1.Service(`${name}-service`, teacherServiceArgs(ctx), {
            parent: this,
            dependsOn: [this.deployment],
        });
        this.ready = this.service;
        this.registerOutputs({});
    }
}

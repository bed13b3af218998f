// Pod-spec helpers shared by every stage: what a stage receives (StageContext), volumes, secret env,
// GPU requests and the ROCm pod settings. Pure functions returning plain Kubernetes argument objects.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings } from "../config";
import { SECRET_DATA_KEYS } from "../contract";
import { ImageIds } from "./identity";
import { HF_HOME, MOUNTS, VOLUME_NAMES, VolumeName } from "./paths";

type Input<T> = pulumi.Input<T>;
type PodSpec = k8s.types.input.core.v1.PodSpec;
type Volume = k8s.types.input.core.v1.Volume;
type VolumeMount = k8s.types.input.core.v1.VolumeMount;
type EnvVar = k8s.types.input.core.v1.EnvVar;

/** Claim names of the shared volumes (created by SharedVolumes or existing ones). */
export type ClaimNames = Record<VolumeName, Input<string>>;

/** What every stage component receives besides its own settings. */
export interface StageContext {
    readonly settings: Settings;
    readonly namespace: Input<string>;
    readonly claims: ClaimNames;
    /** Secret holding HF_TOKEN (and WANDB_API_KEY when set). */
    readonly secretName: Input<string>;
    /** Image references (pushed digests when images are built). */
    readonly images: { trainer: Input<string>; datagen: Input<string>; vllm: Input<string> };
    /** Plain identities of the images (config ref, or repo:content-hash when built), for Job hashes. */
    readonly imageIds: ImageIds;
    /** Pull secrets: the stack's plus the registry secret when images are built. */
    readonly imagePullSecrets: Input<string>[];
}

/** Volumes and mounts for the shared claims a container uses, plus its ConfigMap, /dev/shm and the
 * Hugging Face token file. */
export function storageVolumes(
    ctx: StageContext,
    use: Partial<Record<VolumeName, "ro" | "rw">>,
    extra: { configMap?: Input<string>; shmSize?: string; hfToken?: boolean } = {},
): { volumes: Volume[]; volumeMounts: VolumeMount[] } {
    const volumes: Volume[] = [];
    const volumeMounts: VolumeMount[] = [];
    for (const name of VOLUME_NAMES) {
        const mode = use[name];
        if (!mode) continue;
        volumes.push({ name, persistentVolumeClaim: { claimName: ctx.claims[name] } });
        volumeMounts.push({ name, mountPath: MOUNTS[name], readOnly: mode === "ro" });
    }
    if (extra.configMap) {
        volumes.push({ name: "config", configMap: { name: extra.configMap } });
        volumeMounts.push({ name: "config", mountPath: MOUNTS.config, readOnly: true });
    }
    if (extra.shmSize) {
        // The container runtime's 64 MB /dev/shm starves PyTorch data loaders and vLLM workers.
        volumes.push({ name: "dshm", emptyDir: { medium: "Memory", sizeLimit: extra.shmSize } });
        volumeMounts.push({ name: "dshm", mountPath: MOUNTS.shm });
    }
    if (extra.hfToken) {
        // A file, not an env var: env values end up in `describe` output and crash dumps.
        volumes.push({ name: "hf-token", secret: { secretName: ctx.secretName, items: [{ key: SECRET_DATA_KEYS.hfToken, path: HF_TOKEN_FILE }], optional: true } });
        volumeMounts.push({ name: "hf-token", mountPath: MOUNTS.hfToken, readOnly: true });
    }
    return { volumes, volumeMounts };
}

const HF_TOKEN_FILE = "token";

/** Env var from a key of the stack's Secret (never a plain value in the spec). */
export function secretEnv(ctx: StageContext, name: string, key = name, optional = false): EnvVar {
    return { name, valueFrom: { secretKeyRef: { name: ctx.secretName, key, optional } } };
}

/** Hugging Face env: cache on the data volume, the token as a file (mount it with storageVolumes' hfToken), the Hub. */
export function hfEnv(s: Settings): EnvVar[] {
    return [
        { name: "HF_HOME", value: HF_HOME },
        { name: "HF_TOKEN_PATH", value: `${MOUNTS.hfToken}/${HF_TOKEN_FILE}` },
        ...(s.models.endpoint ? [{ name: "HF_ENDPOINT", value: s.models.endpoint }] : []),
    ];
}

/** Requests and limits; GPUs counted by the configured extended resource (requests must equal limits). */
export function resources(s: Settings, r: { gpus?: number; cpu: string; memory: string }) {
    const gpu = r.gpus ? { [s.cluster.gpuResource]: String(r.gpus) } : {};
    return {
        requests: { cpu: r.cpu, memory: r.memory, ...gpu },
        limits: { memory: r.memory, ...gpu },
    };
}

/**
 * Pod fields for a GPU workload on ROCm: node selection (configurable; the GPU request alone is
 * enough where `amd.com/gpu.product-name` is missing) and tolerations. The device plugin mounts
 * /dev/kfd and the GPU's /dev/dri node (no hostPath); the supplemental groups open them (podSecurity).
 */
export function gpuPodFields(s: Settings): Partial<PodSpec> {
    return {
        nodeSelector: Object.keys(s.cluster.nodeSelector).length ? s.cluster.nodeSelector : undefined,
        tolerations: s.cluster.tolerations,
        hostIPC: s.cluster.hostIPC || undefined,
    };
}

/**
 * Pod security of every pod: a non-root user that is no host user, its group owning what it writes on
 * the volumes (fsGroup, changed only when the volume's root differs), RuntimeDefault seccomp; GPU pods
 * add the video/render groups and cluster.gpuSeccompProfile (see config/schema.ts for why ROCm needs it).
 * Only pods that call the API (report, generation holding the teacher) get a service account token.
 */
export function podSecurity(s: Settings, p: { gpu: boolean; apiAccess: boolean }): Partial<PodSpec> {
    const user = s.cluster.runAsUser;
    return {
        automountServiceAccountToken: p.apiAccess,
        securityContext: {
            ...(user === 0
                ? { runAsUser: 0 }
                : { runAsNonRoot: true, runAsUser: user, runAsGroup: user, fsGroup: user, fsGroupChangePolicy: "OnRootMismatch" }),
            supplementalGroups: p.gpu ? s.cluster.supplementalGroups : undefined,
            seccompProfile: { type: p.gpu ? s.cluster.gpuSeccompProfile : "RuntimeDefault" },
        },
    };
}

/** Pod fields for a workload without GPUs: cluster.cpuTolerations (none by default: CPU nodes). */
export function cpuPodFields(s: Settings): Partial<PodSpec> {
    return { tolerations: s.cluster.cpuTolerations.length ? s.cluster.cpuTolerations : undefined };
}

/** Every container: no privilege escalation, no capabilities (ROCm needs none: device access is the
 * groups'; SYS_PTRACE only serves debuggers and profilers), a read-only root filesystem. */
export const CONTAINER_SECURITY = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } };

/** The writable scratch of a container with a read-only root: /tmp, also HOME (caches), and a USER
 * name for tools that ask for one (getpass falls back to $USER when the uid has no passwd entry). */
export function scratch(): { volume: Volume; mount: VolumeMount; env: EnvVar[] } {
    return {
        volume: { name: "tmp", emptyDir: {} },
        mount: { name: "tmp", mountPath: MOUNTS.tmp },
        env: [{ name: "HOME", value: MOUNTS.tmp }, { name: "USER", value: "cotvr" }],
    };
}

export function pullSecretRefs(ctx: StageContext) {
    return ctx.imagePullSecrets.length ? ctx.imagePullSecrets.map((name) => ({ name })) : undefined;
}

// The pure part of `npm run rehearse`: simulated nodes and StorageClasses, whether a pod can ever be
// scheduled (and which stack key to change when not), claims that can never bind, the text GPU
// timeline. scripts/rehearse.ts does the I/O; GPU-hours are sim/gpu.ts's, as for `status`.
import { quantityBytes, Settings } from "../config";
import { LABELS, PROJECT, VOLUME_NAMES } from "../contract";

type Obj = Record<string, any>;

// ---------------------------------------------------------------------------------------------------
// Simulated nodes

/** The AMD GPU operator's node labeller labels of an MI300X node (sim/kwok/nodes.yaml). */
export const MI300X_LABELS: Record<string, string> = {
    "node.kubernetes.io/instance-type": "mi300x-8x",
    "amd.com/gpu.device-id": "74a1",
    "amd.com/gpu.family": "AI",
    "amd.com/gpu.vram": "192G",
    "amd.com/gpu.cu-count": "304",
    "amd.com/gpu.simd-count": "1216",
    "amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM",
    "beta.amd.com/gpu.device-id": "74a1",
    "beta.amd.com/gpu.family": "AI",
    "beta.amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM",
};

export interface NodeShape {
    name: string;
    labels: Record<string, string>;
    taints: { key: string; value?: string; effect: string }[];
    /** allocatable, e.g. {cpu: "192", memory: "2Ti", pods: "110", "amd.com/gpu": "8"} */
    allocatable: Record<string, string>;
}

/** Without --like: one MI300X node with 8 GPUs (AMD labels, amd.com/gpu NoSchedule taint) and one
 * CPU-only node for the stages that need no GPU (download, generation, report). */
export function defaultNodes(gpus = 8): NodeShape[] {
    return [
        {
            name: "mi300x-0",
            labels: { ...MI300X_LABELS },
            taints: [{ key: "amd.com/gpu", value: "present", effect: "NoSchedule" }],
            allocatable: { cpu: "192", memory: "2Ti", pods: "110", "ephemeral-storage": "20Ti", "amd.com/gpu": String(gpus) },
        },
        { name: "cpu-0", labels: { "node.kubernetes.io/instance-type": "cpu-32" }, taints: [], allocatable: { cpu: "32", memory: "128Gi", pods: "110", "ephemeral-storage": "1Ti" } },
    ];
}

/** Labels the simulation must not copy (kubelet- and kwok-managed). */
const OWN_LABELS = new Set(["kubernetes.io/hostname", "type"]);

/** The shape of a real node (from @kubernetes/client-node's V1Node), to copy into the simulation. */
export function nodeShape(n: { metadata?: { name?: string; labels?: Record<string, string> }; spec?: { taints?: { key: string; value?: string; effect: string }[]; unschedulable?: boolean }; status?: { allocatable?: Record<string, string> } }, i: number): NodeShape {
    const labels = Object.fromEntries(Object.entries(n.metadata?.labels ?? {}).filter(([k]) => !OWN_LABELS.has(k)));
    // Taints the node lifecycle sets (not-ready, unreachable, ...) come and go; the simulation keeps the pool's own.
    const taints = (n.spec?.taints ?? []).filter((t) => !t.key.startsWith("node.kubernetes.io/")).map((t) => ({ key: t.key, value: t.value, effect: t.effect }));
    if (n.spec?.unschedulable) taints.push({ key: "node.kubernetes.io/unschedulable", value: undefined, effect: "NoSchedule" });
    const keep = (k: string) => ["cpu", "memory", "pods", "ephemeral-storage"].includes(k) || k.includes("/");
    const allocatable = Object.fromEntries(Object.entries(n.status?.allocatable ?? {}).filter(([k]) => keep(k)));
    return { name: `like-${i}-${(n.metadata?.name ?? "node").slice(0, 40)}`.toLowerCase().replace(/[^a-z0-9.-]/g, "-"), labels, taints, allocatable };
}

/** A kwok-managed Node object for a shape. */
export function nodeManifest(n: NodeShape): Obj {
    return {
        apiVersion: "v1",
        kind: "Node",
        metadata: {
            name: n.name,
            annotations: { "kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0" },
            labels: { ...n.labels, "kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": n.labels["kubernetes.io/arch"] ?? "amd64", type: "kwok" },
        },
        spec: n.taints.length ? { taints: n.taints } : {},
        status: { allocatable: n.allocatable, capacity: n.allocatable, nodeInfo: { architecture: "amd64", operatingSystem: "linux", kubeletVersion: "fake" } },
    };
}

// ---------------------------------------------------------------------------------------------------
// StorageClasses and claims

/**
 * Where a provisioner's volumes live: on one node (the scheduler keeps the pods that use one there),
 * attached to one node at a time (network block storage), or shared by all nodes.
 */
export type Placement = "node-local" | "attached" | "shared";

/** Access modes of provisioners whose behaviour is known; others are taken to support every mode. */
const PROVISIONERS: [RegExp, Placement, string[]][] = [
    [/^rancher\.io\/local-path$|^openebs\.io\/local$|^kubernetes\.io\/no-provisioner$|^topolvm\.io$|^local\.csi/, "node-local", ["ReadWriteOnce", "ReadWriteOncePod"]],
    [/^ebs\.csi\.aws\.com$|^pd\.csi\.storage\.gke\.io$|^disk\.csi\.azure\.com$|rbd\.csi\.ceph\.com$|^kubernetes\.io\/(aws-ebs|gce-pd|azure-disk)$/, "attached", ["ReadWriteOnce", "ReadWriteOncePod"]],
    [/nfs|^efs\.csi\.aws\.com$|cephfs\.csi\.ceph\.com$|^file\.csi\.azure\.com$|^filestore\.csi\.storage\.gke\.io$|^driver\.longhorn\.io$/, "shared", ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]],
];

export function provisionerModes(provisioner: string): string[] | undefined {
    return PROVISIONERS.find(([re]) => re.test(provisioner))?.[2];
}

export function provisionerPlacement(provisioner: string): Placement | undefined {
    return PROVISIONERS.find(([re]) => re.test(provisioner))?.[1];
}

/** What to change when a class cannot give a volume ReadWriteMany, by where its volumes live. */
function withoutReadWriteMany(v: string, cls: ClassShape): string {
    const key = `${PROJECT}:storage.${v}.accessMode`;
    switch (provisionerPlacement(cls.provisioner)) {
        case "node-local":
            return `set ${key} to ReadWriteOnce (its volumes are node-local: the scheduler keeps the pods that share one on its node), or pick a ReadWriteMany class with ${PROJECT}:storage.storageClass`;
        case "attached":
            return `pick a ReadWriteMany class with ${PROJECT}:storage.storageClass: its volumes attach to one node at a time, so with ReadWriteOnce, stages that run at once on different nodes would wait for the volume (Multi-Attach), GPU pods with their GPU held; ReadWriteOnce is safe on a one-node cluster only`;
        default:
            return `change ${key} or ${PROJECT}:storage.storageClass`;
    }
}

export interface ClassShape {
    name: string;
    isDefault: boolean;
    provisioner: string;
    /** Access modes its provisioner supports; undefined: unknown (any). */
    modes?: string[];
}

export function classShape(c: { metadata?: { name?: string; annotations?: Record<string, string> }; provisioner: string }): ClassShape {
    const a = c.metadata?.annotations ?? {};
    return {
        name: c.metadata?.name ?? "",
        isDefault: a["storageclass.kubernetes.io/is-default-class"] === "true" || a["storageclass.beta.kubernetes.io/is-default-class"] === "true",
        provisioner: c.provisioner,
        modes: provisionerModes(c.provisioner),
    };
}

/** The simulated copy of a class: served by the e2e tier's provisioner (sim/provisioner.mjs). */
export function classManifest(c: ClassShape): Obj {
    return {
        apiVersion: "storage.k8s.io/v1",
        kind: "StorageClass",
        metadata: {
            name: c.name,
            annotations: {
                ...(c.isDefault ? { "storageclass.kubernetes.io/is-default-class": "true" } : {}),
                "cot-vr.rehearse/real-provisioner": c.provisioner,
            },
        },
        provisioner: "e2e.cot-vr.local/fake",
        reclaimPolicy: "Retain",
        volumeBindingMode: "Immediate",
    };
}

/**
 * Claims the stack creates that could never bind on a cluster with these classes: no such class, no
 * default class, or an access mode the class's provisioner does not offer. Each problem names the key.
 */
export function claimProblems(s: Settings, classes: ClassShape[]): string[] {
    const out: string[] = [];
    for (const v of VOLUME_NAMES) {
        const vol = s.storage[v];
        if (vol.existingClaim) continue;
        const cls = s.storage.storageClass ? classes.find((c) => c.name === s.storage.storageClass) : classes.find((c) => c.isDefault);
        if (!cls) {
            out.push(s.storage.storageClass
                ? `claim ${v}: StorageClass "${s.storage.storageClass}" does not exist (classes: ${classes.map((c) => c.name).join(", ") || "none"}): change ${PROJECT}:storage.storageClass`
                : `claim ${v}: the cluster has no default StorageClass (classes: ${classes.map((c) => c.name).join(", ") || "none"}): set ${PROJECT}:storage.storageClass`);
            continue;
        }
        if (cls.modes && !cls.modes.includes(vol.accessMode)) {
            const change = vol.accessMode === "ReadWriteMany" ? withoutReadWriteMany(v, cls) : `change ${PROJECT}:storage.${v}.accessMode or ${PROJECT}:storage.storageClass`;
            out.push(`claim ${v}: StorageClass "${cls.name}" (${cls.provisioner}) offers ${cls.modes.join(", ")}, not ${vol.accessMode}; the claim would stay Pending: ${change}`);
        }
    }
    return out;
}

// ---------------------------------------------------------------------------------------------------
// Scheduling

function requestOf(pod: Obj, resource: string): number {
    let n = 0;
    for (const c of pod.spec?.containers ?? []) {
        const q = c.resources?.requests?.[resource] ?? c.resources?.limits?.[resource];
        if (q !== undefined) n += resource === "cpu" ? cpuUnits(String(q)) : resource === "memory" ? quantityBytes(String(q)) : Number(q);
    }
    return n;
}

function cpuUnits(q: string): number {
    return q.endsWith("m") ? Number(q.slice(0, -1)) / 1000 : Number(q);
}

function tolerates(tolerations: Obj[], t: { key: string; value?: string; effect: string }): boolean {
    return tolerations.some((tol) => {
        if (tol.effect && tol.effect !== t.effect) return false;
        if (!tol.key) return tol.operator === "Exists";
        if (tol.key !== t.key) return false;
        return tol.operator === "Exists" || (tol.value ?? "") === (t.value ?? "");
    });
}

/** The GPUs of the biggest node (--like's, or the default MI300X node) against the fine-tunes' `gpus`:
 * one pod cannot span nodes, so a variant asking for more never schedules. cluster.gpusPerNode says
 * the same at preview; this reads the real cluster's nodes. */
export function gpusPerNodeProblems(s: Settings, nodes: NodeShape[]): string[] {
    const most = Math.max(0, ...nodes.map((n) => Number(n.allocatable[s.cluster.gpuResource] ?? 0)));
    return s.trainings.filter(([, v]) => v.gpus > most).map(([name, v]) =>
        `${PROJECT}:train.variants.${name}.gpus is ${v.gpus} but the cluster's biggest node has ${most} ${s.cluster.gpuResource}: use at most ${most} (and set ${PROJECT}:cluster.gpusPerNode: ${most})`);
}

/** Why a pod could never run on a node, even empty: the stack keys to change. Empty: it fits. */
export function whyNot(pod: Obj, node: NodeShape, gpuResource: string, isTeacher: boolean): string[] {
    const labels = pod.metadata?.labels ?? {};
    const gpuKey = isTeacher ? `${PROJECT}:teacher.gpus`
        : labels[LABELS.stage] === "train" && labels[LABELS.variant] ? `${PROJECT}:train.variants.${labels[LABELS.variant]}.gpus`
        : `${PROJECT}:cluster.gpuResource`;
    const out: string[] = [];
    const sel = pod.spec?.nodeSelector ?? {};
    const miss = Object.entries(sel).filter(([k, v]) => node.labels[k] !== v);
    if (miss.length) out.push(`nodeSelector ${miss.map(([k, v]) => `${k}=${v}`).join(",")} [${PROJECT}:cluster.nodeSelector]`);
    const hard = node.taints.filter((t) => t.effect === "NoSchedule" || t.effect === "NoExecute");
    const gpus = requestOf(pod, gpuResource);
    const untol = hard.filter((t) => !tolerates(pod.spec?.tolerations ?? [], t));
    // cluster.tolerations reach GPU pods only; the others take cluster.cpuTolerations (components/pod.ts).
    const tolKey = gpus > 0 ? `${PROJECT}:cluster.tolerations` : `${PROJECT}:cluster.cpuTolerations`;
    if (untol.length) out.push(`untolerated taint ${untol.map((t) => `${t.key}${t.value ? `=${t.value}` : ""}:${t.effect}`).join(",")} [${tolKey}]`);
    const have = Number(node.allocatable[gpuResource] ?? 0);
    if (gpus > have) out.push(`${gpus} ${gpuResource} > ${have} [${gpuKey}]`);
    for (const r of ["cpu", "memory"]) {
        const want = requestOf(pod, r);
        const cap = r === "cpu" ? cpuUnits(node.allocatable.cpu ?? "0") : quantityBytes(node.allocatable.memory ?? "0");
        if (want > cap) out.push(`${r} request > ${node.allocatable[r]} [the stage's cpu/memory keys]`);
    }
    return out;
}

/** For a pod that no node could ever hold: one line per node with its reasons, the nodes that miss
 * by the fewest reasons first; undefined when some node fits. */
export function neverSchedulable(pod: Obj, nodes: NodeShape[], gpuResource: string): string[] | undefined {
    const isTeacher = pod.metadata?.labels?.[LABELS.stage] === "teacher";
    const per = nodes.map((n) => ({ n, why: whyNot(pod, n, gpuResource, isTeacher) }));
    if (per.some((p) => p.why.length === 0)) return undefined;
    per.sort((a, b) => a.why.length - b.why.length);
    return per.map((p) => `${p.n.name}: ${p.why.join("; ")}`);
}

/** The keys to change: those of the nodes that come closest (fewest reasons), each once. */
export function keysToChange(reasons: string[]): string[] {
    const count = (l: string) => l.split("; ").length;
    const best = Math.min(...reasons.map(count));
    return keysIn(reasons.filter((l) => count(l) === best));
}

/** The stack keys named in reasons, each once. */
export function keysIn(reasons: string[]): string[] {
    const keys = new Set<string>();
    for (const r of reasons) for (const m of r.matchAll(/\[([^\]]+)\]/g)) keys.add(m[1]);
    return [...keys];
}

// ---------------------------------------------------------------------------------------------------
// Timeline

export interface Interval {
    /** pod name */
    name: string;
    stage: string;
    variant?: string;
    gpus: number;
    node?: string;
    /** Seconds from the start of the update (simulated). */
    start: number;
    end: number;
}

/**
 * One row per GPU pod, drawn in `width` columns; times in estimated real hours (simulated seconds /
 * scale, the scale being simulated seconds per real hour).
 */
export function textTimeline(rows: Interval[], opts: { scale: number; width?: number; digits?: number }): string {
    const width = opts.width ?? 60;
    const d = opts.digits ?? 1;
    if (rows.length === 0) return "(no GPU pods ran)";
    const t1 = Math.max(...rows.map((r) => r.end));
    const hours = (sim: number) => sim / opts.scale;
    const label = (r: Interval) => `${r.stage}${r.variant ? ` ${r.variant}` : ""}`;
    const lw = Math.max(...rows.map((r) => label(r).length), 5);
    const col = (t: number) => Math.min(width - 1, Math.floor((t / (t1 || 1)) * width));
    const lines = [...rows].sort((a, b) => a.start - b.start || a.end - b.end).map((r) => {
        const a = col(r.start);
        const b = Math.max(a + 1, col(r.end) + (r.end >= t1 ? 1 : 0));
        const bar = " ".repeat(a) + "#".repeat(Math.min(width, b) - a) + " ".repeat(Math.max(0, width - b));
        return `${label(r).padEnd(lw)} ${String(r.gpus).padStart(2)} GPU |${bar}| ${hours(r.start).toFixed(d)}-${hours(r.end).toFixed(d)} h`;
    });
    const axis = `${"".padEnd(lw)}        0${"".padEnd(width - 1)}${hours(t1).toFixed(d)} h`;
    return [...lines, axis].join("\n");
}

// Watching the simulated cluster through the API (list + watch, as an informer does), so that a
// watcher sees every state a pod goes through, including pods deleted between two looks.
import * as k8s from "@kubernetes/client-node";
import { PodInterval, PodTimeline } from "./gpu";

export function loadKubeConfig(kubeconfig: string): k8s.KubeConfig {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig);
    return kc;
}

export interface Watching {
    stop(): void;
    /** Resolves once the watch has started (every object that existed then has been delivered). */
    synced: Promise<void>;
}

/**
 * List and watch the objects of a collection path (e.g. /api/v1/namespaces/NS/pods; a watch without
 * resourceVersion starts with every existing object), re-watching from the last resourceVersion when
 * the server closes the stream.
 */
export function watchObjects(kc: k8s.KubeConfig, apiPath: string, labelSelector: string | undefined,
    onEvent: (type: string, obj: any) => void): Watching {
    const watch = new k8s.Watch(kc);
    let rv: string | undefined;
    let stopped = false;
    let current: AbortController | undefined;
    let markSynced: () => void = () => {};
    const synced = new Promise<void>((r) => (markSynced = r));
    const start = () => {
        if (stopped) return;
        watch.watch(apiPath, { labelSelector, resourceVersion: rv, allowWatchBookmarks: true },
            (type, obj) => {
                if (obj?.metadata?.resourceVersion) rv = obj.metadata.resourceVersion;
                if (type === "BOOKMARK") return;
                if (type === "ERROR") { rv = undefined; return; } // 410 Gone: start over from a fresh list
                onEvent(type, obj);
            },
            () => { if (!stopped) setTimeout(start, 200); })
            .then((c) => { current = c; markSynced(); if (stopped) c.abort(); })
            .catch(() => { if (!stopped) setTimeout(start, 500); });
    };
    start();
    return { stop: () => { stopped = true; current?.abort(); }, synced };
}

/** watchObjects of a namespace's pods. */
export function watchPods(kc: k8s.KubeConfig, namespace: string, labelSelector: string | undefined,
    onEvent: (type: string, pod: any) => void): Watching {
    return watchObjects(kc, `/api/v1/namespaces/${namespace}/pods`, labelSelector, onEvent);
}

export interface GpuTimeline {
    /** Resolves once the watch has started (every pod that existed then is in). */
    readonly synced: Promise<void>;
    stop(): Promise<void>;
    /** Every pod seen, GPU or not, latest state (deleted pods included). */
    allPods(): PodInterval[];
    /** Every scheduled GPU pod; one still holding its GPUs ends at `now`. */
    gpuPods(now?: number): PodInterval[];
}

/**
 * Records every pod of `namespace` from the API server (watched from now on, so that pods the
 * ReplicaSet deletes when the teacher scales down are kept): scheduled (PodScheduled) -> finished
 * (containers' finishedAt, the deletion request, or still running).
 */
export function gpuTimeline(kubeconfig: string, namespace: string, gpuResource = "amd.com/gpu"): GpuTimeline {
    const timeline = new PodTimeline(gpuResource);
    const w = watchPods(loadKubeConfig(kubeconfig), namespace, undefined, (type, pod) => timeline.record(type, pod));
    return {
        synced: w.synced,
        stop: async () => w.stop(),
        allPods: () => timeline.all(),
        gpuPods: (now) => timeline.gpuPods(now),
    };
}

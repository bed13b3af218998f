// The as-soon-as-possible schedule of the stage DAG and its critical path: the estimator's plan
// (scripts/estimate.ts, printed by `rehearse`) and the e2e tier's bound on a simulated makespan both
// come from here. Pure.

/** A DAG node as far as scheduling goes (components/graph.ts StageNode fits). */
export interface DagNode {
    readonly id: string;
    readonly deps: readonly string[];
}

export interface CriticalPath {
    /** Length of the longest path: the makespan with unlimited GPUs and engine slots. */
    seconds: number;
    /** The chain of nodes that decides it, first to last. */
    path: { id: string; seconds: number }[];
    /** Every node's start and end in that schedule. */
    times: Map<string, { start: number; end: number }>;
}

/**
 * Every node starts when the last node it waits for ends; `nodes` lists each dependency before its
 * dependents (stageGraph does). On a tie the path follows the node listed first.
 */
export function criticalPath<N extends DagNode>(nodes: readonly N[], seconds: (n: N) => number): CriticalPath {
    const times = new Map<string, { start: number; end: number }>();
    for (const n of nodes) {
        let start = 0;
        for (const d of n.deps) {
            const t = times.get(d);
            if (!t) throw new Error(`${n.id} depends on ${d}, which comes later or is missing`);
            start = Math.max(start, t.end);
        }
        times.set(n.id, { start, end: start + seconds(n) });
    }
    const makespan = Math.max(0, ...[...times.values()].map((t) => t.end));
    const path: { id: string; seconds: number }[] = [];
    let cur = nodes.find((n) => times.get(n.id)!.end === makespan);
    while (cur) {
        const t = times.get(cur.id)!;
        path.unshift({ id: cur.id, seconds: seconds(cur) });
        const deps = cur.deps;
        // walk back through the dependency that ended exactly when this node started
        cur = t.start > 0 ? nodes.find((n) => deps.includes(n.id) && times.get(n.id)!.end === t.start) : undefined;
    }
    return { seconds: makespan, path, times };
}

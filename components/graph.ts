// The stage DAG as data: which stage nodes this update creates and which nodes each waits for.
// The Pipeline wires exactly these edges with `dependsOn`; tests assert on them.
import { ModelRef, Settings } from "../config";

/** download:<size> | teacher | generate | train:<variant> | sample:<model> | evaluate:<model> | report */
export type NodeId = string;

export function stageGraph(s: Settings): Map<NodeId, NodeId[]> {
    const g = new Map<NodeId, NodeId[]>();
    const st = s.stages;
    const has = (id: NodeId) => g.has(id);
    const deps = (...ids: NodeId[]) => ids.filter(has);

    if (st.download) for (const m of s.neededModels) g.set(`download:${m}`, []);
    if (st.teacher) g.set("teacher", deps("download:90b"));
    if (st.generate) g.set("generate", deps("teacher"));
    for (const [name, v] of s.trainings) g.set(`train:${name}`, deps("generate", `download:${v.model}`));
    // Base models need only their download; tuned ones wait for their fine-tune when it runs in this update.
    const producer = (r: ModelRef) => (r.trainVariant ? `train:${r.trainVariant}` : `download:${r.size}`);
    for (const r of s.samples) g.set(`sample:${r.name}`, deps(producer(r)));
    for (const r of s.evaluations) g.set(`evaluate:${r.name}`, deps(producer(r)));
    if (st.report) {
        g.set("report", [...g.keys()].filter((k) => k.startsWith("evaluate:") || k.startsWith("sample:")));
    }
    return g;
}

// The stage DAG as data: which stage nodes this update creates, what each carries (the model size,
// train variant or model it works on) and which nodes it waits for. The Pipeline wires exactly these
// edges with `dependsOn`; tests assert on them.
import { ModelRef, ModelSize, Settings, TrainVariant } from "../config";

/** download:<size> | teacher | generate | train:<variant> | sample:<model> | evaluate:<model> | report | benchmark:<variant> */
export type NodeId = string;

interface Edges {
    readonly id: NodeId;
    /** Nodes of this update it waits for, in order. */
    readonly deps: NodeId[];
}

export type StageNode = Edges & (
    | { readonly kind: "download"; readonly size: ModelSize }
    | { readonly kind: "teacher" }
    | { readonly kind: "generate" }
    | { readonly kind: "train" | "benchmark"; readonly variant: string; readonly train: TrainVariant }
    | { readonly kind: "sample" | "evaluate"; readonly model: ModelRef }
    | { readonly kind: "report" }
);

/** The nodes of this update in an order where every dependency comes first. Edges to stages that an
 * earlier update ran are dropped: their Jobs check the volume instead. */
export function stageGraph(s: Settings): StageNode[] {
    const nodes: StageNode[] = [];
    const has = (id: NodeId) => nodes.some((n) => n.id === id);
    const deps = (...ids: NodeId[]) => ids.filter(has);
    const st = s.stages;

    if (st.download) for (const size of s.neededModels) nodes.push({ kind: "download", id: `download:${size}`, size, deps: [] });
    if (st.teacher) nodes.push({ kind: "teacher", id: "teacher", deps: deps("download:90b") });
    if (st.generate) nodes.push({ kind: "generate", id: "generate", deps: deps("teacher") });
    for (const [variant, train] of s.trainings) {
        nodes.push({ kind: "train", id: `train:${variant}`, variant, train, deps: deps("generate", `download:${train.model}`) });
    }
    // Base models need only their download; tuned ones wait for their fine-tune when it runs in this update.
    const producer = (r: ModelRef) => (r.trainVariant ? `train:${r.trainVariant}` : `download:${r.size}`);
    for (const model of s.samples) nodes.push({ kind: "sample", id: `sample:${model.name}`, model, deps: deps(producer(model)) });
    for (const model of s.evaluations) nodes.push({ kind: "evaluate", id: `evaluate:${model.name}`, model, deps: deps(producer(model)) });
    // Random weights, no dataset: the benchmark waits for nothing.
    if (st.benchmark) {
        for (const [variant, train] of Object.entries(s.train.variants).filter(([, v]) => v.enabled)) {
            nodes.push({ kind: "benchmark", id: `benchmark:${variant}`, variant, train, deps: [] });
        }
    }
    if (st.report) {
        const reads = nodes.filter((n) => n.kind === "evaluate" || n.kind === "sample").map((n) => n.id);
        nodes.push({ kind: "report", id: "report", deps: reads });
    }
    return nodes;
}

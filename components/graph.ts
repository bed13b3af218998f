// The stage DAG as data: which stage nodes this update creates, what each carries (the model size,
// train variant or model it works on) and which nodes it waits for. The Pipeline wires exactly these
// edges; tests assert on them. renderedGraph adds what each node's stage mounts and names its output
// by, rendered once per update, so no stage looks itself up by name.
import { ModelRef, ModelSize, Settings, StageName, TrainVariant } from "../config";
import { Identities } from "./identity";
import { Recipes } from "./recipes";

/** download:<size> | teacher | generate | train:<variant> | sample:<model> | evaluate:<model> | report | benchmark:<variant> */
export type NodeId = string;

interface Edges {
    readonly id: NodeId;
    /** Nodes of this update it waits for, in order. */
    readonly deps: NodeId[];
}

/** What a node of each stage works on. */
interface Subjects {
    download: { readonly size: ModelSize };
    teacher: {};
    generate: {};
    train: { readonly variant: string; readonly train: TrainVariant };
    benchmark: { readonly variant: string; readonly train: TrainVariant };
    sample: { readonly model: ModelRef };
    evaluate: { readonly model: ModelRef };
    report: {};
}

/** A node of stage K (any stage: the union, narrowed by `kind`). */
export type StageNode<K extends StageName = StageName> = K extends StageName ? Edges & { readonly kind: K } & Subjects[K] : never;

/** What a node's stage mounts and names its Job by, beyond its subject. */
interface Work {
    download: {};
    teacher: {};
    /** The synthetic-data-kit config; the dataset's identity. */
    generate: { readonly recipe: string; readonly identity: string };
    /** Its train.yaml; the fine-tune's identity. */
    train: { readonly recipe: string; readonly identity: string };
    /** The train.yaml of the fine-tune it measures. */
    benchmark: { readonly recipe: string };
    /** Its generate.yaml / eval.yaml; the identity of the model it reads (base repo or fine-tune). */
    sample: { readonly recipe: string; readonly reads: string };
    evaluate: { readonly recipe: string; readonly reads: string };
    report: {};
}

export type RenderedNode<K extends StageName = StageName> = K extends StageName ? StageNode<K> & Work[K] : never;

/** Each stage's work, from the update's rendered recipes and identities. */
const WORK: { readonly [K in StageName]: (n: StageNode<K>, r: Recipes, ids: Identities) => Work[K] } = {
    download: () => ({}),
    teacher: () => ({}),
    generate: (_n, r, ids) => ({ recipe: r.sdk, identity: ids.dataset }),
    train: (n, r, ids) => ({ recipe: r.train[n.variant], identity: ids.train[n.variant] }),
    benchmark: (n, r) => ({ recipe: r.train[n.variant] }),
    sample: (n, r, ids) => ({ recipe: r.sample[n.model.name], reads: ids.model(n.model) }),
    evaluate: (n, r, ids) => ({ recipe: r.evaluate[n.model.name], reads: ids.model(n.model) }),
    report: () => ({}),
};

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

/** stageGraph's nodes with their work attached: what the Pipeline builds one component per node from. */
export function renderedGraph(s: Settings, recipes: Recipes, ids: Identities): RenderedNode[] {
    return stageGraph(s).map(<K extends StageName>(n: StageNode<K>) => {
        const work = WORK[n.kind as K] as (n: StageNode<K>, r: Recipes, ids: Identities) => Work[K];
        return { ...n, ...work(n, recipes, ids) } as RenderedNode<K>;
    });
}

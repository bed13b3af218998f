// The stage DAG, re-run visibility (names carry hashes) and the report's inputs.
import { describe, expect, it } from "vitest";
import { renderedGraph, RenderedNode, stageGraph } from "../../components/graph";
import { stageIdentities } from "../../components/identity";
import { configuredImages } from "../../components/images";
import { STAGE_COMPONENTS, stageComponentName } from "../../components/pipeline";
import { renderRecipes } from "../../components/recipes";
import { Settings, STAGE_NAMES } from "../../config";

/** The DAG as `{ id: deps }`. */
const edges = (s: Settings) => Object.fromEntries(stageGraph(s).map((n) => [n.id, n.deps]));
import { reportSpec } from "../../components/report";
import { argOf, container, render, settings } from "./helpers";
import { LABELS, selector } from "../../contract";

describe("stage DAG", () => {
    it("orders downloads -> teacher -> generation -> fine-tunes -> tuned reads -> report; base reads after downloads", () => {
        const g = edges(settings());
        expect(g).toEqual({
            "download:11b": [],
            "download:90b": [],
            teacher: ["download:90b"],
            generate: ["teacher"],
            "train:lora-11b": ["generate", "download:11b"],
            "train:qlora-90b": ["generate", "download:90b"],
            "sample:base-11b": ["download:11b"],
            "sample:lora-11b": ["train:lora-11b"],
            "sample:base-90b": ["download:90b"],
            "sample:qlora-90b": ["train:qlora-90b"],
            "evaluate:base-11b": ["download:11b"],
            "evaluate:lora-11b": ["train:lora-11b"],
            "evaluate:base-90b": ["download:90b"],
            "evaluate:qlora-90b": ["train:qlora-90b"],
            report: ["sample:base-11b", "sample:lora-11b", "sample:base-90b", "sample:qlora-90b", "evaluate:base-11b", "evaluate:lora-11b", "evaluate:base-90b", "evaluate:qlora-90b"],
        });
    });
    it("drops edges to stages that an earlier update ran: their Jobs check the volume instead", () => {
        const g = edges(settings({ stages: { download: false, teacher: false, generate: false } }));
        expect(g["train:lora-11b"]).toEqual([]);
        expect(g["evaluate:base-90b"]).toEqual([]);
        expect(g).not.toHaveProperty("teacher");
    });
    it("lists nodes in an order where every dependency comes first", () => {
        const seen = new Set<string>();
        for (const n of stageGraph(settings())) {
            for (const d of n.deps) expect(seen.has(d)).toBe(true);
            seen.add(n.id);
        }
    });
    it("carries what each stage works on, typed: no ids to parse again", () => {
        const nodes = stageGraph(settings());
        const train = nodes.find((n) => n.id === "train:qlora-90b");
        expect(train).toMatchObject({ kind: "train", variant: "qlora-90b", train: { model: "90b", method: "qlora" } });
        expect(nodes.find((n) => n.id === "evaluate:lora-11b")).toMatchObject({ kind: "evaluate", model: { name: "lora-11b", size: "11b", trainVariant: "lora-11b" } });
        expect(nodes.find((n) => n.id === "download:90b")).toMatchObject({ kind: "download", size: "90b" });
    });
});

describe("re-runs are visible: a Job's name changes exactly when its inputs do", async () => {
    const names = async (raw: Record<string, unknown>) =>
        Object.fromEntries((await render(settings(raw))).byKind("Job").map((j) => [`${j.metadata.labels[LABELS.stage]}/${j.metadata.labels[LABELS.variant] ?? ""}`, j.metadata.name]));
    const base = await names({});

    it("an unchanged stack renders identical names", async () => {
        expect(await names({})).toEqual(base);
    });
    it("a generation setting changes generation and everything downstream of the dataset only", async () => {
        const changed = await names({ generate: { temperature: 0.4 } });
        const diff = Object.keys(base).filter((k) => base[k] !== changed[k]).sort();
        expect(diff).toEqual([
            "evaluate/lora-11b", "evaluate/qlora-90b", "generate/cot", "report/",
            "sample/lora-11b", "sample/qlora-90b", "train/lora-11b", "train/qlora-90b",
        ]);
    });
    it("a fine-tune setting changes that fine-tune, its readers and the report", async () => {
        const changed = await names({ train: { variants: { "lora-11b": { model: "11b", method: "lora", epochs: 10, batchSize: 16, gradientAccumulationSteps: 1, loraRank: 32, loraAlpha: 64 }, "qlora-90b": { model: "90b", method: "qlora", loraRank: 8, loraAlpha: 16, epochs: 3, batchSize: 2, gradientAccumulationSteps: 8 } } } });
        const diff = Object.keys(base).filter((k) => base[k] !== changed[k]).sort();
        expect(diff).toEqual(["evaluate/lora-11b", "report/", "sample/lora-11b", "train/lora-11b"]);
    });
    it("the train Job passes its hash, so the volume's completion marker is bound to this config", async () => {
        const r = await render(settings());
        const j = r.job("train", "lora-11b");
        expect(argOf(container(j).args, "--config-hash")).toBe(j.metadata.labels[LABELS.hash]);
    });
});

describe("report", async () => {
    const s = settings();
    const r = await render(s);
    it("compares the evaluated variants, headline tuned 11B over base 90B", () => {
        expect(reportSpec(s)).toMatchObject({
            run: "blog", metric: "exact_match", tasks: ["chartqa"], jobSelector: selector({ [LABELS.run]: "blog" }),
            headline: { numerator: "lora-11b", denominator: "base-90b" },
        });
        expect(reportSpec(s).variants.map((v) => v.name)).toEqual(["base-11b", "lora-11b", "base-90b", "qlora-90b"]);
        expect(JSON.parse(r.configOf(r.job("report"))["report.json"])).toEqual(JSON.parse(JSON.stringify(reportSpec(s))));
    });
    it("reads evaluations from the results volume and Jobs through a read-only role (plus its headline ConfigMap)", () => {
        const args = container(r.job("report")).args;
        expect(argOf(args, "--eval-dir")).toBe("/results/blog/eval");
        expect(argOf(args, "--out")).toBe("/results/blog/report");
        expect(r.byKind("Role").find((x) => x.metadata.name === "blog-report")!.rules).toEqual([
            { apiGroups: ["batch"], resources: ["jobs"], verbs: ["get", "list"] },
            { apiGroups: [""], resources: ["configmaps"], resourceNames: ["blog-report"], verbs: ["patch"] },
        ]);
        expect(r.job("report").spec.template.spec.serviceAccountName).toBe("blog-report");
    });
    it("has no headline when the stack does not evaluate both sides of it", () => {
        expect(reportSpec(settings({ evaluate: { variants: ["base-11b"] } })).headline).toBeNull();
    });
});

describe("adding a stage: its own file, graph.ts, contract.ts's STAGES and its STAGE_COMPONENTS row", async () => {
    const s = settings({ stages: { benchmark: true } });
    const recipes = renderRecipes(s);
    const nodes = renderedGraph(s, recipes, stageIdentities(s, recipes, configuredImages(s).ids));
    const r = await render(s);
    it("every stage of STAGES has a component class and nodes in the graph", () => {
        for (const stage of STAGE_NAMES) {
            expect([stage, typeof STAGE_COMPONENTS[stage]]).toEqual([stage, "function"]);
            expect(nodes.some((n) => n.kind === stage)).toBe(true);
        }
    });
    it("builds one component per node, named from STAGES; its Job waits for the node's upstream", () => {
        const components = r.reg.filter((x) => x.type.startsWith("cot-vr:stages:"));
        // Sorted: components with aliases register later under the mocks.
        expect(components.map((c) => c.name).sort()).toEqual(nodes.map((n) => stageComponentName("cot-vr", n)).sort());
        const train = nodes.find((n) => n.id === "train:lora-11b")!;
        expect(r.reg.find((x) => x.name === "cot-vr-train-lora-11b-job")!.dependsOn)
            .toEqual(train.deps.map((d) => (d === "generate" ? "cot-vr-generate-job" : "cot-vr-download-11b-job")));
    });
    it("nodes carry their rendered config and identity: no stage looks itself up by name", () => {
        const train = nodes.find((n) => n.id === "train:lora-11b") as RenderedNode<"train">;
        expect(train.recipe).toBe(recipes.train["lora-11b"]);
        const j = r.job("train", "lora-11b");
        expect(j.metadata.labels[LABELS.hash]).toBe(train.identity);
        expect(r.configOf(j)["train.yaml"]).toBe(train.recipe);
        expect(nodes.find((n) => n.id === "evaluate:lora-11b")).toMatchObject({ reads: train.identity });
    });
});

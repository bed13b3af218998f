// The identity of each stage's output: a short hash of everything that decides it. Job names carry
// these hashes (naming.ts), so `pulumi preview` shows a replace exactly when a stage's inputs changed,
// and a consumer's hash includes its producer's. Computed once per update, from the rendered recipes.
import { ModelRef, Settings } from "../config";
import { shortHash } from "./naming";
import { Recipes } from "./recipes";

/** Plain identities of the images (config ref, or repo:content-hash when built). */
export interface ImageIds {
    readonly trainer: string;
    readonly datagen: string;
    readonly vllm: string;
}

export interface Identities {
    /** The CoT dataset: source, splits, limit, folder, generator config, teacher model. */
    readonly dataset: string;
    /** Each defined fine-tune: its config, its dataset and the trainer image. */
    readonly train: Readonly<Record<string, string>>;
    /** What a sample or evaluation reads: the base repo, or the fine-tune's hash. */
    model(ref: ModelRef): string;
}

export function stageIdentities(s: Settings, recipes: Recipes, images: ImageIds): Identities {
    const g = s.generate;
    const dataset = shortHash("dataset", g.source, g.inputSplit, g.outputSplit, g.limit ?? null, g.datasetName, recipes.sdk, s.teacher.servedModelName, s.models["90b"]);
    // The GPU count joins a fine-tune's hash only when it is not the blog's one, so one-GPU runs keep theirs.
    const gpus = (n: string) => (s.train.variants[n].gpus > 1 ? [`gpus=${s.train.variants[n].gpus}`] : []);
    const train = Object.fromEntries(Object.keys(s.train.variants).map((n) => [n, shortHash("train", n, recipes.train[n], dataset, images.trainer, ...gpus(n))]));
    return {
        dataset,
        train,
        model: (ref) => (ref.trainVariant ? train[ref.trainVariant] : s.models[ref.size]),
    };
}

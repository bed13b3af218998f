"""The configs the Pulumi program hands to the upstream tools, for the tests to check.

With COTVR_RENDER_DIR set (test/python/run.sh renders every stacks/Pulumi.*.yaml with
`npm run render` into <dir>/<stack>/), they are read from the rendered ConfigMaps: label
the stage label in {train, sample, evaluate} with data keys train.yaml / generate.yaml /
eval.yaml, and stage `generate` with sdk.yaml. Without it (render not there yet) they are
the templates in manifests/ with the blog's overrides applied here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from cotvr_contract import LABEL_STAGE, LABEL_VARIANT

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
STAGE_KEYS = {"train": "train.yaml", "sample": "generate.yaml", "evaluate": "eval.yaml", "generate": "sdk.yaml"}


@dataclass(frozen=True)
class RenderedConfig:
    id: str  # e.g. "blog/train/lora-11b" or "template/11B_lora_single_device"
    stage: str  # train | sample | evaluate | generate
    key: str  # train.yaml | generate.yaml | eval.yaml | sdk.yaml
    text: str
    variant: str | None = None
    recipe: str | None = None  # train: the recipe its Job runs (--recipe), e.g. lora_finetune_distributed

    def load(self) -> dict[str, Any]:
        data = yaml.safe_load(self.text)
        assert isinstance(data, dict), f"{self.id}: {self.key} is not a mapping"
        return data


def render_root() -> Path | None:
    value = os.environ.get("COTVR_RENDER_DIR")
    return Path(value) if value else None


def _iter_docs(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for doc in yaml.safe_load_all(handle):
            if isinstance(doc, dict):
                yield doc


def _job_recipes(docs: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], str]:
    """(stack, ConfigMap name) -> the `--recipe` of the Job that mounts it."""
    found: dict[tuple[str, str], str] = {}
    for stack, doc in docs:
        if doc.get("kind") != "Job":
            continue
        pod = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        args = [str(a) for c in pod.get("containers") or [] for a in c.get("args") or []]
        if "--recipe" not in args:
            continue
        recipe = args[args.index("--recipe") + 1]
        for volume in pod.get("volumes") or []:
            name = (volume.get("configMap") or {}).get("name")
            if name:
                found[(stack, name)] = recipe
    return found


def rendered_configs(root: Path) -> list[RenderedConfig]:
    found: list[RenderedConfig] = []
    files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file())
    all_docs: list[tuple[str, dict[str, Any]]] = []
    for path in files:
        stack = path.relative_to(root).parts[0]
        try:
            all_docs.extend((stack, doc) for doc in _iter_docs(path))
        except yaml.YAMLError:
            continue
    recipes = _job_recipes(all_docs)
    for stack, doc in all_docs:
        if doc.get("kind") != "ConfigMap":
            continue
        labels = (doc.get("metadata") or {}).get("labels") or {}
        stage = labels.get(LABEL_STAGE)
        key = STAGE_KEYS.get(stage or "")
        data = doc.get("data") or {}
        if key and key in data:
            variant = labels.get(LABEL_VARIANT)
            name = (doc.get("metadata") or {}).get("name") or variant or stage
            recipe = recipes.get((stack, name)) if stage == "train" else None
            found.append(RenderedConfig(f"{stack}/{stage}/{variant or name}", stage, key, data[key], variant, recipe))
    return found


# ------------------------------------------------------------------ templates + blog overrides

BLOG_DATASET = {
    "_component_": "torchtune.datasets.multimodal.vqa_dataset",
    "source": "/data/cot_chartqa",
    "packed": False,
    "column_map": {"input": "query", "image": "image", "output": "label"},
}


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    node = cfg
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _template(name: str) -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / "torchtune" / name).read_text(encoding="utf-8"))


def _with(base: dict[str, Any], overrides: dict[str, Any]) -> str:
    import copy

    cfg = copy.deepcopy(base)
    for key, value in overrides.items():
        _set(cfg, key, value)
    return yaml.safe_dump(cfg, sort_keys=False)


def template_configs() -> list[RenderedConfig]:
    system = (MANIFESTS / "prompts" / "chartqa-system.txt").read_text(encoding="utf-8")
    m11, m90 = "/models/Llama-3.2-11B-Vision-Instruct", "/models/Llama-3.2-90B-Vision-Instruct"
    ck11, ck90 = "/checkpoints/blog/lora-11b", "/checkpoints/blog/qlora-90b"
    configs = [
        RenderedConfig("template/train/lora-11b", "train", "train.yaml", _with(_template("11B_lora_single_device.yaml"), {
            "output_dir": ck11, "checkpointer.checkpoint_dir": m11, "tokenizer.path": f"{m11}/original/tokenizer.model",
            "model.lora_rank": 16, "model.lora_alpha": 32, "dataset": BLOG_DATASET,
            "epochs": 10, "batch_size": 16, "gradient_accumulation_steps": 1,
        }), "lora-11b"),
        RenderedConfig("template/train/qlora-90b", "train", "train.yaml", _with(_template("90B_qlora.yaml"), {
            "output_dir": ck90, "checkpointer.checkpoint_dir": m90, "tokenizer.path": f"{m90}/original/tokenizer.model",
            "dataset": BLOG_DATASET, "seed": 42, "shuffle": True,
            "epochs": 3, "batch_size": 2, "gradient_accumulation_steps": 8,
        }), "qlora-90b"),
        # On 8 GPUs: the packaged multi-device config, micro-batch 2 x accumulation 1 x 8 ranks.
        RenderedConfig("template/train/lora-11b-8gpus", "train", "train.yaml", _with(_template("11B_lora.yaml"), {
            "output_dir": ck11, "checkpointer.checkpoint_dir": m11, "tokenizer.path": f"{m11}/original/tokenizer.model",
            "model.lora_rank": 16, "model.lora_alpha": 32, "dataset": BLOG_DATASET,
            "epochs": 10, "batch_size": 2, "gradient_accumulation_steps": 1,
        }), "lora-11b", "lora_finetune_distributed"),
    ]
    gen = _template("11B_generation_v2.yaml")
    gen_common = {"prompt.system": system, "prompt.user.image": "/results/blog/samples/x.png",
                  "prompt.user.text": "How many monthly sessions per user did Netflix have?",
                  "max_new_tokens": 200, "temperature": 0.6, "top_k": 300}
    ev = _template("11B_evaluation.yaml")
    size90 = {"model._component_": "torchtune.models.llama3_2_vision.llama3_2_vision_90b",
              "tokenizer.path": f"{m90}/original/tokenizer.model",
              "checkpointer.checkpoint_files.max_filename": "00037"}
    for stage, key, base, extra in (("sample", "generate.yaml", gen, gen_common), ("evaluate", "eval.yaml", ev, {"tasks": ["chartqa"]})):
        configs += [
            RenderedConfig(f"template/{stage}/base-11b", stage, key, _with(base, {**extra, "checkpointer.checkpoint_dir": m11, "tokenizer.path": f"{m11}/original/tokenizer.model"}), "base-11b"),
            RenderedConfig(f"template/{stage}/lora-11b", stage, key, _with(base, {**extra, "checkpointer.checkpoint_dir": f"{ck11}/epoch_9", "tokenizer.path": f"{m11}/original/tokenizer.model"}), "lora-11b"),
            RenderedConfig(f"template/{stage}/base-90b", stage, key, _with(base, {**extra, **size90, "checkpointer.checkpoint_dir": m90}), "base-90b"),
            RenderedConfig(f"template/{stage}/qlora-90b", stage, key, _with(base, {**extra, **size90, "checkpointer.checkpoint_dir": f"{ck90}/epoch_2"}), "qlora-90b"),
        ]
    sdk = MANIFESTS / "synthetic-data-kit" / "config.yaml"
    configs.append(RenderedConfig("template/generate/sdk", "generate", "sdk.yaml", sdk.read_text(encoding="utf-8")))
    return configs


def all_configs() -> list[RenderedConfig]:
    root = render_root()
    if root is None:
        return template_configs()
    found = rendered_configs(root)
    assert found, f"COTVR_RENDER_DIR={root} holds no ConfigMap with a {LABEL_STAGE} label and a config key"
    return found


def torchtune_configs() -> list[RenderedConfig]:
    return [c for c in all_configs() if c.stage in ("train", "sample", "evaluate")]


def sdk_configs() -> list[RenderedConfig]:
    return [c for c in all_configs() if c.stage == "generate"]

"""The fake hub's files: the two Llama 3.2 Vision repos laid out as on the Hub (config.json,
original/tokenizer.model, 5 or 37 safetensors shards and their index, the original/consolidated*.pth
the download must skip) and a ChartQA-shaped dataset repo (parquet files per split, a README whose
`configs:` names the splits train/val/test as HuggingFaceM4/ChartQA's does).

The 11B repo is a real tiny checkpoint: test/python/tinyvision.py's `tiny_llama3_2_vision()` (seed 0)
converted to Hugging Face's Mllama names by torchtune 0.6.1's own `llama3_vision_tune_to_hf`, stored
bf16 in `model-0000N-of-00005.safetensors` with its index, and a config.json whose `text_config` /
`vision_config` carry the keys torchtune's FullModelHFCheckpointer (LLAMA3_VISION) reads. It loads
into `tiny_llama3_2_vision()` / `tiny_lora_llama3_2_vision()` (image_size 112), so the fine-tune,
sample and eval stages can run on it (test/python/test_hub_content.py). The 90B repo's 37 shards are
valid safetensors files of one small tensor each: the downloads and their checks run on them; they
are not weights a model can be built from (nothing loads the 90B here).
`original/tokenizer.model` is a byte-level tiktoken file (the 256 bytes, no merges) that torchtune's
Llama 3 tokenizer loads.

    python make_content.py OUT_DIR      (needs torch, torchtune, safetensors, datasets, pillow: the
                                         Python tier's venv; imports test/python/tinyvision.py)
"""

import base64
import json
import random
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]  # the repository (this file: test/pods/fakes/hub/)
# repo -> (shards, writer): the 11B as a real tiny checkpoint (the fine-tune loads it), the 90B as dummies.
MODELS = {"meta-llama/Llama-3.2-11B-Vision-Instruct": (5, "tiny"), "meta-llama/Llama-3.2-90B-Vision-Instruct": (37, "dummy")}
SPLITS = {"train": 24, "val": 4, "test": 8}


def safetensors(tensors: dict[str, list[float]]) -> bytes:
    header, data = {}, b""
    for name, values in tensors.items():
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": [len(values)], "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + data


def common_files(d: Path, config: dict) -> None:
    (d / "original").mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config, indent=2))
    # A byte-level tiktoken BPE file (the 256 bytes, no merges): torchtune's Llama 3 tokenizer loads it.
    (d / "original" / "tokenizer.model").write_text("".join(f"{base64.b64encode(bytes([i])).decode()} {i}\n" for i in range(256)))
    (d / "original" / "consolidated.00.pth").write_bytes(b"\0" * 4096)


def dummy_repo(out: Path, repo: str, shards: int) -> None:
    """Valid safetensors shards of one small tensor each: nothing builds a model from them."""
    d = out / "models" / repo
    common_files(d, {"architectures": ["MllamaForConditionalGeneration"], "model_type": "mllama", "fake": True})
    weight_map = {}
    for i in range(1, shards + 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        key = f"layer_{i}.weight"
        (d / name).write_bytes(safetensors({key: [float(i)] * 16}))
        weight_map[key] = name
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 64 * shards}, "weight_map": weight_map}))


# The tiny architecture of test/python/tinyvision.py (_encoder_args/_decoder_args at image_size 112) in
# the terms of HF's Mllama config, which torchtune's checkpointer passes to llama3_vision_{hf_to_tune,tune_to_hf}.
# tinyvision's decoder: 2 layers, fusion_interval 1, so both carry a fusion (cross-attention) layer.
# HF counts a fusion layer as a layer of its own placed before the self-attention layer it is fused
# with: HF layers 0 (cross), 1 (self), 2 (cross), 3 (self) -> cross_attention_layers [0, 2].
TINY_TEXT = {"num_attention_heads": 2, "num_key_value_heads": 1, "hidden_size": 32, "head_dim": 16,
             "vocab_size": 128_256, "cross_attention_layers": [0, 2]}
# max_num_tiles 4: every (h, w) with h * w <= 4, in HF's order (the real 11B config's list).
TINY_VISION = {"hidden_size": 32, "image_size": 112, "max_num_tiles": 4,
               "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]}


SHARDS_11B = 5


def shard_of(key: str) -> int:
    """Which of the 5 shards an HF key goes to (each gets some; the 11B's own split is by size)."""
    if key == "language_model.model.embed_tokens.weight":
        return 1
    if key.startswith("language_model.model.layers."):
        return 2 if int(key.split(".")[3]) < 2 else 3
    if key.startswith("language_model."):  # lm_head, final norm
        return SHARDS_11B
    return SHARDS_11B - 1  # vision_model.*, multi_modal_projector.*


def tiny_repo(out: Path, repo: str, shards: int) -> None:
    """tinyvision's `tiny_llama3_2_vision()` weights as an HF checkpoint of `shards` (5) files."""
    import torch
    from safetensors.torch import save_file
    from torchtune.models.llama3_2_vision._convert_weights import llama3_vision_tune_to_hf

    sys.path.insert(0, str(ROOT / "test" / "python"))
    from tinyvision import tiny_llama3_2_vision

    assert shards == 5, shards
    d = out / "models" / repo
    config = {
        "architectures": ["MllamaForConditionalGeneration"], "model_type": "mllama", "torch_dtype": "bfloat16",
        # exactly the keys torchtune 0.6.1's FullModelHFCheckpointer reads for LLAMA3_VISION (load and save)
        "text_config": TINY_TEXT, "vision_config": TINY_VISION,
    }
    common_files(d, config)
    tune = tiny_llama3_2_vision().state_dict()
    hf = llama3_vision_tune_to_hf(
        tune, num_heads=TINY_TEXT["num_attention_heads"], num_kv_heads=TINY_TEXT["num_key_value_heads"],
        dim=TINY_TEXT["hidden_size"], head_dim=TINY_TEXT["head_dim"], vocab_size=TINY_TEXT["vocab_size"],
        cross_attention_layers=TINY_TEXT["cross_attention_layers"], encoder_dim=TINY_VISION["hidden_size"],
        tile_size=TINY_VISION["image_size"], num_tiles=TINY_VISION["max_num_tiles"],
        supported_aspect_ratios=[tuple(r) for r in TINY_VISION["supported_aspect_ratios"]],
    )
    parts: dict[int, dict[str, torch.Tensor]] = {i: {} for i in range(1, shards + 1)}
    for key, value in hf.items():
        parts[shard_of(key)][key] = value.to(torch.bfloat16).contiguous()
    weight_map, total = {}, 0
    for i, tensors in parts.items():
        assert tensors, f"shard {i} is empty"
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        save_file(tensors, str(d / name), metadata={"format": "pt"})
        for key, value in tensors.items():
            weight_map[key] = name
            total += value.numel() * value.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (d / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def chart(values: list[int], labels: list[str]):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 72), "white")
    draw = ImageDraw.Draw(image)
    width = 96 // (len(values) + 1)
    top = max(values)
    for i, (value, label) in enumerate(zip(values, labels)):
        x0 = 6 + i * width
        height = int(52 * value / top)
        draw.rectangle([x0, 60 - height, x0 + width - 4, 60], fill=(40 + 60 * i, 90, 200))
        draw.text((x0, 61), label[:3], fill="black")
    return image


def chartqa(out: Path) -> None:
    import datasets

    d = out / "datasets" / "HuggingFaceM4" / "ChartQA"
    (d / "data").mkdir(parents=True, exist_ok=True)
    features = datasets.Features({
        "image": datasets.Image(), "query": datasets.Value("string"),
        "label": datasets.Sequence(datasets.Value("string")), "human_or_machine": datasets.ClassLabel(names=["human", "machine"]),
    })
    rng = random.Random(0)
    for split, n in SPLITS.items():
        rows = {"image": [], "query": [], "label": [], "human_or_machine": []}
        for i in range(n):
            labels = ["Netflix", "Hulu", "Disney"]
            values = [rng.randint(1, 40) for _ in labels]
            pick = rng.randrange(len(labels))
            rows["image"].append(chart(values, labels))
            rows["query"].append(f"How many monthly sessions per user did {labels[pick]} have? ({split} chart {i})")
            rows["label"].append([str(values[pick])])
            rows["human_or_machine"].append(i % 2)
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(d / "data" / f"{split}-00000-of-00001.parquet"))
    (d / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n"
        + "".join(f"  - split: {s}\n    path: data/{s}-*\n" for s in SPLITS)
        + "---\n# ChartQA (a small look-alike for tests)\n"
    )


def main() -> int:
    out = Path(sys.argv[1])
    for repo, (shards, kind) in MODELS.items():
        (tiny_repo if kind == "tiny" else dummy_repo)(out, repo, shards)
    chartqa(out)
    print(f"hub content in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

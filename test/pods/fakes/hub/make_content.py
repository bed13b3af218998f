"""The fake hub's files: the two Llama 3.2 Vision repos laid out as on the Hub (config.json,
original/tokenizer.model, N safetensors shards and their index, the original/consolidated*.pth the
download must skip) and a ChartQA-shaped dataset repo (parquet files per split, a README whose
`configs:` names the splits train/val/test as HuggingFaceM4/ChartQA's does).

The shards are valid safetensors files of a few small tensors: the downloads, their checks and the
data stages run on them; they are not weights a model can be built from.

    python make_content.py OUT_DIR      (needs datasets and pillow: the Python tier's venv)
"""

import base64
import json
import random
import struct
import sys
from pathlib import Path

MODELS = {"meta-llama/Llama-3.2-11B-Vision-Instruct": 5, "meta-llama/Llama-3.2-90B-Vision-Instruct": 37}
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


def model_repo(out: Path, repo: str, shards: int) -> None:
    d = out / "models" / repo
    (d / "original").mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"architectures": ["MllamaForConditionalGeneration"], "model_type": "mllama", "fake": True}))
    # A byte-level tiktoken BPE file (the 256 bytes, no merges): torchtune's Llama 3 tokenizer loads it.
    (d / "original" / "tokenizer.model").write_text("".join(f"{base64.b64encode(bytes([i])).decode()} {i}\n" for i in range(256)))
    (d / "original" / "consolidated.00.pth").write_bytes(b"\0" * 4096)
    weight_map = {}
    for i in range(1, shards + 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        key = f"layer_{i}.weight"
        (d / name).write_bytes(safetensors({key: [float(i)] * 16}))
        weight_map[key] = name
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 64 * shards}, "weight_map": weight_map}))


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
    for repo, shards in MODELS.items():
        model_repo(out, repo, shards)
    chartqa(out)
    print(f"hub content in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

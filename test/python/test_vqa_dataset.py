"""The CoT dataset as synthetic-data-kit writes it, read the way training reads it: torchtune
0.6.1's `vqa_dataset` with the blog's column map and the real Llama 3.2 Vision transform.

The real tokenizer.model (gated, 2 MB) cannot be downloaded here; `tiny_tiktoken` is a
byte-level tiktoken file that torchtune's Llama3 tokenizer loads like the real one (its special
tokens sit at 128000+ either way), so the whole transform path -- messages, image tiling,
tokenization, label masking, collation -- runs for real, only with one token per byte."""

from __future__ import annotations

from pathlib import Path

from cotvr_configs import BLOG_DATASET


def test_vqa_dataset_reads_the_cot_dataset(make_cot_dataset, tiny_tiktoken: Path) -> None:
    import datasets
    from torchtune.data import padded_collate_tiled_images_and_mask
    from torchtune.datasets.multimodal import vqa_dataset
    from torchtune.models.llama3_2_vision import llama3_2_vision_transform

    root = make_cot_dataset(3)
    # what generate_cot.py publishes and torchtune's load_dataset(source, split="train") reads
    assert sorted(p.name for p in root.iterdir()) == ["dataset_dict.json", "train"]
    assert len(datasets.load_dataset(str(root), split="train")) == 3

    transform = llama3_2_vision_transform(path=str(tiny_tiktoken), max_seq_len=8192, image_size=560)
    ds = vqa_dataset(transform, source=str(root), column_map=BLOG_DATASET["column_map"], packed=False, split="train")
    assert len(ds) == 3
    sample = ds[0]
    assert {"tokens", "labels", "encoder_input", "encoder_mask"} <= set(sample)
    tokens, labels = sample["tokens"], sample["labels"]
    assert len(tokens) == len(labels) > 0
    # the answer (the CoT label) is trained on, the question is masked
    trained = bytes(t for t, l in zip(tokens, labels) if l != -100 and t < 256).decode("utf-8", "replace")
    assert "Final answer:" in trained
    assert "How many monthly sessions" not in trained
    image = sample["encoder_input"]["images"][0]
    assert image.shape[-2:] == (560, 560)  # tiles of the 560 px image size the configs use

    batch = padded_collate_tiled_images_and_mask([ds[0], ds[1], ds[2]])
    assert batch["tokens"].shape[0] == 3
    assert batch["encoder_input"]["images"].shape[0] == 3


def test_label_must_be_a_string(make_cot_dataset, tiny_tiktoken: Path, tmp_path: Path) -> None:
    """Untransformed ChartQA (label: list[str]) would not train: this is why check_cot.py
    rejects non-string labels."""
    import pytest
    from conftest import chartqa_features, chartqa_rows, write_split_folder
    from torchtune.datasets.multimodal import vqa_dataset
    from torchtune.models.llama3_2_vision import llama3_2_vision_transform

    root = write_split_folder(tmp_path / "raw", {"train": chartqa_rows(2)}, chartqa_features())
    transform = llama3_2_vision_transform(path=str(tiny_tiktoken), max_seq_len=8192)
    ds = vqa_dataset(transform, source=str(root), column_map=BLOG_DATASET["column_map"], split="train")
    with pytest.raises(Exception):
        ds[0]

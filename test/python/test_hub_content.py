"""The pods tier's fake hub content (test/pods/fakes/hub/make_content.py): its 11B repo is a real tiny
checkpoint that torchtune 0.6.1's FullModelHFCheckpointer (LLAMA3_VISION, the 11B's 5-shard naming)
loads into tinyvision's models and saves back, as the fine-tune, sample and eval stages do."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from conftest import REPO

MAKE_CONTENT = REPO / "test" / "pods" / "fakes" / "hub" / "make_content.py"
REPO_11B = "meta-llama/Llama-3.2-11B-Vision-Instruct"
SHARDS = [f"model-{i:05d}-of-00005.safetensors" for i in range(1, 6)]
LORA = dict(lora_attn_modules=["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True, lora_rank=16, lora_alpha=32)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """make_content.py's main, run from its own file (in this process: torchtune is imported once)."""
    out = tmp_path_factory.mktemp("hub") / "content"
    script = runpy.run_path(str(MAKE_CONTENT), run_name="make_content")
    # images.sh runs it with no PYTHONPATH: it must find tinyvision.py from its own path
    assert (script["ROOT"] / "test" / "python" / "tinyvision.py").is_file()
    argv = sys.argv
    try:
        sys.argv = [str(MAKE_CONTENT), str(out)]
        assert script["main"]() == 0
    finally:
        sys.argv = argv
    return out


def checkpointer(ckpt_dir: Path, out: Path):
    from torchtune.training import FullModelHFCheckpointer

    return FullModelHFCheckpointer(
        checkpoint_dir=str(ckpt_dir), output_dir=str(out), model_type="LLAMA3_VISION",
        checkpoint_files={"filename_format": "model-{}-of-{}.safetensors", "max_filename": "00005"},
    )


def reachable_tiles(value):
    """The tile positional embeddings at [i, j] that some aspect ratio of at most 4 tiles uses
    (i == 0 or j == 0 or both < 2): torchtune's hf_to_tune rebuilds those and zero-fills the rest."""
    import torch

    n = value.shape[0]
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    mask = (i == 0) | (j == 0) | ((i < 2) & (j < 2))
    return value * mask.reshape(n, n, *([1] * (value.dim() - 2))).to(value.dtype)


def expected_tune_state() -> dict:
    """tiny_llama3_2_vision()'s state as the hub's bf16 checkpoint gives it back."""
    import torch
    from tinyvision import tiny_llama3_2_vision

    sd = {}
    for key, value in tiny_llama3_2_vision().state_dict().items():
        value = value.to(torch.bfloat16)
        if "tile_pos_embed.embedding" in key or "global_token_positional_embedding" in key:
            value = reachable_tiles(value)
        sd[key] = value
    return sd


def test_11b_repo_is_hf_shaped(hub: Path) -> None:
    from safetensors import safe_open

    d = hub / "models" / REPO_11B
    index = json.loads((d / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == SHARDS
    total, seen = 0, {}
    for shard in SHARDS:
        with safe_open(str(d / shard), framework="pt") as f:
            for key in f.keys():
                t = f.get_tensor(key)
                assert str(t.dtype) == "torch.bfloat16", key
                total += t.numel() * t.element_size()
                seen[key] = shard
    assert seen == index["weight_map"] and index["metadata"]["total_size"] == total
    assert "language_model.model.embed_tokens.weight" in seen and "language_model.lm_head.weight" in seen
    assert "language_model.model.layers.2.cross_attn.q_proj.weight" in seen  # HF numbering: layers 0 and 2 cross
    config = json.loads((d / "config.json").read_text())
    assert config["model_type"] == "mllama" and config["architectures"] == ["MllamaForConditionalGeneration"]
    # the keys torchtune 0.6.1's FullModelHFCheckpointer reads for LLAMA3_VISION, at tinyvision's sizes
    assert config["text_config"] == {"num_attention_heads": 2, "num_key_value_heads": 1, "hidden_size": 32, "head_dim": 16,
                                     "vocab_size": 128_256, "cross_attention_layers": [0, 2]}
    assert config["vision_config"] == {"hidden_size": 32, "image_size": 112, "max_num_tiles": 4,
                                       "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]}
    assert (d / "original" / "consolidated.00.pth").is_file()
    # the 90B stays 37 dummy shards
    d90 = hub / "models" / "meta-llama" / "Llama-3.2-90B-Vision-Instruct"
    assert len(list(d90.glob("model-*-of-00037.safetensors"))) == 37 and (d90 / "original" / "tokenizer.model").is_file()


def test_tokenizer_loads_in_the_vision_transform(hub: Path) -> None:
    from torchtune.models.llama3_2_vision import llama3_2_vision_transform

    transform = llama3_2_vision_transform(path=str(hub / "models" / REPO_11B / "original" / "tokenizer.model"), image_size=112)
    assert transform.decode(transform.encode("Hulu 17", add_bos=False, add_eos=False)) == "Hulu 17"


def test_hf_checkpointer_loads_base_and_lora_and_round_trips(hub: Path, tmp_path: Path) -> None:
    import torch
    from torchtune import training
    from torchtune.modules.peft import get_merged_lora_ckpt
    from tinyvision import tiny_llama3_2_vision, tiny_lora_llama3_2_vision

    d = hub / "models" / REPO_11B
    sd = checkpointer(d, tmp_path / "out").load_checkpoint()[training.MODEL_KEY]

    # base: strict, every tensor the tiny model's own (bf16-rounded; unreachable tile embeddings zero)
    base = tiny_llama3_2_vision()
    base.load_state_dict(sd, strict=True)
    expected = expected_tune_state()
    assert sorted(sd) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(sd[key], value), key
    assert all(torch.equal(v.to(torch.bfloat16), expected[k]) for k, v in base.state_dict().items())

    # LoRA (the shipped fine-tune's adapters): the base weights load, only LoRA parameters are missing
    lora = tiny_lora_llama3_2_vision(**LORA).to(torch.bfloat16)
    missing, unexpected = lora.load_state_dict(sd, strict=False)
    assert not unexpected
    assert missing and all(".lora_a." in k or ".lora_b." in k for k in missing), [k for k in missing if "lora" not in k]

    # save as the LoRA recipe does (merged weights, HF format, by the loaded weight map), load again
    ckpt = checkpointer(d, tmp_path / "train-out")
    ckpt.load_checkpoint()
    merged = get_merged_lora_ckpt({k: v.cpu() for k, v in lora.state_dict().items()}, rank=16, alpha=32)
    ckpt.save_checkpoint({training.MODEL_KEY: merged}, epoch=0)
    epoch = tmp_path / "train-out" / "epoch_0"
    assert sorted(p.name for p in epoch.glob("*.safetensors")) == SHARDS
    assert json.loads((epoch / "model.safetensors.index.json").read_text())["weight_map"] == \
        json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]
    assert json.loads((epoch / "config.json").read_text()) == json.loads((d / "config.json").read_text())
    again = checkpointer(epoch, tmp_path / "again").load_checkpoint()[training.MODEL_KEY]
    assert sorted(again) == sorted(sd)
    for key, value in sd.items():
        assert again[key].dtype == torch.bfloat16 and torch.equal(again[key], value), key

"""The fine-tune speed levers against the real torchtune 0.6.1:

- lora_finetune_single_device.patch (adds `compile_encoder`) applies to the recipe `tune cp`
  writes, exactly once, and the patched recipe runs one real optimizer step of the fast settings
  (compile decoder + loss + vision encoder, activation checkpointing off, micro-batch 1 x
  accumulation 2) on a tiny LoRA Llama 3.2 Vision model on CPU;
- bench_finetune.py runs on CPU on the same tiny model from the shipped train config and prints
  its table and one COTVR_BENCH json line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import HERE, TRAINER, run_program
from cotvr_contract import EXIT_MISSING_INPUT
from cotvr_configs import torchtune_configs

PATCH = TRAINER / "lora_finetune_single_device.patch"
BENCH = TRAINER / "bench_finetune.py"
TUNE = str(Path(sys.executable).with_name("tune"))
RECIPE = "lora_finetune_single_device.py"


def shipped_train_config(variant: str = "lora-11b") -> dict:
    cfg = next(c for c in torchtune_configs() if c.stage == "train" and (c.variant in (None, variant)) and variant in c.id)
    return cfg.load()


@pytest.fixture(scope="module")
def tune_cp_recipe(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """What the Dockerfile does: `tune cp lora_finetune_single_device <dir>/recipes/...` (once)."""
    target = tmp_path_factory.mktemp("tunecp") / RECIPE
    proc = subprocess.run([TUNE, "cp", "lora_finetune_single_device", str(target)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return target.read_bytes()


@pytest.fixture()
def patched_recipe(tmp_path: Path, tune_cp_recipe: bytes) -> Path:
    (tmp_path / "recipes").mkdir()
    target = tmp_path / "recipes" / RECIPE
    target.write_bytes(tune_cp_recipe)
    check = subprocess.run(["git", "apply", "--check", "--verbose", str(PATCH)], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    subprocess.run(["git", "apply", str(PATCH)], cwd=tmp_path, check=True)
    return target


def test_patch_applies_once_and_adds_compile_encoder(patched_recipe: Path) -> None:
    again = subprocess.run(["git", "apply", "--check", str(PATCH)], cwd=patched_recipe.parent.parent, capture_output=True, text=True)
    assert again.returncode != 0  # the Dockerfile must not double-apply
    spec = importlib.util.spec_from_file_location("patched_lora_recipe", patched_recipe)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    from tinyvision import tiny_llama3_2_vision
    from torchtune.modules import TransformerSelfAttentionLayer

    model = tiny_llama3_2_vision()
    module.compile_vision_encoder(model)
    enc_layers = [m for m in model.encoder.modules() if isinstance(m, TransformerSelfAttentionLayer)]
    dec_layers = [m for m in model.decoder.modules() if isinstance(m, TransformerSelfAttentionLayer)]
    assert enc_layers and all(m._compiled_call_impl is not None for m in enc_layers)
    assert all(m._compiled_call_impl is None for m in dec_layers)  # the decoder is compile_model's job
    with pytest.raises(ValueError, match="vision model"):
        module.compile_vision_encoder(model.decoder)


@pytest.fixture()
def tiny_lora_checkpoint(tmp_path: Path) -> Path:
    import torch
    from tinyvision import tiny_wide_lora_llama3_2_vision

    folder = tmp_path / "tinyckpt"
    folder.mkdir()
    cfg = shipped_train_config()["model"]
    kwargs = {k: v for k, v in cfg.items() if k not in ("_component_", "image_size")}
    torch.save(tiny_wide_lora_llama3_2_vision(**kwargs).state_dict(), folder / "model.pt")
    return folder


def test_patched_recipe_trains_one_step_with_the_fast_settings(tmp_path: Path, patched_recipe: Path, tiny_lora_checkpoint: Path,
                                                               tiny_tiktoken: Path, make_cot_dataset) -> None:
    cfg = shipped_train_config()
    out = tmp_path / "out"
    cfg["model"]["_component_"] = "tinyvision.tiny_wide_lora_llama3_2_vision"
    cfg["model"]["image_size"] = 112
    cfg["tokenizer"].update({"path": str(tiny_tiktoken), "image_size": 112, "max_seq_len": 512})
    cfg["checkpointer"] = {
        "_component_": "torchtune.training.FullModelTorchTuneCheckpointer", "checkpoint_dir": str(tiny_lora_checkpoint),
        "checkpoint_files": ["model.pt"], "output_dir": str(out), "model_type": "LLAMA3_VISION",
    }
    cfg["dataset"]["source"] = str(make_cot_dataset(4))
    cfg.update({
        "output_dir": str(out), "device": "cpu", "dtype": "bf16", "epochs": 1, "max_steps_per_epoch": 1,
        # the fast settings: compile (decoder + loss) + the patch's encoder compile, no checkpointing,
        # micro-batch x accumulation = the effective batch (2 here)
        "compile": True, "compile_encoder": True, "enable_activation_checkpointing": False,
        "batch_size": 1, "gradient_accumulation_steps": 2, "log_peak_memory_stats": False,
    })
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(HERE), "PYTHONUNBUFFERED": "1",
           # inductor's C++ codegen on a shared 2-core CI box takes minutes; aot_eager runs the same
           # dynamo capture + AOT autograd graphs (what breaks when a module does not compile).
           "TORCH_COMPILE_BACKEND": os.environ.get("COTVR_TEST_COMPILE_BACKEND", "aot_eager")}
    start = time.monotonic()
    # `tune run <file>` would import it as the module `recipes.lora_finetune_single_device`, which is
    # torchtune's own unpatched copy; `python <file>` is what tune run does for its built-in recipes.
    proc = subprocess.run([sys.executable, str(patched_recipe), "--config", str(config)], capture_output=True, text=True, env=env, timeout=1200)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert "Compiling vision encoder layers with torch.compile" in log
    assert "Compiling model layers with torch.compile" in log and "Compiling loss with torch.compile" in log
    assert (out / "epoch_0" / "adapter_model.pt").is_file()  # one optimizer step, then the epoch's save
    print(f"one step of the fast settings on CPU: {time.monotonic() - start:.0f}s")


def bench_config(tmp_path: Path, variant: str, **extra) -> Path:
    cfg = shipped_train_config(variant)
    cfg["model"]["_component_"] = "tinyvision.tiny_wide_lora_llama3_2_vision"
    cfg["model"]["image_size"] = 112
    cfg["tokenizer"]["image_size"] = 112
    cfg.update({"batch_size": 2, "gradient_accumulation_steps": 1, **extra})
    # as the ConfigMap the stack renders: the benchmark Job mounts it as is
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"train.yaml": yaml.safe_dump(cfg)}}
    path = tmp_path / "cm.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def parse_bench(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("COTVR_BENCH ")]
    assert len(lines) == 1, stdout[-3000:]
    return json.loads(lines[0][len("COTVR_BENCH "):])


def test_bench_runs_on_cpu_with_the_tiny_model(tmp_path: Path) -> None:
    config = bench_config(tmp_path, "lora-11b")
    out = tmp_path / "bench.json"
    proc = run_program(BENCH, "--config", str(config), "--device", "cpu", "--settings", "blog,no_ac:m1", "--steps", "1",
                       "--warmup", "1", "--image-sizes", "100x100:1,200x100:1", "--text-tokens", "40:64", "--layers-scale", "0.5",
                       "--device-peak-tflops", "1", "--json-out", str(out), env={"PYTHONPATH": str(HERE)}, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-5000:]
    data = parse_bench(proc.stdout)
    assert json.loads(out.read_text()) == data
    assert data["layers_scale"] == 0.5 and "NOT the full model" in proc.stdout
    assert "layers-scale 0.5: decoder 4 -> 2" in proc.stderr
    assert data["effective_batch"] == 2 and data["epochs"] == shipped_train_config()["epochs"]
    assert data["worst_case"] == {"tiles": 2, "tokens": 64}  # 200x100 -> 2 tiles of 112 (torchtune's own transform)
    assert data["probe"]["flops_per_sample"] > 0
    blog, no_ac = data["results"]
    assert (blog["setting"], blog["micro_batch"], blog["grad_accum"], blog["activation_checkpointing"]) == ("blog", 2, 1, True)
    assert (no_ac["micro_batch"], no_ac["grad_accum"], no_ac["activation_checkpointing"]) == (1, 2, False)
    assert blog["vs_blog"] == 1.0 and no_ac["vs_blog"] > 0
    for r in (blog, no_ac):
        assert r["samples_per_s"] > 0 and r["projected_hours"] > 0 and 0 < r["mfu"]
        assert r["loss_last"] == pytest.approx(11.76, abs=1.0)  # ln(128256): random init, the real loss
    # the same samples and the same math: the accumulated step gives the blog step's loss
    assert no_ac["loss_last"] == pytest.approx(blog["loss_last"], rel=1e-2)
    for head in ("samples/s", "vs blog", "MFU", "peak GB", "hours"):
        assert head in proc.stdout


def test_bench_unit_pieces() -> None:
    import bench_finetune as bench

    assert bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bench.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench.peak_tflops("AMD Instinct MI300X") == 1307.0
    assert bench.peak_tflops("cpu") is None
    # the memory model: largest divisor of the effective batch that fits with the margin
    assert bench.choose_micro_batch(16, 20.0, 16.0, 79.0, 0.15) == 2
    assert bench.choose_micro_batch(16, 20.0, 16.0, 178.0, 0.15) == 8
    assert bench.choose_micro_batch(16, 62.4, 34.0, 79.0, 0.15) == 1  # does not fit: the caller sees the OOM
    assert bench.parse_settings("blog,no_ac:m4") == [("blog", None), ("no_ac:m4", 4)]
    with pytest.raises(Exception, match="unknown setting"):
        bench.parse_settings("fast")


def test_bench_bad_config(tmp_path: Path) -> None:
    proc = run_program(BENCH, "--config", str(tmp_path / "none.yaml"))
    assert proc.returncode == EXIT_MISSING_INPUT and "not found" in proc.stderr

"""The fine-tune speed levers against the real torchtune 0.6.1:

- lora_finetune_single_device.patch (adds `compile_encoder` and `text_bucket`) applies to the recipe `tune cp`
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
from cotvr_contract import EXIT_BAD_ARGS, EXIT_MISSING_INPUT
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


def test_recipe_text_bucket_pads_as_the_benchmark(patched_recipe: Path) -> None:
    """The patched recipe's `text_bucket` collate gives the benchmark's bucketed micro-batches, tensor
    for tensor; 1 is torchtune's own collate; bad values name the key and what is allowed."""
    import torch
    import bench_finetune as bench
    from torchtune.data import padded_collate_tiled_images_and_mask as collate

    spec = importlib.util.spec_from_file_location("patched_lora_recipe_bucket", patched_recipe)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    samples = [fake_sample(1, 40), fake_sample(2, 70)]
    for bucket in (1, 32, 128):
        got = module.bucketed_collate(collate, [dict(s) for s in samples], bucket=bucket, padding_idx=0, ignore_idx=-100)
        want = bench.split([dict(s) for s in samples], 2, -100, text_bucket=bucket)[0]
        assert got["tokens"].shape[1] == bench.bucket_length(70, bucket)
        for key in ("tokens", "labels", "encoder_mask"):
            assert torch.equal(got[key], want[key]), key
        assert torch.equal(got["encoder_input"]["images"], want["encoder_input"]["images"])
    plain = collate([dict(s) for s in samples], padding_idx=0, ignore_idx=-100)
    assert torch.equal(module.bucketed_collate(collate, [dict(s) for s in samples], bucket=1, padding_idx=0, ignore_idx=-100)["tokens"], plain["tokens"])
    assert module.check_text_bucket(128) == 128
    for bad in (0, -1, "128", True, 1.5):
        with pytest.raises(ValueError, match="text_bucket: .* whole number of tokens >= 1"):
            module.check_text_bucket(bad)


def test_exact_tiles_encodes_each_row_as_batch_size_1(patched_recipe: Path) -> None:
    """exact_tiles: each row of a micro-batch gets the encoding it gets alone (its real tiles only),
    zeros where the collate padded tiles (hidden by the cross-attention mask); the padded encoder
    gives something else (torchtune 0.6.1 has no tile mask). Same with or without the host's tile
    counts (note_tiles); the collate orders rows by tiles, the same samples; a whole training step's
    loss at micro-batch 3 matches micro-batch 1's (accumulated) loss."""
    import torch
    import bench_finetune as bench
    from tinyvision import TILE, tiny_llama3_2_vision
    from torchtune.data import padded_collate_tiled_images_and_mask as collate

    spec = importlib.util.spec_from_file_location("patched_lora_recipe_exact", patched_recipe)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)

    def sample(tiles: int, n_text: int) -> dict:
        s = fake_sample(tiles, n_text)
        s["encoder_input"]["images"] = [torch.randn(tiles, 3, TILE, TILE)]
        s["encoder_mask"] = [torch.ones(n_text, tiles * ((TILE // 14) ** 2 + 1), dtype=torch.bool)]
        return s

    samples = [sample(2, 20), sample(1, 30), sample(4, 25), sample(2, 22)]
    batch = module.bucketed_collate(collate, [dict(s) for s in samples], bucket=1, padding_idx=0, ignore_idx=-100, sort_tiles=True)
    order = [int(t) for t in batch["encoder_input"]["aspect_ratio"].prod(-1).amax(-1)]
    assert order == [1, 2, 2, 4]  # sorted by tiles, stable
    model = tiny_llama3_2_vision().eval()
    with torch.no_grad():
        padded = model.encoder(**batch["encoder_input"])
        alone = [model.encoder(**collate([s], padding_idx=0, ignore_idx=-100)["encoder_input"])
                 for s in sorted(samples, key=module.sample_tiles)]
        module.exact_tiles_encoder(model)
        read_back = model.encoder(**batch["encoder_input"])
        module.note_tiles(model, batch)
        noted = model.encoder(**batch["encoder_input"])
    assert noted.shape == padded.shape and torch.equal(noted, read_back)
    per_tile = padded.shape[1] // 4
    for row, (k, want) in enumerate(zip(order, alone)):
        assert torch.allclose(noted[row, : k * per_tile], want[0], atol=1e-5), row
        assert not noted[row, k * per_tile :].any()
    assert not torch.allclose(padded[0, :per_tile], alone[0][0], atol=1e-3)  # padding changed the 1-tile row
    assert torch.allclose(noted[3], padded[3], atol=1e-5)  # the row with the most tiles is padded nowhere
    with pytest.raises(ValueError, match="exact_tiles: True needs a vision model"):
        module.exact_tiles_encoder(model.decoder)
    # the benchmark's split orders each micro-batch the same way
    mb = bench.split([dict(s) for s in samples], 4, -100, sort_tiles=True)[0]
    assert torch.equal(mb["encoder_input"]["images"], batch["encoder_input"]["images"])


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
        # micro-batch x accumulation = the effective batch (2 here, one micro-batch)
        "compile": True, "compile_encoder": True, "enable_activation_checkpointing": False,
        "batch_size": 2, "gradient_accumulation_steps": 1, "log_peak_memory_stats": False,
        # the patch's text bucketing: the collate pads each micro-batch's text to a multiple of 32
        "text_bucket": 32,
        # the patch's exact tiles: rows ordered by tiles, the encoder on each row's real tiles
        "exact_tiles": True,
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
    # best:m1 compiles (aot_eager: the same dynamo capture as inductor, without C++ codegen on CI)
    proc = run_program(BENCH, "--config", str(config), "--device", "cpu", "--settings", "blog,no_ac:m1,best:m1", "--steps", "2",
                       "--image-sizes", "100x100:1,200x100:1", "--text-tokens", "40:64", "--text-bucket", "32", "--layers-scale", "0.5",
                       "--device-peak-tflops", "1", "--json-out", str(out),
                       env={"PYTHONPATH": str(HERE), "TORCH_COMPILE_BACKEND": "aot_eager"}, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-5000:]
    data = parse_bench(proc.stdout)
    assert json.loads(out.read_text()) == data
    assert data["layers_scale"] == 0.5 and "NOT the full model" in proc.stdout
    assert "layers-scale 0.5: decoder 4 -> 2" in proc.stderr
    assert data["effective_batch"] == 2 and data["epochs"] == shipped_train_config()["epochs"]
    assert data["worst_case"] == {"tiles": 2, "tokens": 64}  # 200x100 -> 2 tiles of 112 (torchtune's own transform)
    assert data["probe"]["flops_per_sample"] > 0
    assert data["versions"]["torchtune"].startswith("0.6.1") and data["text_bucket"] == 32 and data["steps"] == 2
    blog, no_ac, best = data["results"]
    assert (blog["setting"], blog["micro_batch"], blog["grad_accum"], blog["activation_checkpointing"]) == ("blog", 2, 1, True)
    assert (no_ac["micro_batch"], no_ac["grad_accum"], no_ac["activation_checkpointing"]) == (1, 2, False)
    assert blog["vs_blog"] == 1.0 and no_ac["vs_blog"] > 0
    for r in (blog, no_ac, best):
        assert r["samples_per_s"] > 0 and r["projected_hours"] > 0 and 0 < r["mfu"]
        assert r["loss_last"] == pytest.approx(11.76, abs=1.0)  # ln(128256): random init, the real loss
        assert r["timed_steps"] == 2 and r["shape_classes"] >= 1
        assert r["fallbacks"] == 0 and r["timed_fallbacks"] == 0
    # compiled: every shape class compiled before the timer, nothing compiled inside it
    assert best["warmup_graphs"] > 0 and best["timed_graphs"] == 0 and best["timed_recompiles"] == 0
    assert blog["warmup_graphs"] == 0
    # the same samples and the same math: the accumulated step gives the blog step's loss
    assert no_ac["loss_last"] == pytest.approx(blog["loss_last"], rel=1e-2)
    assert best["loss_last"] == pytest.approx(blog["loss_last"], rel=1e-2)
    for head in ("samples/s", "vs blog", "MFU", "peak GB", "hours", "compile", "fallbk"):
        assert head in proc.stdout
    # one table from runs made apart (one process per setting on the device)
    other = tmp_path / "other.json"
    proc2 = run_program(BENCH, "--config", str(config), "--device", "cpu", "--settings", "no_ac:m1:g", "--steps", "1", "--no-flops",
                        "--image-sizes", "100x100:1,200x100:1", "--text-tokens", "40:64", "--layers-scale", "0.5",
                        "--device-peak-tflops", "1", "--json-out", str(other), env={"PYTHONPATH": str(HERE)}, timeout=1200)
    assert proc2.returncode == 0, proc2.stderr[-5000:]
    merged = tmp_path / "merged.json"
    proc3 = run_program(BENCH, "--merge", str(out), str(other), "--json-out", str(merged), env={"PYTHONPATH": str(HERE)}, timeout=120)
    assert proc3.returncode == 0, proc3.stderr[-3000:]
    m = json.loads(merged.read_text())
    assert [r["setting"] for r in m["results"]] == ["blog", "no_ac:m1", "best:m1", "no_ac:m1:g"]
    assert m["results"][3]["group_tiles"] is True and m["results"][3]["vs_blog"] > 0 and m["results"][3]["mfu"] > 0


def test_bench_unit_pieces() -> None:
    import bench_finetune as bench

    assert bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bench.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench.peak_tflops("AMD Instinct MI300X") == 1307.0
    assert bench.peak_tflops("cpu") is None
    # the memory model: largest divisor of the effective batch that fits with the margin and reserve
    assert bench.choose_micro_batch(16, 20.0, 16.0, 79.0, 0.15) == 2
    assert bench.choose_micro_batch(16, 20.0, 16.0, 178.0, 0.15) == 8
    assert bench.choose_micro_batch(16, 62.4, 34.0, 79.0, 0.15) == 1  # does not fit: the caller sees the OOM
    # calibrated (config/facts.ts): the 90B without checkpointing keeps m=2 on a 141 GiB GPU (measured: 137.7 GiB reserved)
    assert bench.choose_micro_batch(16, 62.6, 36.1, 141.0, bench.ACT_MARGIN) == 2
    assert bench.choose_micro_batch(16, 62.6, 36.1, 141.0, 0.15, 4.0) == 1  # the former margin left it at m=1
    assert bench.parse_settings("blog,no_ac:m4") == [("blog", None), ("no_ac:m4", 4)]
    assert bench.parse_settings("best:m4:g") == [("best:m4:g", 4)] and bench.grouped("best:m4:g") and not bench.grouped("best:m4")
    assert bench.parse_settings("best:m4:x") == [("best:m4:x", 4)] and bench.exact("best:m4:x") and not bench.exact("best:m4:g")
    with pytest.raises(Exception, match="unknown setting"):
        bench.parse_settings("fast")
    with pytest.raises(Exception, match="unknown suffix"):
        bench.parse_settings("best:y")
    assert [bench.bucket_length(n, 128) for n in (1, 128, 129, 600)] == [128, 128, 256, 640]
    assert bench.bucket_length(77, 1) == 77


def fake_sample(tiles: int, n_text: int) -> dict:
    import torch

    tokens = list(range(1, n_text + 1))
    return {"tokens": tokens, "labels": [-100] * 5 + tokens[5:],
            "encoder_input": {"images": [torch.randn(tiles, 3, 8, 8)], "aspect_ratio": [torch.tensor([1, tiles])]},
            "encoder_mask": [torch.ones(n_text, tiles * 2, dtype=torch.bool)]}


def test_text_buckets_pad_like_the_collate_and_bound_the_shapes() -> None:
    """Bucketed micro-batches: text padded to the bucket with pad tokens, ignored labels and no
    cross-attention; the real tokens, labels and mask untouched; few shape classes."""
    import torch
    import bench_finetune as bench

    samples = [fake_sample(1, 40), fake_sample(2, 70), fake_sample(2, 33), fake_sample(1, 64)]
    plain = bench.split(samples, 2, -100)
    padded = bench.split(samples, 2, -100, text_bucket=32)
    for a, b in zip(plain, padded):
        n = a["tokens"].shape[1]
        assert b["tokens"].shape[1] == bench.bucket_length(n, 32) and b["tokens"].shape[1] % 32 == 0
        assert torch.equal(b["tokens"][:, :n], a["tokens"]) and (b["tokens"][:, n:] == 0).all()
        assert torch.equal(b["labels"][:, :n], a["labels"]) and (b["labels"][:, n:] == -100).all()
        assert torch.equal(b["encoder_mask"][:, :n], a["encoder_mask"]) and not b["encoder_mask"][:, n:].any()
        assert b["encoder_mask"].shape[2] == a["encoder_mask"].shape[2]
        assert torch.equal(b["encoder_input"]["images"], a["encoder_input"]["images"])
    # tokens the loss counts are the same: the recipe's per-step token normalisation is unchanged
    assert sum(int((b["labels"] != -100).sum()) for b in padded) == sum(int((a["labels"] != -100).sum()) for a in plain)
    # shape classes: (text, images) shapes; coverage keeps one micro-batch of each, first seen first
    steps = [bench.split(samples, 2, -100, text_bucket=32), bench.split(list(reversed(samples)), 2, -100, text_bucket=32)]
    classes = bench.coverage(steps)
    assert len({bench.shape_class(c) for c in classes}) == len(classes)
    assert {bench.shape_class(mb) for st in steps for mb in st} == {bench.shape_class(c) for c in classes}
    assert bench.shape_class(classes[0]) == bench.shape_class(steps[0][0])


def test_unbucketed_text_warms_two_lengths_per_tile_class() -> None:
    """Text as the recipe feeds it (no bucketing): dynamo makes the text dimension dynamic at its
    second size, so the warm-up takes two micro-batches of distinct lengths per batch x tiles class,
    not one per length; a class with one length seen keeps its one."""
    import bench_finetune as bench

    samples = [fake_sample(1, 40), fake_sample(1, 41), fake_sample(1, 40), fake_sample(2, 50), fake_sample(1, 60), fake_sample(2, 50)]
    steps = [bench.split(samples, 1, -100)]
    classes = bench.coverage(steps, dynamic_text=True)
    assert [(mb["encoder_input"]["images"].shape[2], mb["tokens"].shape[1]) for mb in classes] == [(1, 40), (1, 41), (2, 50)]
    # bucketed (or static) text: one micro-batch per exact shape, as before
    assert len(bench.coverage(steps)) == 4


def test_copies_to_the_device_as_the_recipe_or_pinned() -> None:
    """The default copy is torchtune's batch_to_device (in place, nested dicts too); the benchmark's
    step hands it fresh dicts, so every use of a micro-batch copies from host memory again. The
    pinned path (opt-in) returns new dicts and leaves the batch as it was."""
    import torch
    import bench_finetune as bench

    mb = bench.split([fake_sample(1, 40), fake_sample(2, 50)], 2, -100)[0]
    images = mb["encoder_input"]["images"]
    out = bench.to_device({k: dict(v) if isinstance(v, dict) else v for k, v in mb.items()}, torch.device("cpu"))
    assert mb["encoder_input"]["images"] is images and torch.equal(out["encoder_input"]["images"], images)
    pinned = bench.to_device(mb, torch.device("cpu"), pinned=True)
    assert pinned is not mb and pinned["encoder_input"] is not mb["encoder_input"]
    assert all(torch.equal(pinned[k], mb[k]) for k in ("tokens", "labels", "encoder_mask"))


def test_kernel_kinds() -> None:
    import bench_finetune as bench

    assert bench.kernel_kind("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64") == "gemm"
    assert bench.kernel_kind("nvjet_tst_128x256_64x4_2x1_v_bz_coopA_TNN") == "gemm"
    assert bench.kernel_kind("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128>>") == "attention"
    assert bench.kernel_kind("triton_per_fused__to_copy_add_mean_mul_pow_rsqrt_0") == "triton"
    assert bench.kernel_kind("void at::native::vectorized_elementwise_kernel<4>") == "other"


def test_grouping_by_tiles_is_opt_in_and_keeps_the_step() -> None:
    """:g orders a step's samples by tiles (stable) before cutting micro-batches; the default keeps
    the sampler's order. The step holds the same samples either way."""
    import bench_finetune as bench

    samples = [fake_sample(4, 40), fake_sample(1, 41), fake_sample(4, 42), fake_sample(1, 43)]
    default = bench.split(samples, 2, -100)
    grouped = bench.split(samples, 2, -100, group_tiles=True)
    assert [tuple(mb["encoder_input"]["images"].shape[:3]) for mb in default] == [(2, 1, 4), (2, 1, 4)]
    assert [tuple(mb["encoder_input"]["images"].shape[:3]) for mb in grouped] == [(2, 1, 1), (2, 1, 4)]
    assert [mb["tokens"].shape[1] for mb in grouped] == [43, 42]  # 41+43 then 40+42: stable within a tile count
    tokens = lambda mbs: sorted(int(n) for mb in mbs for n in (mb["labels"] != -100).sum(1))  # noqa: E731
    assert tokens(default) == tokens(grouped)


def test_compile_watch_counts_limit_hits_and_recompiles() -> None:
    import logging
    import bench_finetune as bench

    watch = bench.CompileWatch()
    logger = logging.getLogger("cotvr.test.watch")
    logger.addHandler(watch)
    logger.setLevel(logging.DEBUG)
    logger.warning("torch._dynamo hit config.%s (%s)\n   function: 'forward' (x.py:1)", "recompile_limit", 8)
    logger.debug("Recompiling function forward in /x/transformer.py:100\n    triggered by the following guard failure(s): size mismatch")
    assert len(watch.limit_hits) == 1 and watch.recompiles == {"forward": 1}
    assert watch.snapshot()[1:] == (1, 1)


def test_bench_bad_config(tmp_path: Path) -> None:
    proc = run_program(BENCH, "--config", str(tmp_path / "none.yaml"))
    assert proc.returncode == EXIT_MISSING_INPUT and "not found" in proc.stderr


def test_bench_nproc_2_on_cpu(tmp_path: Path) -> None:
    """--nproc 2: torchrun's 2 processes (gloo on CPU), the model sharded with FSDP2 as
    lora_finetune_distributed does, each rank half of every step's samples; rank 0 reports the whole
    effective batch's samples/s."""
    config = bench_config(tmp_path, "lora-11b")
    out = tmp_path / "bench.json"
    proc = run_program(BENCH, "--config", str(config), "--device", "cpu", "--settings", "blog,no_ac:m1", "--steps", "2", "--nproc", "2",
                       "--image-sizes", "100x100:1,200x100:1", "--text-tokens", "40:64", "--text-bucket", "32", "--layers-scale", "0.5",
                       "--json-out", str(out), env={"PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "torch.distributed.run --standalone --nnodes 1 --nproc_per_node 2" in proc.stderr
    data = parse_bench(proc.stdout)  # one COTVR_BENCH line: rank 0's
    assert json.loads(out.read_text()) == data
    assert data["nproc"] == 2 and data["effective_batch"] == 2
    blog, no_ac = data["results"]
    for r in (blog, no_ac):
        assert r["nproc"] == 2 and r["micro_batch"] == 1 and r["grad_accum"] == 1  # 1 x 1 x 2 ranks = 2
        assert r["samples_per_s"] > 0 and r["timed_steps"] == 2
        assert r["loss_last"] == pytest.approx(11.76, abs=1.0)  # ln(128256): random init, the real loss
    assert blog["activation_checkpointing"] and not no_ac["activation_checkpointing"]
    # The same samples and the same math as one process: the step's loss over all its tokens.
    one = run_program(BENCH, "--config", str(config), "--device", "cpu", "--settings", "blog", "--steps", "2", "--no-flops",
                      "--image-sizes", "100x100:1,200x100:1", "--text-tokens", "40:64", "--text-bucket", "32", "--layers-scale", "0.5",
                      env={"PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}, timeout=1200)
    assert one.returncode == 0, one.stderr[-5000:]
    (single,) = parse_bench(one.stdout)["results"]
    assert single["nproc"] == 1 and blog["loss_last"] == pytest.approx(single["loss_last"], rel=1e-2)
    bad = run_program(BENCH, "--config", str(config), "--nproc", "0", env={"PYTHONPATH": str(HERE)})
    assert bad.returncode == EXIT_BAD_ARGS and "--nproc must be >= 1" in bad.stderr

"""Throughput benchmark of the shipped torchtune 0.6.1 fine-tune (lora_finetune_single_device).

    python bench_finetune.py --config train.yaml [--settings blog,compile,compile_encoder,no_ac,best]
                             [--steps 12] [--text-bucket N] [--recompile-limit 64] [--profile] [--pin-memory] [--layers-scale 0.25]
                             [--device cuda] [--device-peak-tflops 989] [--data synthetic|config|auto] [--json-out f]
    python bench_finetune.py --merge a.json b.json ... --json-out all.json   (one table from several runs)

`--config` is a rendered torchtune train config (a plain train.yaml, or the rendered ConfigMap
that carries one under data["train.yaml"]). The model is built from the config's `model`
component with RANDOM weights (no checkpoint, nothing downloaded) in the config's dtype, LoRA /
QLoRA included; loss, optimizer and lr scheduler are instantiated from the config; compile and
activation checkpointing go through torchtune's own `training.compile_model`,
`training.compile_loss` and `training.set_activation_checkpointing` with the recipe's wrap policy,
and the encoder is compiled by `compile_vision_encoder` of the patched recipe
(lora_finetune_single_device.patch). The step is the recipe's: per micro-batch loss x tokens,
backward, then scale_grads(1/tokens), clip_grad_norm, optimizer.step, zero_grad, lr step.

Settings (all keep the config's effective batch = batch_size x gradient_accumulation_steps):
  blog              as configured (activation checkpointing on, compile off in the blog stack)
  compile           + compile: true (torchtune compiles the decoder's layers and the loss)
  compile_encoder   + the vision encoder's layers compiled too (the patched recipe's compile_encoder)
  no_ac             activation checkpointing off, micro-batch m x accumulation = effective batch
  no_ac_compile     no_ac + compile
  best              no_ac + compile + compile_encoder
A suffix `:mN` sets the micro-batch of a setting (e.g. no_ac:m4); without it the no_ac settings
take --micro-batch (default auto: the largest divisor of the effective batch whose memory,
by the memory model below, fits the device with --memory-margin). A suffix `:g` (opt-in) groups the
samples of each optimizer step by tile count before they are cut into micro-batches: the same samples
in the same optimizer step (so the same gradient up to rounding), but other samples share a
micro-batch than under the recipe's sampler, which the default keeps.

Steady state: the text of every micro-batch is right-padded to a multiple of the config's
`text_bucket` (the patched recipe's key; --text-bucket overrides; pad tokens, ignored labels, no
cross-attention: what the collate already does to the shorter samples of a micro-batch, so no math
changes), so the compiled graphs see a few text lengths; blog settings run as the blog does (no
bucketing). With 1 (no bucketing) the text length is whatever the micro-batch's longest sample is,
and dynamo turns it into a dynamic dimension once it has seen two lengths. Tiles are 1..4 by the
transform. Before the timer a compiled setting runs one micro-batch of every shape class that its
timed steps feed (unbucketed: two text lengths per tiles class), again until a pass compiles
nothing new; then --steps optimizer steps are timed. Reported per setting: warm-up seconds
(compile included) and an estimate of the compile's share, graphs compiled, recompiles, and
dynamo's recompile-limit hits (frames that fall back to eager: must be 0), counted in the warm-up
and in the timed steps. --profile adds one untimed step under torch.profiler: GPU kernel time by
kind (GEMM, attention, Triton, other) against the wall time, and the top kernels.

Memory model: peak ~= static + m x act_per_sample, with static = weights + LoRA/optimizer state
(measured after the first optimizer step) and act_per_sample measured at the worst-case shape
(max tiles, max text length) by one probe micro-batch of 1 sample without checkpointing.

Data: each optimizer step is fed the same samples in every setting (seeded), split into
micro-batches and collated by torchtune's padded_collate_tiled_images_and_mask, like the
recipe's dataloader with its seeded sampler. `--data config` reads real rows through the
config's own tokenizer + dataset components (the cluster Job: model and CoT dataset on the
volumes); `--data synthetic` (default when those files are absent) draws shapes from
`--image-sizes` (tiles from torchtune's own CLIPImageTransform with the config's image_size and
max 4 tiles) and `--text-tokens` (see the option help for where the defaults come from).

Several GPUs (`--nproc N`): the program starts itself again under torchrun (`python -m
torch.distributed.run --standalone --nproc_per_node N`), one process per GPU, as lora_finetune_distributed
runs: the model sharded with torchtune's `training.shard_model` (FSDP2), each rank fed every N-th
sample of each optimizer step (the same samples per step as on one GPU), micro-batch x accumulation
x N = the effective batch, tokens summed over the ranks before the gradient is scaled (the recipe's
`all_reduce(num_tokens)`, `scale_grads(world_size / num_tokens)`). samples/s count the whole
effective batch; memory is rank 0's. No probe (no FLOP count, no MFU; `--micro-batch auto` takes the
config's batch_size per rank). Rank 0 prints the table and the JSON (`"nproc": N`).

Output: a table on stdout, then one line `COTVR_BENCH {json}` (device, versions, settings, shapes,
results); COTVR_PROGRESS records per setting.
Exit codes: 0 ok (settings that run out of memory are reported as "oom", not failures),
1 every setting failed, 2 bad arguments, 3 missing input.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _p in (HERE, HERE.parent / "common"):
    if (_p / "cotvr_common.py").exists() and str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from cotvr_contract import BENCH_PREFIX, EXIT_BAD_ARGS, EXIT_MISSING_INPUT  # noqa: E402
from cotvr_facts import ACT_MARGIN, CHARTQA_ROWS, RESERVE_GIB, steps_per_epoch  # noqa: E402

GiB = 1024**3

# Dense bf16 tensor peak, TFLOP/s, by device name (vendor datasheets; "dense" = no 2:4 sparsity).
PEAK_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM (H100 80GB HBM3)
    ("H200", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("MI355X", 2500.0),
    ("MI325X", 1307.0),
    ("MI300X", 1307.0),
    ("MI300A", 980.0),
    ("MI250X", 383.0),
]

# name -> (activation checkpointing, compile decoder+loss, compile encoder, uses the micro-batch)
SETTINGS: dict[str, tuple[bool, bool, bool, bool]] = {
    "blog": (True, False, False, False),
    "compile": (True, True, False, False),
    "compile_encoder": (True, True, True, False),
    "no_ac": (False, False, False, True),
    "no_ac_compile": (False, True, False, True),
    "best": (False, True, True, True),
}
DEFAULT_SETTINGS = "blog,compile,compile_encoder,no_ac,best"

# ChartQA image sizes (w x h : weight), an assumption stated in --help and in the output: the
# augmented rows (20,901 of 28,299 train rows, ChartQA paper, Masry et al. 2022) are Statista
# charts, rendered 800x557 (-> 2 tiles of 560); the human-written rows mix Statista, Pew (narrow,
# ~310 wide -> 1 tile), OWID / OECD (~850x600 -> 4 tiles). The ChartQA test split spans
# 184x326 .. 800x1796. Use --data config on the cluster for the real mix.
DEFAULT_IMAGE_SIZES = "800x557:0.80,310x420:0.08,850x600:0.12"
# CoT answer tokens: the teacher is told to "Maximize tokens in the CoT" (blog prompt), capped by
# generate.maxTokens (4092, never reached in practice); a few hundred tokens is what the blog's
# example style gives. Prompt: the ChartQA query (~20 tokens) + the Llama 3.2 chat headers.
DEFAULT_TEXT_TOKENS = "200:600"


#: This process's rank and the number of ranks (torchrun's, with --nproc N; else 0 and 1).
RANK, WORLD = 0, 1


def log(msg: str) -> None:
    if RANK == 0:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)


def launch_torchrun(nproc: int, argv: list[str]) -> int:
    """Run this program again as N processes of one node under torchrun, --nproc left out."""
    rest: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", str(nproc),
           str(Path(__file__).resolve()), *rest]
    log("running: " + " ".join(cmd))
    return subprocess.call(cmd)


# --------------------------------------------------------------------------- config


def load_train_config(path: Path):
    """A torchtune train config as a DictConfig, from a train.yaml or a rendered ConfigMap."""
    import yaml
    from omegaconf import OmegaConf

    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    for doc in docs:
        if doc.get("kind") == "ConfigMap" and "train.yaml" in (doc.get("data") or {}):
            return OmegaConf.create(doc["data"]["train.yaml"])
    if docs and "model" in docs[0]:
        return OmegaConf.load(path)
    raise SystemExit(f"{path}: neither a torchtune train config nor a ConfigMap with train.yaml")


def parse_settings(text: str) -> list[tuple[str, int | None]]:
    """`name[:mN][:g][:x]` items: the setting, its micro-batch (None: the default), the opt-in grouping
    by tiles (:g) and the exact-tiles encoder (:x)."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, *mods = item.split(":")
        if name not in SETTINGS:
            raise argparse.ArgumentTypeError(f"unknown setting {name!r} (known: {', '.join(SETTINGS)})")
        m = None
        for mod in mods:
            if mod.startswith("m") and mod[1:].isdigit():
                m = int(mod[1:])
            elif mod not in ("g", "x"):
                raise argparse.ArgumentTypeError(f"{item}: unknown suffix :{mod} (known: :mN, :g, :x)")
        out.append((item, m))
    return out


def grouped(name: str) -> bool:
    return "g" in name.split(":")[1:]


def exact(name: str) -> bool:
    """:x: the patched recipe's exact_tiles (each image's real tiles only through the encoder)."""
    return "x" in name.split(":")[1:]


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


# --------------------------------------------------------------------------- model


def scale_decoder_layers(scale: float) -> None:
    """Fewer decoder layers, same per-layer shapes: wrap the builders the model builders call."""
    from torchtune.models.llama3_2_vision import _model_builders as mb

    for name in ("llama3_2_vision_decoder", "lora_llama3_2_vision_decoder"):
        original = getattr(mb, name)
        if getattr(original, "_cotvr_scaled", False):
            continue

        def scaled(*args, __original=original, **kwargs):
            interval = kwargs.get("fusion_interval", 1)
            n = kwargs["num_layers"]
            kwargs["num_layers"] = max(interval, int(round(n * scale / interval)) * interval)
            log(f"layers-scale {scale}: decoder {n} -> {kwargs['num_layers']} self-attention layers "
                f"(+1 fusion layer per {interval})")
            return __original(*args, **kwargs)

        scaled._cotvr_scaled = True
        setattr(mb, name, scaled)


def load_patched_recipe(recipe: Path | None):
    """The patched lora_finetune_single_device recipe (for compile_vision_encoder): the image's
    copy, or torchtune's own recipe with lora_finetune_single_device.patch applied in a temp dir."""
    candidates = [recipe] if recipe else []
    candidates += [Path(p) for p in [os.environ.get("COTVR_TRAIN_RECIPE", "")] if p]
    candidates.append(Path("/opt/cotvr/recipes/lora_finetune_single_device.py"))
    path = next((p for p in candidates if p and p.is_file()), None)
    if path is None:
        spec = importlib.util.find_spec("recipes")
        source = Path(list(spec.submodule_search_locations)[0]) / "lora_finetune_single_device.py"
        root = Path(tempfile.mkdtemp(prefix="cotvr-recipe-"))
        (root / "recipes").mkdir()
        shutil.copyfile(source, root / "recipes" / source.name)
        patch = HERE / "lora_finetune_single_device.patch"
        cmd = ["git", "apply", str(patch)] if shutil.which("git") else ["patch", "-p1", "-i", str(patch)]
        subprocess.run(cmd, cwd=root, check=True)
        path = root / "recipes" / source.name
    spec = importlib.util.spec_from_file_location("cotvr_patched_lora_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "compile_vision_encoder"):
        raise SystemExit(f"{path} is not the patched recipe (no compile_vision_encoder)")
    return module


@dataclass
class Built:
    model: Any
    loss_fn: Any
    optimizer: Any
    scheduler: Any
    ignore_index: int
    params_total: int
    params_trainable: int
    exact_tiles: bool = False
    recipe: Any = None


def build(cfg, device, dtype, *, ac: bool, compile_dec: bool, compile_enc: bool, recipe, steps_total: int,
          before_wrap=None, exact_tiles: bool = False) -> Built:
    """Model, loss, optimizer, scheduler as recipes/lora_finetune_single_device.py sets them up."""
    import torch
    from torchtune import config, modules, training
    from torchtune.modules.peft import get_adapter_params, set_trainable_params

    with training.set_default_dtype(dtype), device:
        model = config.instantiate(cfg.model)  # random init: no checkpoint is loaded
    adapter = get_adapter_params(model)
    set_trainable_params(model, adapter)
    if before_wrap is not None:
        before_wrap(model)
    if compile_dec:
        training.compile_model(model)
    if compile_enc:
        recipe.compile_vision_encoder(model)
    if exact_tiles:
        recipe.exact_tiles_encoder(model)
    if ac:
        training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
    if WORLD > 1:
        # As lora_finetune_distributed: FSDP2 over every layer torchtune's shard conditions pick.
        from functools import partial

        training.shard_model(model=model, shard_conditions=[partial(training.get_shard_conditions, names_to_match=None)],
                             cpu_offload=False, reshard_after_forward=True)
    optimizer = config.instantiate(cfg.optimizer, model.parameters())
    loss_fn = config.instantiate(cfg.loss)
    if compile_dec:
        loss_fn = training.compile_loss(loss_fn)
    if loss_fn.__class__.__name__ == "CEWithChunkedOutputLoss":
        model.set_num_output_chunks(loss_fn.num_output_chunks)
    scheduler = config.instantiate(cfg.lr_scheduler, optimizer, num_training_steps=steps_total, last_epoch=-1)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Built(model, loss_fn, optimizer, scheduler, loss_fn.ignore_index, total, trainable, exact_tiles, recipe)


# --------------------------------------------------------------------------- data


@dataclass
class ShapeSpec:
    source: str
    image_sizes: list[tuple[int, int, float]] = field(default_factory=list)
    text_tokens: tuple[int, int] = (200, 600)


class SyntheticSamples:
    """Samples shaped like the transform's output: tiles from torchtune's CLIPImageTransform on an
    image of a drawn size, tokens with one <|image|> and a masked prompt, the real cross-attention mask."""

    PROMPT_TOKENS = 40  # chat headers + <|image|> + a ChartQA query

    def __init__(self, cfg, spec: ShapeSpec, seed: int) -> None:
        from torchtune.models.clip._transform import CLIPImageTransform
        from torchtune.modules.transforms import VisionCrossAttentionMask

        size = int(cfg.tokenizer.get("image_size", cfg.model.get("image_size", 560)))
        self.image_transform = CLIPImageTransform(
            image_mean=(0.48145466, 0.4578275, 0.40821073), image_std=(0.26862954, 0.26130258, 0.27577711),
            tile_size=size, possible_resolutions=None, max_num_tiles=4, resample="bilinear", resize_to_max_canvas=False,
        )
        self.xattn = VisionCrossAttentionMask(tile_size=size, patch_size=14, image_token_id=128256)
        self.spec = spec
        self.rng = random.Random(seed)
        self._tiles_cache: dict[tuple[int, int], Any] = {}

    def _image(self, w: int, h: int):
        if (w, h) not in self._tiles_cache:
            from PIL import Image

            out = self.image_transform({"image": Image.new("RGB", (w, h), (255, 255, 255))})
            self._tiles_cache[(w, h)] = (out["image"], out["aspect_ratio"])
        tiles, ar = self._tiles_cache[(w, h)]
        return tiles.clone(), ar.clone()

    def tiles_of(self, w: int, h: int) -> int:
        return int(self._image(w, h)[0].shape[0])

    def sample(self, worst: bool = False) -> dict:
        sizes = self.spec.image_sizes
        if worst:
            w, h, _ = max(sizes, key=lambda s: (self.tiles_of(s[0], s[1]), s[2]))
            n_text = self.spec.text_tokens[1]
        else:
            w, h, _ = self.rng.choices(sizes, weights=[s[2] for s in sizes])[0]
            n_text = self.rng.randint(*self.spec.text_tokens)
        tiles, ar = self._image(w, h)
        prompt = [128000, 128006, 882, 128007, 271, 128256] + [self.rng.randrange(1000, 120000) for _ in range(self.PROMPT_TOKENS - 10)]
        prompt += [128009, 128006, 78191, 128007]
        answer = [self.rng.randrange(1000, 120000) for _ in range(max(1, n_text - len(prompt) - 1))] + [128009]
        tokens = prompt + answer
        labels = [-100] * len(prompt) + answer  # train_on_input False: only the answer is learned
        sample = {"tokens": tokens, "labels": labels, "encoder_input": {"images": [tiles], "aspect_ratio": [ar]}}
        return self.xattn(sample)


class ConfigSamples:
    """Real rows through the config's own tokenizer (model transform) and dataset components."""

    def __init__(self, cfg, seed: int) -> None:
        from torchtune import config

        tokenizer = config.instantiate(cfg.tokenizer)
        self.ds = config.instantiate(cfg.dataset, tokenizer)
        self.rng = random.Random(seed)
        self._worst = None

    def sample(self, worst: bool = False) -> dict:
        if worst:
            if self._worst is None:  # the largest of a few hundred rows stands in for the worst case
                cands = [self.ds[self.rng.randrange(len(self.ds))] for _ in range(200)]
                self._worst = max(cands, key=lambda s: (s["encoder_input"]["images"][0].shape[0], len(s["tokens"])))
            return self._worst
        return self.ds[self.rng.randrange(len(self.ds))]


def collate(samples: list[dict], ignore_index: int) -> dict:
    from torchtune.data import padded_collate_tiled_images_and_mask

    return padded_collate_tiled_images_and_mask(samples, padding_idx=0, ignore_idx=ignore_index)


# --------------------------------------------------------------------------- one step, as the recipe


def to_device(batch: dict, device, pinned: bool = False) -> dict:
    """As the recipe: torchtune's batch_to_device, blocking copies from pageable memory (the host
    waits for the GPU's queue to drain before each micro-batch). pinned (opt-in, --pin-memory): the
    batch was pinned (DataLoader pin_memory=True) and is copied with non_blocking=True."""
    from torchtune import utils

    if not pinned:
        utils.batch_to_device(batch, device)
        return batch
    return {k: to_device(v, device, True) if isinstance(v, dict) else v.to(device, non_blocking=True) if hasattr(v, "to") else v
            for k, v in batch.items()}


def pin(batch: dict) -> dict:
    """A collated batch in page-locked memory, as a DataLoader with pin_memory=True hands it over."""
    return {k: pin(v) if isinstance(v, dict) else v.pin_memory() if hasattr(v, "pin_memory") else v for k, v in batch.items()}


def loss_step(b: Built, batch: dict) -> Any:
    import torch

    labels = batch.pop("labels")
    logits = b.model(**batch)
    ignore = torch.full((labels.shape[0], 1), b.ignore_index, device=labels.device, dtype=labels.dtype)
    labels = torch.hstack((labels[..., 1:], ignore))
    if not isinstance(logits, list):
        labels = labels.reshape(-1)
        logits = logits.reshape(-1, logits.size(-1))
    loss = b.loss_fn(logits, labels)
    del logits
    return loss


def optimizer_step(b: Built, micro_batches: list[dict], device, clip: float | None, pinned: bool = False) -> float:
    import torch
    from torchtune import training

    num_tokens = 0
    running = 0
    for mb in micro_batches:
        # a fresh dict at every level: batch_to_device replaces tensors in place, and each use of a
        # micro-batch copies it from host memory again, as the recipe's fresh batches do
        batch = {k: dict(v) if isinstance(v, dict) else v for k, v in mb.items()}
        if b.exact_tiles:  # as the patched recipe's loop: the tile counts from the host's copy
            b.recipe.note_tiles(b.model, batch)
        batch = to_device(batch, device, pinned)
        n = (batch["labels"] != b.ignore_index).sum()
        num_tokens += n
        current = loss_step(b, batch) * n
        running += current.detach()
        current.backward()
    if WORLD > 1:
        # The distributed recipe: tokens of all ranks; x world_size undoes FSDP2's gradient averaging.
        torch.distributed.all_reduce(num_tokens)
        training.scale_grads(b.model, WORLD / num_tokens)
        # The loss of the whole step (the recipe logs rank 0's share over all tokens): every rank's sum.
        running = running.clone()
        torch.distributed.all_reduce(running)
    else:
        training.scale_grads(b.model, 1 / num_tokens)
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(b.model.parameters(), max_norm=float(clip))
    b.optimizer.step()
    b.optimizer.zero_grad(set_to_none=True)
    b.scheduler.step()
    return float(running / num_tokens)


def sample_tiles(sample: dict) -> int:
    return int(sample["encoder_input"]["images"][0].shape[0])


def bucket_length(n: int, bucket: int) -> int:
    """n rounded up to a multiple of bucket (bucket <= 1: n)."""
    return n if bucket <= 1 else -(-n // bucket) * bucket


def pad_text(batch: dict, bucket: int, padding_idx: int, ignore_index: int) -> dict:
    """Right-pad a collated micro-batch's text to a multiple of `bucket`, as the collate pads the
    shorter samples of a micro-batch: pad tokens, ignored labels, rows of the cross-attention mask
    with no image. The loss ignores those labels and under the causal mask no real token attends to
    a later pad, so the math is the recipe's; the compiled graphs see a few text lengths."""
    import torch.nn.functional as F

    n = batch["tokens"].shape[1]
    extra = bucket_length(n, bucket) - n
    if extra <= 0:
        return batch
    batch["tokens"] = F.pad(batch["tokens"], (0, extra), value=padding_idx)
    batch["labels"] = F.pad(batch["labels"], (0, extra), value=ignore_index)
    if "encoder_mask" in batch:  # (bsz, text, image tokens)
        batch["encoder_mask"] = F.pad(batch["encoder_mask"], (0, 0, 0, extra), value=0)
    return batch


def split(samples: list[dict], m: int, ignore_index: int, text_bucket: int = 1, group_tiles: bool = False,
          sort_tiles: bool = False) -> list[dict]:
    """One optimizer step's samples as collated micro-batches of m. group_tiles (opt-in): ordered by
    tile count first (stable), so micro-batches pad fewer tiles; the step holds the same samples.
    sort_tiles (exact tiles, as the patched recipe's collate): each micro-batch's own samples ordered
    by tile count, the micro-batches unchanged."""
    if group_tiles:
        samples = sorted(samples, key=sample_tiles)
    chunks = [samples[i : i + m] for i in range(0, len(samples), m)]
    if sort_tiles:
        chunks = [sorted(c, key=sample_tiles) for c in chunks]
    return [pad_text(collate(c, ignore_index), text_bucket, 0, ignore_index) for c in chunks]


def shape_class(batch: dict) -> tuple:
    """What a compiled graph is specialised on: the micro-batch's text and image tensor shapes, and
    its rows' tile counts (the exact-tiles encoder's slices)."""
    return (tuple(batch["tokens"].shape), tuple(batch["encoder_input"]["images"].shape), row_tiles(batch))


def row_tiles(batch: dict) -> tuple:
    ar = batch["encoder_input"].get("aspect_ratio")
    return tuple(ar.prod(-1).amax(-1).tolist()) if ar is not None else ()


def coverage(steps: list[list[dict]], dynamic_text: bool = False) -> list[dict]:
    """One micro-batch of every shape class the timed steps feed, in first-seen order.

    dynamic_text (text not bucketed, as the recipe feeds it): every text length would be its own
    class, but dynamo makes a dimension dynamic once a second size of it reaches a compiled frame
    (automatic_dynamic_shapes), so two micro-batches of distinct text lengths per batch size x
    tiles class are what compiles every graph the timed steps use."""
    seen: dict[tuple, list[dict]] = {}
    for mbs in steps:
        for mb in mbs:
            if not dynamic_text:
                seen.setdefault(shape_class(mb), [mb])
                continue
            key = (batch_rows(mb), tuple(mb["encoder_input"]["images"].shape), row_tiles(mb))
            have = seen.setdefault(key, [])
            if len(have) < 2 and all(h["tokens"].shape[1] != mb["tokens"].shape[1] for h in have):
                have.append(mb)
    return [mb for group in seen.values() for mb in group]


def batch_rows(batch: dict) -> int:
    return int(batch["tokens"].shape[0])


class CompileWatch(logging.Handler):
    """Counts what dynamo does: graphs compiled (its unique_graphs counter), recompiles by function
    (the `recompiles` log) and recompile-limit hits (frames that then run eagerly)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.recompiles: dict[str, int] = {}
        self.limit_hits: list[str] = []
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001
            return
        if "hit config." in msg and "limit" in msg:
            self.limit_hits.append(" ".join(msg.split("\n")[:3])[:300])
        elif msg.startswith("Recompiling function"):
            fn = msg.split()[2] if len(msg.split()) > 2 else "?"
            self.recompiles[fn] = self.recompiles.get(fn, 0) + 1
            if len(self.reasons) < 20:
                self.reasons.append(" ".join(msg.split())[:300])

    @staticmethod
    def graphs() -> int:
        try:
            from torch._dynamo.utils import counters

            return int(counters["stats"]["unique_graphs"])
        except Exception:  # noqa: BLE001
            return 0

    def snapshot(self) -> tuple[int, int, int]:
        return self.graphs(), sum(self.recompiles.values()), len(self.limit_hits)


def setup_dynamo(limit: int, watch: CompileWatch) -> None:
    """Raise dynamo's per-function recompile limit (one compiled frame per layer kind x shape class;
    the default 8 falls back to eager past it) and log recompiles into the watch."""
    import torch

    cfg = torch._dynamo.config
    for key in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, key):
            setattr(cfg, key, limit)
            break
    for key in ("accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(cfg, key):
            setattr(cfg, key, max(getattr(cfg, key), 8 * limit))
            break
    try:
        torch._logging.set_logs(recompiles=True)
    except Exception:  # noqa: BLE001
        pass
    logging.getLogger("torch").addHandler(watch)
    # the `recompiles` artifact loggers do not propagate to "torch": attach to them too
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch") and name.endswith("__recompiles"):
            logging.getLogger(name).addHandler(watch)


# --------------------------------------------------------------------------- measurement


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mem(device) -> dict[str, float]:
    import torch

    if device.type != "cuda":
        return {}
    return {
        "allocated_gb": torch.cuda.memory_allocated(device) / GiB,
        "peak_allocated_gb": torch.cuda.max_memory_allocated(device) / GiB,
        "peak_reserved_gb": torch.cuda.max_memory_reserved(device) / GiB,
    }


def free(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch._dynamo.reset()


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def probe(cfg, device, dtype, recipe, steps_total: int, worst: dict, step_samples: list[dict], count_flops: bool) -> dict:
    """Eager model without checkpointing: activation GB of one worst-case sample, and the useful
    FLOPs of one optimizer step counted per sample (micro-batch 1: no padding, no recompute)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    out: dict[str, Any] = {}
    free(device)
    b = build(cfg, device, dtype, ac=False, compile_dec=False, compile_enc=False, recipe=recipe, steps_total=steps_total)
    try:
        out["params_total"], out["params_trainable"] = b.params_total, b.params_trainable
        sync(device)
        base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        if device.type == "cuda":
            out["weights_gb"] = base / GiB  # recorded before the forward, so an OOM still reports it
            torch.cuda.reset_peak_memory_stats(device)
        batch = to_device(collate([worst], b.ignore_index), device)
        (loss_step(b, batch)).backward()
        sync(device)
        if device.type == "cuda":
            out["act_per_sample_gb"] = (torch.cuda.max_memory_allocated(device) - base) / GiB
        b.optimizer.zero_grad(set_to_none=True)
        if count_flops:
            counter = FlopCounterMode(display=False)
            with counter:
                for s in step_samples:
                    batch = to_device(collate([s], b.ignore_index), device)
                    (loss_step(b, batch)).backward()
            b.optimizer.zero_grad(set_to_none=True)
            out["flops_per_step"] = counter.get_total_flops()
            out["flops_per_sample"] = out["flops_per_step"] / len(step_samples)
    except Exception as exc:  # noqa: BLE001 - an OOM probe is a result, not a crash
        if not is_oom(exc):
            raise
        out["probe_oom"] = True
        log(f"probe without checkpointing ran out of memory: {str(exc).splitlines()[0]}")
    finally:
        del b
        free(device)
    return out


# Kernel name -> kind, first match (cuBLAS/CUTLASS GEMMs, SDPA's flash / memory-efficient kernels,
# inductor's generated Triton kernels).
KERNEL_KINDS = [
    ("attention", ("flash", "fmha", "attention", "efficient")),
    ("gemm", ("gemm", "cutlass", "nvjet", "sm90_xmma", "cublas", "matmul")),
    ("triton", ("triton",)),
]


def kernel_kind(name: str) -> str:
    low = name.lower()
    return next((kind for kind, keys in KERNEL_KINDS if any(k in low for k in keys)), "other")


def profile_step(b: Built, micro_batches: list[dict], device, clip, pinned: bool = False) -> dict:
    """One more optimizer step (untimed) under torch.profiler: wall time, GPU kernel time by kind
    (how busy the GPU is, and with what), and the top kernels. Printed and returned."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        optimizer_step(b, micro_batches, device, clip, pinned)
        sync(device)
    wall_us = (time.perf_counter() - t0) * 1e6
    kinds: dict[str, float] = {}
    top: list[tuple[float, str, int]] = []
    for e in prof.key_averages():
        if getattr(e, "device_type", None) != torch.autograd.DeviceType.CUDA:
            continue
        us = float(e.self_device_time_total)
        kinds[kernel_kind(e.key)] = kinds.get(kernel_kind(e.key), 0.0) + us
        top.append((us, e.key, int(e.count)))
    top.sort(reverse=True)
    busy = sum(kinds.values())
    out = {"wall_ms": wall_us / 1e3, "kernel_ms": busy / 1e3, "gpu_busy": busy / wall_us if wall_us else None,
           "kernel_ms_by_kind": {k: v / 1e3 for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
           "top_kernels": [{"name": n[:120], "ms": us / 1e3, "calls": c} for us, n, c in top[:12]]}
    log(f"profile of one step: {json.dumps(out)}")
    return out


def choose_micro_batch(eff: int, static_gb: float | None, act_gb: float | None, total_gb: float | None, margin: float,
                       reserve_gb: float = RESERVE_GIB) -> int:
    """Largest divisor m of the effective batch with static + m x act x (1 + margin) + reserve <= total: what
    fits, for a setting without :mN (the stack's planner picks by measured speed, config/derive.ts)."""
    if not (static_gb and act_gb and total_gb):
        return 1
    fits = [m for m in range(1, eff + 1) if eff % m == 0 and static_gb + m * act_gb * (1 + margin) + reserve_gb <= total_gb]
    return max(fits) if fits else 1


def run_setting(name: str, m_override: int | None, cfg, args, device, dtype, recipe, stream, worst, eff: int,
                steps_total: int, auto_m: int, progress, watch: CompileWatch | None = None) -> dict:
    ac, compile_dec, compile_enc, uses_m = SETTINGS[name.split(":")[0]]
    share = eff // WORLD  # each rank's samples per optimizer step
    if uses_m:
        m = m_override or auto_m
    else:
        # As configured; on N ranks at most the rank's share (a one-GPU config's batch_size may exceed it).
        m = m_override or math.gcd(int(cfg.batch_size), share or 1)
    if eff % WORLD or share % m:
        return {"setting": name, "nproc": WORLD, "error": f"micro-batch {m} x {WORLD} ranks does not divide the effective batch {eff}"}
    accum = share // m
    group = grouped(name)
    exact_x = exact(name)
    # the blog's recipe pads text to the micro-batch's longest only: its settings are measured so
    bucket = 1 if name.split(":")[0] == "blog" else args.text_bucket
    compiled = compile_dec or compile_enc
    watch = watch or CompileWatch()
    res: dict[str, Any] = {"setting": name, "nproc": WORLD, "activation_checkpointing": ac, "compile": compile_dec,
                           "compile_encoder": compile_enc, "micro_batch": m, "grad_accum": accum,
                           "group_tiles": group, "exact_tiles": exact_x, "text_bucket": bucket,
                           "static_shapes": bool(getattr(args, "static_shapes", False)),
                           "pin_memory": bool(getattr(args, "pin_memory", False)),
                           # Inductor knobs set through the environment (e.g. coordinate-descent tuning)
                           "inductor_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("TORCHINDUCTOR_")}}
    free(device)
    t_build = time.perf_counter()
    b = None
    try:
        b = build(cfg, device, dtype, ac=ac, compile_dec=compile_dec, compile_enc=compile_enc, recipe=recipe,
                  steps_total=steps_total, exact_tiles=exact_x)
        sync(device)
        res["build_s"] = time.perf_counter() - t_build
        clip = cfg.get("clip_grad_norm", None)
        # The timed steps' micro-batches, collated up front: collation is the dataloader's work (its
        # workers, in the recipe), outside the timer.
        # On N ranks each takes every N-th sample of the step (the distributed sampler's split).
        batches = [split(st[RANK::WORLD], m, b.ignore_index, bucket, group, exact_x) for st in stream[: args.steps]]
        pinned = bool(getattr(args, "pin_memory", False)) and device.type == "cuda"
        if pinned:
            batches = [[pin(mb) for mb in st] for st in batches]
        classes = coverage(batches, dynamic_text=bucket <= 1 and not getattr(args, "static_shapes", False))
        res["shape_classes"] = len(classes)
        # Warm-up, untimed: one micro-batch of worst-case samples (the peak memory, the largest
        # shapes) and an optimizer step; then, compiled, one micro-batch of every shape class the
        # timed steps feed, again until a pass compiles nothing new (eager: one micro-batch).
        g0, r0, f0 = watch.snapshot()
        t0 = time.perf_counter()
        optimizer_step(b, split([worst] * m, m, b.ignore_index, bucket), device, clip)
        n_warm_mb = 1
        passes = 0
        while True:
            before = watch.graphs()
            plan = classes if compiled else classes[:1]
            for i in range(0, len(plan), accum):
                optimizer_step(b, plan[i : i + accum], device, clip, pinned)
            n_warm_mb += len(plan)
            passes += 1
            if not compiled or watch.graphs() == before or passes >= args.max_warmup_passes:
                break
        sync(device)
        res["warmup_s"] = time.perf_counter() - t0
        res["warmup_passes"] = passes
        res["warmup_micro_batches"] = n_warm_mb
        g1, r1, f1 = watch.snapshot()
        res["warmup_graphs"], res["warmup_recompiles"], res["warmup_fallbacks"] = g1 - g0, r1 - r0, f1 - f0
        res.update({k: v for k, v in mem(device).items() if k != "allocated_gb"})
        res["static_gb"] = mem(device).get("allocated_gb")
        if res.get("static_gb") is not None:
            res["act_per_sample_gb"] = (res["peak_allocated_gb"] - res["static_gb"]) / m
        sync(device)
        t0 = time.perf_counter()
        losses = []
        for i, mbs in enumerate(batches):
            losses.append(optimizer_step(b, mbs, device, clip, pinned))
            if progress:
                progress.update(i + 1, total=len(batches), setting=name)
        sync(device)
        dt = time.perf_counter() - t0
        g2, r2, f2 = watch.snapshot()
        res["timed_graphs"], res["timed_recompiles"], res["timed_fallbacks"] = g2 - g1, r2 - r1, f2 - f1
        res["fallbacks"] = f2 - f0
        res["recompiles_by_function"] = dict(watch.recompiles)
        res["timed_steps"] = len(batches)
        res["step_s"] = dt / len(batches)
        res["samples_per_s"] = len(batches) * eff / dt
        # the compile's share of the warm-up: warm-up time less its micro-batches at the timed rate
        res["compile_s_est"] = max(0.0, res["warmup_s"] - n_warm_mb * dt / (len(batches) * accum))
        res["loss_last"] = losses[-1]
        res.update({k: v for k, v in mem(device).items() if k != "allocated_gb"})
        if getattr(args, "profile", False):
            try:
                res["profile"] = profile_step(b, batches[0], device, clip, pinned)
            except Exception as exc:  # noqa: BLE001 - the profile is evidence, the timing stands without it
                if is_oom(exc):
                    raise
                res["profile"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    except Exception as exc:  # noqa: BLE001
        if not is_oom(exc):
            raise
        res["oom"] = True
        res["error"] = str(exc).splitlines()[0][:200]
        log(f"{name}: out of memory at micro-batch {m}")
    finally:
        del b
        free(device)
        watch.recompiles.clear()
    return res


# --------------------------------------------------------------------------- main


def parse_sizes(text: str) -> list[tuple[int, int, float]]:
    out = []
    for item in text.split(","):
        wh, _, wt = item.partition(":")
        w, h = wh.lower().split("x")
        out.append((int(w), int(h), float(wt or 1)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config", type=Path, help="rendered train.yaml or its ConfigMap")
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="combine result JSONs of one device (each --json-out) into one table and result, then exit")
    p.add_argument("--settings", type=parse_settings, default=parse_settings(DEFAULT_SETTINGS),
                   help=f"comma list of {', '.join(SETTINGS)}, each optionally :mN (default {DEFAULT_SETTINGS}); "
                        "empty: only the probe (weights, activations per sample, FLOPs)")
    p.add_argument("--steps", type=int, default=12, help="timed optimizer steps per setting, after the warm-up (default 12)")
    p.add_argument("--text-bucket", type=int, default=None,
                   help="pad each micro-batch's text to a multiple of this many tokens, as the patched recipe's text_bucket "
                        "(default: the config's text_bucket, else 1: no padding); blog settings always run as the blog: 1")
    p.add_argument("--recompile-limit", type=int, default=64,
                   help="torch._dynamo recompile limit per function (default 64; torch's 8 is below the layer kinds x shape classes)")
    p.add_argument("--static-shapes", action="store_true",
                   help="compile one static graph per shape class (torch._dynamo automatic_dynamic_shapes off)")
    p.add_argument("--pin-memory", action="store_true",
                   help="opt-in: micro-batches pinned and copied non-blocking (the recipe copies from pageable memory)")
    p.add_argument("--profile", action="store_true",
                   help="after the timed steps, profile one more step: GPU kernel time by kind and the top kernels")
    p.add_argument("--max-warmup-passes", type=int, default=3, help="shape-class passes at most before the timer (default 3)")
    p.add_argument("--flop-samples", type=int, default=0, help="samples of the first step the FLOP count runs (default 0: all)")
    p.add_argument("--micro-batch", default="auto", help="micro-batch of the no_ac settings: N or auto (memory model)")
    p.add_argument("--memory-margin", type=float, default=ACT_MARGIN,
                   help=f"margin on activations for auto (default {ACT_MARGIN}, with a {RESERVE_GIB} GiB reserve: config/facts.ts)")
    p.add_argument("--layers-scale", type=float, default=1.0, help="keep this fraction of the decoder's layers (per-layer shapes kept)")
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--device-peak-tflops", type=float, default=None, help="override the dense bf16 peak used for MFU")
    p.add_argument("--data", choices=["auto", "synthetic", "config"], default="auto",
                   help="config: real rows via the config's tokenizer+dataset; synthetic: shapes below (auto: config if its files exist)")
    p.add_argument("--image-sizes", default=DEFAULT_IMAGE_SIZES,
                   help="synthetic image sizes WxH:weight,... (default: ChartQA, see the module's DEFAULT_IMAGE_SIZES note)")
    p.add_argument("--text-tokens", default=DEFAULT_TEXT_TOKENS, help="synthetic tokens per sample MIN:MAX, uniform (default 200:600)")
    p.add_argument("--dataset-rows", type=int, default=CHARTQA_ROWS["train"], help="rows per epoch for the projection (ChartQA train)")
    p.add_argument("--epochs", type=int, default=None, help="epochs for the projection (default: the config's)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (and MFU)")
    p.add_argument("--recipe", type=Path, default=None, help="the patched recipe file (default: the image's, else patch torchtune's)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the JSON result here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nproc", type=int, default=1,
                   help="processes (GPUs) of one node: N > 1 runs under torchrun, FSDP2 as lora_finetune_distributed")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.json_out)
    if args.config is None:
        p.error("--config is required")
    if not args.config.is_file():
        print(f"bench_finetune: error: config {args.config} not found", file=sys.stderr)
        return EXIT_MISSING_INPUT

    if args.nproc < 1:
        print("bench_finetune: error: --nproc must be >= 1", file=sys.stderr)
        return EXIT_BAD_ARGS
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        return launch_torchrun(args.nproc, list(sys.argv[1:] if argv is None else argv))

    import torch
    from torchtune import training

    cfg = load_train_config(args.config)
    if args.text_bucket is None:
        args.text_bucket = int(cfg.get("text_bucket", 1))
    if args.text_bucket < 1:
        p.error(f"--text-bucket {args.text_bucket}: a whole number of tokens >= 1 (1: no padding)")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    global RANK, WORLD
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        RANK, WORLD = dist.get_rank(), dist.get_world_size()
        # No probe on N ranks (it builds the whole model on each GPU): no FLOPs, auto = the config's batch.
        args.no_flops = True
        if args.micro_batch == "auto":
            args.micro_batch = str(int(cfg.batch_size))
    dtype = training.get_dtype(cfg.get("dtype", "bf16"), device=device)
    recipe = load_patched_recipe(args.recipe)
    if args.layers_scale != 1.0:
        scale_decoder_layers(args.layers_scale)

    eff = int(cfg.batch_size) * int(cfg.get("gradient_accumulation_steps", 1))
    epochs = args.epochs or int(cfg.epochs)
    epoch_steps = steps_per_epoch(args.dataset_rows, int(cfg.batch_size), int(cfg.get("gradient_accumulation_steps", 1)))
    steps_total = epochs * epoch_steps
    lo, hi = (int(x) for x in args.text_tokens.split(":"))

    data = args.data
    if data == "auto":
        paths = [Path(str(cfg.tokenizer.get("path", ""))), Path(str(cfg.dataset.get("source", "")))]
        data = "config" if all(p.exists() for p in paths) else "synthetic"
    if data == "config":
        source = ConfigSamples(cfg, args.seed)
        shape_note = f"real rows of {cfg.dataset.source} via the config's tokenizer + dataset"
    else:
        spec = ShapeSpec("synthetic", parse_sizes(args.image_sizes), (lo, hi))
        source = SyntheticSamples(cfg, spec, args.seed)
        mix = ", ".join(f"{w}x{h}->{source.tiles_of(w, h)} tiles ({wt:g})" for w, h, wt in spec.image_sizes)
        shape_note = f"synthetic: images {mix}; text {lo}-{hi} tokens/sample (uniform)"
    stream = [[source.sample() for _ in range(eff)] for _ in range(max(args.steps, 1))]
    worst = source.sample(worst=True)
    tiles_hist: dict[int, int] = {}
    for s in (x for st in stream for x in st):
        t = int(s["encoder_input"]["images"][0].shape[0])
        tiles_hist[t] = tiles_hist.get(t, 0) + 1

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    total_gb = torch.cuda.get_device_properties(device).total_memory / GiB if device.type == "cuda" else None
    peak = args.device_peak_tflops or peak_tflops(dev_name)
    log(f"device {dev_name}, {total_gb and round(total_gb, 1)} GiB; model {cfg.model._component_}; effective batch {eff}")
    log(f"shapes: {shape_note}")

    try:
        from cotvr_common import Progress
    except ImportError:  # the benchmark does not need it
        Progress = None  # type: ignore[assignment]

    count_flops = not args.no_flops
    need_probe = WORLD == 1 and (not args.settings or count_flops or any(SETTINGS[n.split(":")[0]][3] and m is None for n, m in args.settings))
    flop_samples = stream[0][: args.flop_samples] if args.flop_samples > 0 else stream[0]
    pr = probe(cfg, device, dtype, recipe, steps_total, worst, flop_samples, count_flops) if need_probe else {}
    watch = CompileWatch()
    setup_dynamo(args.recompile_limit, watch)
    if args.static_shapes:
        torch._dynamo.config.automatic_dynamic_shapes = False
    results = []
    static_guess = None
    auto_m = 1
    if args.micro_batch != "auto":
        auto_m = int(args.micro_batch)
    for name, m_override in args.settings:
        if args.micro_batch == "auto" and SETTINGS[name.split(":")[0]][3] and m_override is None:
            # static: weights + LoRA + optimizer state, as the first measured setting saw it.
            static = static_guess or pr.get("weights_gb")
            auto_m = choose_micro_batch(eff, static, pr.get("act_per_sample_gb"), total_gb, args.memory_margin)
            log(f"{name}: micro-batch auto -> {auto_m} (static {static and round(static, 1)} GB + m x "
                f"{pr.get('act_per_sample_gb') and round(pr['act_per_sample_gb'], 2)} GB x {1 + args.memory_margin:g} <= {total_gb and round(total_gb, 1)} GB - {RESERVE_GIB} reserve)")
        progress = Progress("benchmark", name, "steps", total=args.steps) if Progress and RANK == 0 else None
        log(f"setting {name} ...")
        res = run_setting(name, m_override, cfg, args, device, dtype, recipe, stream, worst, eff, steps_total, auto_m, progress, watch)
        if res.get("static_gb") and not static_guess:
            static_guess = res["static_gb"]
        results.append(res)
        log(json.dumps(res))

    if WORLD > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
        if RANK != 0:
            return 0
    out = {
        "nproc": WORLD, "device": dev_name, "device_memory_gb": total_gb, "peak_tflops": peak, "torch": torch.__version__,
        "versions": versions(), "config_model": str(cfg.model._component_), "layers_scale": args.layers_scale,
        "lora_rank": cfg.model.get("lora_rank"), "batch_size": int(cfg.batch_size),
        "gradient_accumulation_steps": int(cfg.get("gradient_accumulation_steps", 1)),
        "effective_batch": eff, "epochs": epochs, "dataset_rows": args.dataset_rows, "steps": args.steps,
        "text_bucket": args.text_bucket, "recompile_limit": args.recompile_limit, "static_shapes": args.static_shapes,
        "settings": [n for n, _ in args.settings],
        "shapes": shape_note, "tiles_histogram": tiles_hist, "worst_case": {
            "tiles": int(worst["encoder_input"]["images"][0].shape[0]), "tokens": len(worst["tokens"])},
        "probe": pr, "results": results,
    }
    finish(out)
    print_table(out)
    line = json.dumps(out, default=str)
    print(BENCH_PREFIX + line, flush=True)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    if not args.settings:  # probe only: weights and activation GB per sample
        return 0 if pr.get("act_per_sample_gb") is not None or pr.get("flops_per_sample") else 1
    return 0 if any(r.get("samples_per_s") for r in results) else 1


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "torchtune", "torchao"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def finish(out: dict) -> None:
    """Ratios to the blog setting of the same run, MFU by the probe's FLOP count, projected hours."""
    results = out["results"]
    blogs = [r for r in results if r["setting"].split(":")[0] == "blog" and not r.get("group_tiles") and r.get("samples_per_s")]
    # the blog's exact setting: the config's own batch as the blog wrote it when run (blog:mN), else "blog"
    base = next((r for r in blogs if r["setting"] == "blog"), blogs[0] if blogs else None)
    if base:
        out["baseline"] = base["setting"]
    flops = (out.get("probe") or {}).get("flops_per_sample")
    peak = out.get("peak_tflops")
    steps_total = out["epochs"] * steps_per_epoch(out["dataset_rows"], out["batch_size"], out["gradient_accumulation_steps"])
    for r in results:
        sps = r.get("samples_per_s")
        if not sps:
            continue
        r["projected_hours"] = steps_total * out["effective_batch"] / sps / 3600
        if base:
            r["vs_blog"] = sps / base["samples_per_s"]
        if flops and peak:
            r["mfu"] = flops * sps / (peak * 1e12)


def merge(paths: list[Path], json_out: Path | None) -> int:
    """Results of several runs on one device and config (e.g. one process per setting, so that one
    OOM or time-out loses one setting only) as one: the probe of the first run that has one."""
    runs = [json.loads(p.read_text().strip().splitlines()[-1].removeprefix(BENCH_PREFIX)) for p in paths]
    keys = ("device", "config_model", "layers_scale", "effective_batch")
    for r in runs[1:]:
        if any(r.get(k) != runs[0].get(k) for k in keys):
            print(f"bench_finetune: error: runs differ in {[k for k in keys if r.get(k) != runs[0].get(k)]}", file=sys.stderr)
            return EXIT_BAD_ARGS
    out = dict(runs[0])
    out["probe"] = next((r["probe"] for r in runs if (r.get("probe") or {}).get("flops_per_sample")), runs[0].get("probe") or {})
    out["results"] = [x for r in runs for x in r["results"]]
    out["settings"] = [x["setting"] for x in out["results"]]
    out["steps"] = min(r["steps"] for r in runs)
    out["merged_from"] = [p.name for p in paths]
    finish(out)
    print_table(out)
    line = json.dumps(out, default=str)
    print(BENCH_PREFIX + line, flush=True)
    if json_out:
        json_out.write_text(line + "\n")
    return 0


def print_table(out: dict) -> None:
    pr = out["probe"]
    lines = [
        f"device: {out['device']} ({out['device_memory_gb'] and round(out['device_memory_gb'], 1)} GiB), torch {out['torch']}, "
        f"MFU peak {out['peak_tflops']} TFLOP/s dense bf16",
        f"model: {out['config_model']}" + (f" with the decoder's layers scaled by {out['layers_scale']} (per-layer shapes kept): "
                                           "NOT the full model" if out["layers_scale"] != 1.0 else " (full size)")
        + f", {pr.get('params_total', 0) / 1e9:.2f}B params, {pr.get('params_trainable', 0) / 1e6:.1f}M trainable",
        f"data: {out['shapes']}; tiles per sample in the timed stream {out['tiles_histogram']}",
        f"effective batch {out['effective_batch']}, {out['steps']} timed optimizer steps after the warm-up (every shape class "
        f"compiled; text padded to a multiple of {out.get('text_bucket')}); "
        f"projection: {out['epochs']} epochs x {out['dataset_rows']} rows",
    ]
    if pr.get("flops_per_sample"):
        lines.append(f"FLOPs: {pr['flops_per_sample'] / 1e12:.1f} TFLOP per sample (FlopCounterMode, one optimizer step "
                     "at micro-batch 1: no padding, no recompute)")
    if pr.get("act_per_sample_gb") is not None:
        lines.append(f"memory probe (eager, no checkpointing, worst-case sample {out['worst_case']}): "
                     f"weights {pr['weights_gb']:.1f} GB, activations {pr['act_per_sample_gb']:.2f} GB per sample")
    head = f"{'setting':<18}{'m x acc':>8}{'samples/s':>11}{'vs blog':>9}{'MFU':>7}{'peak GB':>9}{'resv GB':>9}{'static':>8}{'act/smp':>9}{'hours':>8}{'warm s':>8}{'compile':>8}{'graphs':>7}{'timed':>7}{'fallbk':>7}"
    lines += ["", head, "-" * len(head)]
    for r in out["results"]:
        def f(key, fmt):
            v = r.get(key)
            return format(v, fmt) if isinstance(v, (int, float)) else "-"
        status = "OOM" if r.get("oom") else (r.get("error", "")[:40] if not r.get("samples_per_s") else "")
        lines.append(
            f"{r['setting']:<18}{str(r.get('micro_batch')) + 'x' + str(r.get('grad_accum')):>8}{f('samples_per_s', '.2f'):>11}"
            f"{f('vs_blog', '.2f'):>9}{f('mfu', '.0%'):>7}{f('peak_allocated_gb', '.1f'):>9}{f('peak_reserved_gb', '.1f'):>9}"
            f"{f('static_gb', '.1f'):>8}{f('act_per_sample_gb', '.2f'):>9}{f('projected_hours', '.1f'):>8}{f('warmup_s', '.0f'):>8}{f('compile_s_est', '.0f'):>8}"
            f"{f('warmup_graphs', 'd'):>7}{f('timed_graphs', 'd'):>7}{f('fallbacks', 'd'):>7} {status}"
        )
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Run a torchtune LoRA/QLoRA fine-tune, resuming after a pod restart.

Resume follows torchtune 0.6.1 exactly (read in recipes/lora_finetune_single_device.py and
torchtune/training/checkpointing/_checkpointer.py + _utils.py):
- At the end of epoch k the recipe sets `epochs_run = k + 1` and FullModelHFCheckpointer
  writes, in order: `epoch_k/model-*.safetensors` + index, `epoch_k/adapter_model.pt`,
  copies of the config/tokenizer, and -- for every epoch but the last -- then
  `recipe_state/recipe_state.pt` (optimizer, seed, epochs_run = k + 1, dataloader state).
- With `resume_from_checkpoint=True` the recipe loads `recipe_state/recipe_state.pt` (it
  must exist) and the adapter from `get_largest_iter_folder(output_dir, r"^epoch_(\\d+)")`
  -- the *largest* `epoch_*` name, complete or not -- then trains epochs
  `epochs_run .. epochs-1`.
So a pod killed while saving epoch k leaves a partial `epoch_k` that torchtune would pick.
This wrapper reads `epochs_run` = E from recipe_state.pt: `epoch_{E-1}` is the newest
complete epoch; every `epoch_j` with j >= E is deleted before resuming (a partial folder
cannot be kept under another name: the regex is a prefix match). No recipe_state.pt means
no complete intermediate epoch: start over.

The output dir is tied to one config hash (`.cotvr-run.json`, written before training):
checkpoints of another hash (a complete `epoch_*` or `recipe_state/`) are never overwritten
(exit 3). A run of another hash that failed before its first epoch is taken over: its
leftovers (identity file, logs) move to `.superseded/<old hash>-<time>/`, so a corrected
config re-runs without deleting anything by hand.

Exit codes: 0 ok (also: already complete), 1 recipe failed, 2 bad arguments, 3 missing input
or the output dir belongs to another config hash.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(p) for p in (_HERE, _HERE.parent / "common") if (p / "cotvr_common.py").is_file()]
from cotvr_common import (  # noqa: E402
    EXIT_BAD_ARGS,
    EXIT_FAILED,
    EXIT_MISSING_INPUT,
    EXIT_OK,
    CotvrError,
    atomic_write_json,
    load_json_file,
    log,
    read_marker,
    require_paths,
    run_main,
    sha256_file,
    utc_now,
    write_marker,
)

EPOCH_RE = re.compile(r"^epoch_(\d+)$")
RUN_FILE = ".cotvr-run.json"
ADAPTER = "adapter_model.pt"
RECIPE_STATE = Path("recipe_state") / "recipe_state.pt"
SUPERSEDED = ".superseded"  # leftovers of failed runs of other config hashes


@dataclass
class ResumePlan:
    resume: bool
    completed_epochs: int  # epochs whose checkpoint is complete (= epochs_run)
    remove: list[Path] = field(default_factory=list)
    reason: str = ""


def epoch_dirs(output_dir: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    if output_dir.is_dir():
        for child in output_dir.iterdir():
            match = EPOCH_RE.match(child.name)
            if match and child.is_dir():
                found[int(match.group(1))] = child
    return found


def read_epochs_run(path: Path) -> int | None:
    """`epochs_run` from torchtune's recipe_state.pt, or None if unreadable (a torn write)."""
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means "cannot trust it"
        log(f"cannot read {path}: {type(err).__name__}: {err}")
        return None
    value = state.get("epochs_run") if isinstance(state, dict) else None
    return int(value) if isinstance(value, int) else None


def epoch_complete(folder: Path) -> bool:
    """What the checkpointer writes before recipe_state.pt: weights (+ index) and the adapter."""
    if not (folder / ADAPTER).is_file() or (folder / ADAPTER).stat().st_size == 0:
        return False
    index = folder / "model.safetensors.index.json"
    shards = list(folder.glob("model-*-of-*.safetensors")) + list(folder.glob("*.bin"))
    return index.is_file() or bool(shards)


def plan_resume(output_dir: Path, epochs: int) -> ResumePlan:
    dirs = epoch_dirs(output_dir)
    state = output_dir / RECIPE_STATE
    if not state.is_file():
        return ResumePlan(False, 0, sorted(dirs.values()), "no recipe_state.pt: no complete intermediate epoch")
    epochs_run = read_epochs_run(state)
    if epochs_run is None or epochs_run < 1:
        remove = sorted(dirs.values()) + [state.parent]
        return ResumePlan(False, 0, remove, "recipe_state.pt unreadable: starting over")
    if epochs_run >= epochs:
        raise CotvrError(
            f"{state} records {epochs_run} epochs run but --epochs is {epochs}: "
            "this output dir belongs to a longer run",
            EXIT_BAD_ARGS,
        )
    last = epochs_run - 1
    if last not in dirs or not epoch_complete(dirs[last]):
        remove = sorted(dirs.values()) + [state.parent]
        return ResumePlan(False, 0, remove, f"epoch_{last} (named by recipe_state.pt) is incomplete: starting over")
    remove = [path for number, path in sorted(dirs.items()) if number > last]
    return ResumePlan(True, epochs_run, remove, f"resuming after epoch_{last} ({epochs_run}/{epochs} epochs done)")


def load_config(path: Path, overrides: Sequence[str]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except Exception as err:  # noqa: BLE001
        raise CotvrError(f"cannot read torchtune config {path}: {err}", EXIT_BAD_ARGS) from err


def other_runs_epochs(output_dir: Path) -> list[str]:
    """What makes a folder another run's work worth keeping: complete epoch checkpoints or
    recipe_state/ (written only after an epoch completed). Logs, .cotvr-run.json and partial
    epoch folders of a run that died before its first epoch are not."""
    found = [path.name for _, path in sorted(epoch_dirs(output_dir).items()) if epoch_complete(path)]
    if (output_dir / RECIPE_STATE.parent).exists():
        found.append(str(RECIPE_STATE.parent))
    return found


def take_over(output_dir: Path, recorded: str) -> Path:
    """Move a failed run's leftovers (identity file, marker, logs, ...) aside, so a corrected config
    can use the folder. Kept, not deleted: torchtune's logs are the record of why that run failed,
    and they are small. The dot-folder is outside every `epoch_*` lookup torchtune makes. Partial
    `epoch_*` folders stay where they are: plan_resume removes them (no recipe_state = start over)."""
    dest = output_dir / SUPERSEDED / f"{recorded}-{utc_now().replace(':', '')}"
    dest.mkdir(parents=True, exist_ok=True)
    for child in sorted(output_dir.iterdir()):
        if child.name == SUPERSEDED or (EPOCH_RE.match(child.name) and child.is_dir()):
            continue
        os.replace(child, dest / child.name)
        log(f"moved {child.name} of config hash {recorded} to {dest}")
    return dest


def check_run_identity(output_dir: Path, config_hash: str | None) -> None:
    """Refuse to touch an output dir that holds checkpoints of another config hash; take over one
    whose other-hash run failed before it wrote its first epoch (see take_over)."""
    marker = read_marker(output_dir)
    run_file = output_dir / RUN_FILE
    recorded = None
    if marker is not None:
        recorded = marker.get("config_hash")
    elif run_file.is_file():
        recorded = load_json_file(run_file, "run identity").get("config_hash")
    elif output_dir.is_dir() and any(output_dir.iterdir()):
        if config_hash and (epoch_dirs(output_dir) or (output_dir / RECIPE_STATE).exists()):
            raise CotvrError(
                f"{output_dir} holds checkpoints of an unknown run (no {RUN_FILE}); not overwriting it",
                EXIT_MISSING_INPUT,
            )
    if recorded is None or config_hash is None or recorded == config_hash:
        return
    work = other_runs_epochs(output_dir)
    if work:
        raise CotvrError(
            f"{output_dir} holds checkpoints of config hash {recorded} ({', '.join(work)}), this run is {config_hash}: "
            "not overwriting them (use another cot-vr:run name or remove the folder)",
            EXIT_MISSING_INPUT,
        )
    log(f"{output_dir} holds a run of config hash {recorded} that wrote no epoch: taking it over for {config_hash}")
    take_over(output_dir, recorded)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", required=True, help="torchtune recipe, e.g. lora_finetune_single_device")
    parser.add_argument("--config", required=True, type=Path, help="torchtune config (train.yaml)")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--epochs", required=True, type=int)
    parser.add_argument("--config-hash", default=None)
    parser.add_argument("--require", action="append", default=[], help="path that must exist (repeatable)")
    parser.add_argument("--tune", default=os.environ.get("COTVR_TUNE", "tune"), help="the tune CLI")
    parser.add_argument("overrides", nargs="*", help="extra torchtune key=value overrides")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.epochs < 1:
        raise CotvrError("--epochs must be >= 1", EXIT_BAD_ARGS)
    require_paths(args.require)
    require_paths([args.config], "train config")
    out: Path = args.output_dir
    final = out / f"epoch_{args.epochs - 1}"

    check_run_identity(out, args.config_hash)
    marker = read_marker(out)
    if marker is not None and final.is_dir():
        log(f"{out} is complete ({marker.get('epochs')} epochs, config hash {marker.get('config_hash')}): nothing to do")
        return EXIT_OK

    overrides = [f"output_dir={out}", f"epochs={args.epochs}", *args.overrides]
    cfg = load_config(args.config, overrides)
    ckpt = cfg.get("checkpointer") or {}
    if Path(str(ckpt.get("output_dir"))).resolve() != out.resolve():
        raise CotvrError(
            f"checkpointer.output_dir resolves to {ckpt.get('output_dir')}, not {out}: "
            "use `output_dir: ${output_dir}` in the config",
            EXIT_BAD_ARGS,
        )
    checkpoint_dir = Path(str(ckpt.get("checkpoint_dir")))
    if checkpoint_dir.resolve() == out.resolve() or checkpoint_dir.resolve() in out.resolve().parents:
        raise CotvrError(f"output dir {out} may not be inside checkpoint_dir {checkpoint_dir} (torchtune refuses it)", EXIT_BAD_ARGS)

    plan = plan_resume(out, args.epochs)
    log(plan.reason)
    for path in plan.remove:
        log(f"removing incomplete {path}")
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / RUN_FILE,
        {"config_hash": args.config_hash, "config_sha256": sha256_file(args.config), "epochs": args.epochs, "started_at": utc_now()},
    )
    cmd = [
        args.tune,
        "run",
        args.recipe,
        "--config",
        str(args.config),
        *overrides,
        f"resume_from_checkpoint={plan.resume}",
    ]
    log("running: " + " ".join(cmd))
    try:
        proc = subprocess.run(cmd, check=False)
    except FileNotFoundError as err:
        raise CotvrError(f"cannot run {args.tune}: {err}", EXIT_FAILED) from err
    if proc.returncode != 0:
        raise CotvrError(f"tune run {args.recipe} exited with {proc.returncode}", EXIT_FAILED)
    if not final.is_dir() or not epoch_complete(final):
        raise CotvrError(f"tune run finished but {final} is missing or incomplete", EXIT_FAILED)
    write_marker(
        out,
        epochs=args.epochs,
        recipe=args.recipe,
        config_hash=args.config_hash,
        config_sha256=sha256_file(args.config),
        final_checkpoint=str(final),
        resumed_from_epochs=plan.completed_epochs,
    )
    log(f"training complete: {final}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main("train.py", main))

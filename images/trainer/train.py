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

Progress: `tune run`'s stdout and stderr go through unchanged (the pod log keeps them) while
train.py reads the recipe's own per-epoch tqdm bar (`<epoch>|<global step>|Loss: <loss>: ..
<n>/<steps per epoch>`) and the DiskLogger file (`Step N | loss:.. lr:.. tokens_per_second_per_gpu:..`)
and prints `COTVR_PROGRESS` records: unit steps (optimizer steps), done = finished epochs x
steps per epoch + the bar's n, total = epochs x the bar's total, plus epoch, epochs, loss, lr,
tokens_per_second. The recipe's global step is not used for `done`: after a resume without
max_steps_per_epoch torchtune 0.6.1 restarts it at 0.

Several GPUs (`--nproc N`, N > 1): `tune run --nnodes 1 --nproc_per_node N lora_finetune_distributed`
(torchrun's N processes, one per GPU). Resume, the identity file, the marker and the no-overwrite rules
are the same: the distributed recipe writes the same `epoch_k/` and `recipe_state/recipe_state.pt`
(from rank 0), and only rank 0 draws the bar and writes the DiskLogger, so the progress is rank 0's.
The config hash the Job passes includes N (a run on other GPUs is another run).

Exit codes: 0 ok (also: already complete), 1 recipe failed, 2 bad arguments, 3 missing input
or the output dir belongs to another config hash.
"""

from __future__ import annotations

import argparse
import codecs
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
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
    MARKER_NAME,
    CotvrError,
    Progress,
    atomic_write_json,
    done_for_hash,
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

# One tqdm refresh of the recipe's per-epoch bar (recipes/lora_finetune_single_device.py:
# `tqdm(total=steps_per_epoch)`, `set_description(f"{epoch + 1}|{global_step}|Loss: {loss}")`),
# with the description (after the first step) or without it (the bar's first print and the
# refresh that `pbar.update(1)` makes before `set_description`). Other bars (datasets' "Map: ..")
# have another description and do not match.
TQDM_RE = re.compile(
    r"^\s*(?:(?P<epoch>\d+)\|(?P<step>\d+)\|Loss: (?P<loss>[^:\s]+): )?\s*\d+%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+) \["
)
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # tqdm moves the cursor up between nested bars
DISK_LOG_RE = re.compile(r"^Step (?P<step>\d+) \| (?P<fields>.*)$")  # torchtune DiskLogger.log_dict
LOGS_TO_RE = re.compile(r"^Writing logs to (?P<path>\S+)")  # DiskLogger.__init__'s print


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None  # NaN is not JSON


class TuneProgress:
    """Turns `tune run`'s own output into progress records (see the module docstring)."""

    def __init__(self, progress: Progress, epochs: int, completed_epochs: int, log_dir: Path | None, launched: float) -> None:
        self.progress, self.epochs, self.completed = progress, epochs, completed_epochs
        self.log_dir, self.launched = log_dir, launched
        self.epoch: int | None = None  # 1-based, as the recipe prints it
        self.done = -1
        self.steps_per_epoch: int | None = None
        self.loss: float | None = None
        self.last_step: int | None = None
        self.metrics: dict[str, float] = {}
        self._log_file: Path | None = None
        self._log_pos = 0
        self._tail = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    # -- inputs
    def feed_stdout_line(self, line: str) -> None:
        match = LOGS_TO_RE.match(line.strip())
        if match:
            self._log_file = Path(match.group("path"))

    def feed_stderr(self, chunk: bytes) -> bool:
        """Feed raw stderr bytes; True when the bar moved."""
        text = self._tail + self._decoder.decode(chunk)
        *segments, self._tail = re.split(r"[\r\n]", text)
        moved = False
        for segment in segments:
            moved = self.feed_segment(segment) or moved
        return moved

    def feed_segment(self, segment: str) -> bool:
        match = TQDM_RE.match(ANSI_RE.sub("", segment))
        if not match:
            return False
        n, per_epoch = int(match.group("n")), int(match.group("total"))
        if match.group("epoch"):
            # The recipe calls pbar.update(1) before set_description: that refresh shows the new n
            # with the previous step's description, and a finished bar is re-printed when the
            # next one opens. Only a new global step is a finished step with its own loss.
            step = int(match.group("step"))
            if step == self.last_step:
                return False
            epoch, self.last_step = int(match.group("epoch")), step
            loss = _finite(match.group("loss"))
        elif n == 0:  # a bar's first print: an epoch starts
            epoch = self.completed + 1 if self.epoch is None else self.epoch + 1
            loss = self.loss
        else:  # the first step's refresh before its description: the described one follows
            return False
        done = (epoch - 1) * per_epoch + n
        if self.epoch is not None and (done, epoch) < (self.done, self.epoch):
            return False
        self.epoch, self.done, self.steps_per_epoch, self.loss = epoch, done, per_epoch, loss
        return True

    def read_metrics(self) -> None:
        """New lines of the DiskLogger file: the latest lr and tokens/s (and loss)."""
        path = self._log_file or self._find_log_file()
        if path is None:
            return
        if path != self._log_file:
            self._log_file, self._log_pos = path, 0
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                handle.seek(self._log_pos)
                data = handle.read()
        except OSError:
            return
        complete = data[: data.rfind("\n") + 1]  # a line still being written waits
        self._log_pos += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            match = DISK_LOG_RE.match(line.strip())
            if match:
                for pair in match.group("fields").split():
                    key, _, value = pair.partition(":")
                    number = _finite(value)
                    if number is not None:
                        self.metrics[key] = number

    def _find_log_file(self) -> Path | None:
        """DiskLogger names its file log_<unix time at start>.txt: the newest one of this launch."""
        if self.log_dir is None or not self.log_dir.is_dir():
            return None
        found = []
        for child in self.log_dir.glob("log_*.txt"):
            match = re.match(r"^log_(\d+)\.txt$", child.name)
            if match and int(match.group(1)) >= int(self.launched) - 1:
                found.append((int(match.group(1)), child))
        return max(found)[1] if found else None

    # -- output
    def emit(self, final: bool = False) -> dict[str, Any] | None:
        if self.epoch is None or self.steps_per_epoch is None:
            return None
        self.read_metrics()
        return self.progress.update(
            self.done,
            final=final,
            total=self.epochs * self.steps_per_epoch,
            epoch=self.epoch,
            epochs=self.epochs,
            loss=self.loss if self.loss is not None else self.metrics.get("loss"),
            lr=self.metrics.get("lr"),
            tokens_per_second=self.metrics.get("tokens_per_second_per_gpu"),
        )


def metric_log_dir(cfg: dict[str, Any]) -> Path | None:
    logger = cfg.get("metric_logger") or {}
    if not isinstance(logger, dict) or not str(logger.get("_component_", "")).endswith("DiskLogger"):
        return None
    return Path(str(logger["log_dir"])) if logger.get("log_dir") else None


def run_tune(cmd: list[str], tracker: TuneProgress) -> int:
    """Run `tune`, copying its stdout and stderr through unchanged while reading progress."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its lines reach the pod log when written
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lock = threading.Lock()  # one writer at a time on our stdout: records never split a line

    def pump_stdout() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            with lock:
                sys.stdout.buffer.write(line)
                sys.stdout.buffer.flush()
            tracker.feed_stdout_line(line.decode("utf-8", errors="replace"))

    def pump_stderr() -> None:
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
        while chunk := os.read(fd, 65536):
            sys.stderr.buffer.write(chunk)
            sys.stderr.buffer.flush()
            if tracker.feed_stderr(chunk):
                with lock:
                    tracker.emit()

    threads = [threading.Thread(target=pump, daemon=True) for pump in (pump_stdout, pump_stderr)]
    for thread in threads:
        thread.start()
    code = proc.wait()
    for thread in threads:
        thread.join()
    with lock:
        tracker.emit(final=True)
    return code


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
    parser.add_argument("--recipe-file", type=Path, default=os.environ.get("COTVR_TRAIN_RECIPE") or None,
                        help="run this recipe file instead of `tune run <recipe>` (the image sets the patched recipe)")
    parser.add_argument("--variant", default=None, help="name in progress records (default: the output dir's name)")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes (GPUs) of one node: N > 1 runs the recipe through torchrun (`tune run --nproc_per_node N`)")
    parser.add_argument("overrides", nargs="*", help="extra torchtune key=value overrides")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.epochs < 1:
        raise CotvrError("--epochs must be >= 1", EXIT_BAD_ARGS)
    if args.nproc < 1:
        raise CotvrError("--nproc must be >= 1", EXIT_BAD_ARGS)
    if args.nproc > 1 and not args.recipe.endswith("_distributed"):
        raise CotvrError(f"--nproc {args.nproc} needs a distributed recipe, not {args.recipe}", EXIT_BAD_ARGS)
    require_paths(args.require)
    require_paths([args.config], "train config")
    out: Path = args.output_dir
    final = out / f"epoch_{args.epochs - 1}"

    check_run_identity(out, args.config_hash)
    # check_run_identity refused another hash's work; a marker of this hash with its last epoch is done.
    if final.is_dir() and done_for_hash(out / MARKER_NAME, args.config_hash, "fine-tune"):
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
    recipe_args = ["--config", str(args.config), *overrides, f"resume_from_checkpoint={plan.resume}"]
    if args.nproc > 1:
        # torchrun on this node only (standalone rendezvous); the packaged distributed recipe. The
        # image's patched recipe file is the single-device one, so it does not apply here.
        cmd = [args.tune, "run", "--nnodes", "1", "--nproc_per_node", str(args.nproc), args.recipe, *recipe_args]
    elif args.recipe_file:
        # The image's patched copy (compile_encoder). `tune run <file>` would import it as a module
        # path relative to the cwd; a single-device `tune run` is exactly `python <recipe> args`.
        cmd = [sys.executable, str(args.recipe_file), *recipe_args]
    else:
        cmd = [args.tune, "run", args.recipe, *recipe_args]
    log("running: " + " ".join(cmd))
    tracker = TuneProgress(Progress("train", args.variant or out.name, "steps"), args.epochs, plan.completed_epochs,
                           metric_log_dir(cfg), time.time())
    try:
        returncode = run_tune(cmd, tracker)
    except FileNotFoundError as err:
        raise CotvrError(f"cannot run {args.tune}: {err}", EXIT_FAILED) from err
    if returncode != 0:
        raise CotvrError(f"tune run {args.recipe} exited with {returncode}", EXIT_FAILED)
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

#!/usr/bin/env python3
"""Run torchtune's (patched) eleuther_eval recipe and save the lm-eval metrics as JSON.

The recipe only logs lm-eval's results table. This wrapper loads the patched recipe file
(`/opt/cotvr/recipes/eleuther_eval.py`, made at image build time from torchtune 0.6.1's
recipe + images/trainer/eleuther_eval.patch), runs it exactly as `tune run <file> --config
<cfg> [overrides]` would (its `recipe_main` parses sys.argv), and captures the dict that
`lm_eval.evaluator.evaluate` returns by wrapping the name the recipe module imported.

Saved: per task `exact_match`, `relaxed_accuracy`, `anywhere_accuracy` and their `_stderr`,
plus limit, model component, checkpoint dir, config hash, versions and timings.

Progress: lm-eval 0.4.9.2 counts requests with the tqdm bar of `HFMultimodalLM.generate_until`
("Running generate_until requests with text+image input", stderr; the recipe's wrapper inherits
that method). While the recipe runs, the `tqdm` name of `lm_eval.models.hf_vlms` is a subclass
that prints the same bar and also a `COTVR_PROGRESS` record (unit requests, task) per update,
throttled; a final record follows evaluate()'s return.

Exit codes: 0 ok, 2 bad arguments, 3 missing input, 1 recipe failed, 5 no metrics.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Sequence

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(p) for p in (_HERE, _HERE.parent / "common") if (p / "cotvr_common.py").is_file()]
from cotvr_common import (  # noqa: E402
    EXIT_BAD_ARGS,
    EXIT_FAILED,
    EXIT_MISSING_INPUT,
    EXIT_NO_METRICS,
    EXIT_OK,
    CotvrError,
    Progress,
    atomic_write_json,
    done_for_hash,
    log,
    require_paths,
    run_main,
    sha256_file,
    utc_now,
)

DEFAULT_RECIPE = "/opt/cotvr/recipes/eleuther_eval.py"
METRICS = ("exact_match", "relaxed_accuracy", "anywhere_accuracy")


def _number(value: Any) -> float | None:
    """lm-eval writes "N/A" for a stderr it cannot compute; keep numbers only."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def extract_metrics(output: Any, tasks: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """Per task: the chartqa metrics and their stderr, from `evaluate()`'s return value.

    lm-eval keys results as "<metric>,<filter>" (e.g. "exact_match,none",
    "exact_match_stderr,none"). The "none" filter wins if a task has several.
    Raises CotvrError(5) if a requested task has no numeric exact_match.
    """
    if not isinstance(output, Mapping):
        raise CotvrError(f"lm-eval returned {type(output).__name__}, not a results dict", EXIT_NO_METRICS)
    results = output.get("results")
    if not isinstance(results, Mapping) or not results:
        raise CotvrError("lm-eval output has no 'results'", EXIT_NO_METRICS)

    wanted = set(METRICS) | {f"{m}_stderr" for m in METRICS}
    extracted: dict[str, dict[str, float | None]] = {}
    for task, values in results.items():
        if not isinstance(values, Mapping):
            continue
        metrics: dict[str, float | None] = {}
        for key, value in values.items():
            name, _, filt = str(key).partition(",")
            if name not in wanted:
                continue
            if name in metrics and filt not in ("", "none"):
                continue  # keep the unfiltered value
            metrics[name] = _number(value)
        if metrics:
            extracted[str(task)] = metrics

    problems = []
    for task in tasks:
        got = extracted.get(task)
        if got is None and task in results:
            problems.append(f"task '{task}' has no exact_match/relaxed_accuracy/anywhere_accuracy in its results")
        elif got is None:
            problems.append(f"task '{task}' missing from results (have: {sorted(results)})")
        elif got.get("exact_match") is None:
            problems.append(f"task '{task}' has no numeric exact_match")
    if problems:
        raise CotvrError("; ".join(problems), EXIT_NO_METRICS)
    return extracted


def n_samples(output: Mapping[str, Any]) -> dict[str, Any]:
    value = output.get("n-samples")
    return dict(value) if isinstance(value, Mapping) else {}


def load_recipe_module(path: Path) -> ModuleType:
    if not path.is_file():
        raise CotvrError(f"eval recipe not found: {path} (built into the trainer image)", EXIT_MISSING_INPUT)
    spec = importlib.util.spec_from_file_location("cotvr_eleuther_eval", path)
    if spec is None or spec.loader is None:
        raise CotvrError(f"cannot load {path}", EXIT_FAILED)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def assert_patched(module: ModuleType) -> None:
    """The unpatched recipe returns only new tokens (lm-eval then slices them away) and
    lacks the image size attributes lm-eval >= 0.4.9 reads: its scores would be garbage."""
    import inspect

    wrapper = getattr(module, "_VLMEvalWrapper", None)
    if wrapper is None:
        raise CotvrError("eval recipe has no _VLMEvalWrapper: not torchtune's eleuther_eval", EXIT_FAILED)
    params = inspect.signature(wrapper.__init__).parameters
    source = inspect.getsource(wrapper._model_multimodal_generate)
    if "image_max_side" not in params or 'batch["input_pos"].size(1)' not in source:
        raise CotvrError("eval recipe is not patched with images/trainer/eleuther_eval.patch", EXIT_FAILED)


def request_progress_tqdm(base: type, progress: Progress, task: str, seen: dict[str, Any]) -> type:
    """`base` (lm-eval's tqdm) that also reports its "Running ... requests" bars as progress.

    Counts `update(n)` calls itself: a disabled tqdm (`disable_tqdm`, rank != 0) keeps n at 0.
    """

    class RequestProgressTqdm(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            desc = str(kwargs.get("desc") or (args[1] if len(args) > 1 else ""))
            self._cotvr_requests = desc.startswith("Running ") and "requests" in desc
            self._cotvr_done = 0
            self._cotvr_total = kwargs.get("total")
            if self._cotvr_requests:
                seen.update(done=0, total=self._cotvr_total)
                progress.update(0, total=self._cotvr_total, task=task)

        def update(self, n: float | None = 1) -> Any:
            result = super().update(n)
            if self._cotvr_requests:
                self._cotvr_done += 1 if n is None else n
                seen.update(done=self._cotvr_done, total=self._cotvr_total)
                progress.update(self._cotvr_done, total=self._cotvr_total, task=task)
            return result

    return RequestProgressTqdm


def run_recipe(module: ModuleType, config: Path, overrides: Sequence[str], progress: Progress | None = None,
               task: str = "") -> Any:
    """Run the recipe like `tune run`; return what lm-eval's evaluate() returned."""
    captured: dict[str, Any] = {}
    original = module.evaluate
    seen: dict[str, Any] = {}
    hf_vlms, original_tqdm = None, None
    if progress is not None:
        from lm_eval.models import hf_vlms

        original_tqdm = hf_vlms.tqdm
        hf_vlms.tqdm = request_progress_tqdm(original_tqdm, progress, task, seen)

    def capturing_evaluate(*args: Any, **kwargs: Any) -> Any:
        output = original(*args, **kwargs)
        captured["output"] = output
        return output

    module.evaluate = capturing_evaluate
    saved_argv = sys.argv
    sys.argv = ["eleuther_eval", "--config", str(config), *overrides]
    try:
        module.recipe_main()
    except SystemExit as exit_:  # torchtune's config.parse ends with sys.exit(recipe_main(cfg))
        if exit_.code not in (None, 0):
            raise CotvrError(f"eleuther_eval recipe exited with {exit_.code}", EXIT_FAILED) from exit_
    except CotvrError:
        raise
    except Exception as err:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        raise CotvrError(f"eleuther_eval recipe failed: {type(err).__name__}: {err}", EXIT_FAILED) from err
    finally:
        sys.argv = saved_argv
        module.evaluate = original
        if hf_vlms is not None:
            hf_vlms.tqdm = original_tqdm
    if "output" not in captured:
        raise CotvrError("the recipe finished without running lm-eval's evaluate()", EXIT_NO_METRICS)
    if progress is not None:
        # evaluate() returned: every request is answered. Without a bar (another model class),
        # the sample counts lm-eval reports stand in for the request count.
        effective = sum(int(v.get("effective", 0)) for v in n_samples(captured["output"]).values() if isinstance(v, Mapping))
        total = seen.get("total") or effective or None
        progress.update(total or seen.get("done", 0), final=True, total=total, task=task)
    return captured["output"]


def resolved_config(config: Path, overrides: Sequence[str]) -> Mapping[str, Any]:
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.merge(OmegaConf.load(config), OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except Exception as err:  # noqa: BLE001
        raise CotvrError(f"cannot read torchtune config {config}: {err}", 2) from err


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torchtune", "lm-eval", "torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="torchtune eval config (eval.yaml)")
    parser.add_argument("--variant", required=True, help="name of the evaluated model variant")
    parser.add_argument("--out", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument("--config-hash", default=None, help="hash of the rendered stage; same hash + existing --out = no-op")
    parser.add_argument("--require", action="append", default=[], help="path that must exist (repeatable)")
    parser.add_argument("--recipe", type=Path, default=Path(os.environ.get("COTVR_EVAL_RECIPE", DEFAULT_RECIPE)))
    parser.add_argument("overrides", nargs="*", help="torchtune key=value overrides")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    require_paths(args.require)
    require_paths([args.config], "eval config")

    if done_for_hash(args.out, args.config_hash, "metrics"):
        return EXIT_OK

    cfg = resolved_config(args.config, args.overrides)
    tasks = [str(t) for t in (cfg.get("tasks") or [])]
    if not tasks:
        raise CotvrError(f"{args.config} lists no tasks", EXIT_BAD_ARGS)

    module = load_recipe_module(args.recipe)
    assert_patched(module)
    started = time.monotonic()
    log(f"evaluating {args.variant} on {tasks} (limit {cfg.get('limit')})")
    progress = Progress("evaluate", args.variant, "requests")
    output = run_recipe(module, args.config, args.overrides, progress, ",".join(tasks))
    metrics = extract_metrics(output, tasks)

    checkpointer = cfg.get("checkpointer") or {}
    model = cfg.get("model") or {}
    record = {
        "variant": args.variant,
        "config_hash": args.config_hash,
        "config": str(args.config),
        "config_sha256": sha256_file(args.config),
        "model": model.get("_component_") if isinstance(model, Mapping) else None,
        "checkpoint_dir": checkpointer.get("checkpoint_dir") if isinstance(checkpointer, Mapping) else None,
        "tasks": tasks,
        "limit": cfg.get("limit"),
        "results": metrics,
        "n_samples": n_samples(output),
        "versions": versions(),
        "duration_s": round(time.monotonic() - started, 1),
        "evaluated_at": utc_now(),
    }
    atomic_write_json(args.out, record)
    for task, values in metrics.items():
        log(f"{args.variant} {task}: " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
    log(f"wrote {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main("evaluate.py", main))

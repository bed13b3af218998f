#!/usr/bin/env python3
"""Sample one answer from a model with torchtune's generate_v2 recipe and save it as JSON.

torchtune 0.6.1's `recipes/dev/generate_v2.py` only logs the decoded text. This wrapper runs
the real recipe class in-process (InferenceRecipe: setup + generate, as its `main` does),
and captures the answer by wrapping the model transform's `decode`, which `generate` calls
exactly once on the generated tokens.

The image comes from `--image PATH`, or is materialised from a dataset row
(`--image-dataset HuggingFaceM4/ChartQA --image-split train --image-index 27901`, the blog's
example) as a PNG next to `--out`. The question and image replace `prompt.user.{text,image}`;
the system prompt stays the config's.

Progress: `COTVR_PROGRESS` records in unit tokens. generate_v2 prints no progress of its own;
a forward hook on the recipe's model counts its calls (the prefill and each decoding step each
make one token), total = max_new_tokens + 1 (the recipe's bound: prefill + max_new_tokens).
The final record's done and total are the number of tokens `decode` received.

Output: `{variant, question, image, answer, config, config_hash, checkpoint_dir, ...}`.
Exit codes: 0 ok (also: already done for this config hash), 1 failed, 2 bad arguments,
3 missing input.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(p) for p in (_HERE, _HERE.parent / "common") if (p / "cotvr_common.py").is_file()]
from cotvr_common import (  # noqa: E402
    EXIT_BAD_ARGS,
    EXIT_FAILED,
    EXIT_MISSING_INPUT,
    EXIT_OK,
    CotvrError,
    Progress,
    atomic_write_bytes,
    atomic_write_json,
    done_for_hash,
    log,
    require_paths,
    run_main,
    sha256_file,
    utc_now,
)


def generate_v2_path() -> Path:
    """torchtune's wheel ships its recipes as the top-level package `recipes`."""
    spec = importlib.util.find_spec("recipes")
    if spec is None or not spec.submodule_search_locations:
        raise CotvrError("torchtune's recipes package is not importable (is torchtune 0.6.1 installed?)", EXIT_FAILED)
    path = Path(list(spec.submodule_search_locations)[0]) / "dev" / "generate_v2.py"
    if not path.is_file():
        raise CotvrError(f"{path} not found in the torchtune install", EXIT_FAILED)
    return path


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("cotvr_generate_v2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def materialise_image(args: argparse.Namespace) -> Path:
    if args.image:
        image = Path(args.image)
        require_paths([image], "image")
        return image
    if not args.image_dataset or args.image_index is None:
        raise CotvrError("give --image, or --image-dataset with --image-index", EXIT_BAD_ARGS)
    target = args.out.with_suffix(".png")
    try:
        import datasets

        ds = datasets.load_dataset(args.image_dataset, split=args.image_split)
        if not 0 <= args.image_index < len(ds):
            raise CotvrError(f"--image-index {args.image_index} outside {args.image_dataset}[{args.image_split}] (0..{len(ds) - 1})", EXIT_BAD_ARGS)
        image = ds[args.image_index]["image"]
    except CotvrError:
        raise
    except Exception as err:  # noqa: BLE001
        raise CotvrError(f"cannot load image {args.image_index} of {args.image_dataset}[{args.image_split}]: {err}", EXIT_MISSING_INPUT) from err
    import io

    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    atomic_write_bytes(target, buffer.getvalue())
    log(f"image {args.image_dataset}[{args.image_split}][{args.image_index}] saved as {target}")
    return target


def build_config(config: Path, question: str, image: Path, overrides: Sequence[str]) -> Any:
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.merge(OmegaConf.load(config), OmegaConf.from_dotlist(list(overrides)))
    except Exception as err:  # noqa: BLE001
        raise CotvrError(f"cannot read torchtune config {config}: {err}", EXIT_BAD_ARGS) from err
    if "prompt" not in cfg:
        raise CotvrError(f"{config} has no `prompt:` section (generate_v2 needs prompt.system / prompt.user)", EXIT_BAD_ARGS)
    OmegaConf.update(cfg, "prompt.user", {"image": str(image), "text": question}, merge=False)
    return cfg


def generate(cfg: Any, recipe_file: Path | None = None, progress: Progress | None = None) -> str:
    """Run generate_v2's InferenceRecipe on `cfg`; return the decoded answer."""
    module = load_module(recipe_file or generate_v2_path())
    recipe = module.InferenceRecipe(cfg=cfg)
    recipe.setup(cfg=cfg)
    transform = recipe.model_transform
    captured: list[str] = []
    n_tokens: list[int] = []
    original_decode = transform.decode
    bound = int(cfg.get("max_new_tokens") or 0) + 1

    def capturing_decode(*args: Any, **kwargs: Any) -> str:
        text = original_decode(*args, **kwargs)
        captured.append(text)
        if args and hasattr(args[0], "__len__"):
            n_tokens.append(len(args[0]))
        return text

    calls = [0]

    def count_forward(module: Any, inputs: Any, output: Any) -> None:  # returns None: output unchanged
        calls[0] += 1
        if progress is not None:
            progress.update(calls[0], total=bound)

    transform.decode = capturing_decode
    hook = recipe.model.register_forward_hook(count_forward) if progress is not None else None
    try:
        if progress is not None:
            progress.update(0, total=bound)
        recipe.generate(cfg=cfg)
    finally:
        transform.decode = original_decode
        if hook is not None:
            hook.remove()
    if not captured:
        raise CotvrError("generate_v2 finished without decoding an answer", EXIT_FAILED)
    if progress is not None:
        done = n_tokens[-1] if n_tokens else calls[0]
        progress.update(done, final=True, total=done)
    return captured[-1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sample.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="torchtune generation config (generate.yaml)")
    parser.add_argument("--variant", required=True)
    parser.add_argument("--question", required=True)
    parser.add_argument("--image", default=None, help="local image file (instead of a dataset row)")
    parser.add_argument("--image-dataset", default=None)
    parser.add_argument("--image-split", default="train")
    parser.add_argument("--image-index", type=int, default=None)
    parser.add_argument("--out", required=True, type=Path, help="JSON to write")
    parser.add_argument("--config-hash", default=None)
    parser.add_argument("--require", action="append", default=[], help="path that must exist (repeatable)")
    parser.add_argument("overrides", nargs="*", help="torchtune key=value overrides")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.question.strip():
        raise CotvrError("--question is empty", EXIT_BAD_ARGS)
    require_paths(args.require)
    require_paths([args.config], "generation config")
    if done_for_hash(args.out, args.config_hash, "sample", lambda rec: bool(rec.get("answer"))):
        return EXIT_OK

    image = materialise_image(args)
    cfg = build_config(args.config, args.question, image, args.overrides)
    started = time.monotonic()
    try:
        answer = generate(cfg, progress=Progress("sample", args.variant, "tokens"))
    except CotvrError:
        raise
    except Exception as err:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        raise CotvrError(f"generate_v2 failed: {type(err).__name__}: {err}", EXIT_FAILED) from err
    if not answer.strip():
        raise CotvrError("the model produced an empty answer", EXIT_FAILED)

    checkpointer = cfg.get("checkpointer") or {}
    record = {
        "variant": args.variant,
        "question": args.question,
        "image": str(image),
        "answer": answer,
        "config": str(args.config),
        "config_hash": args.config_hash,
        "config_sha256": sha256_file(args.config),
        "checkpoint_dir": str(checkpointer.get("checkpoint_dir")) if checkpointer else None,
        "max_new_tokens": cfg.get("max_new_tokens"),
        "temperature": cfg.get("temperature"),
        "duration_s": round(time.monotonic() - started, 1),
        "generated_at": utc_now(),
    }
    atomic_write_json(args.out, record)
    print(answer, flush=True)
    log(f"wrote {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main("sample.py", main))

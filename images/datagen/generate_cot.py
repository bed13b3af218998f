#!/usr/bin/env python3
"""Generate the chain-of-thought ChartQA dataset with synthetic-data-kit, check it, publish it.

1. Read the synthetic-data-kit config (the same file the tool reads) and refuse the blog's
   mistakes before spending GPU hours: an empty top-level `prompt:` (the blog put it under
   `prompts.xqa_add_reasoning`, which the generator never reads) or no `output_split`.
2. Wait for the teacher: `GET <api_base>/models` must list `api-endpoint.model`. A reachable
   server that serves another model fails at once (vLLM answers 404 for an unknown model and
   synthetic-data-kit would store "ERROR: ..." as every label).
3. Run `synthetic-data-kit -c <config> create <source> --type vqa_add_reasoning -o <out>.staging`.
4. Run the dataset check (check_cot.py) on the staging folder; on failure nothing is published.
5. Publish: write `.complete.json` into the staging folder, then rename it to `<out>`.

Exit codes: 0 ok, 1 synthetic-data-kit failed / wrote nothing, 2 bad config,
3 teacher or model not reachable / source missing, 6 dataset check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(p) for p in (_HERE, _HERE.parent / "common") if (p / "cotvr_common.py").is_file()]
from cotvr_common import (  # noqa: E402
    EXIT_BAD_ARGS,
    EXIT_CHECK_FAILED,
    EXIT_FAILED,
    EXIT_MISSING_INPUT,
    EXIT_OK,
    CotvrError,
    dig,
    log,
    read_marker,
    run_main,
    sha256_file,
    utc_now,
    write_marker,
)
from check_cot import check_dataset, format_summary  # noqa: E402

CONTENT_TYPE = "vqa_add_reasoning"


def load_sdk_config(path: Path) -> dict[str, Any]:
    """Load and sanity-check the config the way synthetic-data-kit 0.0.5 reads it."""
    import yaml

    if not path.is_file():
        raise CotvrError(f"synthetic-data-kit config not found: {path}", EXIT_MISSING_INPUT)
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise CotvrError(f"{path} is not valid YAML: {err}", EXIT_BAD_ARGS) from err
    if not isinstance(cfg, dict):
        raise CotvrError(f"{path} must be a YAML mapping", EXIT_BAD_ARGS)

    problems: list[str] = []
    prompt = cfg.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        hint = ""
        prompts = cfg.get("prompts")
        if isinstance(prompts, dict) and prompts:
            hint = (
                f" (found prompts.{'/'.join(prompts)}: synthetic-data-kit's VQA generator only reads the "
                "top-level `prompt:` key, so the teacher would get an empty system prompt)"
            )
        problems.append("top-level `prompt:` is missing or empty" + hint)
    provider = dig(cfg, "llm.provider", "vllm")
    section = "api-endpoint" if provider == "api-endpoint" else "vllm"
    if not dig(cfg, f"{section}.api_base"):
        problems.append(f"`{section}.api_base` is not set")
    if not dig(cfg, f"{section}.model"):
        problems.append(f"`{section}.model` is not set")
    if not cfg.get("output_split"):
        problems.append("`output_split` is not set (the dataset must be written as <out>/<split>/data.parquet)")
    if problems:
        raise CotvrError(f"{path}: " + "; ".join(problems), EXIT_BAD_ARGS)
    return cfg


def teacher_endpoint(cfg: dict[str, Any]) -> tuple[str, str, str | None]:
    provider = dig(cfg, "llm.provider", "vllm")
    section = "api-endpoint" if provider == "api-endpoint" else "vllm"
    api_base = str(dig(cfg, f"{section}.api_base")).rstrip("/")
    model = str(dig(cfg, f"{section}.model"))
    key = os.environ.get("API_ENDPOINT_KEY") or dig(cfg, f"{section}.api_key")
    return api_base, model, key


def list_models(api_base: str, key: str | None, timeout: float = 10.0) -> list[str]:
    request = urllib.request.Request(f"{api_base}/models")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URL from our config
        body = json.loads(response.read().decode("utf-8"))
    return [str(item.get("id")) for item in body.get("data", []) if isinstance(item, dict)]


def wait_for_teacher(api_base: str, model: str, key: str | None, timeout_s: float, poll_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while True:
        try:
            served = list_models(api_base, key)
        except (urllib.error.URLError, OSError, ValueError) as err:
            last_error = f"{type(err).__name__}: {err}"
        else:
            if model in served:
                log(f"teacher at {api_base} serves {model}")
                return
            raise CotvrError(
                f"teacher at {api_base} serves {served or 'no models'}, but the config asks for '{model}' "
                "(api-endpoint.model must equal vLLM's --served-model-name)",
                EXIT_MISSING_INPUT,
            )
        if time.monotonic() >= deadline:
            raise CotvrError(
                f"teacher not reachable at {api_base}/models after {timeout_s:.0f}s: {last_error}",
                EXIT_MISSING_INPUT,
            )
        log(f"waiting for teacher at {api_base} ({last_error})")
        time.sleep(poll_s)


def publish(staging: Path, out: Path) -> None:
    """Replace `out` by `staging` with renames only (the old copy is removed afterwards)."""
    old: Path | None = None
    if out.exists():
        old = out.with_name(f"{out.name}.old-{int(time.time())}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="generate_cot.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="synthetic-data-kit config (sdk.yaml)")
    parser.add_argument("--source", required=True, help="HF dataset id (HuggingFaceM4/ChartQA) or file")
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to publish")
    parser.add_argument("--config-hash", default=None, help="hash of the rendered stage; same hash + complete <out> = no-op")
    parser.add_argument("--limit", type=int, default=None, help="process only the first N rows (-n)")
    parser.add_argument("--expected-rows", type=int, default=None, help="rows the check requires (default: --limit)")
    parser.add_argument("--max-missing-final-fraction", type=float, default=0.0)
    parser.add_argument("--teacher-timeout", type=float, default=3600.0, help="seconds to wait for the teacher")
    parser.add_argument("--poll-interval", type=float, default=15.0)
    parser.add_argument("--sdk", default=os.environ.get("COTVR_SDK", "synthetic-data-kit"), help="CLI to run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit <= 0:
        raise CotvrError("--limit must be a positive number", EXIT_BAD_ARGS)
    cfg = load_sdk_config(args.config)
    config_sha = sha256_file(args.config)
    out: Path = args.out
    expected = args.expected_rows if args.expected_rows is not None else args.limit

    marker = read_marker(out)
    same = (
        marker.get("config_hash") == args.config_hash
        if marker and args.config_hash
        else bool(marker) and marker.get("config_sha256") == config_sha and marker.get("limit") == args.limit
    )
    if marker and same:
        log(f"{out} is complete ({marker.get('rows')} rows, config hash {marker.get('config_hash')}): nothing to do")
        return EXIT_OK
    if marker:
        log(f"{out} was made with config hash {marker.get('config_hash')}, this run is {args.config_hash}: regenerating")

    api_base, model, key = teacher_endpoint(cfg)
    wait_for_teacher(api_base, model, key, args.teacher_timeout, args.poll_interval)

    staging = out.with_name(f"{out.name}.staging")
    if staging.exists():
        shutil.rmtree(staging)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [args.sdk, "-c", str(args.config), "create", args.source, "--type", CONTENT_TYPE, "-o", str(staging)]
    if args.limit is not None:
        cmd += ["-n", str(args.limit)]
    log("running: " + " ".join(cmd))
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, check=False)
    except FileNotFoundError as err:
        raise CotvrError(f"cannot run {args.sdk}: {err}", EXIT_FAILED) from err
    log(f"synthetic-data-kit exited {proc.returncode} after {time.monotonic() - started:.0f}s")

    split = str(cfg["output_split"])
    if proc.returncode != 0 or not (staging / split / "data.parquet").is_file():
        raise CotvrError(
            f"synthetic-data-kit did not write {staging / split / 'data.parquet'} (exit {proc.returncode}); "
            "see its output above. Nothing was published.",
            EXIT_FAILED,
        )

    result = check_dataset(staging, split, expected, args.max_missing_final_fraction)
    print(format_summary(result), flush=True)
    if not result.ok:
        print(
            f"generate_cot.py: error: dataset check failed, {out} not published "
            f"(staging kept at {staging}): {'; '.join(result.failures)}",
            file=sys.stderr,
        )
        return EXIT_CHECK_FAILED

    write_marker(
        staging,
        rows=result.rows,
        split=split,
        source=args.source,
        limit=args.limit,
        config_hash=args.config_hash,
        teacher_model=model,
        config_sha256=config_sha,
        missing_final_answer=result.missing_final_answer,
        generated_at=utc_now(),
    )
    publish(staging, out)
    log(f"published {out} ({result.rows} rows)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main("generate_cot.py", main))

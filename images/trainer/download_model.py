#!/usr/bin/env python3
"""Download a Hugging Face model snapshot once, verify it, mark it complete.

Equivalent to the blog's `tune download <repo> --output-dir <dest> --ignore-patterns
"original/consolidated*.pth"`, plus: a no-op when `<dest>/.complete.json` exists and the
files are there; verification of the files torchtune needs (`config.json`,
`original/tokenizer.model`, `model-0000i-of-0000N.safetensors`); the marker written last.
`snapshot_download` resumes partial downloads, so a restarted pod continues where it stopped.

Exit codes: 0 ok, 2 bad arguments, 3 missing token / gated or unknown repo,
4 incomplete download (network error or files missing afterwards).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(p) for p in (_HERE, _HERE.parent / "common") if (p / "cotvr_common.py").is_file()]
from cotvr_common import (  # noqa: E402
    EXIT_BAD_ARGS,
    EXIT_INCOMPLETE,
    EXIT_MISSING_INPUT,
    EXIT_OK,
    MARKER_NAME,
    CotvrError,
    log,
    read_marker,
    run_main,
    write_marker,
)


def shard_names(shards: int) -> list[str]:
    return [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]


def missing_files(dest: Path, required: Sequence[str], shards: int) -> list[str]:
    missing = []
    for name in [*required, *shard_names(shards)]:
        path = dest / name
        if not path.is_file() or path.stat().st_size == 0:
            missing.append(name)
    return missing


def hf_token() -> str | None:
    """The token from the env, or from the file the Job mounts (HF_TOKEN_PATH, as huggingface_hub reads it)."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    path = os.environ.get("HF_TOKEN_PATH")
    if not token and path and os.path.isfile(path):
        token = Path(path).read_text(encoding="utf-8").strip()
    return token or None


def download(repo_id: str, dest: Path, ignore: Sequence[str], token: str, revision: str | None) -> None:
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        huggingface_hub.snapshot_download(
            repo_id=repo_id,
            revision=revision,
            local_dir=str(dest),
            ignore_patterns=list(ignore) or None,
            token=token,
        )
    except GatedRepoError as err:
        raise CotvrError(
            f"{repo_id} is gated and HF_TOKEN has no access: accept the licence on its model page with the token's account ({err})",
            EXIT_MISSING_INPUT,
        ) from err
    except RepositoryNotFoundError as err:
        raise CotvrError(f"{repo_id} not found, or HF_TOKEN may not see it ({err})", EXIT_MISSING_INPUT) from err
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise CotvrError(f"Hugging Face refused HF_TOKEN for {repo_id} (HTTP {status})", EXIT_MISSING_INPUT) from err
        raise CotvrError(f"download of {repo_id} failed: {err}", EXIT_INCOMPLETE) from err
    except (OSError, ValueError) as err:
        raise CotvrError(f"download of {repo_id} failed: {type(err).__name__}: {err}", EXIT_INCOMPLETE) from err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="download_model.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo-id", required=True, help="e.g. meta-llama/Llama-3.2-11B-Vision-Instruct")
    parser.add_argument("--dest", required=True, type=Path)
    parser.add_argument("--ignore", action="append", default=[], help="glob not to download (repeatable)")
    parser.add_argument("--require", action="append", default=[], help="file that must exist afterwards (repeatable)")
    parser.add_argument("--shards", required=True, type=int, help="number of model-*-of-N.safetensors shards")
    parser.add_argument("--revision", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.shards < 1:
        raise CotvrError("--shards must be >= 1", EXIT_BAD_ARGS)
    if "/" not in args.repo_id:
        raise CotvrError(f"--repo-id must look like owner/name, got {args.repo_id!r}", EXIT_BAD_ARGS)
    dest: Path = args.dest

    marker = read_marker(dest)
    if marker is not None:
        missing = missing_files(dest, args.require, args.shards)
        if not missing and marker.get("repo_id") == args.repo_id:
            log(f"{dest} is complete ({args.repo_id}): nothing to do")
            return EXIT_OK
        log(f"{dest} has a marker but {'misses ' + ', '.join(missing) if missing else 'another repo'}: downloading again")
        (dest / MARKER_NAME).unlink(missing_ok=True)

    token = hf_token()
    if not token:
        raise CotvrError("HF_TOKEN is not set (the Llama 3.2 Vision repos are gated): set the Kubernetes Secret", EXIT_MISSING_INPUT)

    dest.mkdir(parents=True, exist_ok=True)
    log(f"downloading {args.repo_id} to {dest} (ignoring {args.ignore or 'nothing'})")
    download(args.repo_id, dest, args.ignore, token, args.revision)

    missing = missing_files(dest, args.require, args.shards)
    if missing:
        raise CotvrError(f"download of {args.repo_id} finished but {dest} misses: {', '.join(missing)}", EXIT_INCOMPLETE)
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file() and ".cache" not in p.parts)
    write_marker(dest, repo_id=args.repo_id, revision=args.revision, shards=args.shards, bytes=total)
    log(f"{args.repo_id} complete: {total / 1e9:.1f} GB in {dest}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main("download_model.py", main))

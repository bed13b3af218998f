#!/usr/bin/env python3
"""Download a Hugging Face model snapshot once, verify it, mark it complete.

Equivalent to the blog's `tune download <repo> --output-dir <dest> --ignore-patterns
"original/consolidated*.pth"`, plus: a no-op when `<dest>/.complete.json` exists and the
files are there; verification of the files torchtune needs (`config.json`,
`original/tokenizer.model`, `model-0000i-of-0000N.safetensors`); the marker written last.
`snapshot_download` resumes partial downloads, so a restarted pod continues where it stopped.

Progress: `COTVR_PROGRESS` records in unit bytes, from huggingface_hub's own progress bars.
Every file download (plain HTTP, hf_transfer or hf_xet) reports its bytes to the bar that
`huggingface_hub.utils.tqdm._get_progress_bar_context` opens (unit "B", initial = resumed
bytes); while snapshot_download runs, that module's `tqdm` is a subclass that also adds the
bytes up. `snapshot_download(tqdm_class=...)` only sees whole files and is not used at all with
HF_HUB_ENABLE_HF_TRANSFER=1 (the Job's setting): it feeds the `files` field when it runs.
total = the sizes the hub lists for the selected files (one `model_info(files_metadata=True)`
call); files already complete in --dest (skipped by snapshot_download) count as done.

Exit codes: 0 ok, 2 bad arguments, 3 missing token / gated or unknown repo,
4 incomplete download (network error or files missing afterwards).
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import os
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(p) for p in (_HERE, _HERE.parent / "common") if (p / "cotvr_common.py").is_file()]
from cotvr_common import (  # noqa: E402
    EXIT_BAD_ARGS,
    EXIT_INCOMPLETE,
    EXIT_MISSING_INPUT,
    EXIT_OK,
    MARKER_NAME,
    CotvrError,
    Progress,
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


class DownloadProgress:
    """Bytes done over all file bars (thread-safe: snapshot_download downloads in threads)."""

    def __init__(self, progress: Progress, total: int | None, files_total: int | None, already: int) -> None:
        self.progress, self.total, self.files_total = progress, total, files_total
        self.already = already  # bytes of files complete before this run
        self.bars: dict[int, int] = {}  # bar number -> its bytes (ids of closed bars get reused)
        self.keys = itertools.count()
        self.files_done: int | None = None
        self.lock = threading.Lock()

    def bar(self, key: int, n: float) -> None:
        with self.lock:
            self.bars[key] = int(n)
            self.emit()

    def files(self, n: int) -> None:
        with self.lock:
            self.files_done = n
            self.emit()

    def done(self) -> int:
        done = self.already + sum(self.bars.values())
        return min(done, self.total) if self.total else done

    def emit(self, final: bool = False) -> None:
        self.progress.update(self.done(), final=final, total=self.total, files=self.files_done, files_total=self.files_total)


def byte_bar_class(base: type, tracker: DownloadProgress) -> type:
    """huggingface_hub's tqdm, also reporting the bytes of its per-file ("B") bars."""

    class ByteProgressTqdm(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._cotvr_bytes = kwargs.get("unit") == "B"
            self._cotvr_n = float(kwargs.get("initial") or 0)  # counted here: a disabled tqdm keeps n at 0
            self._cotvr_key = next(tracker.keys)
            if self._cotvr_bytes:
                tracker.bar(self._cotvr_key, self._cotvr_n)

        def update(self, n: float | None = 1) -> Any:
            result = super().update(n)
            if self._cotvr_bytes:
                self._cotvr_n += 1 if n is None else n
                tracker.bar(self._cotvr_key, self._cotvr_n)
            return result

    return ByteProgressTqdm


def files_bar_class(base: type, tracker: DownloadProgress) -> type:
    """The `tqdm_class` for snapshot_download's "Fetching N files" bar (thread_map iterates it)."""

    class FilesProgressTqdm(base):  # type: ignore[misc, valid-type]
        def __iter__(self) -> Iterator[Any]:
            for count, item in enumerate(super().__iter__(), start=1):
                tracker.files(count)
                yield item

    return FilesProgressTqdm


def plan_bytes(repo_id: str, dest: Path, ignore: Sequence[str], token: str, revision: str | None) -> tuple[int | None, int | None, int]:
    """(total bytes, number of files, bytes already complete in dest) of the selected files."""
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    try:
        info = huggingface_hub.HfApi().model_info(repo_id, revision=revision, files_metadata=True, token=token)
    except Exception as err:  # noqa: BLE001 - progress only: snapshot_download reports the real error
        log(f"no file sizes from the hub ({type(err).__name__}): progress without a total")
        return None, None, 0
    siblings = list(filter_repo_objects(info.siblings or [], ignore_patterns=list(ignore) or None, key=lambda s: s.rfilename))
    sizes = {s.rfilename: s.size for s in siblings}
    if any(size is None for size in sizes.values()):
        return None, len(sizes), 0
    already = sum(size for name, size in sizes.items() if (dest / name).is_file() and (dest / name).stat().st_size == size)
    return sum(sizes.values()), len(sizes), already


def download(repo_id: str, dest: Path, ignore: Sequence[str], token: str, revision: str | None, variant: str | None = None) -> None:
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    from huggingface_hub.utils import tqdm as hf_tqdm

    total, files_total, already = plan_bytes(repo_id, dest, ignore, token, revision)
    tracker = DownloadProgress(Progress("download", variant or dest.name, "bytes"), total, files_total, already)
    # `huggingface_hub.utils.tqdm` is the class; the module is in sys.modules under the same name.
    bars = importlib.import_module("huggingface_hub.utils.tqdm")
    original = bars.tqdm
    bars.tqdm = byte_bar_class(original, tracker)
    try:
        tracker.emit()
        huggingface_hub.snapshot_download(
            repo_id=repo_id,
            revision=revision,
            local_dir=str(dest),
            ignore_patterns=list(ignore) or None,
            token=token,
            tqdm_class=files_bar_class(hf_tqdm, tracker),
        )
        with tracker.lock:
            tracker.emit(final=True)
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
    finally:
        bars.tqdm = original


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="download_model.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo-id", required=True, help="e.g. meta-llama/Llama-3.2-11B-Vision-Instruct")
    parser.add_argument("--dest", required=True, type=Path)
    parser.add_argument("--ignore", action="append", default=[], help="glob not to download (repeatable)")
    parser.add_argument("--require", action="append", default=[], help="file that must exist afterwards (repeatable)")
    parser.add_argument("--shards", required=True, type=int, help="number of model-*-of-N.safetensors shards")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--variant", default=None, help="name in progress records (default: the --dest folder's name)")
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
    download(args.repo_id, dest, args.ignore, token, args.revision, args.variant)

    missing = missing_files(dest, args.require, args.shards)
    if missing:
        raise CotvrError(f"download of {args.repo_id} finished but {dest} misses: {', '.join(missing)}", EXIT_INCOMPLETE)
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file() and ".cache" not in p.parts)
    write_marker(dest, repo_id=args.repo_id, revision=args.revision, shards=args.shards, bytes=total)
    log(f"{args.repo_id} complete: {total / 1e9:.1f} GB in {dest}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main("download_model.py", main))

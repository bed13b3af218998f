"""Helpers shared by every program in the cot-vr images.

Copied into each image as /opt/cotvr/cotvr_common.py. Standard library only, so that
every program can import it before its heavy dependencies (torch, datasets, ...).

The names every process agrees on (exit codes, label keys, record prefixes, the completion
marker) live in cotvr_contract.py, the twin of contract.ts; they are re-exported here.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from cotvr_contract import (  # noqa: F401 - re-exported for the programs (it lies beside this file)
    BENCH_PREFIX,
    EXIT_BAD_ARGS,
    EXIT_CHECK_FAILED,
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_MISSING_INPUT,
    EXIT_NO_METRICS,
    EXIT_OK,
    FATAL_EXIT_CODES,
    LABEL_RUN,
    LABEL_STAGE,
    LABEL_VARIANT,
    MARKER_NAME,
    PROGRESS_PREFIX,
    SECRET_DATA_KEYS,
    WATCHDOG_GRACE_SECONDS,
    selector,
)

# Progress records: one line on stdout, `COTVR_PROGRESS {json}`, read by `npm run status`.
PROGRESS_VERSION = 1


class CotvrError(Exception):
    """An expected failure: printed as one clear line, mapped to an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def log(message: str) -> None:
    """Progress line on stderr (stdout is kept for results such as the report table)."""
    print(f"[cotvr] {message}", file=sys.stderr, flush=True)


# The webhook URL, from the run's Secret (set only when the stack has cot-vr:notifyWebhook).
NOTIFY_ENV = SECRET_DATA_KEYS["notifyWebhook"]
NOTIFY_TIMEOUT_S = 5.0


def notify(text: str, blocks: list[dict[str, Any]] | None = None, timeout: float = NOTIFY_TIMEOUT_S) -> bool:
    """POST `{"text": ..., "blocks": ...}` (Slack's incoming-webhook format) to the webhook, if one is set.

    Best effort: one try with a short timeout; a failure is logged without the URL (it is a secret) and
    never raised. Returns whether the webhook accepted it.
    """
    import urllib.error
    import urllib.request

    url = os.environ.get(NOTIFY_ENV, "").strip()
    if not url:
        return False
    payload: dict[str, Any] = {"text": text}
    if blocks:
        payload["blocks"] = blocks
    req = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310 - the user's webhook
            response.read()
        return True
    except urllib.error.HTTPError as err:
        log(f"notification not sent: the webhook answered HTTP {err.code}")
    except Exception as err:  # noqa: BLE001 - never fail the program for a notification
        # Only the type: some messages (a malformed URL's ValueError) would quote the secret URL.
        log(f"notification not sent: {type(err).__name__}")
    return False


def notify_failure(prog: str, err: "CotvrError") -> None:
    """Post a failure the Job will not retry (a fatal exit code fails the Job at once)."""
    if err.exit_code not in FATAL_EXIT_CODES or not os.environ.get(NOTIFY_ENV):
        return
    # The pod's name carries the run, stage, variant and hash (`<run>-<stage>[-<variant>]-<hash>-<suffix>`).
    pod = os.environ.get("HOSTNAME") or "unknown pod"
    notify(f"cot-vr: {prog} failed for good in pod {pod} (exit {err.exit_code}): {err}")


def run_main(prog: str, main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run `main`, turning expected errors into a message plus exit code.

    Unexpected exceptions still print their traceback (for debugging) but end with one
    summary line and exit code 1, so the Job log always ends with what went wrong. A failure
    with a fatal exit code is posted to the notification webhook when one is set.
    """
    try:
        return main(argv)
    except CotvrError as err:
        print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        notify_failure(prog, err)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as err:  # noqa: BLE001 - last-resort reporting
        traceback.print_exc()
        print(f"{prog}: error: unexpected {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        return EXIT_FAILED


class Progress:
    """Structured progress of one stage, printed as `COTVR_PROGRESS {json}` lines on stdout.

    Record fields: v (format version), stage, variant, unit (rows, steps, requests, files,
    bytes), done, total (None when unknown), rate (units per second since the first update,
    None until known), ts (UTC), plus stage-specific fields (epoch, loss, shard, task, ...).
    At most one record every `interval` seconds (env COTVR_PROGRESS_INTERVAL, default 5), except
    `final=True` records, which are always printed.
    """

    def __init__(self, stage: str, variant: str | None, unit: str, total: int | None = None,
                 interval: float | None = None, out: Any = None, clock: Callable[[], float] | None = None) -> None:
        import time as _time

        self.stage, self.variant, self.unit, self.total = stage, variant, unit, total
        env = os.environ.get("COTVR_PROGRESS_INTERVAL")
        self.interval = interval if interval is not None else float(env) if env else 5.0
        self._out = out
        self._clock = clock or _time.monotonic
        self._start: float | None = None
        self._start_done = 0.0
        self._last_emit: float | None = None

    def record(self, done: float, **extra: Any) -> dict[str, Any]:
        now = self._clock()
        if self._start is None:
            self._start, self._start_done = now, done
        elapsed = now - self._start
        rate = (done - self._start_done) / elapsed if elapsed > 0 and done > self._start_done else None
        rec: dict[str, Any] = {
            "v": PROGRESS_VERSION, "stage": self.stage, "variant": self.variant, "unit": self.unit,
            "done": done, "total": extra.pop("total", self.total), "rate": rate, "ts": utc_now(),
        }
        rec.update({k: v for k, v in extra.items() if v is not None})
        return rec

    def update(self, done: float, final: bool = False, **extra: Any) -> dict[str, Any] | None:
        """Print a record if `interval` has passed since the last one (or `final`); return it."""
        now = self._clock()
        rec = self.record(done, **extra)
        if not final and self._last_emit is not None and now - self._last_emit < self.interval:
            return None
        self._last_emit = now
        print(PROGRESS_PREFIX + json.dumps(rec, sort_keys=True), file=self._out or sys.stdout, flush=True)
        return rec


def parse_progress(line: str) -> dict[str, Any] | None:
    """The record of a `COTVR_PROGRESS {json}` line, or None for any other line."""
    idx = line.find(PROGRESS_PREFIX)
    if idx < 0:
        return None
    try:
        rec = json.loads(line[idx + len(PROGRESS_PREFIX):])
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` to a temp file in the same folder, fsync, then rename over `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_marker(folder: Path | str, **info: Any) -> Path:
    """Write `<folder>/.complete.json` last, atomically."""
    payload = {"completed_at": utc_now(), **info}
    return atomic_write_json(Path(folder) / MARKER_NAME, payload)


def read_marker(folder: Path | str) -> dict[str, Any] | None:
    path = Path(folder) / MARKER_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def done_for_hash(path: Path | str, config_hash: str | None, what: str, complete: Callable[[dict[str, Any]], bool] = lambda rec: True) -> bool:
    """Whether `path` (an output JSON or a `.complete.json` marker) records this config hash and is
    complete: the one "already done" check of every program. Logs "nothing to do" when it is.
    An unreadable file is not done (the stage runs again and rewrites it)."""
    p = Path(path)
    if not config_hash or not p.is_file():
        return False
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if isinstance(rec, dict) and rec.get("config_hash") == config_hash and complete(rec):
        log(f"{what} {p} is complete for config hash {config_hash}: nothing to do")
        return True
    return False


def require_paths(paths: Iterable[str | Path], what: str = "required input") -> None:
    """Fail with exit code 3 naming every missing path."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise CotvrError(
            f"{what} missing: {', '.join(missing)} (did the stage that produces it run and complete?)",
            EXIT_MISSING_INPUT,
        )


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_json_file(path: Path | str, what: str, exit_code: int = EXIT_MISSING_INPUT) -> Any:
    p = Path(path)
    if not p.is_file():
        raise CotvrError(f"{what} not found: {p}", EXIT_MISSING_INPUT)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as err:
        raise CotvrError(f"{what} is not valid JSON: {p}: {err}", exit_code) from err


def dig(mapping: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """`dig(cfg, "a.b.c")` for plain nested dicts."""
    node: Any = mapping
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


# ---------------------------------------------------------------- Kubernetes API (stdlib only)

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeApi:
    """The few Kubernetes API calls the programs make, over HTTPS with a bearer token.

    In a pod: the service account's token and CA (`KubeApi.in_cluster()`); elsewhere (tests, the e2e
    tier): an explicit URL, token and CA file.
    """

    def __init__(self, api: str, token: str | None = None, ca_file: str | None = None, timeout: float = 30.0,
                 token_file: Path | None = None) -> None:
        self.api, self._token, self.ca_file, self.timeout = api.rstrip("/"), token, ca_file, timeout
        self.token_file = token_file

    @property
    def token(self) -> str | None:
        # The kubelet rotates a pod's projected token: a program that runs for hours (the teacher hold,
        # its watchdog) reads the file at each call, as client-go does, not once at start.
        if self.token_file is not None and self.token_file.is_file():
            return self.token_file.read_text(encoding="utf-8").strip()
        return self._token

    @classmethod
    def in_cluster(cls) -> "KubeApi | None":
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            return None
        ca_file = SA_DIR / "ca.crt"
        return cls(f"https://{host}:{port}", None, str(ca_file) if ca_file.is_file() else None, token_file=SA_DIR / "token")

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        import ssl
        import urllib.request

        data = json.dumps(body).encode("utf-8") if body is not None else None
        req = urllib.request.Request(f"{self.api}{path}", data=data, method=method, headers={"Accept": "application/json"})
        if data is not None:
            req.add_header("Content-Type", content_type)
        token = self.token
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        context = None
        if self.api.startswith("https://"):
            context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else ssl.create_default_context()
        with urllib.request.urlopen(req, timeout=self.timeout, context=context) as response:  # noqa: S310 - our API server
            raw = response.read()
        return json.loads(raw.decode("utf-8")) if raw else None

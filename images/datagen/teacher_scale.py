#!/usr/bin/env python3
"""Hold the vLLM teacher's GPU only while the CoT generation needs it.

The teacher is a Deployment created by `pulumi up` with 0 replicas. The generation scales it to its
replicas (teacher.replicas, 1 by default) before it calls the teacher and back to 0 when it is done -- also when it fails, is interrupted
(SIGTERM on pod deletion or eviction) or its check fails -- through the Deployment's `scale`
subresource, which a Role limited to that one Deployment allows. The GPU is released by the program
that used it, so it goes back even if the `pulumi up` that started the run has died.

Each scale-up/-down is recorded in `--record` (JSON lines: event, replicas, time) so the report can
count the teacher's GPU time.

Library use (generate_cot.py): `with hold_teacher(TeacherScaler(...)): ...`.
Scale calls are retried on transient API failures (no answer, 429, 5xx); a release that still fails
does not fail the work it followed (the watchdog below releases the teacher).

The one case the holder cannot cover is its own outright death (OOM kill, SIGKILL) on its Job's
last try: nothing would ever scale the teacher down. `watch` runs beside vLLM in the teacher's pod
and releases the teacher once no holder pod (`--holders`, the generation's labels) has been Pending
or Running for `--grace` seconds, longer than a Job waits between retries.

CLI (the e2e tier runs it against a real API server while the simulated generation pod runs):
  python teacher_scale.py --namespace NS --deployment NAME [--api URL --token-file F --ca-file F]
      [--record FILE] hold [--replicas N] -- COMMAND...
                                            scale to N (1), run COMMAND, scale to 0 (always)
      scale --replicas N                    set the replicas once
      watch --holders SELECTOR [--grace S] [--interval S]
                                            scale to 0 once no holder pod is alive for S seconds
Exit codes: those of COMMAND for `hold`; 3 when the API server is not reachable or refuses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(p) for p in (_HERE, _HERE.parent / "common") if (p / "cotvr_common.py").is_file()]
from cotvr_common import (  # noqa: E402
    EXIT_BAD_ARGS,
    EXIT_MISSING_INPUT,
    WATCHDOG_GRACE_SECONDS,
    CotvrError,
    KubeApi,
    log,
    run_main,
    utc_now,
)


def transient(err: BaseException) -> bool:
    """An API failure worth another try: no answer, 429, or a server error (not a 403/404 refusal)."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code == 429 or err.code >= 500
    return isinstance(err, (urllib.error.URLError, OSError))


class TeacherScaler:
    """Sets the teacher Deployment's replicas through its scale subresource."""

    #: Seconds between tries of a transiently failing scale call (then it gives up).
    RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)

    def __init__(self, kube: KubeApi, namespace: str, deployment: str, record: Path | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.kube, self.namespace, self.deployment, self.record = kube, namespace, deployment, record
        self.sleep = sleep

    @property
    def path(self) -> str:
        ns, name = urllib.parse.quote(self.namespace), urllib.parse.quote(self.deployment)
        return f"/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale"

    def scale(self, replicas: int, reason: str | None = None) -> None:
        delays = iter(self.RETRY_DELAYS)
        while True:
            try:
                self.kube.request("PATCH", self.path, {"spec": {"replicas": replicas}}, "application/merge-patch+json")
                break
            except (urllib.error.URLError, OSError, ValueError) as err:
                delay = next(delays, None) if transient(err) else None
                if delay is None:
                    raise CotvrError(
                        f"cannot scale deployment {self.namespace}/{self.deployment} to {replicas}: {err}",
                        EXIT_MISSING_INPUT,
                    ) from err
                log(f"scaling deployment {self.namespace}/{self.deployment} to {replicas} failed ({err}); retrying in {delay:g}s")
                self.sleep(delay)
        log(f"teacher {self.deployment} scaled to {replicas}" + (f" ({reason})" if reason else ""))
        self._record("scaled", replicas=replicas, **({"reason": reason} if reason else {}))

    def _record(self, event: str, **fields: Any) -> None:
        if self.record is None:
            return
        self.record.parent.mkdir(parents=True, exist_ok=True)
        with self.record.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"event": event, "deployment": self.deployment, "at": utc_now(), **fields}) + "\n")


class _Terminated(Exception):
    """SIGTERM (pod deleted or evicted): unwind so the teacher is released."""


@contextlib.contextmanager
def hold_teacher(scaler: TeacherScaler, replicas: int = 1) -> Iterator[None]:
    """Teacher at `replicas` pods inside the block, back at 0 after it, however the block ends."""

    def on_term(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    failure: BaseException | None = None
    try:
        scaler.scale(replicas)
        yield
    except _Terminated:
        log("terminated: releasing the teacher")
        failure = SystemExit(143)
    except BaseException as err:  # noqa: BLE001 - released below, then re-raised
        failure = err
    try:
        scaler.scale(0)
    except CotvrError as err:
        # Never fail finished work over the release: the teacher's watchdog scales it to 0 once this
        # pod is gone. A failure of the work is still the one to report.
        log(f"{err}; the teacher's watchdog releases it once this pod has ended")
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failure is not None:
        raise failure


HOLDER_PHASES = ("Pending", "Running")
#: Longer than a Job's longest wait between retries (6 min) plus scheduling a pod.
DEFAULT_GRACE = float(WATCHDOG_GRACE_SECONDS)


def live_holders(kube: KubeApi, namespace: str, selector: str) -> int:
    """Pods matching `selector` that are Pending or Running: a holder that is or will be working."""
    query = urllib.parse.urlencode({"labelSelector": selector})
    pods = kube.request("GET", f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/pods?{query}") or {}
    return sum(1 for pod in pods.get("items") or [] if (pod.get("status") or {}).get("phase") in HOLDER_PHASES)


def release_when_orphaned(scaler: TeacherScaler, selector: str, grace: float = DEFAULT_GRACE, interval: float = 30.0,
                          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Return after scaling the teacher to 0 once no holder pod has been alive for `grace` seconds.

    A failed look-up (API unreachable for a while) neither counts as a holder nor as its absence.
    """
    last_seen = clock()
    while True:
        try:
            alive: int | None = live_holders(scaler.kube, scaler.namespace, selector)
        except (urllib.error.URLError, OSError, ValueError) as err:
            log(f"cannot list the holder pods ({err}); looking again in {interval:g}s")
            alive = None
        now = clock()
        if alive:
            last_seen = now
        elif alive == 0 and now - last_seen >= grace:
            scaler.scale(0, reason=f"no pod matching {selector} for {now - last_seen:.0f}s")
            return
        sleep(interval)


def scaler_from_args(args: argparse.Namespace) -> TeacherScaler:
    if args.api:
        token = Path(args.token_file).read_text(encoding="utf-8").strip() if args.token_file else None
        kube = KubeApi(args.api, token, args.ca_file)
    else:
        found = KubeApi.in_cluster()
        if found is None:
            raise CotvrError("not in a pod and no --api given: cannot reach the Kubernetes API", EXIT_MISSING_INPUT)
        kube = found
    return TeacherScaler(kube, args.namespace, args.deployment, args.record)


def add_api_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", default=None, help="API server URL (default: in-cluster)")
    parser.add_argument("--token-file", default=None, help="bearer token file (with --api)")
    parser.add_argument("--ca-file", default=None, help="CA bundle (with --api)")
    parser.add_argument("--record", type=Path, default=None, help="append scale events (JSON lines) here")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="teacher_scale.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--deployment", required=True)
    add_api_args(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    hold = sub.add_parser("hold", help="scale to --replicas (1), run a command, scale to 0")
    hold.add_argument("--replicas", type=int, default=1, help="teacher pods while the command runs (teacher.replicas)")
    hold.add_argument("cmd", nargs=argparse.REMAINDER)
    once = sub.add_parser("scale", help="set the replicas once")
    once.add_argument("--replicas", type=int, required=True)
    watch = sub.add_parser("watch", help="scale to 0 once no holder pod has been alive for --grace seconds")
    watch.add_argument("--holders", required=True, help="label selector of the holder's pods")
    watch.add_argument("--grace", type=float, default=DEFAULT_GRACE, help="seconds without a holder before release")
    watch.add_argument("--interval", type=float, default=30.0, help="seconds between looks")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    scaler = scaler_from_args(args)
    if args.command == "scale":
        scaler.scale(args.replicas)
        return 0
    if args.command == "watch":
        if args.grace < 0 or args.interval <= 0:
            raise CotvrError("watch: --grace must be >= 0 and --interval > 0", EXIT_BAD_ARGS)
        # Returns once it has released the teacher; the scale-down deletes this pod right after.
        release_when_orphaned(scaler, args.holders, args.grace, args.interval)
        return 0
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise CotvrError("hold needs a command after --", EXIT_BAD_ARGS)
    if args.replicas < 1:
        raise CotvrError("hold: --replicas must be >= 1", EXIT_BAD_ARGS)
    with hold_teacher(scaler, args.replicas):
        return run_child(cmd)


def run_child(cmd: Sequence[str]) -> int:
    """Run `cmd`; if we are interrupted (SIGTERM), stop it too before the teacher is released."""
    child = subprocess.Popen(list(cmd))
    try:
        return child.wait()
    except BaseException:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise


if __name__ == "__main__":
    sys.exit(run_main("teacher_scale.py", main))

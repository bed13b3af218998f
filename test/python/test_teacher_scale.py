"""teacher_scale.py: the generation holds the teacher's GPU only while it needs it.

A fake Kubernetes API server records every call: the scaler must PATCH the Deployment's scale
subresource to 1 before the work and to 0 after it, however the work ends (success, failure,
SIGTERM), and record the events for the report.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import DATAGEN, JsonHandler, run_program
from cotvr_contract import EXIT_BAD_ARGS, EXIT_CHECK_FAILED, EXIT_MISSING_INPUT, LABEL_RUN, LABEL_STAGE, selector

PROGRAM = DATAGEN / "teacher_scale.py"
SCALE_PATH = "/apis/apps/v1/namespaces/cot-vr/deployments/blog-teacher/scale"
PODS_PATH = "/api/v1/namespaces/cot-vr/pods"
HOLDERS = selector({LABEL_RUN: "blog", LABEL_STAGE: "generate"})


class FakeApi:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.replicas = 0
        self.refuse = False
        #: HTTP statuses the next PATCHes answer with before they succeed (e.g. [503, 503]).
        self.patch_errors: list[int] = []
        #: Phases of the pods a GET of PODS_PATH lists; a callable is asked at each GET.
        self.pods: list[str] | Any = []
        api = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:  # noqa: N802
                api.calls.append({"method": "GET", "path": self.path, "auth": self.headers.get("Authorization")})
                if self.path == "/break-release":
                    api.refuse = True
                    return self.reply(200)
                if api.refuse or not self.path.startswith(PODS_PATH + "?"):
                    return self.reply(403 if api.refuse else 404)
                phases = api.pods() if callable(api.pods) else api.pods
                self.reply(200, {"kind": "PodList", "items": [{"status": {"phase": p}} for p in phases]})

            def do_PATCH(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                api.calls.append({"method": "PATCH", "path": self.path, "body": body,
                                  "content_type": self.headers.get("Content-Type"), "auth": self.headers.get("Authorization")})
                if api.refuse or self.path != SCALE_PATH or api.patch_errors:
                    return self.reply(api.patch_errors.pop(0) if api.patch_errors else 403 if api.refuse else 404)
                api.replicas = body["spec"]["replicas"]
                self.reply(200, {"kind": "Scale", "spec": {"replicas": api.replicas}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def replicas_set(self) -> list[int]:
        return [c["body"]["spec"]["replicas"] for c in self.calls if c["method"] == "PATCH"]


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    yield fake
    fake.server.shutdown()


def args(api: FakeApi, tmp_path: Path, *rest: str) -> list[str]:
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    return ["--namespace", "cot-vr", "--deployment", "blog-teacher", "--api", api.url, "--token-file", str(token),
            "--record", str(tmp_path / "teacher.jsonl"), *rest]


def test_hold_scales_up_runs_then_releases(api: FakeApi, tmp_path: Path) -> None:
    proc = run_program(PROGRAM, *args(api, tmp_path, "hold", "--", sys.executable, "-c", "print('generating')"))
    assert proc.returncode == 0, proc.stderr
    assert "generating" in proc.stdout
    assert api.replicas_set() == [1, 0]
    first = api.calls[0]
    assert first["path"] == SCALE_PATH
    assert first["content_type"] == "application/merge-patch+json"
    assert first["auth"] == "Bearer sa-token"
    events = [json.loads(line) for line in (tmp_path / "teacher.jsonl").read_text().splitlines()]
    assert [e["replicas"] for e in events] == [1, 0]
    assert all(e["deployment"] == "blog-teacher" and e["at"].endswith("Z") for e in events)


def test_hold_n_replicas(api: FakeApi, tmp_path: Path) -> None:
    """teacher.replicas: `hold --replicas N` (what the simulated cluster runs for the generation)."""
    proc = run_program(PROGRAM, *args(api, tmp_path, "hold", "--replicas", "3", "--", sys.executable, "-c", "print('generating')"))
    assert proc.returncode == 0, proc.stderr
    assert api.replicas_set() == [3, 0]
    bad = run_program(PROGRAM, *args(api, tmp_path, "hold", "--replicas", "0", "--", sys.executable, "-c", "pass"))
    assert bad.returncode == EXIT_BAD_ARGS and "--replicas must be >= 1" in bad.stderr


def test_a_failed_generation_releases_the_teacher_and_keeps_its_exit_code(api: FakeApi, tmp_path: Path) -> None:
    proc = run_program(PROGRAM, *args(api, tmp_path, "hold", "--", sys.executable, "-c", "raise SystemExit(6)"))
    assert proc.returncode == EXIT_CHECK_FAILED
    assert api.replicas_set() == [1, 0]


def test_sigterm_releases_the_teacher(api: FakeApi, tmp_path: Path) -> None:
    """Pod deletion or eviction sends SIGTERM: the teacher still goes back to 0."""
    started = tmp_path / "started"
    work = f"import time; open({str(started)!r}, 'w').close(); time.sleep(60)"
    cmd = [sys.executable, str(PROGRAM), *args(api, tmp_path, "hold", "--", sys.executable, "-c", work)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.replicas_set() == [1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert api.replicas_set() == [1, 0]
    assert "releasing the teacher" in err


def test_an_api_that_refuses_fails_with_exit_3_before_any_work(api: FakeApi, tmp_path: Path) -> None:
    api.refuse = True
    marker = tmp_path / "ran"
    proc = run_program(PROGRAM, *args(api, tmp_path, "hold", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"))
    assert proc.returncode == EXIT_MISSING_INPUT
    assert "cannot scale deployment cot-vr/blog-teacher to 1" in proc.stderr
    assert not marker.exists()


def test_transient_api_failures_are_retried_a_refusal_is_not(api: FakeApi) -> None:
    from cotvr_common import CotvrError, KubeApi
    from teacher_scale import TeacherScaler

    waits: list[float] = []
    scaler = TeacherScaler(KubeApi(api.url), "cot-vr", "blog-teacher", sleep=waits.append)
    api.patch_errors = [503, 429, 500]
    scaler.scale(1)
    assert api.replicas == 1 and waits == [1.0, 2.0, 4.0]
    waits.clear()
    api.patch_errors = [503] * 5
    with pytest.raises(CotvrError, match="to 0: HTTP Error 503"):
        scaler.scale(0)
    assert waits == [1.0, 2.0, 4.0, 8.0]
    waits.clear()
    api.patch_errors = [403]
    with pytest.raises(CotvrError, match="HTTP Error 403"):
        scaler.scale(0)
    assert waits == []


def test_a_release_that_fails_does_not_fail_finished_work(api: FakeApi, tmp_path: Path) -> None:
    """Eight hours of generation must not fail on the last API call: the watchdog frees the teacher."""
    work = f"import urllib.request; urllib.request.urlopen({api.url!r} + '/break-release')"
    # The work's last act makes the API refuse from then on (as an RBAC change or an outage would).
    proc = run_program(PROGRAM, *args(api, tmp_path, "hold", "--", sys.executable, "-c", work))
    assert proc.returncode == 0, proc.stderr
    assert api.replicas == 1
    assert "the teacher's watchdog releases it once this pod has ended" in proc.stderr


def test_library_use_releases_on_exception(api: FakeApi, tmp_path: Path) -> None:
    from cotvr_common import KubeApi
    from teacher_scale import TeacherScaler, hold_teacher

    scaler = TeacherScaler(KubeApi(api.url), "cot-vr", "blog-teacher")
    with pytest.raises(RuntimeError):
        with hold_teacher(scaler):
            assert api.replicas == 1
            raise RuntimeError("teacher crashed")
    assert api.replicas_set() == [1, 0]


# ---------------------------------------------------------------- the watchdog beside vLLM


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_watch_releases_the_teacher_once_its_holder_has_been_gone_for_the_grace(api: FakeApi, tmp_path: Path) -> None:
    """The generation was SIGKILLed on its Job's last try: its pod is Failed, no new one comes."""
    from cotvr_common import KubeApi
    from teacher_scale import TeacherScaler, release_when_orphaned

    clock = FakeClock()
    api.replicas = 1
    # Running for 100 s, then Failed (the Job gave up): released 300 s after it was last seen alive.
    api.pods = lambda: ["Running"] if clock.now < 100 else ["Failed"]
    scaler = TeacherScaler(KubeApi(api.url), "cot-vr", "blog-teacher", tmp_path / "teacher.jsonl")
    release_when_orphaned(scaler, HOLDERS, grace=300, interval=10, clock=clock, sleep=clock.sleep)
    assert api.replicas_set() == [0]
    assert 390 <= clock.now <= 400, clock.now
    gets = [c for c in api.calls if c["method"] == "GET"]
    assert gets[0]["path"] == PODS_PATH + "?" + urllib.parse.urlencode({"labelSelector": HOLDERS})
    event = json.loads((tmp_path / "teacher.jsonl").read_text().splitlines()[-1])
    assert event["replicas"] == 0 and HOLDERS in event["reason"]


def test_watch_waits_through_a_retry_and_never_releases_a_working_holder(api: FakeApi) -> None:
    """Between a Job's tries no pod is alive for a while (backoff); a Pending retry counts as alive."""
    from cotvr_common import KubeApi
    from teacher_scale import TeacherScaler, release_when_orphaned

    clock = FakeClock()
    timeline = [(0, ["Running"]), (200, ["Failed"]), (400, ["Failed", "Pending"]), (500, ["Failed", "Running"]),
                (5000, ["Failed", "Succeeded"])]
    api.pods = lambda: [phases for at, phases in timeline if at <= clock.now][-1]
    release_when_orphaned(TeacherScaler(KubeApi(api.url), "cot-vr", "blog-teacher"), HOLDERS, grace=300, interval=10,
                          clock=clock, sleep=clock.sleep)
    # Not at 500 (200 s without a holder < grace), only 300 s after the retry finished at 5000.
    assert 5290 <= clock.now <= 5310, clock.now
    assert api.replicas_set() == [0]


def test_watch_does_not_take_an_unreachable_api_for_an_absent_holder(api: FakeApi) -> None:
    from cotvr_common import KubeApi
    from teacher_scale import TeacherScaler, release_when_orphaned

    clock = FakeClock()
    # The API refuses for 1000 s while the holder works, then answers: the holder is still there
    # and finishes at 1500.
    api.pods = lambda: ["Running"] if clock.now < 1500 else ["Succeeded"]
    original_sleep = clock.sleep

    def sleep(seconds: float) -> None:
        original_sleep(seconds)
        api.refuse = clock.now < 1000

    api.refuse = True
    release_when_orphaned(TeacherScaler(KubeApi(api.url), "cot-vr", "blog-teacher"), HOLDERS, grace=300, interval=10,
                          clock=clock, sleep=sleep)
    assert clock.now >= 1790, clock.now
    assert api.replicas_set() == [0]


def test_watch_cli_releases_and_exits_0(api: FakeApi, tmp_path: Path) -> None:
    api.replicas = 1
    api.pods = ["Failed"]
    proc = run_program(PROGRAM, *args(api, tmp_path, "watch", "--holders", HOLDERS, "--grace", "0.2", "--interval", "0.05"),
                       timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert api.replicas_set() == [0]
    assert f"no pod matching {HOLDERS}" in proc.stderr


def test_watch_cli_rejects_a_bad_interval(api: FakeApi, tmp_path: Path) -> None:
    proc = run_program(PROGRAM, *args(api, tmp_path, "watch", "--holders", HOLDERS, "--interval", "0"))
    assert proc.returncode == EXIT_BAD_ARGS
    assert "--interval" in proc.stderr
    assert api.calls == []


def test_a_long_running_program_reads_the_rotated_token_at_each_call(api: FakeApi, tmp_path: Path) -> None:
    """The kubelet rotates a pod's projected token; the hold's scale-down may come hours after its scale-up."""
    from cotvr_common import KubeApi
    from teacher_scale import TeacherScaler

    token = tmp_path / "token"
    token.write_text("first\n")
    scaler = TeacherScaler(KubeApi(api.url, token_file=token), "cot-vr", "blog-teacher")
    scaler.scale(1)
    token.write_text("rotated\n")
    scaler.scale(0)
    assert [c["auth"] for c in api.calls] == ["Bearer first", "Bearer rotated"]


# ---------------------------------------------------------------- inside generate_cot.py


def test_generation_holds_the_teacher_only_while_it_asks_it(tmp_path: Path, tiny_chartqa: Path, fake_teacher, api: FakeApi) -> None:
    """Scale to 1 before the first teacher request, to 0 after the last shard; a re-run of a complete
    dataset never scales the teacher up."""
    from test_generate_cot import MODEL_90B, run_generate, sdk_config_for

    teacher = fake_teacher(MODEL_90B)
    seen_at_first_request: list[int] = []
    original = teacher.reply
    teacher.reply = lambda answer: (seen_at_first_request.append(api.replicas), original(answer))[1]
    config = sdk_config_for(tmp_path, teacher.api_base, MODEL_90B)
    out = tmp_path / "cot_chartqa"
    (tmp_path / "token").write_text("sa-token")
    hold = ["--teacher-deployment", "blog-teacher", "--teacher-namespace", "cot-vr", "--teacher-record", str(tmp_path / "teacher.jsonl"),
            "--kube-api", api.url, "--kube-token-file", str(tmp_path / "token")]
    proc = run_generate(config, out, tiny_chartqa, "--limit", "4", "--shard-size", "2", *hold)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert api.replicas_set() == [1, 0]
    assert seen_at_first_request and set(seen_at_first_request) == {1}
    assert [json.loads(line)["replicas"] for line in (tmp_path / "teacher.jsonl").read_text().splitlines()] == [1, 0]

    again = run_generate(config, out, tiny_chartqa, "--limit", "4", "--shard-size", "2", *hold)
    assert again.returncode == 0, again.stderr[-3000:]
    assert api.replicas_set() == [1, 0], "a complete dataset needs no teacher"


def test_a_failed_generation_gives_the_teacher_back(tmp_path: Path, tiny_chartqa: Path, fake_teacher, api: FakeApi) -> None:
    """The teacher serves another model: the generation fails (exit 3) and the teacher still goes to 0."""
    from test_generate_cot import MODEL_90B, run_generate, sdk_config_for

    teacher = fake_teacher("some/other-model")
    config = sdk_config_for(tmp_path, teacher.api_base, MODEL_90B)
    proc = run_generate(config, tmp_path / "cot_chartqa", tiny_chartqa, "--limit", "4",
                        "--teacher-deployment", "blog-teacher", "--teacher-namespace", "cot-vr", "--kube-api", api.url)
    assert proc.returncode == EXIT_MISSING_INPUT, proc.stderr[-3000:]
    assert api.replicas_set() == [1, 0]


class RoundRobinService:
    """The teacher's Service in front of N pods: each new TCP connection goes to the next backend,
    as kube-proxy spreads connections (never single requests) over a Service's endpoints."""

    def __init__(self, backends: list[int]) -> None:
        import socket

        self.backends, self.next = backends, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            port = self.backends[self.next % len(self.backends)]
            self.next += 1
            upstream = socket.create_connection(("127.0.0.1", port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: Any, dst: Any) -> None:
        import socket

        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def test_generation_on_n_teachers(tmp_path: Path, tiny_chartqa: Path, fake_teacher, api: FakeApi) -> None:
    """teacher.replicas 3: the generation scales the Deployment to 3 and back to 0, its concurrent
    requests (3 x the config's per-replica batch_size, each on its own connection) reach every teacher
    pod through the Service, and the record lets the report count 3 teachers' GPU time."""
    import yaml

    from report import teacher_rows
    from test_generate_cot import MODEL_90B, run_generate, sdk_config_for

    teachers = [fake_teacher(MODEL_90B) for _ in range(3)]
    service = RoundRobinService([t.server.server_address[1] for t in teachers])
    try:
        config = sdk_config_for(tmp_path, f"http://127.0.0.1:{service.port}/v1", MODEL_90B)
        cfg = yaml.safe_load(config.read_text())
        cfg["generation"]["batch_size"] = 2  # per replica: 6 requests in flight
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        (tmp_path / "token").write_text("sa-token")
        record = tmp_path / "teacher.jsonl"
        proc = run_generate(config, tmp_path / "cot_chartqa", tiny_chartqa, "--limit", "6",
                            "--teacher-deployment", "blog-teacher", "--teacher-namespace", "cot-vr", "--teacher-record", str(record),
                            "--teacher-replicas", "3", "--kube-api", api.url, "--kube-token-file", str(tmp_path / "token"))
    finally:
        service.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert api.replicas_set() == [3, 0]
    answered = [sum(1 for r in t.requests if r.get("model") == MODEL_90B) for t in teachers]
    assert sum(answered) == 6 and all(n > 0 for n in answered), answered
    assert [json.loads(line)["replicas"] for line in record.read_text().splitlines()] == [3, 0]
    (row,) = teacher_rows(record, gpus=1.0)
    assert row["gpus"] == 3 and row["status"] == "complete"
    assert row["gpu_hours"] == pytest.approx(3 * row["seconds"] / 3600, abs=1e-3)


def test_teacher_replicas_must_be_positive(tmp_path: Path, tiny_chartqa: Path, fake_teacher, api: FakeApi) -> None:
    from test_generate_cot import MODEL_90B, run_generate, sdk_config_for

    teacher = fake_teacher(MODEL_90B)
    config = sdk_config_for(tmp_path, teacher.api_base, MODEL_90B)
    proc = run_generate(config, tmp_path / "cot_chartqa", tiny_chartqa, "--limit", "4", "--teacher-deployment", "blog-teacher",
                        "--teacher-namespace", "cot-vr", "--teacher-replicas", "0", "--kube-api", api.url)
    assert proc.returncode == EXIT_BAD_ARGS and "--teacher-replicas must be >= 1" in proc.stderr
    assert api.replicas_set() == []

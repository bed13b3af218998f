"""report.py on synthetic evaluation results, with a fake Kubernetes API and a fake webhook on 127.0.0.1;
the programs' failure notification (cotvr_common.run_main)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import TRAINER, JsonHandler, run_program
from cotvr_contract import EXIT_FAILED, EXIT_MISSING_INPUT, EXIT_NO_METRICS, LABEL_RUN, LABEL_STAGE, LABEL_VARIANT, selector

REPORT = TRAINER / "report.py"

# The blog's Figure 2 shape: tuned 11B = 2.3x base 90B.
SCORES = {"base-11b": 0.10, "lora-11b": 0.345, "base-90b": 0.15, "qlora-90b": 0.40}
SPEC = {
    "run": "blog",
    "namespace": "cot-vr",
    "jobSelector": selector({LABEL_RUN: "blog"}),
    "gpuResource": "amd.com/gpu",
    "tasks": ["chartqa"],
    "metric": "exact_match",
    "variants": [
        {"name": "base-11b", "size": "11b", "tuned": False},
        {"name": "lora-11b", "size": "11b", "tuned": True},
        {"name": "base-90b", "size": "90b", "tuned": False},
        {"name": "qlora-90b", "size": "90b", "tuned": True},
    ],
    "headline": {"numerator": "lora-11b", "denominator": "base-90b"},
}


def job(name: str, stage: str, start: str, end: str | None, gpus: int, variant: str | None = None) -> dict[str, Any]:
    labels = {LABEL_RUN: "blog", LABEL_STAGE: stage}
    if variant:
        labels[LABEL_VARIANT] = variant
    limits = {"memory": "64Gi", **({"amd.com/gpu": str(gpus)} if gpus else {})}
    status: dict[str, Any] = {"startTime": start}
    if end:
        status.update({"completionTime": end, "succeeded": 1})
    else:
        status["active"] = 1
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"template": {"spec": {"containers": [{"name": "main", "resources": {"limits": limits}}]}}},
            "status": status}


JOBS = [
    job("blog-generate-1", "generate", "2025-06-01T00:00:00Z", "2025-06-01T04:00:00Z", 0),
    job("blog-train-lora-11b-1", "train", "2025-06-01T04:00:00Z", "2025-06-02T03:00:00Z", 1, "lora-11b"),
    job("blog-train-qlora-90b-1", "train", "2025-06-02T03:00:00Z", "2025-06-02T16:00:00Z", 1, "qlora-90b"),
    job("blog-evaluate-lora-11b-1", "evaluate", "2025-06-02T16:00:00Z", "2025-06-02T18:30:00Z", 1, "lora-11b"),
]


class FakeApi:
    def __init__(self, jobs: list[dict[str, Any]], patch_status: int = 200) -> None:
        self.requests: list[tuple[str, str | None]] = []
        # PATCH requests: (path, content type, body)
        self.patches: list[tuple[str, str | None, Any]] = []
        api = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:  # noqa: N802
                api.requests.append((self.path, self.headers.get("Authorization")))
                self.reply(200, {"kind": "JobList", "apiVersion": "batch/v1", "items": jobs})

            def do_PATCH(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                api.patches.append((self.path, self.headers.get("Content-Type"), body))
                self.reply(patch_status, {"kind": "ConfigMap", "apiVersion": "v1"} if patch_status == 200 else
                           {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": patch_status})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def api():
    server = FakeApi(JOBS)
    yield server
    server.close()


def write_inputs(tmp_path: Path, scores: dict[str, float] = SCORES) -> tuple[Path, Path]:
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    for name, score in scores.items():
        (eval_dir / f"{name}.json").write_text(json.dumps({
            "variant": name, "limit": None, "checkpoint_dir": f"/checkpoints/blog/{name}",
            "results": {"chartqa": {"exact_match": score, "exact_match_stderr": 0.009, "relaxed_accuracy": score + 0.1,
                                    "relaxed_accuracy_stderr": 0.009, "anywhere_accuracy": score + 0.2, "anywhere_accuracy_stderr": None}},
            "n_samples": {"chartqa": {"original": 2500, "effective": 2500}},
        }))
    spec = tmp_path / "report.json"
    spec.write_text(json.dumps(SPEC))
    return eval_dir, spec


def report(tmp_path: Path, eval_dir: Path, spec: Path, *extra: str):
    return run_program(REPORT, "--eval-dir", str(eval_dir), "--spec", str(spec), "--namespace", "cot-vr", "--run", "blog",
                       "--out", str(tmp_path / "report"), *extra, env={"KUBERNETES_SERVICE_HOST": ""})


def test_report_with_jobs(tmp_path: Path, api: FakeApi) -> None:
    eval_dir, spec = write_inputs(tmp_path)
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    proc = report(tmp_path, eval_dir, spec, "--api", api.url, "--token-file", str(token))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "report"
    data = json.loads((out / "report.json").read_text())
    assert data["headline"]["ratio"] == pytest.approx(2.3, abs=1e-6)
    assert [v["name"] for v in data["variants"]] == ["base-11b", "lora-11b", "base-90b", "qlora-90b"]
    assert data["stages"]["train"]["gpu_hours"] == pytest.approx(23 + 13)
    assert data["stages"]["generate"]["gpu_hours"] == 0
    assert data["stages"]["evaluate"]["gpu_hours"] == pytest.approx(2.5)
    assert data["total_gpu_hours"] == pytest.approx(38.5)
    # plain HTTPS-style request: the Jobs list with the run's selector and the SA token
    path, auth = api.requests[0]
    assert path.startswith("/apis/batch/v1/namespaces/cot-vr/jobs?" + urllib.parse.urlencode({"labelSelector": selector({LABEL_RUN: "blog"})}))
    assert auth == "Bearer sa-token"
    # the Markdown table on stdout and in report.md
    markdown = (out / "report.md").read_text()
    assert proc.stdout.strip() == markdown.strip()
    assert "| lora-11b | 11b | yes | 0.3450 ± 0.0090 |" in markdown
    assert "**2.30x**" in markdown
    assert "| train | 2 | 36.00 | 36.00 |" in markdown
    # a real PNG
    from PIL import Image

    with Image.open(out / "exact_match.png") as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_report_without_cluster_still_writes(tmp_path: Path) -> None:
    eval_dir, spec = write_inputs(tmp_path)
    proc = report(tmp_path, eval_dir, spec)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["stages"] == {} and any("GPU time not reported" in w for w in data["warnings"])


def test_malformed_metrics_exit_5_and_write_nothing(tmp_path: Path) -> None:
    eval_dir, spec = write_inputs(tmp_path)
    (eval_dir / "base-90b.json").write_text(json.dumps({"results": {"chartqa": {"exact_match": "N/A"}}}))
    proc = report(tmp_path, eval_dir, spec, "--no-jobs")
    assert proc.returncode == EXIT_NO_METRICS and "base-90b.json" in proc.stderr
    assert not (tmp_path / "report").exists()
    (eval_dir / "base-90b.json").write_text("{not json")
    assert report(tmp_path, eval_dir, spec, "--no-jobs").returncode == EXIT_NO_METRICS


def test_missing_inputs_exit_3(tmp_path: Path) -> None:
    eval_dir, spec = write_inputs(tmp_path)
    (eval_dir / "qlora-90b.json").unlink()
    proc = report(tmp_path, eval_dir, spec, "--no-jobs")
    assert proc.returncode == EXIT_MISSING_INPUT and "qlora-90b.json" in proc.stderr and "Traceback" not in proc.stderr
    proc = report(tmp_path, eval_dir, tmp_path / "nospec.json", "--no-jobs")
    assert proc.returncode == EXIT_MISSING_INPUT


def test_zero_denominator_gives_no_ratio(tmp_path: Path) -> None:
    eval_dir, spec = write_inputs(tmp_path, {**SCORES, "base-90b": 0.0})
    proc = report(tmp_path, eval_dir, spec, "--no-jobs")
    assert proc.returncode == 0
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["headline"]["ratio"] is None and "scored 0" in data["headline"]["note"]


def test_teacher_time_timeline_and_cost(tmp_path: Path, api: FakeApi) -> None:
    """The teacher's serving time (the generation's scale events, teacher_scale.py's format) counts
    as GPU time; the GPU timeline is drawn; a GPU-hour price turns hours into cost."""
    from cotvr_common import KubeApi
    from teacher_scale import TeacherScaler

    eval_dir, spec = write_inputs(tmp_path)
    spec.write_text(json.dumps({**SPEC, "teacherGpus": 1, "gpuHourPrice": {"amount": 2.5, "currency": "USD"}}))
    record = tmp_path / "teacher.jsonl"
    # Written by the real scaler's recorder (no API call needed for the record format).
    scaler = TeacherScaler(KubeApi("http://127.0.0.1:1"), "cot-vr", "blog-teacher", record)
    scaler._record("scaled", replicas=1)
    lines = record.read_text().splitlines()
    first = json.loads(lines[0])
    record.write_text("\n".join([
        json.dumps({**first, "at": "2026-05-01T02:00:00Z"}),
        json.dumps({**first, "replicas": 0, "at": "2026-05-01T10:30:00Z"}),
        '{"event": "scaled", "torn',  # a killed pod's last line
    ]) + "\n")
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    proc = report(tmp_path, eval_dir, spec, "--api", api.url, "--token-file", str(token), "--teacher-record", str(record))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["stages"]["teacher"]["gpu_hours"] == pytest.approx(8.5)
    assert data["total_gpu_hours"] == pytest.approx(38.5 + 8.5)
    assert data["cost"] == {"amount": pytest.approx(47.0 * 2.5), "currency": "USD"}
    assert "GPU cost: **117.50 USD**" in (tmp_path / "report" / "report.md").read_text()
    from PIL import Image

    with Image.open(tmp_path / "report" / "gpu_timeline.png") as image:
        assert image.format == "PNG" and image.size[0] > 600


# ---------------------------------------------------------------- headline record and notifications

class Webhook:
    """A Slack-style incoming webhook on 127.0.0.1 that records what is posted."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[dict[str, Any]] = []
        hook = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:  # noqa: N802
                hook.posts.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
                self.reply(status, {"ok": status == 200})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/secret-path"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def test_headline_configmap_and_notification(tmp_path: Path, api: FakeApi, webhook: Webhook) -> None:
    """The headline record is merge-patched into the ConfigMap the Pulumi program reads back, and posted."""
    eval_dir, spec = write_inputs(tmp_path)
    spec.write_text(json.dumps({**SPEC, "gpuHourPrice": {"amount": 2.0, "currency": "USD"}}))
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    proc = run_program(REPORT, "--eval-dir", str(eval_dir), "--spec", str(spec), "--namespace", "cot-vr", "--run", "blog",
                       "--out", str(tmp_path / "report"), "--api", api.url, "--token-file", str(token),
                       "--headline-configmap", "blog-report",
                       env={"KUBERNETES_SERVICE_HOST": "", "COTVR_NOTIFY_WEBHOOK": webhook.url})
    assert proc.returncode == 0, proc.stderr
    [(path, ctype, body)] = api.patches
    assert path == "/api/v1/namespaces/cot-vr/configmaps/blog-report"
    assert ctype == "application/merge-patch+json"
    rec = json.loads(body["data"]["headline.json"])
    assert rec["scores"] == SCORES and rec["metric"] == "exact_match" and rec["task"] == "chartqa"
    assert rec["headline"] == {"numerator": "lora-11b", "denominator": "base-90b", "ratio": pytest.approx(2.3)}
    assert rec["gpuHours"] == pytest.approx(38.5) and rec["cost"] == {"amount": pytest.approx(77.0), "currency": "USD"}
    # Slack-compatible: text plus an optional mrkdwn section
    [post] = webhook.posts
    assert "lora-11b / base-90b = 2.30x" in post["text"] and "38.50 GPU-hours, 77.00 USD" in post["text"]
    assert "base-11b 0.1000" in post["text"]
    assert post["blocks"][0]["type"] == "section"
    assert webhook.url not in proc.stderr + proc.stdout


def test_headline_configmap_write_failure_fails_the_job(tmp_path: Path) -> None:
    """A failed write would leave the last run's numbers in the stack outputs: exit 1 (the Job retries)."""
    server = FakeApi(JOBS, patch_status=403)
    try:
        eval_dir, spec = write_inputs(tmp_path)
        proc = report(tmp_path, eval_dir, spec, "--api", server.url, "--headline-configmap", "blog-report")
        assert proc.returncode == EXIT_FAILED and "cannot write ConfigMap cot-vr/blog-report" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert (tmp_path / "report" / "report.md").is_file()
    finally:
        server.close()
    # without any API there is nothing to write to
    proc = report(tmp_path, eval_dir, spec, "--no-jobs", "--headline-configmap", "blog-report")
    assert proc.returncode == EXIT_FAILED and "not running in a cluster" in proc.stderr


def test_an_unreachable_webhook_changes_nothing(tmp_path: Path) -> None:
    eval_dir, spec = write_inputs(tmp_path)
    hook = Webhook(status=500)
    url = hook.url
    try:
        proc = run_program(REPORT, "--eval-dir", str(eval_dir), "--spec", str(spec), "--namespace", "cot-vr", "--run", "blog",
                           "--out", str(tmp_path / "report"), "--no-jobs", env={"KUBERNETES_SERVICE_HOST": "", "COTVR_NOTIFY_WEBHOOK": url})
        assert proc.returncode == 0 and "webhook answered HTTP 500" in proc.stderr
    finally:
        hook.close()
    proc = run_program(REPORT, "--eval-dir", str(eval_dir), "--spec", str(spec), "--namespace", "cot-vr", "--run", "blog",
                       "--out", str(tmp_path / "report2"), "--no-jobs", env={"KUBERNETES_SERVICE_HOST": "", "COTVR_NOTIFY_WEBHOOK": url})
    assert proc.returncode == 0 and "notification not sent" in proc.stderr and url not in proc.stderr


def test_run_main_posts_a_failure_for_good(webhook: Webhook, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A fatal exit code (the Job fails at once) is posted with the pod's name; a retried one is not;
    a webhook that is down or malformed never changes the exit code nor shows the URL."""
    import cotvr_common
    from cotvr_common import CotvrError, run_main

    def failing(code: int):
        def main(argv: Any) -> int:
            raise CotvrError("evaluation result missing: /results/blog/eval/base-90b.json", code)
        return main

    monkeypatch.setenv("COTVR_NOTIFY_WEBHOOK", webhook.url)
    monkeypatch.setenv("HOSTNAME", "blog-report-ed96fe62-x7k2p")
    assert run_main("report.py", failing(EXIT_MISSING_INPUT)) == EXIT_MISSING_INPUT
    [post] = webhook.posts
    assert post["text"].startswith("cot-vr: report.py failed for good in pod blog-report-ed96fe62-x7k2p (exit 3): evaluation result missing")
    assert run_main("train.py", failing(1)) == 1
    assert len(webhook.posts) == 1, "a failure the Job retries is not posted"
    monkeypatch.setenv("COTVR_NOTIFY_WEBHOOK", "notaurl://" + webhook.url)
    assert run_main("report.py", failing(EXIT_NO_METRICS)) == EXIT_NO_METRICS
    monkeypatch.setenv("COTVR_NOTIFY_WEBHOOK", "http://127.0.0.1:9/closed")
    assert run_main("report.py", failing(EXIT_NO_METRICS)) == EXIT_NO_METRICS
    err = capsys.readouterr().err
    assert "notaurl" not in err and "127.0.0.1:9" not in err and err.count("notification not sent") == 2
    monkeypatch.delenv("COTVR_NOTIFY_WEBHOOK")
    assert cotvr_common.notify("anything") is False

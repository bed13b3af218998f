"""generate_cot.py's shards, which survive a lost run: the teacher dies mid-run, the pod is killed mid-run, the teacher
comes back within --teacher-timeout, another config hash's shards exist. Every case: no row is asked
of the teacher twice, none is lost, the published dataset has the source's rows in order."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import FakeTeacher
from cotvr_contract import EXIT_MISSING_INPUT
from cotvr_common import parse_progress
from test_generate_cot import GENERATE, MODEL_90B, generate_args, generate_env, run_generate, sdk_config_for


def question(body: dict[str, Any]) -> str:
    """The source row's query in a chat request ("<query> Final answer: <label>", VQAGenerator.transform)."""
    text = next(part["text"] for part in body["messages"][-1]["content"] if part.get("type") == "text")
    return text.rsplit(" Final answer:", 1)[0]


class MortalTeacher(FakeTeacher):
    """FakeTeacher that answers `answers` chat requests, then dies (drops the request, stops listening)
    or hangs (never answers: the test kills the generator meanwhile). `answered` = the query of every
    request that got an answer. `port` rebinds to a fixed port: a restarted teacher behind the same URL."""

    def __init__(self, answers: int = 10**6, hang: bool = False, port: int = 0) -> None:
        super().__init__(MODEL_90B)
        self.limit, self.hang = answers, hang
        self.answered: list[str] = []
        self.dead, self.hanging, self.release = threading.Event(), threading.Event(), threading.Event()
        lock, teacher = threading.Lock(), self

        class Handler(self.server.RequestHandlerClass):  # type: ignore[name-defined, misc]
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    alive = not teacher.dead.is_set() and len(teacher.answered) < teacher.limit
                    if alive:
                        teacher.answered.append(question(json.loads(raw)))
                if not alive:
                    if teacher.hang:
                        teacher.hanging.set()
                        teacher.release.wait(60)
                    else:
                        teacher.die()
                    self.close_connection = True  # no answer: the client sees the server disconnect
                    return
                self.rfile = io.BytesIO(raw)
                super().do_POST()

        if port:
            self.server.server_close()
            self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        else:
            self.server.RequestHandlerClass = Handler

    def die(self) -> None:
        if not self.dead.is_set():
            self.dead.set()
            threading.Thread(target=self.__exit__, args=(None, None, None), daemon=True).start()


@pytest.fixture()
def teachers():
    started: list[MortalTeacher] = []

    def start(**kwargs: Any) -> MortalTeacher:
        teacher = MortalTeacher(**kwargs).__enter__()
        started.append(teacher)
        return teacher

    yield start
    for teacher in started:
        teacher.release.set()
        if not teacher.dead.is_set():
            teacher.__exit__(None, None, None)


def config_for(tmp_path: Path, teacher: FakeTeacher, batch_size: int) -> Path:
    config = sdk_config_for(tmp_path, teacher.api_base, MODEL_90B)
    cfg = yaml.safe_load(config.read_text())
    cfg["generation"]["batch_size"] = batch_size
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return config


def source_queries(source: Path) -> list[str]:
    import datasets

    return list(datasets.load_dataset(str(source), split="train")["query"])


def assert_published_once(out: Path, source: Path, *teachers: MortalTeacher) -> None:
    import datasets

    asked = Counter(q for t in teachers for q in t.answered)
    queries = source_queries(source)
    assert asked == Counter(queries), f"rows asked more than once or never: {asked}"
    ds = datasets.load_dataset(str(out), split="train")
    assert ds["query"] == queries  # every row, in source order
    assert all(label.endswith(f"Final answer: {ref[0]}") for label, ref in zip(ds["label"], datasets.load_dataset(str(source), split="train")["label"]))
    marker = json.loads((out / ".complete.json").read_text())
    assert marker["rows"] == len(queries) == 6 and marker["shards"] == 3 and marker["config_hash"] == "abc123"
    assert not out.with_name(f"{out.name}.shards").exists()  # this hash's shards go once the dataset holds them


def progress(stdout: str) -> list[dict[str, Any]]:
    return [rec for line in stdout.splitlines() if (rec := parse_progress(line))]


def test_teacher_dies_mid_run_and_a_restart_continues(tmp_path: Path, tiny_chartqa: Path, teachers) -> None:
    first = teachers(answers=3)
    config = config_for(tmp_path, first, batch_size=2)
    out = tmp_path / "cot_chartqa"
    proc = run_generate(config, out, tiny_chartqa, "--shard-size", "2")
    assert proc.returncode == EXIT_MISSING_INPUT, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "teacher lost during shard-00001.staging (1 of 2 rows answered and kept)" in proc.stderr
    assert "not reachable" in proc.stderr
    shards = out.with_name("cot_chartqa.shards") / "abc123"
    assert json.loads((shards / "shard-00000" / ".complete.json").read_text())["rows"] == 2
    assert not (shards / "shard-00001").exists() and not out.exists()
    recs = progress(proc.stdout)
    assert recs and {r["stage"] for r in recs} == {"generate"} and recs[-1]["unit"] == "rows"
    assert recs[-1]["done"] == 3 and recs[-1]["total"] == 6 and recs[-1]["shard"] == 2 and recs[-1]["shards"] == 3

    second = teachers()  # a new teacher pod: another address, same config hash
    proc = run_generate(config_for(tmp_path, second, batch_size=2), out, tiny_chartqa, "--shard-size", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 of 3 shards already published" in proc.stderr
    assert "1 of 2 rows already answered, asking for 1" in proc.stderr
    assert len(second.answered) == 3
    assert_published_once(out, tiny_chartqa, first, second)
    recs = progress(proc.stdout)
    assert recs[0]["done"] == 2 and recs[-1]["done"] == 6 and recs[-1]["shard"] == 3


def test_teacher_back_within_the_timeout_is_waited_for(tmp_path: Path, tiny_chartqa: Path, teachers) -> None:
    first = teachers(answers=3)
    port = first.server.server_address[1]
    holder: list[MortalTeacher] = []

    def restart() -> None:  # later than the client's own retries (sdk max_retries 2 x openai's 2 with backoff)
        first.dead.wait(60)
        time.sleep(10.0)
        holder.append(teachers(port=port))

    threading.Thread(target=restart, daemon=True).start()
    out = tmp_path / "cot_chartqa"
    proc = run_generate(config_for(tmp_path, first, batch_size=2), out, tiny_chartqa, "--shard-size", "2",
                        "--teacher-timeout", "60")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "teacher lost during shard-00001.staging" in proc.stderr and "waiting for teacher" in proc.stderr
    assert_published_once(out, tiny_chartqa, first, *holder)


def test_killed_pod_resumes_after_the_last_answered_batch(tmp_path: Path, tiny_chartqa: Path, teachers) -> None:
    """An evicted pod (SIGKILL): answers already journaled are kept; only the batch in flight is lost
    (here generation.batch_size 1, so no answered row is asked again)."""
    first = teachers(answers=3, hang=True)
    config = config_for(tmp_path, first, batch_size=1)
    out = tmp_path / "cot_chartqa"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1", **generate_env(tiny_chartqa)}  # as run_program, but Popen
    proc = subprocess.Popen([sys.executable, str(GENERATE), *generate_args(config, out, "--shard-size", "2")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.hanging.wait(120), "the generator never reached the 4th request"
    finally:
        proc.kill()
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -9, stderr[-3000:]
    first.release.set()
    first.die()

    second = teachers()
    again = run_generate(config_for(tmp_path, second, batch_size=1), out, tiny_chartqa, "--shard-size", "2")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "1 of 2 rows already answered, asking for 1" in again.stderr
    assert_published_once(out, tiny_chartqa, first, second)


def test_shards_of_another_config_hash_are_never_mixed_in(tmp_path: Path, tiny_chartqa: Path, teachers) -> None:
    first = teachers(answers=3)
    out = tmp_path / "cot_chartqa"
    proc = run_generate(config_for(tmp_path, first, batch_size=2), out, tiny_chartqa, "--shard-size", "2", config_hash="old999")
    assert proc.returncode == EXIT_MISSING_INPUT
    old = out.with_name("cot_chartqa.shards") / "old999"
    before = sorted(p.name for p in old.iterdir())
    assert "shard-00000" in before

    second = teachers()
    proc = run_generate(config_for(tmp_path, second, batch_size=2), out, tiny_chartqa, "--shard-size", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "also holds shards of old999" in proc.stderr
    assert Counter(second.answered) == Counter(source_queries(tiny_chartqa))  # all 6 asked again under abc123
    assert sorted(p.name for p in old.iterdir()) == before  # untouched
    assert json.loads((out / ".complete.json").read_text())["config_hash"] == "abc123"


def test_why_create_is_not_run_per_shard(tmp_path: Path, tiny_chartqa: Path) -> None:
    """The pinned package's facts generate_cot.py is built on: `create --type vqa_add_reasoning` is
    VQAGenerator(client, config).process_dataset, whose -n has no offset and which cannot read a local
    dataset folder (a shard); the objects generate_cot.py drives per batch are the same ones."""
    import inspect

    from synthetic_data_kit.core import create
    from synthetic_data_kit.generators.vqa_generator import VQAGenerator
    from synthetic_data_kit.models.llm_client import LLMClient

    branch = inspect.getsource(create.process_file).split('"vqa_add_reasoning"', 1)[1]
    assert "VQAGenerator(client, config_path)" in branch and "generator.process_dataset(" in branch
    process = inspect.getsource(VQAGenerator.process_dataset)
    assert "dataset.select(range(min(max_examples, len(dataset))))" in process  # first N rows, no offset
    assert "self.transform" in process and "batch_size=batch_size" in process

    config = sdk_config_for(tmp_path, "http://127.0.0.1:9/v1", MODEL_90B)
    generator = VQAGenerator(LLMClient(config_path=config), config)
    with pytest.raises(IsADirectoryError):
        generator.process_dataset(str(tiny_chartqa), str(tmp_path / "o"), num_examples=2)

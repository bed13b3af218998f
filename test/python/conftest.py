"""Shared fixtures for the image program tests.

Everything here runs offline: datasets are generated (PIL charts), the teacher is a local
HTTP server on 127.0.0.1, the tokenizer is a tiny tiktoken file built in the test.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
TRAINER = IMAGES / "trainer"
DATAGEN = IMAGES / "datagen"
COMMON = IMAGES / "common"
MANIFESTS = REPO / "manifests"
HERE = Path(__file__).resolve().parent

for path in (COMMON, TRAINER, DATAGEN, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

BLOG_COT_PROMPT_START = "You are an AI with an IQ of 170 tasked with enhancing dataset examples"
BLOG_COT_PROMPT_END = "DO NOT CHANGE THE ORIGINAL FINAL ANSWER. Begin now."


class JsonHandler(BaseHTTPRequestHandler):
    """Request handler of the tests' fake HTTP servers: quiet, answers in JSON."""

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def reply(self, status: int, body: Any = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def run_program(program: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600,
                log_name: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run one of the image programs the way the Job does: `python <program> args...`.

    With COTVR_CAPTURE_LOGS=<dir> and `log_name`, stdout and stderr are also written, interleaved
    in arrival order as a pod log shows them, to <dir>/<log_name>.log (test/fixtures/logs/).
    """
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    full_env.update(env or {})
    cmd = [sys.executable, str(program), *args]
    capture_dir = os.environ.get("COTVR_CAPTURE_LOGS")
    if not (capture_dir and log_name):
        return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}
    merged: list[bytes] = []
    lock = threading.Lock()

    def read(stream: Any, key: str) -> None:
        while chunk := os.read(stream.fileno(), 65536):
            with lock:
                chunks[key].append(chunk)
                merged.append(chunk)

    readers = [threading.Thread(target=read, args=(proc.stdout, "out")), threading.Thread(target=read, args=(proc.stderr, "err"))]
    for reader in readers:
        reader.start()
    code = proc.wait(timeout=timeout)
    for reader in readers:
        reader.join()
    Path(capture_dir).mkdir(parents=True, exist_ok=True)
    (Path(capture_dir) / f"{log_name}.log").write_bytes(b"".join(merged))
    text = {key: b"".join(parts).decode("utf-8", errors="replace") for key, parts in chunks.items()}
    return subprocess.CompletedProcess(cmd, code, text["out"], text["err"])


# ------------------------------------------------------------------ tiny ChartQA


def make_chart(values: list[int], labels: list[str], size: tuple[int, int] = (96, 72)):
    """A small bar chart drawn with PIL."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    width = size[0] // (len(values) + 1)
    top = max(values) or 1
    for i, (value, label) in enumerate(zip(values, labels)):
        x0 = 6 + i * width
        height = int((size[1] - 20) * value / top)
        draw.rectangle([x0, size[1] - 12 - height, x0 + width - 4, size[1] - 12], fill=(40 + 60 * i, 90, 200))
        draw.text((x0, size[1] - 11), label[:3], fill="black")
    return image


def chartqa_rows(n: int, seed: int = 0) -> dict[str, list[Any]]:
    import random

    rng = random.Random(seed)
    rows: dict[str, list[Any]] = {"image": [], "query": [], "label": [], "human_or_machine": []}
    for i in range(n):
        labels = ["Netflix", "Hulu", "Disney"]
        values = [rng.randint(1, 40) for _ in labels]
        pick = rng.randrange(len(labels))
        rows["image"].append(make_chart(values, labels))
        rows["query"].append(f"How many monthly sessions per user did {labels[pick]} have? (chart {i})")
        rows["label"].append([str(values[pick])])
        rows["human_or_machine"].append(i % 2)
    return rows


def write_split_folder(root: Path, splits: dict[str, dict[str, list[Any]]], features: Any = None) -> Path:
    """Write `<root>/<split>/data.parquet` + `<root>/dataset_dict.json`, as synthetic-data-kit does."""
    import datasets

    root.mkdir(parents=True, exist_ok=True)
    for split, columns in splits.items():
        ds = datasets.Dataset.from_dict(columns, features=features)
        (root / split).mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(root / split / "data.parquet"))
    (root / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}, indent=4))
    return root


def chartqa_features() -> Any:
    import datasets

    return datasets.Features(
        {
            "image": datasets.Image(),
            "query": datasets.Value("string"),
            "label": datasets.Sequence(datasets.Value("string")),
            "human_or_machine": datasets.Value("int64"),
        }
    )


@pytest.fixture(scope="session")
def tiny_chartqa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ChartQA look-alike source dataset (train 6 rows, test 3 rows), label = list[str]."""
    root = tmp_path_factory.mktemp("chartqa") / "ChartQA"
    return write_split_folder(root, {"train": chartqa_rows(6, 1), "test": chartqa_rows(3, 2)}, chartqa_features())


def cot_rows(n: int, label: Callable[[int, str], str] | None = None) -> dict[str, list[Any]]:
    rows = chartqa_rows(n, 3)
    make = label or (lambda i, answer: f"The chart has three bars; the one asked about reads {answer}. Final answer: {answer}")
    rows["label"] = [make(i, answer[0]) for i, answer in enumerate(rows["label"])]
    return rows


@pytest.fixture()
def make_cot_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Write a CoT dataset folder (string labels) the way synthetic-data-kit writes it."""

    def make(n: int = 5, label: Callable[[int, str], str] | None = None, name: str = "cot") -> Path:
        return write_split_folder(tmp_path / name, {"train": cot_rows(n, label)})

    return make


# ------------------------------------------------------------------ tiny tokenizer


@pytest.fixture(scope="session")
def tiny_tiktoken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level tiktoken BPE file: the 256 single bytes, no merges.

    torchtune's Llama3 tokenizer adds its special tokens at ids 128000-128255 on top, so the
    real `llama3_2_vision_transform(path=...)` loads it and tokenizes any text (one token per
    byte) without the real 2 MB tokenizer.model, which cannot be downloaded here.
    """
    path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    lines = [f"{base64.b64encode(bytes([i])).decode()} {i}" for i in range(256)]
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------ fake OpenAI-compatible teacher


class FakeTeacher:
    """vLLM look-alike: GET /v1/models lists `served`; POST /v1/chat/completions answers with a
    CoT that keeps the given final answer, or 404 (vLLM's answer) for any other model name."""

    def __init__(self, served: str, reply: Callable[[str], str] | None = None, listed: list[str] | None = None) -> None:
        self.served = served
        self.listed = listed if listed is not None else [served]
        self.reply = reply or (lambda answer: f"Looking at the bars, the value asked for is {answer}. Final answer: {answer}")
        self.requests: list[dict[str, Any]] = []
        teacher = self

        class Handler(JsonHandler):

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") == "/v1/models":
                    self.reply(200, {"object": "list", "data": [{"id": name, "object": "model"} for name in teacher.listed]})
                else:
                    self.reply(404, {"detail": "Not Found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                teacher.requests.append(body)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self.reply(404, {"detail": "Not Found"})
                    return
                if body.get("model") != teacher.served:
                    self.reply(
                        404,
                        {
                            "object": "error",
                            "message": f"The model `{body.get('model')}` does not exist.",
                            "type": "NotFoundError",
                            "param": None,
                            "code": 404,
                        },
                    )
                    return
                user = body["messages"][-1]["content"]
                text = next(part["text"] for part in user if part.get("type") == "text")
                answer = text.rsplit("Final answer:", 1)[-1].strip()
                self.reply(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": teacher.served,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": teacher.reply(answer)},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "FakeTeacher":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake_teacher() -> Iterator[Callable[..., FakeTeacher]]:
    started: list[FakeTeacher] = []

    def start(served: str, reply: Callable[[str], str] | None = None, listed: list[str] | None = None) -> FakeTeacher:
        teacher = FakeTeacher(served, reply, listed).__enter__()
        started.append(teacher)
        return teacher

    yield start
    for teacher in started:
        teacher.__exit__(None, None, None)


# ------------------------------------------------------------------ rendered configs


def render_dir() -> Path | None:
    value = os.environ.get("COTVR_RENDER_DIR")
    return Path(value) if value else None

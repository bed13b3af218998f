"""download_model.py with huggingface_hub.snapshot_download replaced (no hub here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cotvr_contract import EXIT_BAD_ARGS

REQUIRED = ["config.json", "original/tokenizer.model"]


def fake_snapshot(files: list[str], calls: list[dict]):
    def snapshot_download(**kwargs):
        calls.append(kwargs)
        dest = Path(kwargs["local_dir"])
        for name in files:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(b"x")
        return str(dest)

    return snapshot_download


def args(dest: Path) -> list[str]:
    return ["--repo-id", "meta-llama/Llama-3.2-11B-Vision-Instruct", "--dest", str(dest),
            "--ignore", "original/consolidated*.pth", "--require", REQUIRED[0], "--require", REQUIRED[1], "--shards", "5"]


def shards(n: int, of: int = 5) -> list[str]:
    return [f"model-{i:05d}-of-{of:05d}.safetensors" for i in range(1, n + 1)]


def run(argv: list[str]) -> int:
    import download_model
    from cotvr_common import run_main

    return run_main("download_model.py", download_model.main, argv)


def test_downloads_verifies_marks_and_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls: list[dict] = []
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot(REQUIRED + shards(5), calls))
    dest = tmp_path / "m"
    assert run(args(dest)) == 0
    assert calls[0]["ignore_patterns"] == ["original/consolidated*.pth"] and calls[0]["token"] == "hf_test"
    marker = json.loads((dest / ".complete.json").read_text())
    assert marker["repo_id"] == "meta-llama/Llama-3.2-11B-Vision-Instruct" and marker["shards"] == 5
    assert run(args(dest)) == 0
    assert len(calls) == 1  # no second download


def test_incomplete_download_is_exit_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot(REQUIRED + shards(4), []))
    assert run(args(tmp_path / "m")) == 4
    assert "model-00005-of-00005.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "m" / ".complete.json").exists()


def test_missing_token_and_gated_repo_are_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    assert run(args(tmp_path / "m")) == 3

    def gated(**kwargs):
        raise GatedRepoError("401 Client Error: access to model is restricted")

    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    assert run(args(tmp_path / "m")) == 3


def test_bad_args_are_exit_2(tmp_path: Path) -> None:
    assert run(["--repo-id", "x", "--dest", str(tmp_path), "--shards", "5"]) == 2
    with pytest.raises(SystemExit) as err:
        run(["--dest", str(tmp_path)])
    assert err.value.code == EXIT_BAD_ARGS


def test_token_from_the_mounted_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Job mounts the token as a file (HF_TOKEN_PATH), never as an env var."""
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text("hf_from_file\n")
    monkeypatch.setenv("HF_TOKEN_PATH", str(token_file))
    seen: list[str] = []
    inner = fake_snapshot(REQUIRED + shards(5), [])

    def recording(**kwargs):
        seen.append(kwargs["token"])
        return inner(**kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", recording)
    assert run(args(tmp_path / "m")) == 0
    assert seen == ["hf_from_file"]
    # The real huggingface_hub reads the same file (at import): the other programs need no code for it.
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    out = subprocess.run([sys.executable, "-c", "from huggingface_hub import get_token; print(get_token())"],
                         env={**env, "HF_TOKEN_PATH": str(token_file)}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "hf_from_file"


# ------------------------------------------------------------------ progress with the real huggingface_hub


class LocalHub:
    """The few Hub endpoints `snapshot_download` uses, served from memory on 127.0.0.1 (HF_ENDPOINT):
    model info with file sizes, HEAD/GET `/<repo>/resolve/<sha>/<file>` (with Range for resumes).
    Everything on the client side is the real huggingface_hub 0.34.4."""

    SHA = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, repo: str, files: dict[str, bytes]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hub = self
        self.repo, self.files, self.gets = repo, files, []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _file(self) -> tuple[str, bytes] | None:
                prefix = f"/{hub.repo}/resolve/{hub.SHA}/"
                path = self.path.split("?")[0]
                name = path[len(prefix):] if path.startswith(prefix) else None
                return (name, hub.files[name]) if name in hub.files else None

            def _headers(self, code: int, length: int, extra: dict | None = None) -> None:
                self.send_response(code)
                for key, value in {"Content-Length": str(length), "X-Repo-Commit": hub.SHA, **(extra or {})}.items():
                    self.send_header(key, value)
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802
                found = self._file()
                if found is None:
                    self._headers(404, 0)
                    return
                name, data = found
                self._headers(200, len(data), {"ETag": f'"{abs(hash(data))}"'})

            def do_GET(self) -> None:  # noqa: N802
                if self.path.split("?")[0] in (f"/api/models/{hub.repo}", f"/api/models/{hub.repo}/revision/main"):
                    body = json.dumps({"id": hub.repo, "sha": hub.SHA, "siblings": [
                        {"rfilename": name, "size": len(data)} for name, data in hub.files.items()]}).encode()
                    self._headers(200, len(body), {"Content-Type": "application/json"})
                    self.wfile.write(body)
                    return
                found = self._file()
                if found is None:
                    self._headers(404, 0)
                    return
                name, data = found
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                hub.gets.append(name)
                self._headers(206 if start else 200, len(data) - start, {"ETag": f'"{abs(hash(data))}"'})
                self.wfile.write(data[start:])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture()
def local_hub():
    files = {"config.json": b"{}", "original/tokenizer.model": b"t" * 3000,
             "original/consolidated.00.pth": b"c" * 5000, "model.safetensors.index.json": b"{}"}
    files.update({name: bytes([i]) * (300_000 + i) for i, name in enumerate(shards(5), start=1)})
    hub = LocalHub("meta-llama/Llama-3.2-11B-Vision-Instruct", files)
    yield hub
    hub.server.shutdown()


@pytest.mark.parametrize("hf_transfer", ["0", "1"])
def test_progress_in_bytes_from_huggingface_hub_bars(tmp_path: Path, local_hub: LocalHub, hf_transfer: str) -> None:
    from conftest import TRAINER, run_program
    from cotvr_common import parse_progress

    dest = tmp_path / "Llama-3.2-11B-Vision-Instruct"
    env = {"HF_ENDPOINT": local_hub.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test", "HF_HUB_ENABLE_HF_TRANSFER": hf_transfer,
           "HF_HUB_DISABLE_XET": "1", "COTVR_PROGRESS_INTERVAL": "0"}
    proc = run_program(TRAINER / "download_model.py", *args(dest), env=env, timeout=300, log_name=f"download-hf-transfer-{hf_transfer}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [r for r in map(parse_progress, proc.stdout.splitlines()) if r]
    wanted = {n: d for n, d in local_hub.files.items() if not n.startswith("original/consolidated")}
    total = sum(map(len, wanted.values()))
    assert sorted(local_hub.gets) == sorted(wanted)  # the ignore pattern held: the real download ran
    assert all(r["stage"] == "download" and r["variant"] == dest.name and r["unit"] == "bytes"
               and r["total"] == total and r["files_total"] == len(wanted) for r in recs), recs[:3]
    dones = [r["done"] for r in recs]
    assert dones[0] == 0 and dones == sorted(dones) and dones[-1] == total
    assert len(set(dones)) > len(wanted)  # per-file byte updates, not only whole files
    # snapshot_download's files bar (tqdm_class) runs only without hf_transfer (serial loop then)
    assert recs[-1].get("files") == (None if hf_transfer == "1" else len(wanted))

    # a second run after a pod restart: the complete files count as done from the start
    (dest / ".complete.json").unlink()
    (dest / "model-00005-of-00005.safetensors").unlink()
    proc = run_program(TRAINER / "download_model.py", *args(dest), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [r for r in map(parse_progress, proc.stdout.splitlines()) if r]
    assert recs[0]["done"] == total - len(local_hub.files["model-00005-of-00005.safetensors"])
    assert recs[-1]["done"] == total

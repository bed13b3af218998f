"""download_model.py with huggingface_hub.snapshot_download replaced (no hub here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

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
    assert err.value.code == 2


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

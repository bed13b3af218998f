"""sample.py and evaluate.py running the real torchtune 0.6.1 recipes end to end on CPU:
generate_v2 (sample.py) and the patched eleuther_eval with lm-eval 0.4.9.2's real `chartqa`
task (evaluate.py), with a tiny random Llama 3.2 Vision model (tinyvision.py), the byte-level
tokenizer and a tiny ChartQA test split served through the hub stand-in (hubshim/)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import HERE, TRAINER, run_program
from cotvr_contract import EXIT_BAD_ARGS, EXIT_MISSING_INPUT
from cotvr_configs import torchtune_configs

SAMPLE = TRAINER / "sample.py"
EVALUATE = TRAINER / "evaluate.py"
PATCH = TRAINER / "eleuther_eval.patch"


def progress_records(stdout: str) -> list[dict]:
    from cotvr_common import parse_progress

    return [r for r in map(parse_progress, stdout.splitlines()) if r is not None]


def first(stage: str) -> dict:
    cfg = next(c for c in torchtune_configs() if c.stage == stage)
    return cfg.load()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from tinyvision import tiny_llama3_2_vision

    folder = tmp_path_factory.mktemp("tinyckpt")
    torch.save(tiny_llama3_2_vision().state_dict(), folder / "model.pt")
    return folder


def tiny_overrides(cfg: dict, tokenizer: Path, ckpt: Path, out: Path, **model_kwargs) -> dict:
    cfg["model"] = {"_component_": "tinyvision.tiny_llama3_2_vision", **model_kwargs}
    cfg["tokenizer"].update({"path": str(tokenizer), "image_size": 112})
    cfg["checkpointer"] = {
        "_component_": "torchtune.training.FullModelTorchTuneCheckpointer",
        "checkpoint_dir": str(ckpt),
        "checkpoint_files": ["model.pt"],
        "output_dir": str(out),
        "model_type": "LLAMA3_VISION",
    }
    cfg.update({"device": "cpu", "dtype": "bf16", "output_dir": str(out)})  # the transform makes bf16 images
    return cfg


def test_sample_runs_generate_v2_and_writes_the_answer(tmp_path: Path, tiny_checkpoint: Path, tiny_tiktoken: Path, tiny_chartqa: Path) -> None:
    cfg = tiny_overrides(first("sample"), tiny_tiktoken, tiny_checkpoint, tmp_path / "gen-out")
    cfg["max_new_tokens"] = 12
    config = tmp_path / "generate.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "results" / "samples" / "lora-11b.json"
    proc = run_program(
        SAMPLE, "--config", str(config), "--variant", "lora-11b", "--question", "How many monthly sessions per user did Netflix have?",
        "--image-dataset", str(tiny_chartqa), "--image-split", "train", "--image-index", "1", "--out", str(out), "--config-hash", "s1",
        env={"PYTHONPATH": str(HERE), "COTVR_PROGRESS_INTERVAL": "0"}, log_name="sample",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads(out.read_text())
    assert data["variant"] == "lora-11b" and data["config_hash"] == "s1"
    assert data["question"].startswith("How many monthly sessions")
    assert data["answer"].strip() and data["answer"].strip().isalpha()  # what the model generated, captured
    assert Path(data["image"]).is_file() and data["image"].endswith(".png")
    answer_lines = [line for line in proc.stdout.splitlines() if not line.startswith("COTVR_PROGRESS ")]
    assert "\n".join(answer_lines).strip() == data["answer"].strip()

    # Progress in tokens: one model call per token, prefill + max_new_tokens (12) at most. This
    # random model never emits <|eot_id|>, so it runs to the bound; the byte-level tokenizer makes
    # one letter per token.
    recs = progress_records(proc.stdout)
    assert all(r["stage"] == "sample" and r["variant"] == "lora-11b" and r["unit"] == "tokens" for r in recs)
    assert [r["done"] for r in recs] == list(range(14)) + [13]
    assert all(r["total"] == 13 for r in recs)
    assert len(data["answer"]) == 13

    again = run_program(SAMPLE, "--config", str(config), "--variant", "lora-11b", "--question", "q", "--image", data["image"],
                        "--out", str(out), "--config-hash", "s1", env={"PYTHONPATH": str(HERE)})
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_sample_bad_inputs(tmp_path: Path, tiny_chartqa: Path) -> None:
    config = tmp_path / "generate.yaml"
    config.write_text(yaml.safe_dump(first("sample")))
    out = tmp_path / "s.json"
    proc = run_program(SAMPLE, "--config", str(config), "--variant", "v", "--question", "q", "--image", str(tmp_path / "none.png"), "--out", str(out))
    assert proc.returncode == EXIT_MISSING_INPUT and "Traceback" not in proc.stderr
    proc = run_program(SAMPLE, "--config", str(config), "--variant", "v", "--question", "q", "--image-dataset", str(tiny_chartqa),
                       "--image-index", "999", "--out", str(out))
    assert proc.returncode == EXIT_BAD_ARGS and "outside" in proc.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def patched_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import importlib.util

    root = tmp_path_factory.mktemp("recipe")
    (root / "recipes").mkdir()
    spec = importlib.util.find_spec("recipes")
    source = Path(list(spec.submodule_search_locations)[0]) / "eleuther_eval.py"
    (root / "recipes" / "eleuther_eval.py").write_bytes(source.read_bytes())
    subprocess.run(["git", "apply", str(PATCH)], cwd=root, check=True)
    return root / "recipes" / "eleuther_eval.py"


def test_evaluate_runs_patched_recipe_with_lm_eval_chartqa(tmp_path: Path, tiny_checkpoint: Path, tiny_tiktoken: Path,
                                                           tiny_chartqa: Path, patched_recipe: Path) -> None:
    cfg = tiny_overrides(first("evaluate"), tiny_tiktoken, tiny_checkpoint, tmp_path / "eval-out", eot_bias=1e4)
    cfg.update({"limit": 2, "max_seq_length": 4096, "tasks": ["chartqa"]})
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "results" / "eval" / "lora-11b.json"
    proc = run_program(
        EVALUATE, "--config", str(config), "--variant", "lora-11b", "--out", str(out), "--config-hash", "e1",
        env={
            "PYTHONPATH": f"{HERE / 'hubshim'}:{HERE}",
            "COTVR_TEST_HF_DATASETS": json.dumps({"HuggingFaceM4/ChartQA": str(tiny_chartqa)}),
            "COTVR_EVAL_RECIPE": str(patched_recipe),
            "COTVR_PROGRESS_INTERVAL": "0",
        },
        log_name="evaluate",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    data = json.loads(out.read_text())
    chartqa = data["results"]["chartqa"]
    assert set(chartqa) >= {"exact_match", "relaxed_accuracy", "anywhere_accuracy", "exact_match_stderr"}
    assert chartqa["exact_match"] == 0.0  # a random model that stops at once answers nothing
    assert data["limit"] == 2 and data["n_samples"]["chartqa"]["effective"] == 2

    # Progress: lm-eval's own request bar still prints, and each of its updates is a record.
    assert "Running generate_until requests with text+image input" in proc.stderr
    assert "2/2" in proc.stderr
    recs = progress_records(proc.stdout)
    assert all(r["stage"] == "evaluate" and r["variant"] == "lora-11b" and r["unit"] == "requests"
               and r["task"] == "chartqa" and r["total"] == 2 for r in recs), recs
    assert [r["done"] for r in recs] == [0, 1, 2, 2]  # bar opened, two requests answered, final

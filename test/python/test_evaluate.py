"""evaluate.py: metrics extraction from lm-eval result dicts, and the wrapper around the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import HERE, TRAINER, run_program
from cotvr_contract import EXIT_FAILED, EXIT_MISSING_INPUT, EXIT_NO_METRICS
from cotvr_configs import template_configs

EVALUATE = TRAINER / "evaluate.py"

LM_EVAL_OUTPUT = {
    "results": {
        "chartqa": {
            "alias": "chartqa",
            "exact_match,none": 0.348,
            "exact_match_stderr,none": 0.0095,
            "relaxed_accuracy,none": 0.41,
            "relaxed_accuracy_stderr,none": 0.0098,
            "anywhere_accuracy,none": 0.52,
            "anywhere_accuracy_stderr,none": "N/A",
        }
    },
    "group_subtasks": {"chartqa": []},
    "configs": {"chartqa": {"task": "chartqa"}},
    "versions": {"chartqa": 0.0},
    "n-samples": {"chartqa": {"original": 2500, "effective": 2500}},
    "higher_is_better": {"chartqa": {"exact_match": True}},
}


def test_extract_metrics_from_lm_eval_output() -> None:
    import evaluate as ev

    metrics = ev.extract_metrics(LM_EVAL_OUTPUT, ["chartqa"])
    assert metrics == {
        "chartqa": {
            "exact_match": 0.348,
            "exact_match_stderr": 0.0095,
            "relaxed_accuracy": 0.41,
            "relaxed_accuracy_stderr": 0.0098,
            "anywhere_accuracy": 0.52,
            "anywhere_accuracy_stderr": None,  # "N/A" is kept as null, not a string
        }
    }
    assert ev.n_samples(LM_EVAL_OUTPUT) == {"chartqa": {"original": 2500, "effective": 2500}}


def test_extract_prefers_unfiltered_values() -> None:
    import evaluate as ev

    out = {"results": {"chartqa": {"exact_match,none": 0.5, "exact_match,strict": 0.1}}}
    assert ev.extract_metrics(out, ["chartqa"])["chartqa"]["exact_match"] == 0.5
    out = {"results": {"chartqa": {"exact_match,strict": 0.1, "exact_match,none": 0.5}}}
    assert ev.extract_metrics(out, ["chartqa"])["chartqa"]["exact_match"] == 0.5


@pytest.mark.parametrize(
    "output, message",
    [
        (None, "not a results dict"),
        ({}, "no 'results'"),
        ({"results": {"mmmu_val_science": {"acc,none": 0.3}}}, "task 'chartqa' missing"),
        ({"results": {"chartqa": {"exact_match,none": "N/A"}}}, "no numeric exact_match"),
        ({"results": {"chartqa": {"exact_match,none": float("nan")}}}, "no numeric exact_match"),
    ],
)
def test_malformed_outputs_are_exit_5(output, message) -> None:
    import evaluate as ev
    from cotvr_common import CotvrError

    with pytest.raises(CotvrError, match=message) as err:
        ev.extract_metrics(output, ["chartqa"])
    assert err.value.exit_code == EXIT_NO_METRICS


@pytest.fixture()
def eval_setup(tmp_path: Path):
    cfg = next(c for c in template_configs() if c.id == "template/evaluate/lora-11b")
    config = tmp_path / "eval.yaml"
    config.write_text(cfg.text)
    marker = tmp_path / "ckpt.complete.json"
    marker.write_text("{}")
    out = tmp_path / "results" / "eval" / "lora-11b.json"

    def run(*extra: str, output=LM_EVAL_OUTPUT, mode: str = "ok", config_hash: str = "e1"):
        return run_program(
            EVALUATE, "--config", str(config), "--variant", "lora-11b", "--out", str(out), "--config-hash", config_hash,
            "--require", str(marker), *extra,
            env={"COTVR_EVAL_RECIPE": str(HERE / "fakes" / "fake_eleuther_eval.py"),
                 "FAKE_EVAL_OUTPUT": json.dumps(output), "FAKE_EVAL_MODE": mode},
        )

    return run, out, tmp_path


def test_wrapper_runs_recipe_and_saves_json(eval_setup) -> None:
    run, out, _ = eval_setup
    proc = run("limit=5")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["variant"] == "lora-11b" and data["config_hash"] == "e1"
    assert data["results"]["chartqa"]["exact_match"] == 0.348
    assert data["limit"] == 5 and data["tasks"] == ["chartqa"]
    assert data["checkpoint_dir"].endswith("epoch_9")
    assert data["model"] == "torchtune.models.llama3_2_vision.llama3_2_vision_11b"
    assert data["versions"]["torchtune"] == "0.6.1"
    # The stand-in recipe opens no lm-eval bar: the final record takes lm-eval's sample count.
    from cotvr_common import parse_progress

    (final,) = [r for r in map(parse_progress, proc.stdout.splitlines()) if r]
    assert (final["stage"], final["variant"], final["unit"], final["task"]) == ("evaluate", "lora-11b", "requests", "chartqa")
    assert final["done"] == final["total"] == 2500
    # same hash again: no-op
    again = run(mode="crash")
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_wrapper_failures(eval_setup) -> None:
    run, out, tmp_path = eval_setup
    proc = run(mode="crash")
    assert proc.returncode == EXIT_FAILED and "HIP out of memory" in proc.stderr
    assert not out.exists()
    proc = run(output={"results": {"chartqa": {"alias": "chartqa"}}})
    assert proc.returncode == EXIT_NO_METRICS and "exact_match" in proc.stderr
    assert not out.exists()
    proc = run("--require", str(tmp_path / "missing" / ".complete.json"))
    assert proc.returncode == EXIT_MISSING_INPUT and "Traceback" not in proc.stderr

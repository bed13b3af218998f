"""train.py: inputs, config hash ownership, and resume after a pod restart with torchtune
0.6.1's semantics (fakes/tune writes and looks up checkpoints with torchtune's own code)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import HERE, TRAINER, run_program
from cotvr_configs import template_configs

TRAIN = TRAINER / "train.py"
FAKE_TUNE = HERE / "fakes" / "tune"


@pytest.fixture()
def setup(tmp_path: Path):
    cfg = next(c for c in template_configs() if c.id == "template/train/lora-11b")
    config = tmp_path / "train.yaml"
    config.write_text(cfg.text)
    marker = tmp_path / "dataset.complete.json"
    marker.write_text("{}")
    log = tmp_path / "tune.log"
    out = tmp_path / "ckpt" / "lora-11b"

    def train(*extra: str, epochs: int = 3, config_hash: str = "h1", **env: str):
        return run_program(
            TRAIN, "--recipe", "lora_finetune_single_device", "--config", str(config), "--output-dir", str(out),
            "--epochs", str(epochs), "--config-hash", config_hash, "--require", str(marker), *extra,
            env={"COTVR_TUNE": str(FAKE_TUNE), "COTVR_TEST_PYTHON": sys.executable, "FAKE_TUNE_LOG": str(log), **env},
        )

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return train, calls, out


def test_fresh_run_completes_and_marks(setup) -> None:
    train, calls, out = setup
    proc = train()
    assert proc.returncode == 0, proc.stderr
    marker = json.loads((out / ".complete.json").read_text())
    assert marker["epochs"] == 3 and marker["config_hash"] == "h1" and marker["final_checkpoint"].endswith("epoch_2")
    (call,) = calls()
    assert call["overrides"]["resume_from_checkpoint"] == "False"
    assert call["overrides"]["output_dir"] == str(out) and call["overrides"]["epochs"] == "3"


def test_noop_when_complete(setup) -> None:
    train, calls, out = setup
    assert train().returncode == 0
    proc = train()
    assert proc.returncode == 0 and "nothing to do" in proc.stderr
    assert len(calls()) == 1


def test_resume_from_newest_complete_epoch_after_kill_in_save(setup) -> None:
    train, calls, out = setup
    killed = train(FAKE_TUNE_CRASH_IN_SAVE="2", epochs=4)  # epochs 0, 1 done; killed saving epoch 2
    assert killed.returncode == 1 and "exited with 137" in killed.stderr
    assert (out / "epoch_2").is_dir() and not (out / "epoch_2" / "adapter_model.pt").exists()
    assert not (out / ".complete.json").exists()

    # Without the clean-up torchtune would take the partial epoch_2 (largest name) and fail:
    from torchtune.training.checkpointing._utils import get_adapter_checkpoint_path

    assert get_adapter_checkpoint_path(out, None, should_load_recipe_state=True) is None

    proc = train(epochs=4)
    assert proc.returncode == 0, proc.stderr
    resumed = calls()[-1]
    assert resumed["overrides"]["resume_from_checkpoint"] == "True"
    assert resumed["resumed_adapter"] == "epoch_1/adapter_model.pt"
    assert resumed["resumed_epochs_run"] == 2
    assert (out / "epoch_3" / "adapter_model.pt").is_file()
    assert json.loads((out / ".complete.json").read_text())["resumed_from_epochs"] == 2


def test_kill_in_first_epoch_save_starts_over(setup) -> None:
    train, calls, out = setup
    assert train(FAKE_TUNE_CRASH_IN_SAVE="0").returncode == 1
    proc = train()
    assert proc.returncode == 0, proc.stderr
    assert calls()[-1]["overrides"]["resume_from_checkpoint"] == "False"
    assert "no recipe_state.pt" in proc.stderr


def test_other_config_hash_is_never_overwritten(setup) -> None:
    train, calls, out = setup
    assert train(FAKE_TUNE_CRASH_IN_SAVE="1").returncode == 1
    proc = train(config_hash="h2")
    assert proc.returncode == 3 and "config hash h1" in proc.stderr
    assert len(calls()) == 1
    assert train().returncode == 0  # the original hash resumes fine
    proc = train(config_hash="h2")
    assert proc.returncode == 3


def test_missing_input_and_recipe_failure(setup, tmp_path: Path) -> None:
    train, calls, out = setup
    proc = train("--require", str(tmp_path / "models" / ".complete.json"))
    assert proc.returncode == 3 and "missing" in proc.stderr and "Traceback" not in proc.stderr
    assert calls() == []
    proc = train(FAKE_TUNE_FAIL="1")
    assert proc.returncode == 1 and "exited with 1" in proc.stderr
    assert not (out / ".complete.json").exists()


def test_plan_resume_unit(tmp_path: Path) -> None:
    import torch
    import train as train_program

    out = tmp_path / "o"
    (out / "recipe_state").mkdir(parents=True)
    for e in range(3):
        (out / f"epoch_{e}").mkdir()
        (out / f"epoch_{e}" / "model.safetensors.index.json").write_text("{}")
        torch.save({}, out / f"epoch_{e}" / "adapter_model.pt")
    torch.save({"epochs_run": 2}, out / "recipe_state" / "recipe_state.pt")
    plan = train_program.plan_resume(out, 5)
    assert plan.resume and plan.completed_epochs == 2 and plan.remove == [out / "epoch_2"]
    (out / "recipe_state" / "recipe_state.pt").write_bytes(b"torn")
    plan = train_program.plan_resume(out, 5)
    assert not plan.resume and out / "epoch_0" in plan.remove


@pytest.mark.parametrize("failure", [{"FAKE_TUNE_FAIL": "1"}, {"FAKE_TUNE_CRASH_IN_SAVE": "0"}], ids=["fails-at-start", "killed-saving-epoch-0"])
def test_failed_before_first_epoch_reruns_with_a_fixed_config(setup, tmp_path: Path, failure: dict[str, str]) -> None:
    """Issue 9: a run that wrote no complete epoch does not block the corrected config (new hash)."""
    train, calls, out = setup
    failed = train(config_hash="h1", **failure)
    assert failed.returncode == 1, failed.stderr
    assert json.loads((out / ".cotvr-run.json").read_text())["config_hash"] == "h1"
    assert not any((out / f"epoch_{e}" / "adapter_model.pt").exists() for e in range(3))

    config = tmp_path / "train.yaml"  # the fix: another learning rate, so another config hash
    fixed = config.read_text().replace("lr: ", "lr: 5.0e-05 #", 1)
    assert fixed != config.read_text()
    config.write_text(fixed)
    proc = train(config_hash="h2")
    assert proc.returncode == 0, proc.stderr
    assert "wrote no epoch: taking it over for h2" in proc.stderr
    assert json.loads((out / ".complete.json").read_text())["config_hash"] == "h2"
    assert json.loads((out / ".cotvr-run.json").read_text())["config_hash"] == "h2"
    assert calls()[-1]["overrides"]["resume_from_checkpoint"] == "False"
    # h1's leftovers are kept aside, out of torchtune's epoch_* lookups
    (kept,) = (out / ".superseded").iterdir()
    assert kept.name.startswith("h1-")
    assert json.loads((kept / ".cotvr-run.json").read_text())["config_hash"] == "h1"
    if "FAKE_TUNE_FAIL" in failure:
        assert (kept / "logs" / "log_1700000000.txt").is_file()

    # The guard still refuses once this folder holds epochs of another hash.
    proc = train(config_hash="h3")
    assert proc.returncode == 3 and "checkpoints of config hash h2" in proc.stderr and "epoch_0" in proc.stderr
    assert json.loads((out / ".complete.json").read_text())["config_hash"] == "h2"


def test_recipe_state_alone_counts_as_another_runs_epochs(tmp_path: Path) -> None:
    import train as train_program

    out = tmp_path / "o"
    (out / "recipe_state").mkdir(parents=True)
    (out / ".cotvr-run.json").write_text(json.dumps({"config_hash": "h1"}))
    with pytest.raises(train_program.CotvrError, match=r"config hash h1 \(recipe_state\)"):
        train_program.check_run_identity(out, "h2")
    assert (out / ".cotvr-run.json").is_file()

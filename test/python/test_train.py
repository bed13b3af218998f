"""train.py: inputs, config hash ownership, and resume after a pod restart with torchtune
0.6.1's semantics (fakes/tune writes and looks up checkpoints with torchtune's own code)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import HERE, TRAINER, run_program
from cotvr_configs import REPO, template_configs
from cotvr_contract import EXIT_BAD_ARGS, EXIT_FAILED, EXIT_MISSING_INPUT

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


def test_runs_the_images_patched_recipe_file_like_tune_run(setup) -> None:
    """COTVR_TRAIN_RECIPE (set in the image) runs `python <recipe file> --config ... overrides`."""
    train, calls, out = setup
    proc = train(COTVR_TRAIN_RECIPE=str(FAKE_TUNE.parent / "fake_tune.py"), COTVR_TUNE="/nonexistent/tune")
    assert proc.returncode == 0, proc.stderr
    (call,) = calls()
    assert call["recipe"].endswith("fake_tune.py")
    assert call["overrides"]["output_dir"] == str(out) and call["overrides"]["resume_from_checkpoint"] == "False"


def test_noop_when_complete(setup) -> None:
    train, calls, out = setup
    assert train().returncode == 0
    proc = train()
    assert proc.returncode == 0 and "nothing to do" in proc.stderr
    assert len(calls()) == 1


def test_resume_from_newest_complete_epoch_after_kill_in_save(setup) -> None:
    train, calls, out = setup
    killed = train(FAKE_TUNE_CRASH_IN_SAVE="2", epochs=4)  # epochs 0, 1 done; killed saving epoch 2
    assert killed.returncode == EXIT_FAILED and "exited with 137" in killed.stderr
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
    assert train(FAKE_TUNE_CRASH_IN_SAVE="0").returncode == EXIT_FAILED
    proc = train()
    assert proc.returncode == 0, proc.stderr
    assert calls()[-1]["overrides"]["resume_from_checkpoint"] == "False"
    assert "no recipe_state.pt" in proc.stderr


def test_other_config_hash_is_never_overwritten(setup) -> None:
    train, calls, out = setup
    assert train(FAKE_TUNE_CRASH_IN_SAVE="1").returncode == EXIT_FAILED
    proc = train(config_hash="h2")
    assert proc.returncode == EXIT_MISSING_INPUT and "config hash h1" in proc.stderr
    assert len(calls()) == 1
    assert train().returncode == 0  # the original hash resumes fine
    proc = train(config_hash="h2")
    assert proc.returncode == EXIT_MISSING_INPUT


def test_missing_input_and_recipe_failure(setup, tmp_path: Path) -> None:
    train, calls, out = setup
    proc = train("--require", str(tmp_path / "models" / ".complete.json"))
    assert proc.returncode == EXIT_MISSING_INPUT and "missing" in proc.stderr and "Traceback" not in proc.stderr
    assert calls() == []
    proc = train(FAKE_TUNE_FAIL="1")
    assert proc.returncode == EXIT_FAILED and "exited with 1" in proc.stderr
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
    """A run that wrote no complete epoch does not block the corrected config (new hash)."""
    train, calls, out = setup
    failed = train(config_hash="h1", **failure)
    assert failed.returncode == EXIT_FAILED, failed.stderr
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
    assert proc.returncode == EXIT_MISSING_INPUT and "checkpoints of config hash h2" in proc.stderr and "epoch_0" in proc.stderr
    assert json.loads((out / ".complete.json").read_text())["config_hash"] == "h2"


def test_recipe_state_alone_counts_as_another_runs_epochs(tmp_path: Path) -> None:
    import train as train_program

    out = tmp_path / "o"
    (out / "recipe_state").mkdir(parents=True)
    (out / ".cotvr-run.json").write_text(json.dumps({"config_hash": "h1"}))
    with pytest.raises(train_program.CotvrError, match=r"config hash h1 \(recipe_state\)"):
        train_program.check_run_identity(out, "h2")
    assert (out / ".cotvr-run.json").is_file()


# ------------------------------------------------------------------ progress from the real recipe


@pytest.fixture()
def real_train(tmp_path: Path, tiny_tiktoken: Path, make_cot_dataset):
    """train.py driving the REAL `tune run lora_finetune_single_device` (torchtune 0.6.1) on CPU:
    the tiny LoRA Llama 3.2 Vision (tinyvision.py), the blog's train config with paths, model and
    device swapped, 5 CoT rows at batch 2 = 2 optimizer steps per epoch."""
    import torch
    import yaml
    from tinyvision import tiny_llama3_2_vision

    base = tmp_path / "base"
    base.mkdir()
    torch.save(tiny_llama3_2_vision().state_dict(), base / "model.pt")
    cfg = yaml.safe_load(next(c for c in template_configs() if c.id == "template/train/lora-11b").text)
    cfg["model"].update({"_component_": "tinyvision.tiny_lora_llama3_2_vision", "image_size": 112})
    cfg["tokenizer"].update({"path": str(tiny_tiktoken), "image_size": 112, "max_seq_len": 2048})
    cfg["checkpointer"] = {"_component_": "torchtune.training.FullModelTorchTuneCheckpointer", "checkpoint_dir": str(base),
                           "checkpoint_files": ["model.pt"], "output_dir": "${output_dir}", "model_type": "LLAMA3_VISION"}
    cfg["dataset"]["source"] = str(make_cot_dataset(5))
    cfg["optimizer"]["fused"] = False  # no fused AdamW on CPU
    cfg.update({"device": "cpu", "dtype": "bf16", "batch_size": 2, "gradient_accumulation_steps": 1,
                "enable_activation_checkpointing": False, "log_peak_memory_stats": False})
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "ckpt" / "lora-11b"
    tune = Path(sys.executable).with_name("tune")

    def train(epochs: int = 2, log_name: str | None = None):
        return run_program(
            TRAIN, "--recipe", "lora_finetune_single_device", "--config", str(config), "--output-dir", str(out),
            "--epochs", str(epochs), "--config-hash", "h1", "--tune", str(tune),
            env={"PYTHONPATH": str(HERE), "COTVR_PROGRESS_INTERVAL": "0"}, log_name=log_name,
        )

    return train, out


def records(stdout: str) -> list[dict]:
    from cotvr_common import parse_progress

    return [r for r in map(parse_progress, stdout.splitlines()) if r is not None]


def disk_log(out: Path) -> dict[int, dict[str, float]]:
    """What torchtune's DiskLogger wrote: {step: {loss, lr, tokens_per_second_per_gpu, grad_norm}}."""
    steps = {}
    for path in sorted((out / "logs").glob("log_*.txt")):
        for line in path.read_text().splitlines():
            step, _, fields = line.partition(" | ")
            steps[int(step.split()[1])] = {k: float(v) for k, v in (p.split(":", 1) for p in fields.split())}
    return steps


def test_progress_from_real_torchtune_run_and_resume(real_train) -> None:
    train, out = real_train
    proc = train(log_name="train")
    assert proc.returncode == 0, proc.stderr[-4000:]
    # torchtune's own output reaches the log unchanged: its bar and its logger lines
    assert "1|1|Loss: " in proc.stderr and "2|4|Loss: " in proc.stderr and "Writing logs to" in proc.stdout
    recs = records(proc.stdout)
    assert recs, proc.stdout
    assert all(r["stage"] == "train" and r["variant"] == "lora-11b" and r["unit"] == "steps" and r["total"] == 4 for r in recs)
    assert [r["done"] for r in recs] == sorted(r["done"] for r in recs)  # never backwards
    assert recs[0]["done"] == 0 and recs[0]["epoch"] == 1
    last = recs[-1]
    assert last["done"] == 4 and last["epoch"] == 2 and last["epochs"] == 2
    logged = disk_log(out)
    assert sorted(logged) == [1, 2, 3, 4]
    # loss from the bar, lr and tokens/s from the DiskLogger: the values torchtune computed
    assert last["loss"] == pytest.approx(logged[4]["loss"])
    assert last["lr"] == pytest.approx(logged[4]["lr"])
    assert last["tokens_per_second"] == pytest.approx(logged[4]["tokens_per_second_per_gpu"])
    for rec in recs:
        if rec["done"] >= 1 and "loss" in rec:
            assert rec["loss"] == pytest.approx(logged[rec["done"]]["loss"])
    assert last["rate"] is not None and last["rate"] > 0

    # A pod killed during epoch 1 leaves epoch_0 + recipe_state (epochs_run=1): the resumed run
    # starts at the finished epoch's steps, although torchtune restarts its global step at 0.
    shutil.rmtree(out / "epoch_1")
    (out / ".complete.json").unlink()
    proc = train(log_name="train-resumed")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resuming after epoch_0" in proc.stderr and "2|2|Loss: " in proc.stderr  # upstream's restarted step count
    recs = records(proc.stdout)
    assert recs[0]["done"] == 2 and recs[0]["epoch"] == 2 and recs[0]["total"] == 4
    assert recs[-1]["done"] == 4 and recs[-1]["epoch"] == 2


# ------------------------------------------------------------------ several GPUs: the distributed recipe


@pytest.fixture()
def real_distributed_train(tmp_path: Path, tiny_tiktoken: Path, make_cot_dataset):
    """train.py --nproc 2 driving the REAL `tune run --nnodes 1 --nproc_per_node 2
    lora_finetune_distributed` (torchtune 0.6.1, torchrun, FSDP2) on CPU with the gloo backend
    (glooshim/sitecustomize.py drops the recipe's `cuda:nccl` half, which a CPU torch refuses): the
    tiny LoRA Llama 3.2 Vision, the packaged multi-device config (manifests/torchtune/11B_lora.yaml)
    with the same swaps as the single-device test, 4 CoT rows at micro-batch 1 x accumulation 1 x
    2 ranks = 2 optimizer steps per epoch (the single-device test's batch 2 on 4 rows)."""
    import torch
    import yaml
    from tinyvision import tiny_llama3_2_vision

    base = tmp_path / "base"
    base.mkdir()
    torch.save(tiny_llama3_2_vision().state_dict(), base / "model.pt")
    cfg = yaml.safe_load((REPO / "manifests" / "torchtune" / "11B_lora.yaml").read_text())
    cfg["model"].update({"_component_": "tinyvision.tiny_lora_llama3_2_vision", "image_size": 112, "lora_rank": 16, "lora_alpha": 32})
    cfg["tokenizer"].update({"path": str(tiny_tiktoken), "image_size": 112, "max_seq_len": 2048})
    cfg["checkpointer"] = {"_component_": "torchtune.training.FullModelTorchTuneCheckpointer", "checkpoint_dir": str(base),
                           "checkpoint_files": ["model.pt"], "output_dir": "${output_dir}", "model_type": "LLAMA3_VISION"}
    cfg["dataset"] = {"_component_": "torchtune.datasets.multimodal.vqa_dataset", "source": str(make_cot_dataset(4)), "split": "train",
                      "column_map": {"input": "query", "image": "image", "output": "label"}, "packed": False}
    cfg["optimizer"]["fused"] = False  # no fused AdamW on CPU
    cfg.update({"device": "cpu", "dtype": "bf16", "batch_size": 1, "gradient_accumulation_steps": 1, "seed": 42,
                "enable_activation_checkpointing": False, "log_peak_memory_stats": False})
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "ckpt" / "lora-11b"
    tune = Path(sys.executable).with_name("tune")

    def train(epochs: int = 2, log_name: str | None = None, recipe: str = "lora_finetune_distributed"):
        return run_program(
            TRAIN, "--recipe", recipe, "--config", str(config), "--output-dir", str(out),
            "--epochs", str(epochs), "--config-hash", "h2", "--tune", str(tune), "--nproc", "2",
            env={"PYTHONPATH": f"{HERE / 'glooshim'}:{HERE}", "COTVR_TEST_GLOO": "1", "COTVR_PROGRESS_INTERVAL": "0",
                 "OMP_NUM_THREADS": "1"}, log_name=log_name,
        )

    return train, out


def test_distributed_recipe_on_two_processes_then_resume(real_distributed_train) -> None:
    train, out = real_distributed_train
    proc = train(log_name="train-distributed")
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "--nproc_per_node 2 lora_finetune_distributed" in proc.stderr  # train.py's "running:" line
    assert "1|1|Loss: " in proc.stderr and "2|4|Loss: " in proc.stderr  # rank 0's bar only
    recs = records(proc.stdout)
    assert recs and all(r["unit"] == "steps" and r["total"] == 4 for r in recs)
    assert [r["done"] for r in recs] == sorted(r["done"] for r in recs)
    assert recs[-1]["done"] == 4 and recs[-1]["epoch"] == 2
    logged = disk_log(out)
    assert sorted(logged) == [1, 2, 3, 4]  # rank 0's DiskLogger, one line per optimizer step
    assert recs[-1]["loss"] == pytest.approx(logged[4]["loss"])
    marker = json.loads((out / ".complete.json").read_text())
    assert marker["epochs"] == 2 and marker["config_hash"] == "h2" and marker["final_checkpoint"].endswith("epoch_1")
    assert marker["recipe"] == "lora_finetune_distributed" and marker["resumed_from_epochs"] == 0
    assert (out / "epoch_1" / "adapter_model.pt").is_file()

    # A pod killed during epoch 1 (epoch_0 and recipe_state written by rank 0, epoch_1 not complete):
    # the distributed recipe's own resume, from the newest complete epoch, and the same final marker.
    shutil.rmtree(out / "epoch_1")
    (out / ".complete.json").unlink()
    proc = train(log_name="train-distributed-resumed")
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "resuming after epoch_0" in proc.stderr and "resume_from_checkpoint=True" in proc.stderr
    recs = records(proc.stdout)
    assert recs[0]["done"] == 2 and recs[0]["epoch"] == 2 and recs[-1]["done"] == 4
    resumed = json.loads((out / ".complete.json").read_text())
    assert {k: v for k, v in resumed.items() if k not in ("completed_at", "resumed_from_epochs")} == \
        {k: v for k, v in marker.items() if k not in ("completed_at", "resumed_from_epochs")}
    assert resumed["resumed_from_epochs"] == 1
    # Done: a third run is a no-op.
    again = train()
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_nproc_needs_a_distributed_recipe(real_distributed_train) -> None:
    train, out = real_distributed_train
    proc = train(recipe="lora_finetune_single_device")
    assert proc.returncode == EXIT_BAD_ARGS and "--nproc 2 needs a distributed recipe" in proc.stderr
    assert not out.exists()


def test_tqdm_parser_unit() -> None:
    """The bar parser on the sequence the real recipe prints (captured from the run above): the
    bar's first print, the refresh pbar.update makes before set_description (new n, previous
    step's loss), the finished bar re-printed when the next one opens."""
    import io

    import train as train_program
    from cotvr_common import Progress

    sink = io.StringIO()
    tracker = train_program.TuneProgress(Progress("train", "v", "steps", interval=0, out=sink), 2, 0, None, 0.0)
    bar = "\u2588" * 5
    stream = (
        f"\r  0%|          | 0/2 [00:00<?, ?it/s]\r 50%|{bar}     | 1/2 [00:02<00:02,  2.83s/it]"
        f"\r1|1|Loss: 11.89: 50%|{bar}     | 1/2 [00:02<00:02,  2.83s/it]\r1|1|Loss: 11.89: 100%|{bar}{bar}| 2/2 [00:04<00:00,  2.10s/it]\r1|2|Loss: 11.87: 100%|{bar}{bar}| 2/2 [00:04<00:00,  2.10s/it]"
        "\nINFO:torchtune.utils._logging:Checkpoint saved in 0.16 seconds.\n"
        f"\r  0%|          | 0/2 [00:00<?, ?it/s]\x1b[A\r1|2|Loss: 11.87: 100%|{bar}{bar}| 2/2 [00:04<00:00,  2.30s/it]\n"
        f"\r 50%|{bar}     | 1/2 [00:01<00:01,  1.19s/it]\x1b[A\n\r2|3|Loss: nan:  50%|{bar}     | 1/2 [00:01<00:01,  1.19s/it]\x1b[A\n"
    ).encode()
    seen = []
    for i in range(0, len(stream), 7):  # arbitrary chunking, split UTF-8 characters included
        if tracker.feed_stderr(stream[i : i + 7]):
            seen.append((tracker.epoch, tracker.done))
    assert seen == [(1, 0), (1, 1), (1, 2), (2, 2), (2, 3)]
    assert tracker.loss is None  # "nan" is dropped, JSON has no NaN
    rec = tracker.emit(final=True)
    assert rec is not None and rec["done"] == 3 and rec["total"] == 4 and "loss" not in rec

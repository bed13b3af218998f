"""Every torchtune config the program renders passes `tune validate` with torchtune 0.6.1,
plus the checks `tune validate` does not make (it binds kwargs, never looks at values)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cotvr_configs import RenderedConfig, torchtune_configs

CONFIGS = torchtune_configs()
TUNE = str(Path(sys.executable).with_name("tune"))


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
def test_tune_validate(cfg: RenderedConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`tune validate <file>`, run in-process through the CLI's own entry point
    (torchtune._cli.tune.main) so torch is imported once, not once per config."""
    from torchtune._cli.tune import main as tune_main

    path = tmp_path / cfg.key
    path.write_text(cfg.text)
    monkeypatch.setattr(sys, "argv", ["tune", "validate", str(path)])
    try:
        tune_main()
    except SystemExit as exit_:
        captured = capsys.readouterr()
        pytest.fail(f"tune validate {cfg.id} exited {exit_.code}:\n{captured.out}\n{captured.err}")
    assert "Config is well-formed!" in capsys.readouterr().out


def test_tune_validate_binary(tmp_path: Path) -> None:
    """The installed `tune` executable, once, as a subprocess (the same code as above)."""
    cfg = CONFIGS[0]
    path = tmp_path / cfg.key
    path.write_text(cfg.text)
    proc = subprocess.run([TUNE, "validate", str(path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "Config is well-formed!" in proc.stdout, proc.stdout + proc.stderr
    broken = path.with_name("broken.yaml")
    broken.write_text(cfg.text.replace("_component_: torchtune.models.llama3_2_vision.", "_component_: torchtune.models.llama3_2_vision.no_such_", 1))
    proc = subprocess.run([TUNE, "validate", str(broken)], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0  # the check does bite


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
def test_values_torchtune_relies_on(cfg: RenderedConfig) -> None:
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(OmegaConf.create(cfg.text), resolve=True)
    ckpt = data["checkpointer"]
    files = ckpt["checkpoint_files"]
    if isinstance(files, dict):
        # An unquoted 00037 would load as the integer 37 and format the wrong file names.
        assert isinstance(files["max_filename"], str) and re.fullmatch(r"\d{5}", files["max_filename"]), files
        is90 = "90b" in data["model"]["_component_"]
        assert files["max_filename"] == ("00037" if is90 else "00005"), (data["model"]["_component_"], files)
    assert ckpt["_component_"] == "torchtune.training.FullModelHFCheckpointer"
    assert ckpt["model_type"] == "LLAMA3_VISION"
    model = data["model"]["_component_"]
    tokenizer_path = data["tokenizer"]["path"]
    assert tokenizer_path.endswith("original/tokenizer.model"), tokenizer_path
    if "90b" in model:
        assert "90B" in tokenizer_path, f"90B model with tokenizer {tokenizer_path}"
    else:
        assert "11B" in tokenizer_path, f"11B model with tokenizer {tokenizer_path}"

    if cfg.stage == "train":
        from torchtune.training.checkpointing._utils import check_outdir_not_in_ckptdir

        check_outdir_not_in_ckptdir(Path(ckpt["checkpoint_dir"]), Path(ckpt["output_dir"]))
        assert ckpt["output_dir"] == data["output_dir"]
        ds = data["dataset"]
        assert ds["_component_"] == "torchtune.datasets.multimodal.vqa_dataset"
        assert ds["column_map"] == {"input": "query", "image": "image", "output": "label"}
        assert ds.get("packed", False) is False  # vqa_dataset raises on packed=True
        assert data["collate_fn"] == "torchtune.data.padded_collate_tiled_images_and_mask"
    elif cfg.stage == "evaluate":
        assert "chartqa" in list(data["tasks"])
        assert data["batch_size"] == 1  # _VLMEvalWrapper supports batch size 1 only
    elif cfg.stage == "sample":
        prompt = data["prompt"]
        assert isinstance(prompt.get("system"), str) and prompt["system"].strip()
        assert isinstance(prompt.get("user"), dict) and "text" in prompt["user"]
        assert data["max_new_tokens"] > 0


def test_every_stage_is_covered() -> None:
    stages = {c.stage for c in CONFIGS}
    assert {"train", "sample", "evaluate"} <= stages, stages
    # Both fine-tune recipes: one GPU (the blog's) and several (blog-node's 8-GPU variants).
    recipes = {c.recipe or "lora_finetune_single_device" for c in CONFIGS if c.stage == "train"}
    assert recipes == {"lora_finetune_single_device", "lora_finetune_distributed"}, recipes


RECIPES = {"train": "lora_finetune_single_device.py", "evaluate": "eleuther_eval.py", "sample": "dev/generate_v2.py"}


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
def test_keys_the_recipe_reads_without_default_are_set(cfg: RenderedConfig) -> None:
    """`tune validate` only checks components. The recipe itself reads `cfg.<key>` (no default)
    for these: a missing one is an error hours into a GPU job, so check them against the recipe's
    own source (torchtune 0.6.1)."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("recipes")
    recipe = f"{cfg.recipe}.py" if cfg.recipe else RECIPES[cfg.stage]
    source = (Path(list(spec.submodule_search_locations)[0]) / recipe).read_text()
    needed = set(re.findall(r"\bcfg\.([a-zA-Z_]+)\b", source)) - {"get"}
    data = cfg.load()
    missing = sorted(k for k in needed if k not in data)
    assert not missing, f"{cfg.id}: {recipe} reads cfg.{missing} but the config lacks them"
    if cfg.stage == "train":
        model_keys = set(re.findall(r"\bcfg_model\.([a-zA-Z_]+)\b", source))
        assert not sorted(k for k in model_keys if k not in data["model"]), model_keys

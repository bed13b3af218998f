"""The eval patch applies cleanly to torchtune 0.6.1's recipes/eleuther_eval.py (the wheel's
copy, the file `tune cp eleuther_eval` writes), the patched module imports, and lm-eval is a
version torchtune accepts that has chartqa."""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import TRAINER

PATCH = TRAINER / "eleuther_eval.patch"
TUNE = str(Path(sys.executable).with_name("tune"))


def wheel_recipe() -> Path:
    spec = importlib.util.find_spec("recipes")
    assert spec and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / "eleuther_eval.py"


@pytest.fixture(scope="module")
def tune_cp_recipe(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """What the Dockerfile does: `tune cp eleuther_eval <dir>/recipes/eleuther_eval.py` (once)."""
    target = tmp_path_factory.mktemp("tunecp") / "eleuther_eval.py"
    proc = subprocess.run([TUNE, "cp", "eleuther_eval", str(target)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes() == wheel_recipe().read_bytes()
    return target.read_bytes()


@pytest.fixture()
def copied_recipe(tmp_path: Path, tune_cp_recipe: bytes) -> Path:
    (tmp_path / "recipes").mkdir()
    target = tmp_path / "recipes" / "eleuther_eval.py"
    target.write_bytes(tune_cp_recipe)
    return target


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_versions() -> None:
    assert version("torchtune") == "0.6.1"
    assert version("torchao") == "0.11.0"
    # torchtune 0.6.1: `if version("lm-eval") < "0.4.5": raise` -- a string compare.
    assert not (version("lm-eval") < "0.4.5"), version("lm-eval")
    assert "if version(\"lm-eval\") < \"0.4.5\"" in wheel_recipe().read_text()


def test_lm_eval_has_chartqa_as_the_blog_uses_it() -> None:
    from lm_eval.tasks import TaskManager

    manager = TaskManager()
    assert "chartqa" in manager.all_tasks
    cfg = manager._get_config("chartqa")
    assert cfg["dataset_path"] == "HuggingFaceM4/ChartQA"
    assert cfg["test_split"] == "test"
    assert cfg["output_type"] == "generate_until"
    assert {m["metric"].__name__ if callable(m["metric"]) else m["metric"] for m in cfg["metric_list"]} >= {"exact_match"}
    # lm-eval >= 0.4.9 resizes with the wrapper's image_* attributes: what the patch adds.
    from lm_eval.models import hf_vlms

    assert "self.image_width, self.image_height, self.image_max_side" in inspect.getsource(hf_vlms.HFMultimodalLM.generate_until)


def test_patch_applies_cleanly_with_git_apply(copied_recipe: Path) -> None:
    root = copied_recipe.parent.parent
    check = subprocess.run(["git", "apply", "--check", "--verbose", str(PATCH)], cwd=root, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    subprocess.run(["git", "apply", str(PATCH)], cwd=root, check=True)
    # and it is not applicable twice (the Dockerfile must not double-apply)
    again = subprocess.run(["git", "apply", "--check", str(PATCH)], cwd=root, capture_output=True, text=True)
    assert again.returncode != 0


@pytest.mark.skipif(shutil.which("patch") is None, reason="GNU patch not installed")
def test_patch_applies_with_gnu_patch_without_fuzz(copied_recipe: Path) -> None:
    proc = subprocess.run(
        ["patch", "--dry-run", "--forward", "--fuzz=0", str(copied_recipe), str(PATCH)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "offset" not in proc.stdout and "fuzz" not in proc.stdout, proc.stdout + proc.stderr


def test_patched_module_imports_and_has_the_fixes(copied_recipe: Path) -> None:
    root = copied_recipe.parent.parent
    subprocess.run(["git", "apply", str(PATCH)], cwd=root, check=True)
    module = load(copied_recipe, "patched_eleuther_eval")
    params = inspect.signature(module._VLMEvalWrapper.__init__).parameters
    for name in ("image_width", "image_height", "image_max_side"):
        assert params[name].default == 560
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    source = inspect.getsource(module._VLMEvalWrapper._model_multimodal_generate)
    assert 'generated_tokens = batch["input_pos"].size(1)*[0,]' in source

    import evaluate as evaluate_program  # images/trainer/evaluate.py

    evaluate_program.assert_patched(module)  # what evaluate.py checks at run time


def test_unpatched_recipe_is_refused(copied_recipe: Path) -> None:
    import evaluate as evaluate_program
    from cotvr_common import CotvrError

    module = load(copied_recipe, "unpatched_eleuther_eval")
    with pytest.raises(CotvrError, match="not patched"):
        evaluate_program.assert_patched(module)


def test_prepad_makes_lm_eval_keep_the_answer(copied_recipe: Path) -> None:
    """lm-eval's generate_until slices `cont[context_len:]`: with the pre-pad the generated
    tokens survive the slice, without it they are cut away."""
    root = copied_recipe.parent.parent
    subprocess.run(["git", "apply", str(PATCH)], cwd=root, check=True)
    text = copied_recipe.read_text()
    assert text.count("batch[\"input_pos\"].size(1)*[0,]") == 1
    context_len, generated = 7, [11, 12, 13]
    prepadded = context_len * [0] + generated
    assert prepadded[context_len:] == generated
    assert generated[context_len:] == []

"""The synthetic-data-kit config as rendered, against the real synthetic-data-kit 0.0.5, and
generate_cot.py end to end against a fake OpenAI-compatible teacher on 127.0.0.1."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import BLOG_COT_PROMPT_END, BLOG_COT_PROMPT_START, DATAGEN, HERE, run_program
from cotvr_contract import EXIT_BAD_ARGS, EXIT_CHECK_FAILED, EXIT_MISSING_INPUT
from cotvr_configs import RenderedConfig, all_configs, render_root, sdk_configs

GENERATE = DATAGEN / "generate_cot.py"
SDK_CONFIGS = sdk_configs()
MODEL_90B = "meta-llama/Llama-3.2-90B-Vision-Instruct"


@pytest.mark.parametrize("cfg", SDK_CONFIGS, ids=[c.id for c in SDK_CONFIGS])
def test_rendered_sdk_config_loads_in_the_real_package(cfg: RenderedConfig, tmp_path: Path) -> None:
    from synthetic_data_kit.generators.vqa_generator import VQAGenerator
    from synthetic_data_kit.models.llm_client import LLMClient
    from synthetic_data_kit.utils.config import get_generation_config, get_llm_provider, get_openai_config, load_config

    path = tmp_path / "sdk.yaml"
    path.write_text(cfg.text)
    loaded = load_config(str(path))
    assert get_llm_provider(loaded) == "api-endpoint"
    endpoint = get_openai_config(loaded)
    assert endpoint["api_base"] and endpoint["model"] and endpoint["max_retries"] >= 1
    assert get_generation_config(loaded)["max_tokens"] > 0
    assert loaded["input_split"] == "train" and loaded["output_split"] == "train"

    # The prompt the generator sends: VQAGenerator.transform reads the top-level `prompt:`.
    client = LLMClient(config_path=path)  # api-endpoint: builds an OpenAI client, no request
    generator = VQAGenerator(client, path)
    assert 'self.config.get("prompt", "")' in inspect.getsource(VQAGenerator.transform)
    prompt = generator.config.get("prompt", "")
    assert prompt.strip().startswith(BLOG_COT_PROMPT_START), prompt[:200]
    assert prompt.strip().endswith(BLOG_COT_PROMPT_END)
    assert "{CoT} Final answer: {answer}" in prompt


def test_pinned_package_knows_the_content_type(tmp_path: Path) -> None:
    from synthetic_data_kit.core import create

    source = inspect.getsource(create.process_file)
    assert '"vqa_add_reasoning"' in source
    # the blog's name is rejected by the same code path
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"llm": {"provider": "api-endpoint"}, "api-endpoint": {"api_base": "http://127.0.0.1:9/v1", "api_key": "x", "model": "m"}}))
    with pytest.raises(ValueError, match="Unknown content type"):
        create.process_file(str(tmp_path / "in.txt"), str(tmp_path / "o"), cfg, content_type="xqa_add_reasoning")


def _served_names(root: Path) -> list[str]:
    names = []
    for path in root.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") not in ("Deployment", "StatefulSet", "Pod"):
                continue
            spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or doc.get("spec") or {}
            for c in spec.get("containers") or []:
                argv = [str(x) for x in (c.get("command") or []) + (c.get("args") or [])]
                if "serve" in argv and any("vllm" in a for a in argv):
                    if "--served-model-name" in argv:
                        names.append(argv[argv.index("--served-model-name") + 1])
                    else:
                        names.append(argv[argv.index("serve") + 1])
    return names


@pytest.mark.skipif(render_root() is None, reason="needs the rendered stacks (COTVR_RENDER_DIR)")
def test_rendered_sdk_model_is_what_the_teacher_serves() -> None:
    root = render_root()
    assert root is not None
    for cfg in SDK_CONFIGS:
        stack = cfg.id.split("/")[0]
        served = _served_names(root / stack)
        if not served:
            continue  # teacher not in this stack's render
        model = cfg.load()["api-endpoint"]["model"]
        assert model in served, f"{cfg.id}: api-endpoint.model {model} but vLLM serves {served} (the blog's 404 mistake)"


# ------------------------------------------------------------------ generate_cot.py end to end


def sdk_config_for(tmp_path: Path, api_base: str, model: str) -> Path:
    base = yaml.safe_load(SDK_CONFIGS[0].text)
    base["api-endpoint"].update({"api_base": api_base, "model": model, "max_retries": 2, "retry_delay": 0.05})
    base["generation"]["batch_size"] = 4
    path = tmp_path / "sdk.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def generate_env(source_dir: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": str(HERE / "hubshim"),
        "COTVR_TEST_HF_DATASETS": json.dumps({"HuggingFaceM4/ChartQA": str(source_dir)}),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "COTVR_PROGRESS_INTERVAL": "0",
    }


def generate_args(config: Path, out: Path, *extra: str, config_hash: str = "abc123") -> list[str]:
    return ["--config", str(config), "--source", "HuggingFaceM4/ChartQA", "--out", str(out),
            "--config-hash", config_hash, "--teacher-timeout", "5", "--poll-interval", "0.2", *extra]


def run_generate(config: Path, out: Path, source_dir: Path, *extra: str, config_hash: str = "abc123") -> Any:
    return run_program(GENERATE, *generate_args(config, out, *extra, config_hash=config_hash), env=generate_env(source_dir))


def test_generates_checks_and_publishes(tmp_path: Path, tiny_chartqa: Path, fake_teacher) -> None:
    teacher = fake_teacher(MODEL_90B)
    config = sdk_config_for(tmp_path, teacher.api_base, MODEL_90B)
    out = tmp_path / "cot_chartqa"
    proc = run_generate(config, out, tiny_chartqa, "--limit", "4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    marker = json.loads((out / ".complete.json").read_text())
    assert marker["rows"] == 4 and marker["config_hash"] == "abc123"
    assert not (tmp_path / "cot_chartqa.staging").exists()
    # The teacher got the blog's CoT prompt as the system message, and the question + answer.
    assert len(teacher.requests) == 4
    system = teacher.requests[0]["messages"][0]
    assert system["role"] == "system" and system["content"].startswith(BLOG_COT_PROMPT_START)
    user = teacher.requests[0]["messages"][1]["content"]
    assert user[0]["type"] == "image_url" and user[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "Final answer:" in user[1]["text"]

    # What torchtune will read: load_dataset(<out>) -> train split, string labels with the CoT.
    import datasets

    ds = datasets.load_dataset(str(out), split="train")
    assert len(ds) == 4 and isinstance(ds[0]["label"], str) and "Final answer:" in ds[0]["label"]
    assert json.loads((out / "dataset_dict.json").read_text()) == {"splits": ["train"]}

    # Same config hash again: nothing to do, no request to the teacher.
    before = len(teacher.requests)
    again = run_generate(config, out, tiny_chartqa, "--limit", "4")
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert len(teacher.requests) == before


def test_teacher_404_error_rows_fail_and_nothing_is_published(tmp_path: Path, tiny_chartqa: Path, fake_teacher) -> None:
    """The blog's mistake: the config names the 11B model while vLLM serves 90B. vLLM answers 404,
    synthetic-data-kit stores "ERROR: ..." as the labels and exits 0; the check must fail the Job."""
    wrong = "meta-llama/Llama-3.2-11B-Vision-Instruct"
    teacher = fake_teacher(MODEL_90B, listed=[MODEL_90B, wrong])  # listed, so the preflight passes
    config = sdk_config_for(tmp_path, teacher.api_base, wrong)
    out = tmp_path / "cot_chartqa"
    proc = run_generate(config, out, tiny_chartqa, "--limit", "3")
    assert proc.returncode == EXIT_CHECK_FAILED, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ERROR labels:              3" in proc.stdout
    assert "not published" in proc.stderr
    assert not out.exists()
    # the shard that failed is kept for inspection; its ERROR rows were asked again once (--error-retries 1),
    # each time with synthetic-data-kit's own api-endpoint.max_retries (2): 3 rows x 2 x 2
    assert (tmp_path / "cot_chartqa.shards" / "abc123" / "shard-00000.staging" / "train" / "data.parquet").is_file()
    assert len(teacher.requests) == 12


def test_teacher_serving_another_model_is_exit_3_before_any_work(tmp_path: Path, tiny_chartqa: Path, fake_teacher) -> None:
    teacher = fake_teacher(MODEL_90B)
    config = sdk_config_for(tmp_path, teacher.api_base, "meta-llama/Llama-3.2-11B-Vision-Instruct")
    proc = run_generate(config, tmp_path / "out", tiny_chartqa)
    assert proc.returncode == EXIT_MISSING_INPUT, proc.stderr
    assert "serves" in proc.stderr and MODEL_90B in proc.stderr
    assert teacher.requests == []
    assert not (tmp_path / "out").exists()


def test_unreachable_teacher_is_exit_3(tmp_path: Path, tiny_chartqa: Path) -> None:
    config = sdk_config_for(tmp_path, "http://127.0.0.1:9/v1", MODEL_90B)
    proc = run_generate(config, tmp_path / "out", tiny_chartqa)
    assert proc.returncode == EXIT_MISSING_INPUT and "not reachable" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_blog_config_with_nested_prompt_is_refused(tmp_path: Path, tiny_chartqa: Path) -> None:
    blog = yaml.safe_load(SDK_CONFIGS[0].text)
    blog["prompts"] = {"xqa_add_reasoning": blog.pop("prompt")}
    path = tmp_path / "blog.yaml"
    path.write_text(yaml.safe_dump(blog))
    proc = run_generate(path, tmp_path / "out", tiny_chartqa)
    assert proc.returncode == EXIT_BAD_ARGS
    assert "top-level `prompt:`" in proc.stderr and "prompts.xqa_add_reasoning" in proc.stderr

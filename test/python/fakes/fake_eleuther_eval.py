"""Test stand-in for the patched eleuther_eval recipe: same module surface evaluate.py uses
(`evaluate` imported by name, `recipe_main` wrapped by torchtune's config.parse, a patched
`_VLMEvalWrapper`), with lm-eval's evaluate replaced by a canned result from FAKE_EVAL_OUTPUT."""

import json
import os
import sys

from omegaconf import DictConfig
from torchtune import config


def evaluate(lm, task_dict, limit=None):  # noqa: ARG001 - signature as the recipe calls it
    mode = os.environ.get("FAKE_EVAL_MODE", "ok")
    if mode == "crash":
        raise RuntimeError("HIP out of memory")
    return json.loads(os.environ["FAKE_EVAL_OUTPUT"])


class _VLMEvalWrapper:
    def __init__(self, model, transform, *, image_width=560, image_height=560, image_max_side=560, device=None):
        self.image_width, self.image_height, self.image_max_side = image_width, image_height, image_max_side

    def _model_multimodal_generate(self, batch, max_length, stop, **kw):
        generated_tokens = batch["input_pos"].size(1)*[0,]
        return generated_tokens


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    assert list(cfg.tasks) == ["chartqa"], cfg.tasks
    output = evaluate(None, {}, limit=cfg.limit)
    print("results table would be logged here", output.get("results"))


if __name__ == "__main__":
    sys.exit(recipe_main())

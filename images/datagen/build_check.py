"""Build-time check of the datagen image (run by its Dockerfile; a plain file rather than a heredoc,
so that every Dockerfile builder reads it, buildah 1.28 included).

The PyPI 0.0.5 build of synthetic-data-kit matches no public commit: make sure it is the one with
vqa_add_reasoning and the generator that reads the top-level `prompt:` key.
"""

import inspect
from importlib.metadata import version

import synthetic_data_kit.core.create as create
from synthetic_data_kit.generators.vqa_generator import VQAGenerator

assert version("synthetic-data-kit") == "0.0.5", version("synthetic-data-kit")
assert '"vqa_add_reasoning"' in inspect.getsource(create.process_file), "no vqa_add_reasoning content type"
assert 'self.config.get("prompt"' in inspect.getsource(VQAGenerator.transform), "generator does not read `prompt:`"
print("synthetic-data-kit", version("synthetic-data-kit"))

"""Test-only stand-in for the Hugging Face Hub, loaded by the synthetic-data-kit subprocess.

synthetic-data-kit 0.0.5 loads an HF dataset id with `HfApi().repo_exists(id)` and
`datasets.load_dataset(id)`; no hub is reachable in the tests. COTVR_TEST_HF_DATASETS maps
ids to local folders (laid out as `<dir>/<split>/data.parquet`), and everything else of the
real package (config loading, VQAGenerator, the OpenAI client, the parquet writer) runs as is.
"""

import json
import os

_MAPPING = json.loads(os.environ.get("COTVR_TEST_HF_DATASETS", "{}") or "{}")

if _MAPPING:
    import datasets
    import huggingface_hub

    _repo_exists = huggingface_hub.HfApi.repo_exists
    _load_dataset = datasets.load_dataset

    def repo_exists(self, repo_id, *args, **kwargs):  # type: ignore[no-untyped-def]
        if repo_id in _MAPPING:
            return True
        return _repo_exists(self, repo_id, *args, **kwargs)

    def load_dataset(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        return _load_dataset(_MAPPING.get(path, path), *args, **kwargs)

    huggingface_hub.HfApi.repo_exists = repo_exists
    datasets.load_dataset = load_dataset

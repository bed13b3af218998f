"""Static checks of the Dockerfiles and locks (no Docker engine here): pinned bases, COPY
sources that exist in the build context (images/), and the image locks pinning the same
versions of the packages the tests exercise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import IMAGES, REPO

DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
KEY_PACKAGES = {
    "trainer": ["torchtune", "torchdata", "lm-eval", "datasets", "huggingface-hub", "transformers", "accelerate", "peft",
                "numpy", "pillow", "pyarrow", "fsspec", "tiktoken", "omegaconf", "pyyaml", "matplotlib"],
    "datagen": ["synthetic-data-kit", "datasets", "huggingface-hub", "openai", "pillow", "pyarrow", "fsspec", "pyyaml"],
}


def lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_dockerfile_pins_and_context(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert base and "FROM ${BASE_IMAGE}" in text
    image, _, tag = base.group(1).partition(":")
    assert tag and tag != "latest" and not tag.startswith("latest"), base.group(1)
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _dest = line.replace("\\\n", " ").split()
        for source in sources:
            assert (IMAGES / source).exists(), f"{dockerfile}: COPY {source} not in the build context images/"
    # multi-line COPY continuation lines
    for block in re.findall(r"^COPY ((?:.*\\\n)+.*)$", text, re.M):
        for source in block.replace("\\\n", " ").split()[:-1]:
            assert (IMAGES / source).exists(), source
    assert "requirements.txt" in text


def test_trainer_builds_torchao_0_11_0_and_applies_the_patch() -> None:
    text = (IMAGES / "trainer" / "Dockerfile").read_text()
    assert "ARG TORCHAO_COMMIT=f34b473e56b2e406d5a0ce5a0cea8453aaf87cb3" in text  # tag v0.11.0
    assert "--no-build-isolation" in text
    assert "tune cp eleuther_eval /opt/cotvr/recipes/eleuther_eval.py" in text
    assert "git apply --verbose --check eleuther_eval.patch" in text
    assert "rocm/pytorch:rocm6.4.1_ubuntu22.04_py3.10_pytorch_release_2.6.0" in text


@pytest.mark.parametrize("image", sorted(KEY_PACKAGES))
def test_image_locks_match_the_tested_versions(image: str) -> None:
    tested = lock(REPO / "test" / "python" / "requirements.txt")
    shipped = lock(IMAGES / image / "requirements.txt")
    for package in KEY_PACKAGES[image]:
        assert package in shipped, f"{image} lock lacks {package}"
        assert shipped[package] == tested[package], f"{package}: image {shipped[package]} but tests use {tested[package]}"
    assert not any(p.startswith("nvidia-") or p in ("torch", "torchvision", "triton") for p in shipped), \
        f"{image} lock would replace the base image's torch"

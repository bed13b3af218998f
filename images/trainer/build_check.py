"""Build-time checks of the trainer image (run by its Dockerfile; plain files rather than heredocs, so
that every Dockerfile builder reads them, buildah 1.28 included).

    python build_check.py freeze   write /opt/torch-constraints.txt from the base image's torch
    python build_check.py verify   everything importable, versions as pinned, lm-eval's chartqa task

ACCEL (the Dockerfile's build argument): rocm (default) requires the base image's torch to be a ROCm
build; cpu (the CPU twin of the pods tier) accepts the CPU base's. Both must be torch 2.6.
"""

import os
import sys
from importlib.metadata import PackageNotFoundError, version

ACCEL = os.environ.get("ACCEL", "rocm")


def freeze() -> None:
    import torch

    if ACCEL == "rocm":
        assert torch.version.hip, f"base image torch {torch.__version__} is not a ROCm build"
    # the lock (requirements.txt) is resolved against torch 2.6's own pins (e.g. sympy)
    assert torch.__version__.startswith("2.6."), torch.__version__
    lines = []
    for dist in ("torch", "torchvision", "torchaudio", "pytorch-triton-rocm", "triton"):
        try:
            lines.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            pass
    with open("/opt/torch-constraints.txt", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(open("/opt/torch-constraints.txt").read())


def verify() -> None:
    import lm_eval  # noqa: F401
    import torch
    import torchao  # noqa: F401
    import torchtune  # noqa: F401

    if ACCEL == "rocm":
        assert torch.version.hip, "torch was replaced by a non-ROCm build"
    assert version("torchtune") == "0.6.1", version("torchtune")
    assert version("torchao").startswith("0.11.0"), version("torchao")
    assert not (version("lm-eval") < "0.4.5"), "torchtune 0.6.1 would reject this lm-eval (string compare)"
    from lm_eval.tasks import TaskManager

    assert "chartqa" in TaskManager().all_tasks, "lm-eval has no chartqa task"
    print("torch", torch.__version__, "torchtune", version("torchtune"), "torchao", version("torchao"), "lm-eval", version("lm-eval"))


if __name__ == "__main__":
    {"freeze": freeze, "verify": verify}[sys.argv[1]]()

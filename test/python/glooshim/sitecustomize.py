"""Test-only: torchtune 0.6.1's lora_finetune_distributed on a machine without GPUs.

The recipe calls `init_process_group("cuda:nccl,cpu:gloo")`, and a CPU-only torch refuses to create
the NCCL half ("ProcessGroupNCCL is only supported with GPUs"). With COTVR_TEST_GLOO=1 (inherited by
every process torchrun starts) the backend string loses its `cuda:nccl` part: all collectives go
through gloo, which is what the recipe uses for CPU tensors anyway. And rank 0 logs GPU memory stats
after loading the model whatever the device (`training.get_memory_stats` raises on CPU): on CPU they
read zeros; before training it empties the device cache and resets its peak stats (`torch.cpu` has neither
`empty_cache` nor `reset_peak_memory_stats`): no-ops on CPU. Nothing else changes: the real torchrun, the real recipe, FSDP2, its checkpointing and
resume run as shipped.
"""

import os

if os.environ.get("COTVR_TEST_GLOO") == "1":
    import torch.distributed as dist

    _init = dist.init_process_group

    def init_process_group(backend=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(backend, str) and "cuda:nccl" in backend:
            backend = ",".join(part for part in backend.split(",") if part != "cuda:nccl") or "gloo"
        return _init(backend, *args, **kwargs)

    dist.init_process_group = init_process_group

    import torchtune.training as training

    _memory_stats = training.get_memory_stats

    def get_memory_stats(device, reset_stats=True):  # type: ignore[no-untyped-def]
        if getattr(device, "type", device) == "cpu":
            return {"peak_memory_active": 0.0, "peak_memory_alloc": 0.0, "peak_memory_reserved": 0.0}
        return _memory_stats(device, reset_stats)

    training.get_memory_stats = get_memory_stats

    import torch

    for name in ("empty_cache", "reset_peak_memory_stats"):
        if not hasattr(torch.cpu, name):
            setattr(torch.cpu, name, lambda: None)

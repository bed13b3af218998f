"""The facts of config/facts.ts that the programs in the images need (sources in docs/FACTS.md).

A container cannot read the TypeScript, so this is a copy: test/unit/facts.test.ts runs this
module and fails when it disagrees with config/facts.ts. Standard library only.
"""

from __future__ import annotations

# The memory model's margin on activations and the allocator's reserve, GiB (calibrated on the H200:
# the 90B without checkpointing at m=2 fits 139.8 GiB; docs/THROUGHPUT.md).
ACT_MARGIN = 0.03
RESERVE_GIB = 2.5

# Row counts of the HuggingFaceM4/ChartQA splits.
CHARTQA_ROWS: dict[str, int] = {"train": 28299, "val": 1920, "test": 2500}


def steps_per_epoch(rows: int, batch_size: int, gradient_accumulation_steps: int, max_steps_per_epoch: int | None = None) -> int:
    """Optimizer steps per epoch as torchtune 0.6.1 counts them: drop_last batches // accumulation, capped."""
    steps = (rows // batch_size) // gradient_accumulation_steps
    return max_steps_per_epoch if max_steps_per_epoch is not None and max_steps_per_epoch < steps else steps


if __name__ == "__main__":  # what test/unit/facts.test.ts compares with config/facts.ts
    import json
    import sys

    cases = json.loads(sys.argv[1]) if len(sys.argv) > 1 else []
    print(json.dumps({"CHARTQA_ROWS": CHARTQA_ROWS, "ACT_MARGIN": ACT_MARGIN, "RESERVE_GIB": RESERVE_GIB,
                      "steps_per_epoch": [steps_per_epoch(*c) for c in cases]}))

"""The run's vocabulary, as the programs in the images see it: the Python twin of contract.ts.

The Pulumi program writes these names into the objects, the programs read and write them inside the
pods, and the CLIs read them back. test/unit/contract.test.ts pins this file to contract.ts, so the two
can never drift. Copied into each image as /opt/cotvr/cotvr_contract.py; standard library only.
"""

from __future__ import annotations

from typing import Any

PROJECT = "cot-vr"

# Label keys of this project (selectors use these).
LABEL_RUN = f"{PROJECT}/run"
LABEL_STAGE = f"{PROJECT}/stage"
LABEL_VARIANT = f"{PROJECT}/variant"
LABEL_HASH = f"{PROJECT}/config-hash"

STAGE_NAMES = ("download", "teacher", "generate", "train", "sample", "evaluate", "report", "benchmark")
VOLUME_NAMES = ("models", "data", "checkpoints", "results")

# Exit codes (images/README.md): 0 ok, 1 the upstream tool failed, 2 bad arguments (argparse's own
# code), 3 missing input / unreachable dependency, 4 incomplete download, 5 no or malformed metrics,
# 6 dataset check failed.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_ARGS = 2
EXIT_MISSING_INPUT = 3
EXIT_INCOMPLETE = 4
EXIT_NO_METRICS = 5
EXIT_CHECK_FAILED = 6
# Bad input: retrying cannot help, so the Job fails at once (its podFailurePolicy's FailJob rule).
FATAL_EXIT_CODES = (EXIT_BAD_ARGS, EXIT_MISSING_INPUT, EXIT_INCOMPLETE, EXIT_NO_METRICS, EXIT_CHECK_FAILED)

# Records on stdout that `npm run status` and the rehearsal read back from the pods' logs.
PROGRESS_PREFIX = "COTVR_PROGRESS "
BENCH_PREFIX = "COTVR_BENCH "
# Written by a producer last; consumers check it instead of guessing from partial files.
MARKER_NAME = ".complete.json"

# Seconds the teacher stays up with no generation pod before its watchdog scales it to 0.
WATCHDOG_GRACE_SECONDS = 600

# Keys of the run's Secret, as the pods read them.
SECRET_DATA_KEYS = {"hfToken": "HF_TOKEN", "wandbApiKey": "WANDB_API_KEY", "notifyWebhook": "COTVR_NOTIFY_WEBHOOK"}


def selector(labels: dict[str, str]) -> str:
    """`key=value,...`: a label selector as the API's labelSelector parameter takes it."""
    return ",".join(f"{k}={v}" for k, v in labels.items())


def as_dict() -> dict[str, Any]:
    """Everything above, keyed as in contract.ts (what the pinning test compares)."""
    return {
        "PROJECT": PROJECT,
        "LABELS": {"run": LABEL_RUN, "stage": LABEL_STAGE, "variant": LABEL_VARIANT, "hash": LABEL_HASH},
        "STAGE_NAMES": list(STAGE_NAMES),
        "VOLUME_NAMES": list(VOLUME_NAMES),
        "EXIT": {
            "ok": EXIT_OK, "failed": EXIT_FAILED, "badArgs": EXIT_BAD_ARGS, "missingInput": EXIT_MISSING_INPUT,
            "incomplete": EXIT_INCOMPLETE, "noMetrics": EXIT_NO_METRICS, "checkFailed": EXIT_CHECK_FAILED,
        },
        "FATAL_EXIT_CODES": list(FATAL_EXIT_CODES),
        "PROGRESS_PREFIX": PROGRESS_PREFIX,
        "BENCH_PREFIX": BENCH_PREFIX,
        "MARKER_NAME": MARKER_NAME,
        "WATCHDOG_GRACE_SECONDS": WATCHDOG_GRACE_SECONDS,
        "SECRET_DATA_KEYS": dict(SECRET_DATA_KEYS),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(as_dict()))

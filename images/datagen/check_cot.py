#!/usr/bin/env python3
"""Check a chain-of-thought dataset written by synthetic-data-kit (vqa_add_reasoning).

synthetic-data-kit does not fail when the teacher errors: after `max_retries` it stores
the string "ERROR: ..." as that row's label and exits 0. This check is what stops such a
dataset from being published and trained on.

Layout read: `<dataset>/<split>/data.parquet` (+ `<dataset>/dataset_dict.json`), the same
folder `datasets.load_dataset("<dataset>", split=...)` and torchtune's `vqa_dataset` read.

Exit codes: 0 ok, 3 dataset missing/unreadable, 6 check failed.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(p) for p in (_HERE, _HERE.parent / "common") if (p / "cotvr_common.py").is_file()]
from cotvr_common import (  # noqa: E402
    EXIT_BAD_ARGS,
    EXIT_CHECK_FAILED,
    EXIT_MISSING_INPUT,
    EXIT_OK,
    CotvrError,
    log,
    run_main,
)

FINAL_ANSWER = "final answer:"


@dataclass
class CheckResult:
    dataset: str
    split: str
    rows: int = 0
    expected_rows: int | None = None
    error_labels: int = 0
    missing_final_answer: int = 0
    non_string_labels: int = 0
    empty_labels: int = 0
    empty_images: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _label_text(label: Any) -> str | None:
    if isinstance(label, str):
        return label
    return None


def _image_empty(image: Any) -> bool:
    if image is None:
        return True
    if isinstance(image, dict):
        raw = image.get("bytes")
        path = image.get("path")
        return not raw and not path
    return False


def check_dataset(
    dataset: Path | str,
    split: str = "train",
    expected_rows: int | None = None,
    max_missing_final_fraction: float = 0.0,
    max_examples: int = 3,
) -> CheckResult:
    """Read the dataset and count what is wrong with it. Raises CotvrError(3) if unreadable."""
    root = Path(dataset)
    result = CheckResult(dataset=str(root), split=split, expected_rows=expected_rows)
    parquet = root / split / "data.parquet"
    if not root.is_dir():
        raise CotvrError(f"dataset folder not found: {root}", EXIT_MISSING_INPUT)
    if not parquet.is_file():
        raise CotvrError(
            f"no {split} split in {root}: expected {parquet} (synthetic-data-kit writes <out>/<output_split>/data.parquet)",
            EXIT_MISSING_INPUT,
        )

    try:
        import datasets  # heavy import, only after the cheap checks
    except ImportError as err:  # pragma: no cover - the image always has it
        raise CotvrError(f"the datasets package is not installed: {err}", EXIT_MISSING_INPUT) from err

    try:
        import pyarrow.parquet as pq

        if pq.ParquetFile(str(parquet)).metadata.num_rows == 0:
            result.failures.append("dataset is empty")  # datasets refuses to load an empty split
            return result
    except Exception as err:  # noqa: BLE001
        raise CotvrError(f"cannot read {parquet}: {err}", EXIT_MISSING_INPUT) from err
    try:
        ds = datasets.load_dataset(str(root), split=split)
    except Exception as err:  # noqa: BLE001 - any reader failure means "unreadable"
        raise CotvrError(f"cannot read {root} (split {split}) with datasets.load_dataset: {err}", EXIT_MISSING_INPUT) from err

    result.rows = len(ds)
    columns = set(ds.column_names)
    for needed in ("image", "query", "label"):
        if needed not in columns:
            result.failures.append(f"column '{needed}' missing (columns: {sorted(columns)})")
    if result.failures:
        return result

    if isinstance(ds.features.get("image"), datasets.Image):
        ds = ds.cast_column("image", datasets.Image(decode=False))  # check bytes without decoding

    examples: dict[str, list[str]] = {"error_labels": [], "missing_final_answer": [], "non_string_labels": []}
    for index, row in enumerate(ds):
        label = row["label"]
        text = _label_text(label)
        if text is None:
            result.non_string_labels += 1
            if len(examples["non_string_labels"]) < max_examples:
                examples["non_string_labels"].append(f"row {index}: {type(label).__name__} {str(label)[:120]}")
        elif not text.strip():
            result.empty_labels += 1
        elif text.lstrip().startswith("ERROR"):
            result.error_labels += 1
            if len(examples["error_labels"]) < max_examples:
                examples["error_labels"].append(f"row {index}: {text[:200]}")
        elif FINAL_ANSWER not in text.lower():
            result.missing_final_answer += 1
            if len(examples["missing_final_answer"]) < max_examples:
                examples["missing_final_answer"].append(f"row {index}: ...{text[-160:]}")
        if _image_empty(row["image"]):
            result.empty_images += 1
    result.examples = {k: v for k, v in examples.items() if v}

    if result.rows == 0:
        result.failures.append("dataset is empty")
    if expected_rows is not None and result.rows != expected_rows:
        result.failures.append(f"{result.rows} rows, expected {expected_rows}")
    if result.error_labels:
        result.failures.append(
            f"{result.error_labels} labels are teacher errors ('ERROR: ...'): is api-endpoint.model the model vLLM serves?"
        )
    if result.non_string_labels:
        result.failures.append(f"{result.non_string_labels} labels are not strings (torchtune's vqa_dataset needs a string)")
    if result.empty_labels:
        result.failures.append(f"{result.empty_labels} labels are empty")
    if result.empty_images:
        result.failures.append(f"{result.empty_images} rows have no image")
    if result.rows:
        fraction = result.missing_final_answer / result.rows
        if fraction > max_missing_final_fraction:
            result.failures.append(
                f"{result.missing_final_answer} labels ({fraction:.1%}) lack 'Final answer:' "
                f"(allowed: {max_missing_final_fraction:.1%})"
            )
    return result


def format_summary(result: CheckResult) -> str:
    lines = [
        f"dataset {result.dataset} split {result.split}: {result.rows} rows"
        + (f" (expected {result.expected_rows})" if result.expected_rows is not None else ""),
        f"  ERROR labels:              {result.error_labels}",
        f"  missing 'Final answer:':   {result.missing_final_answer}",
        f"  non-string labels:         {result.non_string_labels}",
        f"  empty labels:              {result.empty_labels}",
        f"  empty images:              {result.empty_images}",
    ]
    for kind, samples in result.examples.items():
        lines.append(f"  examples of {kind}:")
        lines.extend(f"    {s}" for s in samples)
    lines.append("RESULT: OK" if result.ok else "RESULT: FAILED: " + "; ".join(result.failures))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="check_cot.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="dataset folder (synthetic-data-kit output)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--expected-rows", type=int, default=None, help="fail unless exactly this many rows")
    parser.add_argument(
        "--max-missing-final-fraction",
        type=float,
        default=0.0,
        help="fraction of labels allowed to lack 'Final answer:' (default 0)",
    )
    parser.add_argument("--json", dest="json_out", default=None, help="also write the summary as JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.expected_rows is not None and args.expected_rows < 0:
        raise CotvrError("--expected-rows must be >= 0", EXIT_BAD_ARGS)
    log(f"checking {args.dataset} split {args.split}")
    result = check_dataset(args.dataset, args.split, args.expected_rows, args.max_missing_final_fraction)
    print(format_summary(result), flush=True)
    if args.json_out:
        from cotvr_common import atomic_write_json

        atomic_write_json(args.json_out, result.to_dict())
    if not result.ok:
        print(f"check_cot.py: error: dataset check failed: {'; '.join(result.failures)}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main("check_cot.py", main))

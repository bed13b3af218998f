"""check_cot.py on datasets written the way synthetic-data-kit writes them."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import DATAGEN, run_program, write_split_folder, cot_rows
from cotvr_contract import EXIT_CHECK_FAILED, EXIT_MISSING_INPUT

CHECK = DATAGEN / "check_cot.py"


def test_good_dataset_passes(make_cot_dataset, tmp_path: Path) -> None:
    ds = make_cot_dataset(5)
    proc = run_program(CHECK, "--dataset", str(ds), "--split", "train", "--expected-rows", "5", "--json", str(tmp_path / "s.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RESULT: OK" in proc.stdout
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["rows"] == 5 and summary["ok"] and summary["error_labels"] == 0


def test_error_labels_fail(make_cot_dataset) -> None:
    ds = make_cot_dataset(4, lambda i, a: "ERROR: Error code: 404 - {'message': 'The model does not exist.'}" if i == 2 else f"CoT. Final answer: {a}")
    proc = run_program(CHECK, "--dataset", str(ds), "--split", "train")
    assert proc.returncode == EXIT_CHECK_FAILED, proc.stdout + proc.stderr
    assert "ERROR labels:              1" in proc.stdout
    assert "teacher errors" in proc.stderr


def test_missing_final_answer_fails_unless_allowed(make_cot_dataset) -> None:
    ds = make_cot_dataset(4, lambda i, a: f"reasoning only, answer {a}" if i == 0 else f"CoT. FINAL ANSWER: {a}")
    proc = run_program(CHECK, "--dataset", str(ds))
    assert proc.returncode == EXIT_CHECK_FAILED
    assert "missing 'Final answer:':   1" in proc.stdout
    assert run_program(CHECK, "--dataset", str(ds), "--max-missing-final-fraction", "0.25").returncode == 0


def test_row_count_mismatch_fails(make_cot_dataset) -> None:
    ds = make_cot_dataset(3)
    proc = run_program(CHECK, "--dataset", str(ds), "--expected-rows", "4")
    assert proc.returncode == EXIT_CHECK_FAILED and "3 rows, expected 4" in proc.stderr


def test_empty_images_and_list_labels_fail(tmp_path: Path) -> None:
    import datasets

    rows = cot_rows(3)
    rows["image"][1] = None
    ds = write_split_folder(tmp_path / "noimg", {"train": rows}, datasets.Features({
        "image": datasets.Image(), "query": datasets.Value("string"), "label": datasets.Value("string"),
        "human_or_machine": datasets.Value("int64")}))
    proc = run_program(CHECK, "--dataset", str(ds))
    assert proc.returncode == EXIT_CHECK_FAILED and "1 rows have no image" in proc.stderr

    raw = cot_rows(2)
    raw["label"] = [[x] for x in raw["label"]]  # untransformed ChartQA: label is list[str]
    ds2 = write_split_folder(tmp_path / "listlabel", {"train": raw})
    proc = run_program(CHECK, "--dataset", str(ds2))
    assert proc.returncode == EXIT_CHECK_FAILED and "not strings" in proc.stderr


def test_empty_dataset_fails(tmp_path: Path) -> None:
    rows = cot_rows(1)
    empty = {k: v[:0] for k, v in rows.items()}
    import datasets

    ds = write_split_folder(tmp_path / "empty", {"train": empty}, datasets.Features({
        "image": datasets.Image(), "query": datasets.Value("string"), "label": datasets.Value("string"),
        "human_or_machine": datasets.Value("int64")}))
    proc = run_program(CHECK, "--dataset", str(ds))
    assert proc.returncode == EXIT_CHECK_FAILED and "dataset is empty" in proc.stderr


def test_missing_dataset_is_exit_3(tmp_path: Path) -> None:
    proc = run_program(CHECK, "--dataset", str(tmp_path / "nope"))
    assert proc.returncode == EXIT_MISSING_INPUT and "not found" in proc.stderr
    (tmp_path / "nosplit").mkdir()
    proc = run_program(CHECK, "--dataset", str(tmp_path / "nosplit"), "--split", "train")
    assert proc.returncode == EXIT_MISSING_INPUT and "data.parquet" in proc.stderr
    assert "Traceback" not in proc.stderr

"""Score stage: predictions (JSONL) -> accuracy per dataset and category (CSV)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from adfm.io import InputError, atomic_path, read_jsonl

ANSWER_OF_LABEL = {1: "yes", 0: "no"}
ALL = "all"


def accuracy_table(records: list[dict]) -> pd.DataFrame:
    """Binary accuracy (%) per (model, dataset, category) and per (model, dataset) as category "all".

    A response without a readable answer counts as wrong: that is what a user of the model gets.
    """
    if not records:
        raise InputError("no prediction records to score")
    frame = pd.DataFrame.from_records(records)
    frame = frame[frame.get("sample", 0) == 0] if "sample" in frame else frame
    frame["correct"] = [ANSWER_OF_LABEL[int(label)] == answer for label, answer in zip(frame["label"], frame["answer"])]
    frame["answered"] = frame["answer"].notna()
    per_category = frame.groupby(["model", "dataset", "category"], as_index=False).agg(
        n=("correct", "size"), correct=("correct", "sum"), answered=("answered", "sum"))
    per_dataset = frame.groupby(["model", "dataset"], as_index=False).agg(
        n=("correct", "size"), correct=("correct", "sum"), answered=("answered", "sum")).assign(category=ALL)
    table = pd.concat([per_category, per_dataset], ignore_index=True)
    table["accuracy"] = (100.0 * table["correct"] / table["n"]).round(2)
    return table[["model", "dataset", "category", "n", "correct", "answered", "accuracy"]]


def run_score(predictions: list[Path], out: Path) -> None:
    records = [record for path in predictions for record in read_jsonl(path)]
    table = accuracy_table(records)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")


def register(subparsers) -> None:
    parser = subparsers.add_parser("score", help="accuracy per dataset and category from predictions")
    parser.add_argument("--predictions", required=True, nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.set_defaults(func=lambda a: run_score(a.predictions, a.out))

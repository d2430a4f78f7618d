"""MMAD accuracy of a model's answers (Table 3), as MMAD's own evaluation scripts count it.

    adfm score-mmad --predictions PRED.jsonl [--questions QUESTIONS.csv] --out METRICS.csv

PRED.jsonl: the records of `adfm predict-mmad` (adfm.inference.mmad); QUESTIONS.csv: the question
table, whose `drop_reason` says which questions the leakage filter left out (counted per cell).

Scores (MMAD's caculate_accuracy_mmad): accuracy per source dataset (DS-MVTec, MVTec-LOCO, VisA,
GoodsAD) and question type, Object Structure and Object Details merged into Object Analysis;
Anomaly Detection as balanced accuracy ((accuracy on normal + accuracy on anomalous images) / 2,
an image being normal when its path contains "good"); the dataset "all" rows are the mean over
the source datasets (MMAD's "Average" row), and the type "Average" is the mean over the types.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from adfm.data.datasets.mmad import QUESTION_TYPES
from adfm.io import InputError, read_jsonl, write_csv_atomic

log = logging.getLogger(__name__)

MERGED_TYPES = {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}
# MMAD's question types as its summary reports them: Object Structure and Details merged
TYPES = tuple(dict.fromkeys(MERGED_TYPES.get(t, t) for t in QUESTION_TYPES))
AVERAGE = "Average"
DROP_REASONS = ("training", "not_in_split")  # why a question is not asked (adfm.inference.mmad)

# accuracy: MMAD's score of the cell (balanced on Anomaly Detection, plain elsewhere), what Table 3
# shows; plain_accuracy: correct / answered on every cell; balanced_accuracy: Anomaly Detection only
SCORE_COLUMNS = ["accuracy", "plain_accuracy", "balanced_accuracy"]


def cell_scores(kind: str, asked: pd.DataFrame) -> dict:
    """One (model, source, type) cell: the questions answered with a letter, those right, those
    unparsed, and the scores (balanced accuracy on Anomaly Detection only)."""
    scored = asked[asked["parsed"]]
    n, correct = len(scored), int(scored["correct"].sum())
    plain = 100.0 * correct / n if n else 0.0
    balanced = float("nan")
    if kind == "Anomaly Detection":
        normal, anomalous = scored[scored["normal"]], scored[~scored["normal"]]
        normal_acc = normal["correct"].mean() if len(normal) else 0.0
        anomalous_acc = anomalous["correct"].mean() if len(anomalous) else 0.0
        balanced = 100.0 * (normal_acc + anomalous_acc) / 2
    return {
        "n": n,
        "correct": correct,
        "unparsed": int((~asked["parsed"]).sum()),
        "accuracy": balanced if kind == "Anomaly Detection" else plain,
        "plain_accuracy": plain,
        "balanced_accuracy": balanced,
    }


def mmad_table(records: list[dict], questions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Accuracy (%) per model, source dataset (and "all") and question type (and "Average"), with
    the questions the leakage filter left out of each cell (`questions`: the question table)."""
    if not records:
        raise InputError("no MMAD prediction records to score")
    frame = pd.DataFrame.from_records(records)
    frame["type"] = frame["type"].replace(MERGED_TYPES)
    frame["parsed"] = frame["answer"].isin(list("ABCDE"))
    frame["correct"] = frame["parsed"] & (frame["answer"] == frame["correct_answer"])
    frame["normal"] = frame["label"].astype(int) == 0  # MMAD: "good" in the image path (parse_questions' label)
    rows = [
        {"model": model, "dataset": source, "category": kind, **cell_scores(kind, asked)}
        for (model, source), group in frame.groupby(["model", "source"], sort=True)
        for kind, asked in group.groupby("type", sort=False)
    ]
    table = pd.DataFrame(rows)
    sums = {"n": ("n", "sum"), "correct": ("correct", "sum"), "unparsed": ("unparsed", "sum")}
    means = {name: (name, "mean") for name in SCORE_COLUMNS}
    averages = table.groupby(["model", "category"], as_index=False, sort=False).agg(**sums, **means)
    table = pd.concat([table, averages.assign(dataset="all")], ignore_index=True)
    per_row = table.groupby(["model", "dataset"], as_index=False, sort=False).agg(**sums, **means)
    # balanced accuracy is defined on the anomaly question alone, not on an average over types
    table = pd.concat([table, per_row.assign(category=AVERAGE, balanced_accuracy=float("nan"))], ignore_index=True)
    order = {t: i for i, t in enumerate([*TYPES, AVERAGE])}
    table = table.sort_values(
        ["model", "dataset", "category"],
        key=lambda c: c.map(order).fillna(99) if c.name == "category" else c,
        kind="stable",
    )
    table[SCORE_COLUMNS] = table[SCORE_COLUMNS].round(2)
    table = table.join(_dropped(questions), on=["dataset", "category"]).fillna({c: 0 for c in DROP_COLUMNS})
    table[DROP_COLUMNS] = table[DROP_COLUMNS].astype(int)
    columns = ["model", "dataset", "category", "n", "correct", "unparsed", *SCORE_COLUMNS, *DROP_COLUMNS]
    return table[columns].reset_index(drop=True)


DROP_COLUMNS = [f"dropped_{reason}" for reason in DROP_REASONS]


def _dropped(questions: pd.DataFrame | None) -> pd.DataFrame:
    """Questions not asked, per (dataset, type) as the scores group them, "all" and "Average" summed."""
    frame = pd.DataFrame(columns=["dataset", "type", "drop_reason"]) if questions is None else questions
    frame = frame[frame["drop_reason"] != ""].assign(type=lambda f: f["type"].replace(MERGED_TYPES))
    counts = (
        pd.crosstab([frame["dataset"], frame["type"]], frame["drop_reason"])
        if len(frame)
        else pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["dataset", "type"]))
    )
    counts = counts.reindex(columns=list(DROP_REASONS), fill_value=0)
    counts.columns = DROP_COLUMNS
    counts = counts.rename_axis(["dataset", "category"]).reset_index()
    by_type = counts.groupby("category", as_index=False)[DROP_COLUMNS].sum().assign(dataset="all")
    counts = pd.concat([counts, by_type], ignore_index=True)
    by_dataset = counts.groupby("dataset", as_index=False)[DROP_COLUMNS].sum().assign(category=AVERAGE)
    return pd.concat([counts, by_dataset], ignore_index=True).set_index(["dataset", "category"])


def run_score(predictions: list[Path], out: Path, questions_csv: Path | None = None) -> None:
    records = [r for path in predictions for r in read_jsonl(path)]
    questions = None
    if questions_csv is not None:
        try:
            questions = pd.read_csv(questions_csv, keep_default_na=False, dtype=str)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise InputError(f"{questions_csv}: cannot read MMAD questions ({error})") from None
        if "drop_reason" not in questions.columns:
            raise InputError(f"{questions_csv}: MMAD question table lacks column drop_reason")
    table = mmad_table(records, questions)
    dropped = int(table.loc[(table["dataset"] == "all") & (table["category"] == AVERAGE), DROP_COLUMNS].sum().sum())
    if dropped:
        log.info(
            "MMAD scores leave out %d questions (leakage filter): %s",
            dropped,
            table.loc[(table["dataset"] == "all") & (table["category"] == AVERAGE), DROP_COLUMNS].to_dict("records"),
        )
    write_csv_atomic(table, out)


def register(subparsers) -> None:
    scorer = subparsers.add_parser(
        "score-mmad",
        help="MMAD accuracy per source dataset and question type",
        description="MMAD accuracy of one model's answers per source dataset and question type, as MMAD's own "
        "evaluation counts it, with the number of questions the leakage filter left out.",
    )
    scorer.add_argument(
        "--predictions",
        required=True,
        nargs="+",
        type=Path,
        help="the model's MMAD answers (`adfm predict-mmad`, JSONL)",
    )
    scorer.add_argument(
        "--questions",
        type=Path,
        default=None,
        help="the question table, to count the questions the leakage filter left out",
    )
    scorer.add_argument("--out", required=True, type=Path, help="the metrics (CSV)")
    scorer.set_defaults(func=lambda a: run_score(a.predictions, a.out, a.questions))

"""Score stage: predictions (JSONL) -> accuracy per dataset and category (CSV).

Two kinds of predictions:
- answers ("yes" / "no" / null) of a vision-language model: binary accuracy, a response without a
  readable answer counting as wrong;
- continuous anomaly scores (a `score` field, e.g. WinCLIP, AnomalyCLIP): accuracy at the fixed
  threshold tau = 0.5 (`accuracy`) and at the threshold maximising Youden's J = TPR - FPR
  (`accuracy_youden`, threshold `threshold_youden`), plus the AUROC. The Youden threshold is chosen
  per dataset on the evaluated images themselves (an oracle threshold, as the paper's Table 2
  reports it); category rows use their dataset's threshold. An image is called anomalous when its
  score is >= the threshold.

Two accuracies in every metrics file, so that each table row can take the one its paper number used:
- `accuracy`: plain accuracy, correct / n (the paper's own rows: its Qwen2.5-VL VisA 55.50 is
  1200/2162, "anomalous" for every image of VisA's test split);
- `balanced_accuracy`: the mean over the classes present of the share of that class judged right
  ((normal right / normal + anomalous right / anomalous) / 2 with both classes), MMAD's metric for
  its Anomaly Detection question (MMAD's evaluation/examples/helper/summary.py), and so the metric
  of the paper's GPT-4o and GPT-4o-mini rows of Table 1. With one class present it is that class's
  share judged right. An unanswered image counts as wrong in both.
For scores, `accuracy_youden` and `balanced_accuracy_youden` are the same at the Youden threshold.
adfm.evaluation.mmad_score's metrics use the same two column names (ACCURACY, BALANCED_ACCURACY).

Output columns: model, dataset, category, n, correct, answered, accuracy, balanced_accuracy, and for
scores also threshold (0.5), accuracy_youden, balanced_accuracy_youden, threshold_youden, auroc.
Category "all" is the whole dataset. Only sample 0 of each image is scored (other samples are for
the figures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from adfm.io import InputError, read_jsonl, write_csv_atomic
from adfm.protocol import expected_answer

ALL = "all"
FIXED_THRESHOLD = 0.5
ACCURACY, BALANCED_ACCURACY = "accuracy", "balanced_accuracy"
COLUMNS = ["model", "dataset", "category", "n", "correct", "answered", ACCURACY, BALANCED_ACCURACY]
SCORE_COLUMNS = ["threshold", "accuracy_youden", "balanced_accuracy_youden", "threshold_youden", "auroc"]


def _frame(records: list[dict]) -> pd.DataFrame:
    if not records:
        raise InputError("no prediction records to score")
    frame = pd.DataFrame.from_records(records)
    if "sample" in frame:
        frame = frame[frame["sample"].fillna(0).astype(int) == 0]
    return frame.reset_index(drop=True)


def balanced_accuracy(correct, labels) -> float:
    """Balanced accuracy (%): the mean over the classes present of the share of that class judged right."""
    correct, labels = np.asarray(correct, dtype=bool), np.asarray(labels, dtype=int)
    if len(labels) == 0:
        raise InputError("balanced accuracy of no images")
    return float(100.0 * np.mean([correct[labels == value].mean() for value in np.unique(labels)]))


def _groups(frame: pd.DataFrame):
    """(model, dataset, category) of each category's rows, then of each dataset's as category "all"."""
    for (model, dataset, category), group in frame.groupby(["model", "dataset", "category"]):
        yield (model, dataset, category), group
    for (model, dataset), group in frame.groupby(["model", "dataset"]):
        yield (model, dataset, ALL), group


def _summarise(frame: pd.DataFrame, value_columns: dict, balanced: dict) -> pd.DataFrame:
    """Counts per category and dataset, with each `balanced` column's balanced accuracy of its
    correctness column."""
    per_category = frame.groupby(["model", "dataset", "category"], as_index=False).agg(**value_columns)
    per_dataset = frame.groupby(["model", "dataset"], as_index=False).agg(**value_columns).assign(category=ALL)
    table = pd.concat([per_category, per_dataset], ignore_index=True)
    for name, correct in balanced.items():
        values = {key: round(balanced_accuracy(group[correct], group["label"]), 2) for key, group in _groups(frame)}
        table[name] = [values[key] for key in zip(table["model"], table["dataset"], table["category"], strict=False)]
    return table


def accuracy_table(records: list[dict]) -> pd.DataFrame:
    """Binary accuracy (%) per (model, dataset, category) and per (model, dataset) as category "all".

    A response without a readable answer counts as wrong: that is what a user of the model gets.
    Records carrying a continuous `score` are scored by `score_table` instead.
    """
    frame = _frame(records)
    if "score" in frame and frame["score"].notna().any():
        return score_table(records)
    frame["correct"] = [
        expected_answer(label) == answer for label, answer in zip(frame["label"], frame["answer"], strict=False)
    ]
    frame["answered"] = frame["answer"].notna()
    table = _summarise(
        frame,
        {"n": ("correct", "size"), "correct": ("correct", "sum"), "answered": ("answered", "sum")},
        {BALANCED_ACCURACY: "correct"},
    )
    table[ACCURACY] = (100.0 * table["correct"] / table["n"]).round(2)
    return table[COLUMNS]


def youden_threshold(scores, labels) -> float:
    """The score threshold t maximising TPR - FPR for the rule "anomalous iff score >= t".

    Candidates are the observed scores; among equally good thresholds the highest is taken. With a
    single class present J is undefined and the fixed threshold 0.5 is returned.
    """
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int)
    positives, negatives = (labels == 1).sum(), (labels == 0).sum()
    if positives == 0 or negatives == 0:
        return FIXED_THRESHOLD
    candidates = np.unique(scores)[::-1]  # descending
    predicted = scores[None, :] >= candidates[:, None]
    tpr = (predicted & (labels == 1)).sum(axis=1) / positives
    fpr = (predicted & (labels == 0)).sum(axis=1) / negatives
    return float(candidates[int(np.argmax(tpr - fpr))])


def auroc(scores, labels) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with ties counted half); None with one class."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int)
    positive, negative = scores[labels == 1], scores[labels == 0]
    if len(positive) == 0 or len(negative) == 0:
        return None
    greater = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positive) * len(negative)))


def score_table(records: list[dict]) -> pd.DataFrame:
    """Accuracy (%) of continuous scores at tau = 0.5 and at the dataset's Youden-J threshold."""
    frame = _frame(records)
    if frame["score"].isna().any():
        missing = frame.loc[frame["score"].isna(), "image_path"].iloc[0]
        raise InputError(f"{missing}: prediction without a score among scored predictions")
    thresholds = {
        key: youden_threshold(group["score"], group["label"]) for key, group in frame.groupby(["model", "dataset"])
    }
    frame["threshold_youden"] = [thresholds[(m, d)] for m, d in zip(frame["model"], frame["dataset"], strict=False)]
    frame["correct"] = (frame["score"] >= FIXED_THRESHOLD).astype(int) == frame["label"].astype(int)
    frame["correct_youden"] = (frame["score"] >= frame["threshold_youden"]).astype(int) == frame["label"].astype(int)
    frame["answered"] = True
    table = _summarise(
        frame,
        {
            "n": ("correct", "size"),
            "correct": ("correct", "sum"),
            "answered": ("answered", "sum"),
            "correct_youden": ("correct_youden", "sum"),
            "threshold_youden": ("threshold_youden", "first"),
        },
        {BALANCED_ACCURACY: "correct", "balanced_accuracy_youden": "correct_youden"},
    )
    table[ACCURACY] = (100.0 * table["correct"] / table["n"]).round(2)
    table["accuracy_youden"] = (100.0 * table["correct_youden"] / table["n"]).round(2)
    table["threshold"] = FIXED_THRESHOLD
    areas = {key: auroc(group["score"], group["label"]) for key, group in _groups(frame)}
    table["auroc"] = [
        None if areas[k] is None else round(100.0 * areas[k], 2)
        for k in zip(table["model"], table["dataset"], table["category"], strict=False)
    ]
    return table[COLUMNS + SCORE_COLUMNS]


def run_score(predictions: list[Path], outs: list[Path]) -> None:
    """Each predictions file's metrics into the --out in the same place (one process for a model's
    datasets: starting Python costs more than scoring a file)."""
    for path, out in zip(predictions, outs, strict=True):
        write_csv_atomic(accuracy_table(read_jsonl(path)), out)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "score",
        help="accuracy per dataset and category from predictions (answers or continuous scores)",
        description="Accuracy of a model's predictions per dataset and category (and overall): yes/no answers "
        "as they are, continuous anomaly scores (the CLIP baselines) through a threshold. Each --predictions "
        "file gets its own --out, in the same order.",
    )
    parser.add_argument(
        "--predictions",
        required=True,
        nargs="+",
        type=Path,
        help="prediction files (JSONL; `adfm predict`, `predict-api`, `predict-clip`)",
    )
    parser.add_argument(
        "--out", required=True, nargs="+", type=Path, help="metrics per dataset and category (CSV), one per file"
    )

    def score(args):
        if len(args.predictions) != len(args.out):
            parser.error(
                f"--predictions names {len(args.predictions)} file(s) and --out {len(args.out)}: give one --out "
                "per predictions file, in the same order"
            )
        run_score(args.predictions, args.out)

    parser.set_defaults(func=score)

"""Figure 3 (kind cases): qualitative examples picked from a run's predictions (see adfm.evaluation.figures)."""

from __future__ import annotations

import json
import re

import pandas as pd

from adfm.evaluation.drawing import (
    GT_COLOR,
    PRED_COLOR,
    Outputs,
    draw_record_boxes,
    printable,
    pyplot,
    save,
    show_image,
)
from adfm.io import InputError, write_csv_atomic
from adfm.protocol import first_block
from adfm.reward_terms import matched_mean_giou
from adfm.settings.evaluation import FigureSettings

HEDGES = re.compile(
    r"\b(might|may|maybe|perhaps|possibl\w*|slight\w*|unclear|uncertain\w*|normal variation|"
    r"not sure|could be|seems?)\b",
    re.IGNORECASE,
)


def _localisation(record: dict) -> float:
    return matched_mean_giou(record.get("boxes") or [], record.get("gt_boxes") or [])


def pick_cases(records: list[dict]) -> list[tuple[str, dict, bool]]:
    """Four (kind, record, found) cases of the kinds Figure 3 shows, each image at most once.

    `found` is False when the model gave no case of that kind and the nearest available is shown.
    """
    greedy = [r for r in records if int(r.get("sample", 0)) == 0]
    if not greedy:
        raise InputError("no predictions to draw")
    used: set[str] = set()
    cases: list[tuple[str, dict, bool]] = []

    def take(kind: str, wanted, fallback, key=None) -> None:
        for pool, found in ((wanted, True), (fallback, False)):
            pool = [r for r in pool if r["image_path"] not in used]
            if key is not None:
                pool = sorted(pool, key=key)
            if pool:
                used.add(pool[0]["image_path"])
                cases.append((kind, pool[0], found))
                return

    anomalous = [r for r in greedy if int(r["label"]) == 1]
    normal = [r for r in greedy if int(r["label"]) == 0]
    right = [r for r in anomalous if r.get("answer") == "yes"]
    take("(a) anomaly detected and localised", right, anomalous, key=lambda r: -_localisation(r))
    take(
        "(b) normal sample analysed",
        [r for r in normal if r.get("answer") == "no"],
        normal,
        key=lambda r: -len(r.get("response") or ""),
    )
    hedged = [r for r in right if HEDGES.search(first_block(r.get("response") or "", "think") or "")]
    take(
        "(c) hesitant think, resolved by rethink",
        hedged,
        anomalous,
        key=lambda r: -len(HEDGES.findall(r.get("response") or "")),
    )
    first = cases[0][1]["category"] if cases else None
    take(
        "(d) irregularity confirmed on closer inspection",
        [r for r in right if r["category"] != first] or right,
        [r for r in anomalous if r["category"] != first] or anomalous,
    )
    for kind, pool in [("(extra) anomalous image", anomalous), ("(extra) normal image", normal), ("(extra)", greedy)]:
        while len(cases) < 4 and any(r["image_path"] not in used for r in pool):
            take(kind, pool, [])
    return cases[:4]


def draw_case(row, kind: str, record: dict, found: bool) -> None:
    """One row of Figure 3: the normal reference, the query with its boxes, the response."""
    label = "anomalous" if int(record["label"]) else "normal"
    verdict = {"yes": "anomalous", "no": "normal"}.get(record.get("answer"), "no answer")
    mark = "correct" if verdict == label else "wrong"
    show_image(row[0], record.get("reference_path") or record["image_path"], "normal reference")
    size = show_image(row[1], record["image_path"], f"query ({record['category']}): {label}")
    draw_record_boxes(row[1], record, size, labels=("truth", "predicted"))
    row[2].axis("off")
    title = kind if found else f"{kind}: no such case, nearest shown"
    row[2].set_title(f"{title}\nanswer: {verdict} ({mark})", fontsize=10, loc="left")
    row[2].text(
        0.0,
        1.0,
        printable(record.get("response") or ""),
        va="top",
        ha="left",
        fontsize=7.5,
        family="monospace",
        transform=row[2].transAxes,
        parse_math=False,
    )


def cases_table(cases: list[tuple[str, dict, bool]]) -> pd.DataFrame:
    """The CSV of Figure 3: the cases drawn, with what the model answered."""
    return pd.DataFrame(
        [
            {
                "case": kind,
                "found": found,
                "image_path": r["image_path"],
                "category": r["category"],
                "label": r["label"],
                "answer": r.get("answer"),
                "boxes": json.dumps(r.get("boxes") or []),
                "gt_boxes": json.dumps(r.get("gt_boxes") or []),
                "response": r.get("response"),
            }
            for kind, r, found in cases
        ]
    )


def figure3(records: list[dict], outputs: Outputs, settings: FigureSettings) -> None:
    plt = pyplot()
    cases = pick_cases(records)
    fig, axes = plt.subplots(
        len(cases), 3, figsize=(13, 3.3 * len(cases)), gridspec_kw={"width_ratios": [1, 1, 2.2]}, squeeze=False
    )
    for (kind, record, found), row in zip(cases, axes, strict=False):
        draw_case(row, kind, record, found)
    handles = [
        plt.Line2D([], [], color=GT_COLOR, lw=2, label="ground truth"),
        plt.Line2D([], [], color=PRED_COLOR, lw=2, label="predicted (<think>)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(f"Figure 3: qualitative examples, {settings.title}", fontsize=12)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    save(fig, outputs)
    write_csv_atomic(cases_table(cases), outputs.csv)

"""The summary's cells: each one's kind (compared, no paper value, not run: see adfm.evaluation.summary),
whether it lies within the tolerance, and why it has no difference, as a letter per reason within its
table, in the order the reasons first appear (the figure and the HTML mark the empty cells with it)."""

from __future__ import annotations

import string

import numpy as np
import pandas as pd

COMPARED, NO_PAPER, NOT_RUN = "compared", "no paper value", "not run"


def classify(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """The cells (`read_table`'s long form) with their kind, whether they lie within `tolerance`
    points of the paper, their reason when they have no difference, and the letter marking it."""
    frame = frame.copy()
    frame["kind"] = np.where(frame["diff"].notna(), COMPARED, np.where(frame["ours"].notna(), NO_PAPER, NOT_RUN))
    frame["within"] = frame["diff"].abs().le(tolerance) & frame["kind"].eq(COMPARED)
    frame["reason"] = np.where(
        frame["kind"].eq(NOT_RUN),
        frame["status"],
        np.where(frame["kind"].eq(NO_PAPER), "run; the paper prints no value here", ""),
    )
    frame["mark"] = ""
    for _, group in frame[frame["reason"] != ""].groupby("table", sort=False):
        letters = dict(zip(dict.fromkeys(group["reason"]), string.ascii_lowercase, strict=False))
        frame.loc[group.index, "mark"] = group["reason"].map(letters)
    return frame


def shown_tables(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """The tables with at least one run cell: those get a row of panels."""
    return [table for _, table in frame.groupby("table", sort=False) if table["ours"].notna().any()]

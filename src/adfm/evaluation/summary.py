"""Summary stage: how close the reproduction came to the paper, at a glance.

    adfm summary --tables results/table1.csv ... --tolerance 2 [--demo-note TEXT]
                 --png results/summary.png --pdf results/summary.pdf --csv results/summary.csv
                 --sentences results/summary.txt --html results/summary.html

Reads the tables `adfm table` writes (one row per cell: ours, paper, diff, status), any subset of
them, and sorts each cell into one of three kinds:
- `compared`: ours and the paper's value both exist; its difference is drawn and counted;
- `no paper value`: ours exists but the paper prints none there (a row the paper lacks, or a blank
  paper cell such as Table 1's GPT-4o-mini datasets, which the paper gives only as an average);
- `not run`: ours is empty; the table's status says why.
The Avg column is a cell like the others, since the paper prints it.

Outputs: a figure (PNG and PDF) with one row of two panels per table that has a run cell: ours
against the paper's value on equal axes, with the diagonal, the band within `tolerance` points
shaded and a marker per table row; and the differences laid out as the paper's table, each cell
without a difference left empty, hatched and lettered, the letters explained below the panel. The
CSV holds every cell of every table as drawn (kind, within tolerance, letter, reason). The
sentences, one per table (how many compared cells lie within the tolerance, the largest gap, how
many were not run), follow the demo's warning when the numbers come from the demo. The HTML
fragment, which the report's front page shows, holds the sentences, the figure and each table's
differences as an HTML table whose empty cells give their reason on hover.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from adfm.evaluation.drawing import Outputs, save
from adfm.evaluation.summary_cells import COMPARED, NO_PAPER, NOT_RUN, classify
from adfm.evaluation.summary_figure import figure
from adfm.evaluation.summary_html import html_summary
from adfm.evaluation.table_layout import table_title
from adfm.io import InputError, write_csv_atomic, write_text_atomic

NEEDED = ("column", "ours", "paper", "diff", "status")


def _numbers(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    try:
        return pd.to_numeric(frame[column].replace("", np.nan))
    except ValueError as error:
        raise InputError(f"{path}: column {column!r} is not numeric ({error})") from None


def row_labels(frame: pd.DataFrame) -> pd.Series:
    """Each cell's row in words: its row keys (the columns before `column`), without the group
    unless two rows differ only by it."""
    keys = list(frame.columns[: list(frame.columns).index("column")])

    def words(columns: list[str]) -> pd.Series:
        return frame[columns].apply(lambda row: " ".join(value for value in row if value), axis=1)

    labels = words([key for key in keys if key != "group"] or keys)
    rows = frame.drop_duplicates(keys).index
    return labels if not labels[rows].duplicated().any() else words(keys)


def read_table(path: Path) -> pd.DataFrame:
    """One table's cells in long form: table, row (its keys in words, the group left out where
    other keys name the row), column, ours, paper, diff, status."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: not a table of `adfm table` ({error})") from None
    missing = [column for column in NEEDED if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: not a table of `adfm table`: no column {', '.join(missing)}")
    return pd.DataFrame(
        {
            "table": table_title(path),
            "row": row_labels(frame),
            "column": frame["column"],
            **{name: _numbers(frame, name, path) for name in ("ours", "paper", "diff")},
            "status": frame["status"],
        }
    )


def cells(paths: list[Path], tolerance: float) -> pd.DataFrame:
    """Every cell of the tables, sorted into kinds (adfm.evaluation.summary_cells.classify)."""
    return classify(pd.concat([read_table(path) for path in paths], ignore_index=True), tolerance)


def sentence(table: pd.DataFrame, tolerance: float) -> str:
    """One table at a glance: compared cells within the tolerance, the largest gap, what was not run."""
    name = table["table"].iloc[0]
    counts = table["kind"].value_counts()
    rest = [
        f"{counts[kind]} {'cell' if counts[kind] == 1 else 'cells'} {words}"
        for kind, words in ((NOT_RUN, "not run"), (NO_PAPER, "without a paper value"))
        if counts.get(kind)
    ]
    compared = table[table["kind"] == COMPARED]
    if compared.empty:
        return f"{name}: no run cell beside a paper value ({', '.join(rest) or 'no cells'})."
    gap = compared.loc[compared["diff"].abs().idxmax()]
    text = (
        f"{name}: {int(compared['within'].sum())} of {len(compared)} run cells within ±{tolerance:g} points "
        f"of the paper; largest gap: {gap['row']}, {gap['column']}: ours {gap['ours']:.2f}, "
        f"paper {gap['paper']:.2f} ({gap['diff']:+.2f})"
    )
    return text + (f"; {', '.join(rest)}." if rest else ".")


def sentences(frame: pd.DataFrame, tolerance: float) -> list[str]:
    return [sentence(table, tolerance) for _, table in frame.groupby("table", sort=False)]


def run_summary(args: argparse.Namespace) -> None:
    frame = cells(args.tables, args.tolerance)
    lines = sentences(frame, args.tolerance)
    save(figure(frame, args.tolerance, args.demo_note), Outputs(args.png, args.pdf, args.csv))
    write_csv_atomic(frame.drop(columns="status"), args.csv)
    write_text_atomic(args.sentences, "\n".join([args.demo_note, *lines] if args.demo_note else lines) + "\n")
    write_text_atomic(args.html, html_summary(frame, lines, args.demo_note, args.png, args.tolerance))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "summary",
        help="how close the tables came to the paper: figure, sentences, CSV",
        description="Reads the tables of `adfm table` (any subset) and draws, per table with a run cell, ours "
        "against the paper's value and the differences in the paper's layout; writes one sentence "
        "per table and the CSV of what is drawn.",
    )
    parser.add_argument("--tables", nargs="+", required=True, type=Path, help="`adfm table` outputs (CSV)")
    parser.add_argument(
        "--tolerance",
        type=float,
        required=True,
        help="points either side of the paper's value that count as close (config summary.tolerance)",
    )
    parser.add_argument("--demo-note", default="", help="the demo's warning, heading the sentences (empty: none)")
    for name, what in [
        ("png", "the figure (PNG)"),
        ("pdf", "the figure (PDF)"),
        ("csv", "every cell as drawn"),
        ("sentences", "one sentence per table (text)"),
        ("html", "the report's front-page block"),
    ]:
        parser.add_argument(f"--{name}", required=True, type=Path, help=what)
    parser.set_defaults(func=run_summary)

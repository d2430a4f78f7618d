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
import base64
import html
import re
import string
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from adfm.io import InputError, atomic_path, write_csv_atomic, write_text_atomic

COMPARED, NO_PAPER, NOT_RUN = "compared", "no paper value", "not run"
NEEDED = ("column", "ours", "paper", "diff", "status")
MARKERS = "osD^vP*X<>hp"
CMAP = "RdBu"  # red: below the paper, blue: above
STYLE = (
    ".adfm-summary table {border-collapse: collapse; margin: 1em 0; font-size: small} "
    ".adfm-summary td, .adfm-summary th {border: 1px solid #ccc; padding: 2px 6px; text-align: right}"
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def table_title(path: Path) -> str:
    """results/table2.csv -> "Table 2" (any other name as it is)."""
    return re.sub(r"^table(\d+)$", r"Table \1", path.stem)


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
    """Every cell of the tables with its kind, whether it lies within `tolerance` points of the
    paper, its reason when it has no difference, and the letter marking that reason in its table."""
    frame = pd.concat([read_table(path) for path in paths], ignore_index=True)
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


def shown_tables(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """The tables with at least one run cell: those get a row of panels."""
    return [table for _, table in frame.groupby("table", sort=False) if table["ours"].notna().any()]


def _limits(frame: pd.DataFrame, tolerance: float) -> tuple[float, float]:
    values = pd.concat([frame["ours"], frame["paper"]]).dropna()
    return max(0.0, np.floor(values.min() - 2 * tolerance)), min(100.0, np.ceil(values.max() + 2 * tolerance))


def scatter(ax, table: pd.DataFrame, tolerance: float) -> None:
    """Ours against the paper's value, one marker per table row, on equal axes with the diagonal
    and the band within the tolerance shaded."""
    compared = table[table["kind"] == COMPARED]
    low, high = _limits(compared, tolerance) if not compared.empty else (0.0, 100.0)
    edge = np.array([low, high])
    ax.fill_between(edge, edge - tolerance, edge + tolerance, color="0.85", label=f"within ±{tolerance:g} points")
    ax.plot(edge, edge, color="0.4", linewidth=0.8)
    for index, (row, points) in enumerate(compared.groupby("row", sort=False)):
        ax.scatter(
            points["paper"],
            points["ours"],
            marker=MARKERS[index % len(MARKERS)],
            s=28,
            label=row,
            color=f"C{index % 10}",
            zorder=3,
            clip_on=False,
        )  # a 0 or 100 shown whole
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("paper")
    ax.set_ylabel("ours")
    ax.set_title(f"{table['table'].iloc[0]}: ours against the paper", fontsize=10)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(0, -0.15), ncol=2, frameon=False)


def grid(table: pd.DataFrame, value: str) -> pd.DataFrame:
    """A column of the cells laid out as the paper's table: a row per table row, a column per column."""
    rows, columns = list(dict.fromkeys(table["row"])), list(dict.fromkeys(table["column"]))
    return table.pivot(index="row", columns="column", values=value).reindex(index=rows, columns=columns)


def heatmap(ax, table: pd.DataFrame, tolerance: float):
    """The differences as the paper's table; a cell without one is hatched and lettered."""
    from matplotlib.patches import Rectangle

    diffs, marks = grid(table, "diff"), grid(table, "mark")
    limit = max(tolerance, float(np.nanmax(np.abs(diffs.to_numpy(dtype=float)), initial=0.0)))
    image = ax.imshow(
        np.ma.masked_invalid(diffs.to_numpy(dtype=float)), cmap=CMAP, vmin=-limit, vmax=limit, aspect="auto"
    )
    for (y, x), diff in np.ndenumerate(diffs.to_numpy(dtype=float)):
        if np.isnan(diff):
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.75"))
            ax.text(x, y, marks.iat[y, x], ha="center", va="center", fontsize=7)
        else:
            ax.text(
                x,
                y,
                f"{diff:+.1f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if abs(diff) > 0.6 * limit else "black",
            )
    ax.set_xticks(range(diffs.shape[1]), diffs.columns, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(diffs.shape[0]), diffs.index, fontsize=7)
    ax.set_title(f"{table['table'].iloc[0]}: ours - paper (points)", fontsize=10)
    reasons = table[table["mark"] != ""].drop_duplicates("mark")
    legend = "\n".join(f"{item.mark}: {item.reason}" for item in reasons.itertuples())
    ax.text(0, -0.25, legend, transform=ax.transAxes, va="top", fontsize=6, wrap=True)
    return image


def figure(frame: pd.DataFrame, tolerance: float, demo_note: str = ""):
    """A row of two panels (scatter, differences) per table with a run cell, under the demo's
    warning, so that the image alone cannot pass for the paper's model."""
    plt = _pyplot()
    tables = shown_tables(frame)
    if not tables:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "No cell of any table was run.", ha="center", va="center")
    else:
        fig, axes = plt.subplots(
            len(tables), 2, figsize=(13, 6.5 * len(tables)), squeeze=False, gridspec_kw={"width_ratios": [1, 1.4]}
        )
        for (left, right), table in zip(axes, tables, strict=False):
            scatter(left, table, tolerance)
            fig.colorbar(heatmap(right, table, tolerance), ax=right, shrink=0.7)
        fig.subplots_adjust(hspace=0.7, wspace=0.35)
    if demo_note:
        fig.suptitle(textwrap.fill(demo_note, 140), fontsize=9, color="firebrick")
    return fig


def _html_cell(item: pd.Series, limit: float, cmap) -> str:
    if item["kind"] != COMPARED:
        return f'<td title="{html.escape(item["reason"])}" style="color:#777">{html.escape(item["mark"])}</td>'
    from matplotlib.colors import to_hex

    colour = to_hex(cmap(0.5 + item["diff"] / (2 * limit)))
    hover = f"ours {item['ours']:.2f}, paper {item['paper']:.2f}"
    text = "white" if abs(item["diff"]) > 0.6 * limit else "black"  # as in the figure: readable on dark cells
    return f'<td title="{hover}" style="background:{colour};color:{text}">{item["diff"]:+.2f}</td>'


def html_grid(table: pd.DataFrame, tolerance: float) -> str:
    """A table's differences as an HTML table in the paper's layout; hover gives the values or the reason."""
    cmap = _pyplot().get_cmap(CMAP)
    limit = max(tolerance, float(table["diff"].abs().max()) if table["diff"].notna().any() else 0.0)
    columns = list(dict.fromkeys(table["column"]))
    lines = [
        f"<table><caption>{html.escape(table['table'].iloc[0])}: ours - paper (points)</caption>",
        "<tr><th></th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>",
    ]
    for row, items in table.groupby("row", sort=False):
        by_column = items.set_index("column")
        lines.append(
            f"<tr><th>{html.escape(row)}</th>"
            + "".join(_html_cell(by_column.loc[c], limit, cmap) for c in columns)
            + "</tr>"
        )
    return "\n".join([*lines, "</table>"])


def html_summary(frame: pd.DataFrame, lines: list[str], demo_note: str, png: Path, tolerance: float) -> str:
    """The report's front page: the demo's warning, the sentences, the figure, then each table's differences."""
    image = base64.b64encode(png.read_bytes()).decode("ascii")
    warning = f"<p><strong>{html.escape(demo_note)}</strong></p>\n" if demo_note else ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    grids = "\n".join(html_grid(table, tolerance) for table in shown_tables(frame))
    return (
        f'<div class="adfm-summary">\n<style>{STYLE}</style>\n{warning}<ul>{items}</ul>\n'
        f'<img alt="ours against the paper" style="max-width:100%" src="data:image/png;base64,{image}">\n'
        f"<p>Empty cells were not run or have no paper value: hover over one for why.</p>\n{grids}\n</div>\n"
    )


def save_figure(fig, png: Path, pdf: Path) -> None:
    for path in (png, pdf):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=150, bbox_inches="tight")
    _pyplot().close(fig)


def run_summary(args: argparse.Namespace) -> None:
    frame = cells(args.tables, args.tolerance)
    lines = sentences(frame, args.tolerance)
    save_figure(figure(frame, args.tolerance, args.demo_note), args.png, args.pdf)
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

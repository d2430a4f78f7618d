"""The Markdown and HTML copies of a regenerated table: the paper's layout (a row per model, a
column per dataset or question type, "ours (paper)" cells, the row's status) and notes saying per
row how ours and (where the config says) the paper's number were obtained, since a difference means
something only between like protocols."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from adfm.settings.evaluation import TableRow, TableSettings

AVERAGE = "Avg"
METRIC_WORDS = {
    "accuracy": "plain accuracy",
    "balanced_accuracy": "balanced accuracy",
    "accuracy_youden": "plain accuracy at the Youden-J threshold",
    "balanced_accuracy_youden": "balanced accuracy at the Youden-J threshold",
}
YOUDEN_METRICS = ("accuracy_youden", "balanced_accuracy_youden")
YOUDEN_CAVEAT = (
    "the Youden-J threshold is chosen on the very images it then classifies (an oracle threshold, an upper bound)"
)
FEW_IMAGES = 100  # below it, one image moves an accuracy by more than a point
ROWS_WORDS = {
    "test": "the split's held-out test rows",
    "all": "every split row of each dataset (the full test split under the multi-domain protocol)",
}


def table_title(path: Path) -> str:
    """results/table2.csv -> "Table 2" (any other name as it is)."""
    return re.sub(r"^table(\d+)$", r"Table \1", path.stem)


def row_protocol(entry: TableRow, select: str) -> str:
    """How a row's "ours" is obtained, in words: prompt, metric and images."""
    metric = METRIC_WORDS[entry.metric]
    if select == "question_type":
        return f"MMAD's letter prompt and questions; {metric} per question type, mean over MMAD's source datasets"
    if entry.prompt == "mmad":
        return (
            f"MMAD's letter prompt, its Anomaly Detection question; {metric} per MMAD source dataset (MMAD's protocol)"
        )
    asked = f"our {entry.reasoning} prompt" if entry.reasoning else "continuous anomaly score"
    return f"{asked}; {metric}; {ROWS_WORDS[entry.eval_rows]}"


def row_notes(spec: TableSettings, keys: list[str], table: pd.DataFrame | None = None) -> list[str]:
    """Per configured row, how ours was obtained and how the paper's number was; a Youden-J row
    says its threshold is fitted on the images it classifies, and how few they were."""
    lines = []
    for entry in spec.rows:
        name = " ".join(str(entry.match[k]) for k in keys if k in entry.match)
        if entry.run is None:  # no run fills it (config not_run): its reason is all there is to say
            lines.append(f"{name}: {entry.skip}.")
            continue
        paper = f" Paper: {entry.paper_protocol}" if entry.paper_protocol else ""
        caveat = _youden_caveat(table, entry, keys) if entry.metric in YOUDEN_METRICS else ""
        lines.append(f"{name} ({entry.run}): ours: {row_protocol(entry, spec.select)}.{paper}{caveat}")
    return lines


def _youden_caveat(table: pd.DataFrame | None, entry: TableRow, keys: list[str]) -> str:
    """The Youden-J row's caveat, with how many images its threshold was fitted on."""
    caveat = f" Caveat: {YOUDEN_CAVEAT}"
    counts = _row_images(table, entry, keys) if table is not None else []
    if counts:
        caveat += (
            f"; here {min(counts)} to {max(counts)} images per dataset"
            if min(counts) != max(counts)
            else f"; here {counts[0]} images per dataset"
        )
        caveat += ", too few for its accuracy (even 100.00) to say much" if min(counts) < FEW_IMAGES else ""
    return caveat + "."


def _row_images(table: pd.DataFrame, entry: TableRow, keys: list[str]) -> list[int]:
    """The image counts of a configured row's dataset cells (not its average)."""
    mask = table["column"] != AVERAGE
    for key, value in entry.match.items():
        if key in table.columns:
            mask &= table[key].astype(str) == str(value)
    return sorted(int(n) for n in table.loc[mask, "images"].dropna())


def notes(spec: TableSettings, keys: list[str], table: pd.DataFrame | None = None) -> str:
    """Markdown notes: per configured row, how ours was obtained and how the paper's number was."""
    lines = row_notes(spec, keys, table)
    return "Protocol of each row:\n\n" + "\n".join(f"- {line}" for line in lines) + "\n" if lines else ""


def _cell_text(item) -> str:
    ours = "" if pd.isna(item.ours) else f"{item.ours:.2f}"
    paper = "" if pd.isna(item.paper) else f"{item.paper:.2f}"
    return f"{ours or '–'} ({paper or '–'})"


def _row_status(group: pd.DataFrame, demo: bool) -> str:
    problems = [s for s in dict.fromkeys(group["status"]) if s != "ok"]
    if not problems:
        return "ok (demo numbers)" if demo else "ok"
    return problems[0] if len(problems) == 1 else "; ".join(problems)


def wide(table: pd.DataFrame, keys: list[str], demo: bool = False) -> pd.DataFrame:
    """The table as the paper lays it out: a row per model, a column per dataset (or question
    type) with "ours (paper)" cells, and the row's status."""
    row_keys = [k for k in ["group", *keys] if k in table.columns]
    columns = list(dict.fromkeys(table["column"]))
    rows = []
    for key, group in table.groupby(row_keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        values = dict(zip(group["column"], (_cell_text(item) for item in group.itertuples()), strict=False))
        rows.append(
            {
                **dict(zip(row_keys, map(str, key), strict=False)),
                **{c: values[c] for c in columns},
                "status": _row_status(group, demo),
            }
        )
    return pd.DataFrame(rows, columns=[*row_keys, *columns, "status"])


CELLS_NOTE = "Cells: ours (paper); – marks a value not run or not reported."


def to_markdown(table: pd.DataFrame, keys: list[str], spec: TableSettings | None = None) -> str:
    """The table in the paper's shape: one row per model, cells "ours (paper)", and the row's status;
    then, given the spec, the notes on each row's protocol (headed by the demo's warning, if any)."""
    demo = spec.demo if spec is not None else None
    shaped = wide(table, keys, bool(demo))
    lines = ["| " + " | ".join(shaped.columns) + " |", "|" + "---|" * len(shaped.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in shaped.itertuples(index=False)]
    text = (f"**{demo}**\n\n" if demo else "") + "\n".join(lines) + f"\n\n{CELLS_NOTE}\n"
    return text + ("\n" + notes(spec, keys, table) if spec is not None and spec.rows else "")


def to_html(table: pd.DataFrame, keys: list[str], spec: TableSettings) -> str:
    """The report's copy (snakemake --report shows it inline): the Markdown's content as HTML, the
    table wide as in the paper."""
    parts = [f"<p><strong>{html.escape(spec.demo)}</strong></p>"] if spec.demo else []
    parts.append(wide(table, keys, bool(spec.demo)).to_html(index=False, escape=True))
    parts.append(f"<p>{html.escape(CELLS_NOTE)} The CSV beside this file has each cell's difference and status.</p>")
    lines = row_notes(spec, keys, table)
    if lines:
        parts.append(
            "<p>Protocol of each row:</p>\n<ul>\n"
            + "\n".join(f"<li>{html.escape(line)}</li>" for line in lines)
            + "\n</ul>"
        )
    return "\n".join(parts) + "\n"

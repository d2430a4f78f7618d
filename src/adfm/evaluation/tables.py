"""Tables stage: the paper's tables regenerated from our metrics, each cell beside the paper's value.

Output (CSV, long format, one row per cell): the paper's row keys, `column`, `ours`, `paper`,
`diff` (ours - paper), `status` ("ok", or why "ours" is empty), `protocol` (how "ours" was
obtained: prompt, metric, images), `images` (how many images "ours" counts) and `demo` (true when
the numbers come from the demo's tiny random model on generated data). Rows the config does not run
keep the paper's value and an empty "ours": never an invented number; a configured row the paper
lacks (a new ablation) is added below the paper's rows with an empty paper cell. Markdown and HTML
copies show the table in the paper's shape (a row per model, a column per dataset) with
"ours (paper)" cells, and notes saying per row how ours and (where the config says) the paper's
number were obtained, since a difference means something only between like protocols.

A failed table job loses its outputs (Snakemake deletes them), so each successful one also keeps a
copy of its three files as `<table>.last-good.{csv,md,html}`, which a later failure leaves alone.

The spec (a table's config entry) names the paper CSV, its row keys, the paper columns and what
fills them, and the rows we reproduce:
- `select: dataset` (default): a column is a dataset; the value is the metric of the row's run on
  it (category "all" of `adfm score`); `select: question_type`: a column is an MMAD question type;
  the value is the row's run's accuracy averaged over MMAD's source datasets (`adfm score-mmad`,
  dataset "all");
- a row's `prompt` (select: dataset only): `reasoning` (default), the run's own predictions on the
  split (our reasoning prompt, `adfm score`); `mmad`, the run's answers to MMAD's Anomaly Detection
  question ("Is there any defect in the object?", MMAD's letter prompt, `adfm score-mmad`) on the
  MMAD source dataset `mmad_sources` names for the column: the protocol of the paper's GPT-4o and
  GPT-4o-mini numbers (†, from MMAD);
- a row's `metric` picks the metrics column: `accuracy` (plain), `balanced_accuracy`, and for the
  CLIP baselines' continuous scores `accuracy_youden` / `balanced_accuracy_youden` (at the
  threshold maximising Youden's J); `skip` (set by the workflow, e.g. an API model without its key)
  keeps the row at the paper's value with that status; `paper_protocol` says how the paper's number
  was obtained (for the notes); `eval_rows` and `reasoning` (set by the workflow from the run) say
  which split rows and which prompt ours used;
- `demo` (set by the workflow): the sentence saying the numbers come from the demo, heading the
  Markdown and HTML copies.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from adfm.evaluation.score import ACCURACY, ALL
from adfm.evaluation.table_layout import AVERAGE, row_protocol, to_html, to_markdown
from adfm.io import InputError, write_csv_atomic, write_text_atomic
from adfm.paper import matching_rows, row_problems
from adfm.paper import read as read_paper
from adfm.settings.evaluation import TableRow, TableSettings

MMAD_ANOMALY_QUESTION = "Anomaly Detection"  # MMAD's question type of "Is there any defect in the object?"


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def _with_new_rows(paper: pd.DataFrame, spec: TableSettings) -> tuple[pd.DataFrame, dict[int, TableRow]]:
    """The paper table with a row appended for each configured row it lacks (its keys from `match`,
    every other cell empty), and the configured entry of each table row by position."""
    problems = row_problems(spec.to_dict())
    if problems:
        raise InputError(f"table {spec.paper}: " + "; ".join(problems))
    entries, added = {}, []
    for entry in spec.rows:
        hit = matching_rows(paper, {key: str(value) for key, value in entry.match.items()})
        if hit.any():
            entries[paper.index[hit][0]] = entry
        else:
            entries[len(paper) + len(added)] = entry
            added.append({column: str(entry.match.get(column, "")) for column in paper.columns})
    table = pd.concat([paper, pd.DataFrame(added, columns=paper.columns)], ignore_index=True) if added else paper
    return table, entries


def _by_key(metrics: pd.DataFrame, where: str, value: str, key: str) -> pd.DataFrame:
    return metrics[metrics[where] == value].rename(columns={key: "key"}).set_index(["model", "key"])


def _views(metrics: pd.DataFrame, mmad_metrics: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """The metrics indexed by (run, column key), one view per way a row is filled."""
    if mmad_metrics is None:
        mmad_metrics = pd.DataFrame(columns=["model", "dataset", "category", ACCURACY])
    return {
        "split": _by_key(metrics, "category", ALL, "dataset"),  # a dataset's value over its categories
        "type": _by_key(mmad_metrics, "dataset", ALL, "category"),  # a question type's, over MMAD's sources
        "anomaly": _by_key(mmad_metrics, "category", MMAD_ANOMALY_QUESTION, "dataset"),
    }  # per MMAD source


def _ordered_columns(paper: pd.DataFrame, spec: TableSettings) -> list[str]:
    """The paper's column order, whatever the order of the config's mapping (settings reach the job
    as JSON with sorted keys)."""
    columns = [column for column in paper.columns if column in spec.columns]
    return columns + [column for column in spec.columns if column not in columns]


def _column_key(entry: TableRow | None, spec: TableSettings, column: str) -> str:
    """What fills a column in the metrics: its dataset or question type, or for a prompt-mmad row
    its MMAD source dataset."""
    if entry is None or entry.prompt != "mmad":
        return spec.columns[column]
    if column not in spec.mmad_sources:
        raise InputError(
            f"table row {entry.match}: prompt mmad needs the table's mmad_sources "
            f"to name column {column!r}'s MMAD source dataset"
        )
    return spec.mmad_sources[column]


def _cell_value(entry: TableRow | None, key: str, view: pd.DataFrame) -> tuple[float | None, str, int | None]:
    """(ours, status, images) of one cell: the row's run's metric on `key`, or why there is none."""
    if entry is None:
        return None, "not run", None
    if entry.skip:
        return None, entry.skip, None
    if (entry.run, key) not in view.index:
        return None, f"not run: no {key} predictions", None
    value = view.loc[(entry.run, key)]
    value = value.iloc[0] if isinstance(value, pd.DataFrame) else value
    if entry.metric not in value.index or pd.isna(value[entry.metric]) or value[entry.metric] == "":
        where = value.get("path", "its metrics")
        raise InputError(f"table row {entry.match}: no {entry.metric!r} in {where} ({entry.run} on {key})")
    return float(value[entry.metric]), "ok", _images(value)


def _row_average(
    entry: TableRow | None, values: list, images: list, select: str
) -> tuple[float | None, str, int | None]:
    """(ours, status, images) of a row's average cell: the mean of its cells when every one ran."""
    if entry is None or entry.skip:
        return None, (entry.skip if entry is not None else None) or "not run", None
    ran = [v for v in values if v is not None]
    if len(ran) < len(values):
        noun = "datasets" if select == "dataset" else "question types"
        return None, f"not run: {len(values) - len(ran)} of {len(values)} {noun} missing", None
    return round(sum(ran) / len(ran), 2), "ok", sum(images) if None not in images else None


def _row_view(entry: TableRow | None, select: str, views: dict[str, pd.DataFrame]) -> pd.DataFrame:
    if select == "question_type":
        return views["type"]
    return views["anomaly" if entry is not None and entry.prompt == "mmad" else "split"]


def build_table(spec: TableSettings, metrics: pd.DataFrame, mmad_metrics: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long-format comparison table: per paper row (and configured row the paper lacks), a cell per
    column and their average. metrics: rows of `adfm score` output, mmad_metrics of `adfm score-mmad`
    (model = run name)."""
    paper, entries = _with_new_rows(read_paper(spec.paper), spec)
    columns = _ordered_columns(paper, spec)
    views = _views(metrics, mmad_metrics)
    records = []
    for position, row in paper.iterrows():
        entry = entries.get(position)
        protocol = row_protocol(entry, spec.select) if entry is not None and entry.run is not None else ""
        view = _row_view(entry, spec.select, views)
        cells = [_cell_value(entry, _column_key(entry, spec, column), view) for column in columns]
        cells.append(_row_average(entry, [c[0] for c in cells], [c[2] for c in cells], spec.select))
        records += [
            _cell(row, spec.keys, column, ours, status, protocol, images, bool(spec.demo))
            for column, (ours, status, images) in zip([*columns, AVERAGE], cells, strict=False)
        ]
    return pd.DataFrame.from_records(records)


def _images(value: pd.Series) -> int | None:
    """The number of images behind a metrics row (`n`), when it says."""
    count = value.get("n", "")
    return None if count in ("", None) or pd.isna(count) else int(float(count))


def _cell(
    row: pd.Series,
    keys: list[str],
    column: str,
    ours: float | None,
    status: str,
    protocol: str,
    images: int | None,
    demo: bool,
) -> dict:
    paper_value = _number(row.get(column, ""))
    diff = round(ours - paper_value, 2) if ours is not None and paper_value is not None else None
    record = {key: row[key] for key in ["group", *keys] if key in row}
    return {
        **record,
        "column": column,
        "ours": ours,
        "paper": paper_value,
        "diff": diff,
        "status": status,
        "protocol": protocol,
        "images": images,
        "demo": demo,
    }


def read_metrics(paths: list[Path]) -> pd.DataFrame:
    """Metrics files concatenated, each row with the `path` it came from (named in errors)."""
    return pd.concat(
        [pd.read_csv(p, keep_default_na=False).assign(path=str(p)) for p in paths]
        or [pd.DataFrame(columns=["model", "dataset", "category", ACCURACY, "path"])],
        ignore_index=True,
    )


def last_good(out: Path) -> Path:
    """Where the last complete copy of one of a table's files is kept: results/table1.csv ->
    results/table1.last-good.csv (likewise .md, .html)."""
    return out.with_name(f"{out.stem}.last-good{out.suffix}")


def run_table(
    spec: TableSettings, metrics_paths: list[Path], mmad_paths: list[Path], csv: Path, markdown: Path, html_path: Path
) -> None:
    try:
        table = build_table(spec, read_metrics(metrics_paths), read_metrics(mmad_paths))
    except InputError as error:
        if last_good(markdown).is_file():
            raise InputError(f"{error} (the last good table is kept in {last_good(markdown)} and beside it)") from None
        raise
    if table["status"].eq("ok").sum() == 0:
        logging.getLogger(__name__).warning("%s: no cell of ours filled", csv)
    write_csv_atomic(table, csv)
    write_text_atomic(markdown, to_markdown(table, spec.keys, spec))
    write_text_atomic(html_path, to_html(table, spec.keys, spec))
    # copied only once all three are written, so the last-good files are always one complete table
    for path in (csv, markdown, html_path):
        write_text_atomic(last_good(path), path.read_text())


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "table",
        help="a paper table regenerated from metrics, beside the paper",
        description="One of the paper's tables regenerated from the metrics of the runs it shows, each of our "
        "values beside the paper's, with a status per row (ok, or why it was not run). Writes CSV, "
        "and Markdown and HTML copies in the paper's layout.",
    )
    parser.add_argument("--settings", required=True, type=TableSettings.argument, help=TableSettings.describe())
    parser.add_argument("--metrics", nargs="*", type=Path, default=[], help="`adfm score` outputs")
    parser.add_argument("--mmad-metrics", nargs="*", type=Path, default=[], help="`adfm score-mmad` outputs")
    parser.add_argument("--csv", required=True, type=Path, help="the table, one row per cell (CSV)")
    parser.add_argument("--markdown", required=True, type=Path, help="the table in the paper's layout (Markdown)")
    parser.add_argument("--html", required=True, type=Path, help="the same for the report (HTML)")
    parser.set_defaults(func=lambda a: run_table(a.settings, a.metrics, a.mmad_metrics, a.csv, a.markdown, a.html))

"""Tables stage: the paper's tables regenerated from our metrics, each cell beside the paper's value.

Output (CSV, long format, one row per cell): the paper's row keys, `column`, `ours`, `paper`,
`diff` (ours - paper) and `status` ("ok", or why "ours" is empty). Rows the config does not run
keep the paper's value and an empty "ours": never an invented number. A Markdown copy shows the
table in the paper's shape with "ours (paper)" cells.

The spec (a table's config entry) names the paper CSV, its row keys, the paper columns and what
fills them, and the rows we reproduce:
- `select: dataset` (default): a column is a dataset; the value is the metric of the row's run on
  it (category "all" of `adfm score`); `select: question_type`: a column is an MMAD question type;
  the value is the row's run's accuracy averaged over MMAD's source datasets (`adfm score-mmad`,
  dataset "all");
- a row's `metric` picks the metrics column (`accuracy`, or `accuracy_youden` for the Youden-J rows
  of the CLIP baselines); `skip` (set by the workflow, e.g. an API model without its key) keeps the
  row at the paper's value with that status.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import pandas as pd

from adfm.io import InputError, write_csv_atomic, write_text_atomic
from adfm.score import ALL

AVERAGE = "Avg"


def paper_table(name: str) -> pd.DataFrame:
    with resources.files("adfm").joinpath("paper", name).open() as handle:
        return pd.read_csv(handle, keep_default_na=False, dtype=str)


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def build_table(spec: dict, metrics: pd.DataFrame) -> pd.DataFrame:
    """Long-format comparison table.

    spec: {"paper": <csv name>, "keys": [paper row key columns], "columns": {paper column: dataset or question
           type}, "select": "dataset" | "question_type", "rows": [{"match": {key: value}, "run": <run name>,
           "metric": "accuracy", "skip": <status>}]}
    metrics: rows of `adfm score` / `adfm score-mmad` output (model = run name).
    """
    paper = paper_table(spec["paper"])
    select = spec.get("select", "dataset")
    if select == "question_type":
        chosen = metrics[metrics["dataset"] == ALL].rename(columns={"category": "key"})
    elif select == "dataset":
        chosen = metrics[metrics["category"] == ALL].rename(columns={"dataset": "key"})
    else:
        raise InputError(f"table select {select!r}: expected dataset or question_type")
    chosen = chosen.set_index(["model", "key"])
    runs = {}
    for entry in spec["rows"]:
        hit = (paper[list(entry["match"])] == pd.Series(entry["match"])).all(axis=1)
        if hit.sum() != 1:
            raise InputError(f"table row {entry['match']} matches {hit.sum()} rows of {spec['paper']}")
        runs[paper.index[hit][0]] = entry
    records = []
    for position, row in paper.iterrows():
        entry = runs.get(position)
        run = entry["run"] if entry is not None else None
        metric = entry.get("metric", "accuracy") if entry is not None else "accuracy"
        skip = entry.get("skip") if entry is not None else None
        ours_values = []
        for column, key in spec["columns"].items():
            ours, status = None, "not run"
            if skip:
                status = skip
            elif run is not None and (run, key) in chosen.index:
                value = chosen.loc[(run, key)]
                value = value.iloc[0] if isinstance(value, pd.DataFrame) else value
                if metric not in value.index or pd.isna(value[metric]) or value[metric] == "":
                    raise InputError(f"table row {entry['match']}: no {metric!r} in the metrics of {run} on {key}")
                ours, status = float(value[metric]), "ok"
            elif run is not None:
                status = f"not run: no {key} predictions"
            ours_values.append(ours)
            records.append(_cell(row, spec["keys"], column, ours, status))
        ours_avg, status = None, skip or "not run"
        if run is not None and not skip:
            ran = [v for v in ours_values if v is not None]
            if len(ran) == len(ours_values):
                ours_avg, status = round(sum(ran) / len(ran), 2), "ok"
            else:
                noun = "datasets" if select == "dataset" else "question types"
                status = f"not run: {len(ours_values) - len(ran)} of {len(ours_values)} {noun} missing"
        records.append(_cell(row, spec["keys"], AVERAGE, ours_avg, status))
    return pd.DataFrame.from_records(records)


def _cell(row: pd.Series, keys: list[str], column: str, ours: float | None, status: str) -> dict:
    paper_value = _number(row.get(column, ""))
    diff = round(ours - paper_value, 2) if ours is not None and paper_value is not None else None
    record = {key: row[key] for key in ["group", *keys] if key in row}
    return {**record, "column": column, "ours": ours, "paper": paper_value, "diff": diff, "status": status}


def to_markdown(table: pd.DataFrame, keys: list[str]) -> str:
    """The table in the paper's shape: one row per model, cells "ours (paper)", and the row's status."""
    def cell(item) -> str:
        ours = "" if pd.isna(item.ours) else f"{item.ours:.2f}"
        paper = "" if pd.isna(item.paper) else f"{item.paper:.2f}"
        return f"{ours or '–'} ({paper or '–'})"

    def status(group) -> str:
        problems = [s for s in dict.fromkeys(group["status"]) if s != "ok"]
        return "ok" if not problems else problems[0] if len(problems) == 1 else "; ".join(problems)

    row_keys = [k for k in ["group", *keys] if k in table.columns]
    columns = list(dict.fromkeys(table["column"]))
    header = row_keys + columns + ["status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, group in table.groupby(row_keys, sort=False):
        values = dict(zip(group["column"], (cell(item) for item in group.itertuples())))
        lines.append("| " + " | ".join([*map(str, key), *(values[c] for c in columns), status(group)]) + " |")
    return "\n".join(lines) + "\n\nCells: ours (paper); – marks a value not run or not reported.\n"


def run_table(spec: dict, metrics_paths: list[Path], out: Path) -> None:
    metrics = pd.concat(
        [pd.read_csv(p, keep_default_na=False) for p in metrics_paths]
        or [pd.DataFrame(columns=["model", "dataset", "category", "accuracy"])],
        ignore_index=True,
    )
    table = build_table(spec, metrics)
    if table["status"].eq("ok").sum() == 0:
        logging.getLogger(__name__).warning("%s: no cell of ours filled", out)
    write_csv_atomic(table, out)
    write_text_atomic(out.with_suffix(".md"), to_markdown(table, spec["keys"]))
    # the report (snakemake --report) shows this copy inline
    write_text_atomic(out.with_suffix(".html"), table.to_html(index=False, na_rep="", float_format="%.2f"))


def register(subparsers) -> None:
    parser = subparsers.add_parser("table", help="a paper table regenerated from metrics, beside the paper")
    parser.add_argument("--spec", required=True, help="the table's config entry, as JSON")
    parser.add_argument("--metrics", nargs="*", type=Path, default=[])
    parser.add_argument("--out", required=True, type=Path)
    parser.set_defaults(func=lambda a: run_table(json.loads(a.spec), a.metrics, a.out))

"""Tables stage: the paper's tables regenerated from our metrics, each cell beside the paper's value.

Output (CSV, long format, one row per cell): the paper's row keys, `column`, `ours`, `paper`,
`diff` (ours - paper) and `status` ("ok", or why "ours" is empty). Rows the config does not run
keep the paper's value and an empty "ours": never an invented number. A Markdown copy shows the
table in the paper's shape with "ours (paper)" cells.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pandas as pd

from adfm.io import InputError, atomic_path, write_text_atomic
from adfm.score import ALL

AVERAGE = "Avg"


def paper_table(name: str) -> pd.DataFrame:
    with resources.files("adfm").joinpath("paper", name).open() as handle:
        return pd.read_csv(handle, keep_default_na=False, dtype=str)


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def build_table(spec: dict, metrics: pd.DataFrame) -> pd.DataFrame:
    """Long-format comparison table.

    spec: {"paper": <csv name>, "keys": [paper row key columns], "columns": {paper column: dataset},
           "rows": [{"match": {key: value}, "run": <run name>}]}
    metrics: rows of `adfm score` output (model = run name; category "all" is the dataset's value).
    """
    paper = paper_table(spec["paper"])
    overall = metrics[metrics["category"] == ALL].set_index(["model", "dataset"])["accuracy"]
    runs = {}
    for entry in spec["rows"]:
        hit = (paper[list(entry["match"])] == pd.Series(entry["match"])).all(axis=1)
        if hit.sum() != 1:
            raise InputError(f"table row {entry['match']} matches {hit.sum()} rows of {spec['paper']}")
        runs[paper.index[hit][0]] = entry["run"]
    records = []
    for position, row in paper.iterrows():
        run = runs.get(position)
        ours_values = []
        for column, dataset in spec["columns"].items():
            ours, status = None, "not run"
            if run is not None and (run, dataset) in overall.index:
                ours, status = float(overall[(run, dataset)]), "ok"
            elif run is not None:
                status = f"not run: no {dataset} predictions"
            ours_values.append(ours)
            records.append(_cell(row, spec["keys"], column, ours, status))
        ours_avg, status = None, "not run"
        if run is not None:
            ran = [v for v in ours_values if v is not None]
            if len(ran) == len(ours_values):
                ours_avg, status = round(sum(ran) / len(ran), 2), "ok"
            else:
                status = f"not run: {len(ours_values) - len(ran)} of {len(ours_values)} datasets missing"
        records.append(_cell(row, spec["keys"], AVERAGE, ours_avg, status))
    return pd.DataFrame.from_records(records)


def _cell(row: pd.Series, keys: list[str], column: str, ours: float | None, status: str) -> dict:
    paper_value = _number(row.get(column, ""))
    diff = round(ours - paper_value, 2) if ours is not None and paper_value is not None else None
    record = {key: row[key] for key in ["group", *keys] if key in row}
    return {**record, "column": column, "ours": ours, "paper": paper_value, "diff": diff, "status": status}


def to_markdown(table: pd.DataFrame, keys: list[str]) -> str:
    """The table in the paper's shape: one row per model, cells "ours (paper)"."""
    def cell(item) -> str:
        ours = "" if pd.isna(item.ours) else f"{item.ours:.2f}"
        paper = "" if pd.isna(item.paper) else f"{item.paper:.2f}"
        return f"{ours or '–'} ({paper or '–'})"

    row_keys = [k for k in ["group", *keys] if k in table.columns]
    columns = list(dict.fromkeys(table["column"]))
    lines = ["| " + " | ".join(row_keys + columns) + " |", "|" + "---|" * (len(row_keys) + len(columns))]
    for key, group in table.groupby(row_keys, sort=False):
        values = dict(zip(group["column"], (cell(item) for item in group.itertuples())))
        lines.append("| " + " | ".join([*map(str, key), *(values[c] for c in columns)]) + " |")
    return "\n".join(lines) + "\n\nCells: ours (paper); – marks a value not run or not reported.\n"


def run_table(spec: dict, metrics_paths: list[Path], out: Path) -> None:
    metrics = pd.concat(
        [pd.read_csv(p, keep_default_na=False) for p in metrics_paths]
        or [pd.DataFrame(columns=["model", "dataset", "category", "accuracy"])],
        ignore_index=True,
    )
    table = build_table(spec, metrics)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")
    write_text_atomic(out.with_suffix(".md"), to_markdown(table, spec["keys"]))


def register(subparsers) -> None:
    parser = subparsers.add_parser("table", help="a paper table regenerated from metrics, beside the paper")
    parser.add_argument("--spec", required=True, help="the table's config entry, as JSON")
    parser.add_argument("--metrics", nargs="*", type=Path, default=[])
    parser.add_argument("--out", required=True, type=Path)
    parser.set_defaults(func=lambda a: run_table(json.loads(a.spec), a.metrics, a.out))

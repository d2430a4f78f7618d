"""Tables stage: the paper's tables regenerated from our metrics, each cell beside the paper's value.

Output (CSV, long format, one row per cell): the paper's row keys, `column`, `ours`, `paper`,
`diff` (ours - paper), `status` ("ok", or why "ours" is empty) and `protocol` (how "ours" was
obtained: prompt, metric, images). Rows the config does not run keep the paper's value and an empty
"ours": never an invented number. A Markdown copy shows the table in the paper's shape with
"ours (paper)" cells, and notes saying per row how ours and (where the config says) the paper's
number were obtained, since a difference means something only between like protocols.

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
  which split rows and which prompt ours used.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import pandas as pd

from adfm.io import InputError, write_csv_atomic, write_text_atomic
from adfm.score import ACCURACY, ALL

AVERAGE = "Avg"
MMAD_ANOMALY_QUESTION = "Anomaly Detection"  # MMAD's question type of "Is there any defect in the object?"
METRIC_WORDS = {"accuracy": "plain accuracy", "balanced_accuracy": "balanced accuracy",
                "accuracy_youden": "plain accuracy at the Youden-J threshold",
                "balanced_accuracy_youden": "balanced accuracy at the Youden-J threshold"}
ROWS_WORDS = {"test": "the split's held-out test rows",
              "all": "every split row of each dataset (the full test split under the multi-domain protocol)"}


def paper_table(name: str) -> pd.DataFrame:
    with resources.files("adfm").joinpath("paper", name).open() as handle:
        return pd.read_csv(handle, keep_default_na=False, dtype=str)


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def row_protocol(entry: dict, select: str) -> str:
    """How a row's "ours" is obtained, in words: prompt, metric and images."""
    metric = METRIC_WORDS[entry.get("metric", ACCURACY)]
    if select == "question_type":
        return f"MMAD's letter prompt and questions; {metric} per question type, mean over MMAD's source datasets"
    if entry.get("prompt") == "mmad":
        return (f"MMAD's letter prompt, its Anomaly Detection question; {metric} per MMAD source dataset "
                f"(MMAD's protocol)")
    asked = f"our {entry['reasoning']} prompt" if entry.get("reasoning") else "continuous anomaly score"
    return f"{asked}; {metric}; {ROWS_WORDS[entry.get('eval_rows', 'test')]}"


def _by_key(metrics: pd.DataFrame, where: str, value: str, key: str) -> pd.DataFrame:
    return metrics[metrics[where] == value].rename(columns={key: "key"}).set_index(["model", "key"])


def build_table(spec: dict, metrics: pd.DataFrame, mmad_metrics: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long-format comparison table.

    spec: {"paper": <csv name>, "keys": [paper row key columns], "columns": {paper column: dataset or question
           type}, "select": "dataset" | "question_type", "mmad_sources": {paper column: MMAD source dataset},
           "rows": [{"match": {key: value}, "run": <run name>, "metric": "accuracy", "prompt": "reasoning" |
           "mmad", "skip": <status>, "paper_protocol": <text>, "eval_rows": "test" | "all", "reasoning": <mode>}]}
    metrics: rows of `adfm score` output, mmad_metrics of `adfm score-mmad` (model = run name).
    """
    paper = paper_table(spec["paper"])
    select = spec.get("select", "dataset")
    if select not in ("dataset", "question_type"):
        raise InputError(f"table select {select!r}: expected dataset or question_type")
    if mmad_metrics is None:
        mmad_metrics = pd.DataFrame(columns=["model", "dataset", "category", ACCURACY])
    views = {"split": _by_key(metrics, "category", ALL, "dataset"),  # a dataset's value over its categories
             "type": _by_key(mmad_metrics, "dataset", ALL, "category"),  # a question type's, over MMAD's sources
             "anomaly": _by_key(mmad_metrics, "category", MMAD_ANOMALY_QUESTION, "dataset")}  # per MMAD source
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
        metric = entry.get("metric", ACCURACY) if entry is not None else ACCURACY
        skip = entry.get("skip") if entry is not None else None
        protocol = row_protocol(entry, select) if entry is not None else ""
        mmad = entry is not None and entry.get("prompt") == "mmad"
        view = views["type" if select == "question_type" else "anomaly" if mmad else "split"]
        ours_values = []
        for column, key in spec["columns"].items():
            if mmad:
                if column not in spec.get("mmad_sources", {}):
                    raise InputError(f"table row {entry['match']}: prompt mmad needs the table's mmad_sources "
                                     f"to name column {column!r}'s MMAD source dataset")
                key = spec["mmad_sources"][column]
            ours, status = None, "not run"
            if skip:
                status = skip
            elif run is not None and (run, key) in view.index:
                value = view.loc[(run, key)]
                value = value.iloc[0] if isinstance(value, pd.DataFrame) else value
                if metric not in value.index or pd.isna(value[metric]) or value[metric] == "":
                    where = value.get("path", "its metrics")
                    raise InputError(f"table row {entry['match']}: no {metric!r} in {where} ({run} on {key})")
                ours, status = float(value[metric]), "ok"
            elif run is not None:
                status = f"not run: no {key} predictions"
            ours_values.append(ours)
            records.append(_cell(row, spec["keys"], column, ours, status, protocol))
        ours_avg, status = None, skip or "not run"
        if run is not None and not skip:
            ran = [v for v in ours_values if v is not None]
            if len(ran) == len(ours_values):
                ours_avg, status = round(sum(ran) / len(ran), 2), "ok"
            else:
                noun = "datasets" if select == "dataset" else "question types"
                status = f"not run: {len(ours_values) - len(ran)} of {len(ours_values)} {noun} missing"
        records.append(_cell(row, spec["keys"], AVERAGE, ours_avg, status, protocol))
    return pd.DataFrame.from_records(records)


def _cell(row: pd.Series, keys: list[str], column: str, ours: float | None, status: str, protocol: str) -> dict:
    paper_value = _number(row.get(column, ""))
    diff = round(ours - paper_value, 2) if ours is not None and paper_value is not None else None
    record = {key: row[key] for key in ["group", *keys] if key in row}
    return {**record, "column": column, "ours": ours, "paper": paper_value, "diff": diff, "status": status,
            "protocol": protocol}


def notes(spec: dict, keys: list[str]) -> str:
    """Markdown notes: per configured row, how ours was obtained and how the paper's number was."""
    lines = []
    for entry in spec["rows"]:
        name = " ".join(str(entry["match"][k]) for k in keys if k in entry["match"])
        paper = f" Paper: {entry['paper_protocol']}" if entry.get("paper_protocol") else ""
        lines.append(f"- {name} ({entry['run']}): ours: {row_protocol(entry, spec.get('select', 'dataset'))}.{paper}")
    return "Protocol of each row:\n\n" + "\n".join(lines) + "\n" if lines else ""


def to_markdown(table: pd.DataFrame, keys: list[str], spec: dict | None = None) -> str:
    """The table in the paper's shape: one row per model, cells "ours (paper)", and the row's status;
    then, given the spec, the notes on each row's protocol."""
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
    text = "\n".join(lines) + "\n\nCells: ours (paper); – marks a value not run or not reported.\n"
    return text + ("\n" + notes(spec, keys) if spec is not None and spec["rows"] else "")


def read_metrics(paths: list[Path]) -> pd.DataFrame:
    """Metrics files concatenated, each row with the `path` it came from (named in errors)."""
    return pd.concat(
        [pd.read_csv(p, keep_default_na=False).assign(path=str(p)) for p in paths]
        or [pd.DataFrame(columns=["model", "dataset", "category", ACCURACY, "path"])],
        ignore_index=True,
    )


def run_table(spec: dict, metrics_paths: list[Path], mmad_paths: list[Path], out: Path) -> None:
    table = build_table(spec, read_metrics(metrics_paths), read_metrics(mmad_paths))
    if table["status"].eq("ok").sum() == 0:
        logging.getLogger(__name__).warning("%s: no cell of ours filled", out)
    write_csv_atomic(table, out)
    write_text_atomic(out.with_suffix(".md"), to_markdown(table, spec["keys"], spec))
    # the report (snakemake --report) shows this copy inline
    write_text_atomic(out.with_suffix(".html"), table.to_html(index=False, na_rep="", float_format="%.2f"))


def register(subparsers) -> None:
    parser = subparsers.add_parser("table", help="a paper table regenerated from metrics, beside the paper")
    parser.add_argument("--spec", required=True, help="the table's config entry, as JSON")
    parser.add_argument("--metrics", nargs="*", type=Path, default=[], help="`adfm score` outputs")
    parser.add_argument("--mmad-metrics", nargs="*", type=Path, default=[], help="`adfm score-mmad` outputs")
    parser.add_argument("--out", required=True, type=Path)
    parser.set_defaults(func=lambda a: run_table(json.loads(a.spec), a.metrics, a.mmad_metrics, a.out))

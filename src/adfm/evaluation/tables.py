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

import html
import json
import logging
from importlib import resources
from pathlib import Path

import pandas as pd

from adfm.evaluation.score import ACCURACY, ALL
from adfm.io import InputError, write_csv_atomic, write_text_atomic

AVERAGE = "Avg"
MMAD_ANOMALY_QUESTION = "Anomaly Detection"  # MMAD's question type of "Is there any defect in the object?"
METRIC_WORDS = {"accuracy": "plain accuracy", "balanced_accuracy": "balanced accuracy",
                "accuracy_youden": "plain accuracy at the Youden-J threshold",
                "balanced_accuracy_youden": "balanced accuracy at the Youden-J threshold"}
YOUDEN_METRICS = ("accuracy_youden", "balanced_accuracy_youden")
YOUDEN_CAVEAT = ("the Youden-J threshold is chosen on the very images it then classifies (an oracle "
                 "threshold, an upper bound)")
FEW_IMAGES = 100  # below it, one image moves an accuracy by more than a point
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


def matching_rows(paper: pd.DataFrame, match: dict) -> pd.Series:
    """Which paper rows a config row's `match` selects (all its keys equal); a key that is not a
    column of the paper selects none."""
    if not set(match) <= set(paper.columns):
        return pd.Series(False, index=paper.index)
    return (paper[list(match)] == pd.Series(match, dtype=str)).all(axis=1)


def row_problems(spec: dict) -> list[str]:
    """What is wrong with a table's configured rows against its paper CSV, each naming the row:
    a match key that is no row key of the table, a match selecting several paper rows, two config
    rows for one table row. A match selecting none is a row the paper lacks: it is added."""
    paper = paper_table(spec["paper"])
    keys = [k for k in ["group", *spec["keys"]] if k in paper.columns]
    problems, seen = [], {}
    for entry in spec["rows"]:
        match = {key: str(value) for key, value in entry["match"].items()}
        unknown = [key for key in match if key not in keys]
        if unknown:
            problems.append(f"rows: {entry['match']} names {unknown}, not row keys of {spec['paper']} "
                            f"(its row keys: {keys})")
            continue
        hit = matching_rows(paper, match)
        if hit.sum() > 1:
            problems.append(f"rows: {entry['match']} matches {hit.sum()} rows of {spec['paper']}; "
                            f"name more of its row keys {keys}")
            continue
        # a row the paper lacks is known by its match
        row = int(hit.idxmax()) if hit.any() else tuple(sorted(match.items()))
        if row in seen:
            problems.append(f"rows: {entry['match']} and {seen[row]} fill the same row of {spec['paper']}")
        seen[row] = entry["match"]
    return problems


def _with_new_rows(paper: pd.DataFrame, spec: dict) -> tuple[pd.DataFrame, dict]:
    """The paper table with a row appended for each configured row it lacks (its keys from `match`,
    every other cell empty), and the configured entry of each table row by position."""
    problems = row_problems(spec)
    if problems:
        raise InputError(f"table {spec['paper']}: " + "; ".join(problems))
    entries, added = {}, []
    for entry in spec["rows"]:
        hit = matching_rows(paper, {key: str(value) for key, value in entry["match"].items()})
        if hit.any():
            entries[paper.index[hit][0]] = entry
        else:
            entries[len(paper) + len(added)] = entry
            added.append({column: str(entry["match"].get(column, "")) for column in paper.columns})
    table = pd.concat([paper, pd.DataFrame(added, columns=paper.columns)], ignore_index=True) if added else paper
    return table, entries


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
    paper, runs = _with_new_rows(paper, spec)
    # the paper's column order, whatever the order of the config's mapping (settings reach the job
    # as JSON with sorted keys)
    columns = [column for column in paper.columns if column in spec["columns"]]
    columns += [column for column in spec["columns"] if column not in columns]
    demo = bool(spec.get("demo"))
    records = []
    for position, row in paper.iterrows():
        entry = runs.get(position)
        run = entry["run"] if entry is not None else None
        metric = entry.get("metric", ACCURACY) if entry is not None else ACCURACY
        skip = entry.get("skip") if entry is not None else None
        protocol = row_protocol(entry, select) if entry is not None else ""
        mmad = entry is not None and entry.get("prompt") == "mmad"
        view = views["type" if select == "question_type" else "anomaly" if mmad else "split"]
        ours_values, images = [], []
        for column in columns:
            key = spec["columns"][column]
            if mmad:
                if column not in spec.get("mmad_sources", {}):
                    raise InputError(f"table row {entry['match']}: prompt mmad needs the table's mmad_sources "
                                     f"to name column {column!r}'s MMAD source dataset")
                key = spec["mmad_sources"][column]
            ours, status, count = None, "not run", None
            if skip:
                status = skip
            elif run is not None and (run, key) in view.index:
                value = view.loc[(run, key)]
                value = value.iloc[0] if isinstance(value, pd.DataFrame) else value
                if metric not in value.index or pd.isna(value[metric]) or value[metric] == "":
                    where = value.get("path", "its metrics")
                    raise InputError(f"table row {entry['match']}: no {metric!r} in {where} ({run} on {key})")
                ours, status = float(value[metric]), "ok"
                count = _images(value)
            elif run is not None:
                status = f"not run: no {key} predictions"
            ours_values.append(ours)
            images.append(count)
            records.append(_cell(row, spec["keys"], column, ours, status, protocol, count, demo))
        ours_avg, status = None, skip or "not run"
        if run is not None and not skip:
            ran = [v for v in ours_values if v is not None]
            if len(ran) == len(ours_values):
                ours_avg, status = round(sum(ran) / len(ran), 2), "ok"
            else:
                noun = "datasets" if select == "dataset" else "question types"
                status = f"not run: {len(ours_values) - len(ran)} of {len(ours_values)} {noun} missing"
        total = sum(images) if ours_avg is not None and None not in images else None
        records.append(_cell(row, spec["keys"], AVERAGE, ours_avg, status, protocol, total, demo))
    return pd.DataFrame.from_records(records)


def _images(value: pd.Series) -> int | None:
    """The number of images behind a metrics row (`n`), when it says."""
    count = value.get("n", "")
    return None if count in ("", None) or pd.isna(count) else int(float(count))


def _cell(row: pd.Series, keys: list[str], column: str, ours: float | None, status: str, protocol: str,
          images: int | None, demo: bool) -> dict:
    paper_value = _number(row.get(column, ""))
    diff = round(ours - paper_value, 2) if ours is not None and paper_value is not None else None
    record = {key: row[key] for key in ["group", *keys] if key in row}
    return {**record, "column": column, "ours": ours, "paper": paper_value, "diff": diff, "status": status,
            "protocol": protocol, "images": images, "demo": demo}


def row_notes(spec: dict, keys: list[str], table: pd.DataFrame | None = None) -> list[str]:
    """Per configured row, how ours was obtained and how the paper's number was; a Youden-J row
    says its threshold is fitted on the images it classifies, and how few they were."""
    lines = []
    for entry in spec["rows"]:
        name = " ".join(str(entry["match"][k]) for k in keys if k in entry["match"])
        paper = f" Paper: {entry['paper_protocol']}" if entry.get("paper_protocol") else ""
        caveat = ""
        if entry.get("metric") in YOUDEN_METRICS:
            caveat = f" Caveat: {YOUDEN_CAVEAT}"
            counts = _row_images(table, entry, keys) if table is not None else []
            if counts:
                caveat += (f"; here {min(counts)} to {max(counts)} images per dataset" if min(counts) != max(counts)
                           else f"; here {counts[0]} images per dataset")
                caveat += ", too few for its accuracy (even 100.00) to say much" if min(counts) < FEW_IMAGES else ""
            caveat += "."
        lines.append(f"{name} ({entry['run']}): ours: {row_protocol(entry, spec.get('select', 'dataset'))}."
                     f"{paper}{caveat}")
    return lines


def _row_images(table: pd.DataFrame, entry: dict, keys: list[str]) -> list[int]:
    """The image counts of a configured row's dataset cells (not its average)."""
    mask = table["column"] != AVERAGE
    for key, value in entry["match"].items():
        if key in table.columns:
            mask &= table[key].astype(str) == str(value)
    return sorted(int(n) for n in table.loc[mask, "images"].dropna())


def notes(spec: dict, keys: list[str], table: pd.DataFrame | None = None) -> str:
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
        values = dict(zip(group["column"], (_cell_text(item) for item in group.itertuples())))
        rows.append({**dict(zip(row_keys, map(str, key))), **{c: values[c] for c in columns},
                     "status": _row_status(group, demo)})
    return pd.DataFrame(rows, columns=[*row_keys, *columns, "status"])


CELLS_NOTE = "Cells: ours (paper); – marks a value not run or not reported."


def to_markdown(table: pd.DataFrame, keys: list[str], spec: dict | None = None) -> str:
    """The table in the paper's shape: one row per model, cells "ours (paper)", and the row's status;
    then, given the spec, the notes on each row's protocol (headed by the demo's warning, if any)."""
    demo = (spec or {}).get("demo")
    shaped = wide(table, keys, bool(demo))
    lines = ["| " + " | ".join(shaped.columns) + " |", "|" + "---|" * len(shaped.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in shaped.itertuples(index=False)]
    text = (f"**{demo}**\n\n" if demo else "") + "\n".join(lines) + f"\n\n{CELLS_NOTE}\n"
    return text + ("\n" + notes(spec, keys, table) if spec is not None and spec["rows"] else "")


def to_html(table: pd.DataFrame, keys: list[str], spec: dict) -> str:
    """The report's copy (snakemake --report shows it inline): the Markdown's content as HTML, the
    table wide as in the paper."""
    demo = spec.get("demo")
    parts = [f"<p><strong>{html.escape(demo)}</strong></p>"] if demo else []
    parts.append(wide(table, keys, bool(demo)).to_html(index=False, escape=True))
    parts.append(f"<p>{html.escape(CELLS_NOTE)} The CSV beside this file has each cell's difference and "
                 f"status.</p>")
    lines = row_notes(spec, keys, table)
    if lines:
        parts.append("<p>Protocol of each row:</p>\n<ul>\n"
                     + "\n".join(f"<li>{html.escape(line)}</li>" for line in lines) + "\n</ul>")
    return "\n".join(parts) + "\n"


def read_metrics(paths: list[Path]) -> pd.DataFrame:
    """Metrics files concatenated, each row with the `path` it came from (named in errors)."""
    return pd.concat(
        [pd.read_csv(p, keep_default_na=False).assign(path=str(p)) for p in paths]
        or [pd.DataFrame(columns=["model", "dataset", "category", ACCURACY, "path"])],
        ignore_index=True,
    )


def last_good(out: Path) -> Path:
    """Where the last complete set of a table's files is kept: results/table1.csv ->
    results/table1.last-good.csv (and .md, .html beside it)."""
    return out.with_name(f"{out.stem}.last-good{out.suffix}")


def run_table(spec: dict, metrics_paths: list[Path], mmad_paths: list[Path], out: Path) -> None:
    try:
        table = build_table(spec, read_metrics(metrics_paths), read_metrics(mmad_paths))
    except InputError as error:
        kept = last_good(out).with_suffix(".md")
        if kept.is_file():
            raise InputError(f"{error} (the last good table is kept in {kept} and beside it)") from None
        raise
    if table["status"].eq("ok").sum() == 0:
        logging.getLogger(__name__).warning("%s: no cell of ours filled", out)
    write_csv_atomic(table, out)
    write_text_atomic(out.with_suffix(".md"), to_markdown(table, spec["keys"], spec))
    write_text_atomic(out.with_suffix(".html"), to_html(table, spec["keys"], spec))
    # copied only once all three are written, so the last-good files are always one complete table
    for suffix in (".csv", ".md", ".html"):
        write_text_atomic(last_good(out).with_suffix(suffix), out.with_suffix(suffix).read_text())


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "table", help="a paper table regenerated from metrics, beside the paper",
        description="One of the paper's tables regenerated from the metrics of the runs it shows, each of our "
                    "values beside the paper's, with a status per row (ok, or why it was not run). Writes CSV, "
                    "and Markdown and HTML beside it.")
    parser.add_argument("--spec", required=True, help="the table's config entry, as JSON")
    parser.add_argument("--metrics", nargs="*", type=Path, default=[], help="`adfm score` outputs")
    parser.add_argument("--mmad-metrics", nargs="*", type=Path, default=[], help="`adfm score-mmad` outputs")
    parser.add_argument("--out", required=True, type=Path, help="the table (CSV); .md and .html go beside it")
    parser.set_defaults(func=lambda a: run_table(json.loads(a.spec), a.metrics, a.mmad_metrics, a.out))

"""What a reader of a table sees (issue 17, items 8 and 14), on hand-made metrics: a row the paper
lacks, the demo's warning, the paper's wide layout in the report's HTML, the Youden-J caveat, and the
last good table kept through a failed table job."""

from __future__ import annotations

from html.parser import HTMLParser

import pandas as pd
import pytest
from conftest import REPO

from adfm import config as adfm_config
from adfm import targets
from adfm.evaluation.tables import last_good, run_table
from adfm.io import InputError
from adfm.settings.evaluation import TableSettings

DATASETS = {"VisA": "visa", "MPDD": "mpdd", "DTD": "dtd_synthetic", "DAGM": "dagm"}
SPEC = {
    "paper": "table2_crossdataset.csv",
    "keys": ["model", "scale"],
    # not the paper's order: the table keeps the paper's
    "columns": {"DAGM": "dagm", "VisA": "visa", "MPDD": "mpdd", "DTD": "dtd_synthetic"},
    "rows": [
        {"match": {"model": "WinCLIP (Youden J)"}, "run": "winclip", "metric": "accuracy_youden"},
        {"match": {"model": "AD-FM", "scale": "3B"}, "run": "adfm_small"},  # not in the paper
    ],
}


def outputs(csv):
    """The table's three files, named as the rule names them."""
    return csv, csv.with_suffix(".md"), csv.with_suffix(".html")


DEMO = "Demo numbers: tiny randomly initialised models (demo:tiny) on generated miniature datasets."


@pytest.fixture
def metrics_file(tmp_path):
    rows = [
        {"model": "winclip", "dataset": d, "category": "all", "n": 12, "accuracy": 50.0, "accuracy_youden": 100.0}
        for d in DATASETS.values()
    ]
    rows += [
        {"model": "adfm_small", "dataset": d, "category": "all", "n": 12, "accuracy": 75.0, "accuracy_youden": ""}
        for d in DATASETS.values()
    ]
    path = tmp_path / "metrics.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


class Cells(HTMLParser):
    """The text of each cell of an HTML table, row by row."""

    def __init__(self, page: str):
        super().__init__()
        self.rows: list[list[str]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_data(self, data):
        if self.rows and self.rows[-1] and self.lasttag in ("td", "th"):
            self.rows[-1][-1] += data.strip()


def test_report_html_is_the_papers_wide_table_with_the_demo_warning_and_caveats(tmp_path, metrics_file):
    out = tmp_path / "results" / "table2.csv"
    out.parent.mkdir()
    run_table(TableSettings.from_dict({**SPEC, "demo": DEMO}), [metrics_file], [], *outputs(out))
    page = out.with_suffix(".html").read_text()
    header, *body = Cells(page).rows
    shown = pd.DataFrame(body, columns=header)
    assert list(shown.columns) == ["group", "model", "scale", "VisA", "MPDD", "DTD", "DAGM", "Avg", "status"]
    assert len(shown) == 14  # the paper's 13 models and the new row, not one line per cell
    youden = shown[shown.model == "WinCLIP (Youden J)"].iloc[0]
    assert youden.VisA == "100.00 (77.70)" and youden.status == "ok (demo numbers)"
    new = shown.iloc[-1]
    assert (new.model, new.scale, new.MPDD, new.Avg) == ("AD-FM", "3B", "75.00 (–)", "75.00 (–)")
    assert page.index(DEMO) < page.index("<table")
    assert "Youden-J threshold is chosen on the very images it then classifies" in page
    assert "here 12 images per dataset, too few for its accuracy (even 100.00) to say much" in page
    markdown = out.with_suffix(".md").read_text()
    assert markdown.startswith(f"**{DEMO}**") and "| CLIP-based | WinCLIP (Youden J) |  | 100.00 (77.70) |" in markdown
    table = pd.read_csv(out)
    assert table.demo.all() and (table[table.column != "Avg"].images.dropna() == 12).all()


def test_without_the_demo_the_table_says_ok_and_no_warning(tmp_path, metrics_file):
    out = tmp_path / "table2.csv"
    run_table(TableSettings.from_dict(SPEC), [metrics_file], [], *outputs(out))
    assert "Demo" not in out.with_suffix(".md").read_text()
    assert not pd.read_csv(out).demo.any()
    assert "|  | AD-FM | 3B | 75.00 (–) | 75.00 (–) | 75.00 (–) | 75.00 (–) | 75.00 (–) | ok |" in (
        out.with_suffix(".md").read_text()
    )


def test_a_failed_table_job_leaves_the_last_good_table(tmp_path, metrics_file):
    out = tmp_path / "table2.csv"
    run_table(TableSettings.from_dict(SPEC), [metrics_file], [], *outputs(out))
    kept = {suffix: last_good(out).with_suffix(suffix) for suffix in (".csv", ".md", ".html")}
    assert kept[".csv"].name == "table2.last-good.csv"
    assert all(kept[s].read_text() == out.with_suffix(s).read_text() for s in kept)
    for suffix in kept:  # what Snakemake does to a failed job's outputs
        out.with_suffix(suffix).unlink()
    broken = {
        **SPEC,
        "rows": [{"match": {"model": "AD-FM", "scale": "3B"}, "run": "adfm_small", "metric": "accuracy_youden"}],
    }  # binary predictions have no Youden value
    with pytest.raises(InputError, match="last good table is kept in .*table2.last-good.md"):
        run_table(TableSettings.from_dict(broken), [metrics_file], [], *outputs(out))
    assert "100.00 (77.70)" in kept[".md"].read_text()


def demo_config():
    return adfm_config.load_config([REPO / "config.yaml", REPO / "workflow/configs/demo.yaml"])


def test_the_workflow_marks_demo_tables_and_only_them():
    demo = demo_config()
    assert TableSettings.from_config(demo, "table1", {}).demo.startswith("Demo numbers: tiny")
    paper = adfm_config.load_config([REPO / "config.yaml"])
    assert TableSettings.from_config(paper, "table1", {}).demo is None


def test_a_new_ablation_is_valid_and_every_row_problem_is_caught_before_any_job():
    config = demo_config()
    config["runs"]["cls_count"] = {**config["runs"]["cls_random"], "rewards": ["cls", "count", "format"]}
    rows = config["tables"]["table4"]["rows"]
    rows.append({"match": {"reward": "r_cls + r_count", "reasoning": "multi-stage"}, "run": "cls_count"})
    assert adfm_config.config_problems(config) == []
    config["tables"]["table4"]["columns"]["VisA"] = "vissa"
    rows.append({"match": {"reasoning": "multi-stage"}, "run": "cls_count"})
    rows.append({"match": {"rewrd": "r_cls"}, "run": "cls_count"})
    rows.append({"match": {"reward": "r_cls + r_count", "reasoning": "multi-stage"}, "run": "adfm"})
    problems = adfm_config.config_problems(config)
    assert problems == [
        "tables.table4.columns.VisA: unknown dataset 'vissa'",
        (
            "tables.table4.rows: {'reasoning': 'multi-stage'} matches 3 rows of table4_ablation.csv; "
            "name more of its row keys ['reward', 'reasoning']"
        ),
        (
            "tables.table4.rows: {'rewrd': 'r_cls'} names ['rewrd'], not row keys of table4_ablation.csv "
            "(its row keys: ['reward', 'reasoning'])"
        ),
        (
            "tables.table4.rows: {'reward': 'r_cls + r_count', 'reasoning': 'multi-stage'} and "
            "{'reward': 'r_cls + r_count', 'reasoning': 'multi-stage'} fill the same row of table4_ablation.csv"
        ),
    ]


def test_a_run_no_table_or_figure_uses_is_named():
    config = demo_config()
    assert targets.unused_note(config) is None
    config["runs"]["cls_count"] = {**config["runs"]["cls_random"], "rewards": ["cls", "count", "format"]}
    note = targets.unused_note(config)
    assert note.startswith("Note: no table row or figure uses run 'cls_count', so `snakemake` never runs it")


@pytest.mark.parametrize("name", ["table.rst", "workflow.rst"])
def test_report_captions_say_when_the_numbers_are_the_demos(name):
    from types import SimpleNamespace

    from docutils.core import publish_parts
    from jinja2 import Environment

    template = Environment().from_string((REPO / "workflow/report" / name).read_text())
    for configs, demo in ((["config.yaml"], False), (["config.yaml", "workflow/configs/demo.yaml"], True)):
        config = adfm_config.load_config([REPO / path for path in configs])
        text = template.render(snakemake=SimpleNamespace(config=config, wildcards=SimpleNamespace(table="table1")))
        shown = " ".join(publish_parts(text, writer_name="html")["body"].split())
        assert ("tiny randomly initialised models (demo:tiny-qwen2.5-vl" in shown) == demo, shown

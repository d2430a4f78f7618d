"""The whole demo DAG through Snakemake, in a temporary copy of the workflow.

Runs every stage (demo archive, download, index, boxes, split, tiny model, GRPO training,
prediction, scoring, tables) and checks the tables' contents, that a second run does nothing, and
that editing the reward code reruns training and what follows it, and nothing before it.
"""

import json
import time

import pandas as pd
import pytest

from adfm.config import datasets_tested_by, load_config

from conftest import planned_jobs, snakemake

DEMO_TEST_IMAGES = 33  # MVTec AD: 3 categories x 14 test-split images, minus 20% (3 per category) for training


def cell(table: pd.DataFrame, column: str, **keys) -> pd.Series:
    mask = table["column"] == column
    for key, value in keys.items():
        mask &= table[key] == value
    assert mask.sum() == 1, (column, keys)
    return table[mask].iloc[0]


def test_every_stage_produced_its_output(demo_run):
    for path in ["resources/demo/mvtec_anomaly_detection.tar.xz", "resources/manifests/mvtec_ad.csv",
                 "resources/boxes/mvtec_ad.csv", "resources/splits/multidomain.csv",
                 "resources/models/tiny-qwen2.5-vl/config.json", "resources/adapters/adfm/adapter_config.json",
                 "resources/adapters/adfm/train_log.csv"]:
        assert (demo_run / path).is_file(), path
    for run in ("zero_shot", "adfm"):
        lines = (demo_run / f"results/predictions/{run}/mvtec_ad.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert len(records) == DEMO_TEST_IMAGES
        assert {r["model"] for r in records} == {run}
        assert all(r["answer"] in ("yes", "no", None) for r in records)


@pytest.mark.parametrize("name, keys", [
    ("table1", [({"model": "Qwen2.5-VL", "scale": "7B"}, "zero_shot", (62.03, 55.50, 45.90, 40.73, 51.04)),
                ({"model": "AD-FM", "scale": "7B"}, "adfm", (90.72, 79.52, 65.62, 56.74, 73.15))]),
    ("table4", [({"reward": "none (zero-shot)"}, "zero_shot", (62.03, 55.50, 45.90, 40.73, 51.04)),
                ({"reward": "r_cls + r_loc"}, "adfm", (90.72, 79.52, 65.62, 56.74, 73.15))]),
])
def test_tables_hold_our_values_beside_the_paper(demo_run, name, keys):
    table = pd.read_csv(demo_run / f"results/{name}.csv")
    columns = {"MVTec": ("mvtec_ad", 0), "VisA": ("visa", 1), "MVTec-LOCO": ("mvtec_loco", 2), "GoodsAD": ("goodsad", 3)}
    for row_keys, run, paper_values in keys:
        ours_values = []
        for column, (dataset, position) in columns.items():
            metrics = pd.read_csv(demo_run / f"results/metrics/{run}/{dataset}.csv")
            ours = metrics[metrics.category == "all"].accuracy.iloc[0]
            found = cell(table, column, **row_keys)
            assert found.status == "ok" and 0 <= found.ours <= 100
            assert found.ours == ours and found.paper == paper_values[position]
            assert found["diff"] == pytest.approx(ours - paper_values[position], abs=0.01)
            ours_values.append(ours)
        average = cell(table, "Avg", **row_keys)
        assert average.ours == pytest.approx(sum(ours_values) / 4, abs=0.01) and average.paper == paper_values[4]
    if name == "table1":  # a commercial model the config does not run: the paper's value only
        gpt = table[table.model == "GPT-4.1"]
        assert gpt.ours.isna().all() and gpt.status.str.startswith("not run").all() and gpt.paper.notna().all()
    markdown = (demo_run / f"results/{name}.md").read_text()
    assert "ours (paper)" in markdown


def test_second_run_does_nothing(demo_run):
    assert planned_jobs(demo_run) == {}


def test_reward_edit_reruns_training_onwards_only(demo_run):
    # Snakemake compares checksums as well as times: a real edit is needed, a touch is not enough.
    rewards = demo_run / "src/adfm/rewards.py"
    original = rewards.read_text()
    time.sleep(1)
    rewards.write_text(original + "\n# an edit\n")
    try:
        jobs = planned_jobs(demo_run)
    finally:
        rewards.write_text(original)
    config = load_config([demo_run / "config.yaml", demo_run / "workflow/configs/demo.yaml"])
    trained = [run for run, spec in config["runs"].items() if spec["trained"]]
    trained_predictions = sum(len(datasets_tested_by(config, run)) for run in trained)
    assert jobs["train"] == len(trained)
    assert jobs["predict"] == jobs["score"] == trained_predictions  # the untrained model's are kept
    upstream = {"make_demo_archive", "download", "index", "boxes", "split", "mmad_questions", "fetch_model"}
    assert not upstream & set(jobs), jobs


def test_report_bundles_tables_figures_and_provenance(demo_run):
    snakemake(demo_run, "--report", "results/report.html")
    report = (demo_run / "results/report.html").read_text()
    for name in ["table1.html", "table2.html", "table3.html", "table4.html", "fig3.png", "fig4.png", "fig5.png",
                 "provenance.yaml"]:
        assert name in report, name

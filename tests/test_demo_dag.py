"""The whole demo DAG through Snakemake, in a temporary copy of the workflow.

Runs every stage (demo archive, download, index, boxes, split, tiny model, GRPO training,
prediction, scoring, tables) and checks the tables' contents, that a second run does nothing, and
that editing the reward code reruns training and what follows it, and nothing before it.
"""

import json
import shutil
import time

import pandas as pd
import pytest
from conftest import RUN_SETUP, planned_jobs, run_config, run_setup, snakemake

from adfm.evaluation.table_layout import table_title
from adfm.targets import demo_note

DEMO_TEST_IMAGES = 33  # MVTec AD: 3 categories x 14 test-split images, minus 20% (3 per category) for training
# the untrained run is scored on every row, MVTec AD's whole test split (runs.zero_shot.eval_rows: all)
DEMO_IMAGES = {"zero_shot": 42, "adfm": DEMO_TEST_IMAGES}


def cell(table: pd.DataFrame, column: str, **keys) -> pd.Series:
    mask = table["column"] == column
    for key, value in keys.items():
        mask &= table[key] == value
    assert mask.sum() == 1, (column, keys)
    return table[mask].iloc[0]


def overall_accuracy(workdir, run: str, dataset: str) -> float:
    metrics = pd.read_csv(workdir / f"results/metrics/{run}/{dataset}.csv")
    return metrics[metrics.category == "all"].accuracy.iloc[0]


def test_every_stage_produced_its_output(demo_run):
    for path in [
        "resources/demo/mvtec_anomaly_detection.tar.xz",
        "resources/manifests/mvtec_ad.csv",
        "resources/boxes/mvtec_ad.csv",
        "resources/splits/multidomain.csv",
        "resources/models/tiny-qwen2.5-vl/config.json",
        "resources/adapters/adfm/adapter_config.json",
        "resources/adapters/adfm/train_log.csv",
    ]:
        assert (demo_run / path).is_file(), path
    for run, images in DEMO_IMAGES.items():
        lines = (demo_run / f"results/predictions/{run}/mvtec_ad.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert len(records) == images
        assert {r["model"] for r in records} == {run}
        assert all(r["answer"] in ("yes", "no", None) for r in records)


@pytest.mark.parametrize(
    "name, keys",
    [
        (
            "table1",
            [
                ({"model": "Qwen2.5-VL", "scale": "7B"}, "zero_shot", (62.03, 55.50, 45.90, 40.73, 51.04)),
                ({"model": "AD-FM", "scale": "7B"}, "adfm", (90.72, 79.52, 65.62, 56.74, 73.15)),
            ],
        ),
        (
            "table4",
            [
                ({"reward": "none (zero-shot)"}, "zero_shot", (62.03, 55.50, 45.90, 40.73, 51.04)),
                ({"reward": "r_cls + r_loc"}, "adfm", (90.72, 79.52, 65.62, 56.74, 73.15)),
            ],
        ),
    ],
)
def test_tables_hold_our_values_beside_the_paper(demo_run, name, keys):
    table = pd.read_csv(demo_run / f"results/{name}.csv")
    columns = {
        "MVTec": ("mvtec_ad", 0),
        "VisA": ("visa", 1),
        "MVTec-LOCO": ("mvtec_loco", 2),
        "GoodsAD": ("goodsad", 3),
    }
    for row_keys, run, paper_values in keys:
        ours_values = []
        for column, (dataset, position) in columns.items():
            ours = overall_accuracy(demo_run, run, dataset)
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


TABLE4_RUNS = {
    ("none (zero-shot)", "none"): "zero_shot",
    ("r_cls", "one-stage"): "cls_one_stage",
    ("r_cls", "multi-stage"): "cls_multi_stage",
    ("r_cls + r_random", "multi-stage"): "cls_random",
    ("r_cls + r_loc", "multi-stage"): "adfm",
}


def test_table4_has_every_ablation_row(demo_run):
    table = pd.read_csv(demo_run / "results/table4.csv")
    for (reward, reasoning), run in TABLE4_RUNS.items():
        found = cell(table, "MVTec", reward=reward, reasoning=reasoning)
        assert found.status == "ok" and found.ours == overall_accuracy(demo_run, run, "mvtec_ad"), run


def trained_runs(workdir):
    config = run_config(workdir)
    return config, [run for run, spec in config["runs"].items() if spec["trained"]]


def test_warm_start_then_grpo_for_every_trained_run(demo_run):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    config, runs = trained_runs(demo_run)
    assert {"adfm", "cls_one_stage", "cls_multi_stage", "cls_random", "adfm_cross"} <= set(runs)
    for run in runs:
        spec = config["runs"][run]
        warm = demo_run / f"resources/warm_start/{spec['protocol']}/{spec['reasoning']}"
        losses = pd.read_csv(warm / "warm_start_log.csv")["loss"]
        assert losses.iloc[-10:].mean() < losses.iloc[:10].mean() / 5, run  # the supervised loss falls
        adapter = demo_run / f"resources/adapters/{run}"
        # GRPO's adapter sits on the warm-started model and loads with plain PEFT
        assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"].endswith(
            f"warm_start/{spec['protocol']}/{spec['reasoning']}"
        )
        model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(str(warm)), str(adapter))
        assert any("lora_" in name for name, _ in model.named_parameters()), run
        log = pd.read_csv(adapter / "train_log.csv")
        assert len(log) == config["train"]["grpo"]["max_steps"], run
        for column in [
            "reward",
            "reward_std",
            "frac_reward_zero_std",
            "kl",
            "completions/mean_length",
            *[f"rewards/{name}/mean" for name in spec["rewards"]],
            *[f"rewards/{name}/std" for name in spec["rewards"]],
        ]:
            assert column in log.columns and log[column].notna().all(), (run, column)
        completions = pd.concat(pd.read_parquet(path) for path in sorted((adapter / "completions").glob("*.parquet")))
        assert set(spec["rewards"]) <= set(completions.columns), run  # each sample's reward per function


def test_grpo_raises_the_reward_of_the_adfm_row(demo_run):
    # Table 4's r_cls + r_loc row: the mean reward of the last fifth of the steps above the first fifth
    log = pd.read_csv(demo_run / "resources/adapters/adfm/train_log.csv")
    fifth = max(1, len(log) // 5)
    first, last = log["reward"].iloc[:fifth].mean(), log["reward"].iloc[-fifth:].mean()
    assert last > first, f"mean reward {first:.3f} over the first {fifth} steps, {last:.3f} over the last {fifth}"


def test_training_curves_draw_every_trained_run_of_each_table(demo_run):
    config = run_config(demo_run)
    drawn = pd.read_csv(demo_run / "results/training/table4.csv")
    # Table 4's three reward schemes and both reasoning modes on one figure
    assert {run.split(":")[0] for run in drawn["run"]} == {"cls_one_stage", "cls_multi_stage", "cls_random", "adfm"}
    for run in ["cls_one_stage", "cls_multi_stage", "cls_random", "adfm"]:
        metrics = set(drawn.loc[drawn["run"].str.startswith(f"{run}:"), "metric"])
        rewards = {f"rewards/{name}/mean" for name in config["runs"][run]["rewards"]}
        assert metrics == {"reward", "frac_reward_zero_std", "kl", "completions/mean_length", *rewards}, run
        steps = drawn.loc[drawn["run"].str.startswith(f"{run}:") & (drawn["metric"] == "reward"), "step"]
        assert len(steps) == config["train"]["grpo"]["max_steps"], run
    for table in ("table1", "table2", "table3"):
        assert (demo_run / f"results/training/{table}.png").is_file() and (
            demo_run / f"results/training/{table}.pdf"
        ).is_file()


def test_trained_model_beats_the_untrained_one(demo_run):
    assert overall_accuracy(demo_run, "adfm", "mvtec_ad") > overall_accuracy(demo_run, "zero_shot", "mvtec_ad")


def test_second_run_does_nothing(demo_run):
    assert planned_jobs(demo_run) == {}


def test_the_configs_in_the_other_order_and_a_moved_demo_plan_nothing(demo_run, tmp_path):
    # the Snakefile header's demo command (config.yaml merged under --configfile), and a checkout
    # moved elsewhere: the same params and inputs, so no job reruns (tests/test_rerun_triggers.py)
    configs, env = run_setup(demo_run)
    RUN_SETUP[demo_run] = ([name for name in configs if name != "config.yaml"], env)
    try:
        assert planned_jobs(demo_run) == {}
    finally:
        RUN_SETUP[demo_run] = (configs, env)
    moved = tmp_path / "moved"
    shutil.copytree(demo_run, moved, symlinks=True)
    RUN_SETUP[moved] = (configs, env)
    assert planned_jobs(moved) == {}


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
    _, trained = trained_runs(demo_run)
    assert jobs["train"] == len(trained)
    # one prediction and one scoring job per trained run, each writing all its datasets' files; the
    # untrained model's are kept
    per_model = {rule for rule in jobs if rule.startswith(("predict_", "score_")) and not rule.endswith("_mmad")}
    assert per_model == {f"{stage}_{run}" for stage in ("predict", "score") for run in trained}, jobs
    assert all(jobs[rule] == 1 for rule in per_model), jobs
    upstream = {
        "make_demo_archive",
        "download",
        "index",
        "boxes",
        "split",
        "mmad_questions",
        "fetch_model",
        "warm_start",
    }
    assert not upstream & set(jobs), jobs


def test_report_bundles_tables_figures_and_provenance(demo_run):
    snakemake(demo_run, "--report", "results/report.html")
    report = (demo_run / "results/report.html").read_text()
    for name in [
        "table1.html",
        "table2.html",
        "table3.html",
        "table4.html",
        "fig3.png",
        "fig4.png",
        "fig5.png",
        "provenance.yaml",
        "settings.html",
        "summary.html",
        "training/table4.png",
    ]:
        assert name in report, name
    # every setting that changes results, with the demo's value and where the paper's value comes from
    settings = pd.read_csv(demo_run / "results/settings.csv").set_index("setting")
    assert settings.loc["train.lora.r", "source"].startswith("paper §4.1")
    assert settings.loc["train.grpo.top_k", "source"].startswith("release")
    assert settings.loc["mmad.max_pixels", "source"].startswith("MMAD")
    assert str(settings.loc["train.grpo.max_steps", "value"]) == str(run_config(demo_run)["train"]["grpo"]["max_steps"])


def test_summary_figure_and_sentences_match_the_tables(demo_run):
    config = run_config(demo_run)
    tolerance = config["summary"]["tolerance"]
    drawn = pd.read_csv(demo_run / "results/summary.csv")
    lines = (demo_run / "results/summary.txt").read_text().splitlines()
    assert lines[0] == demo_note(config)  # the demo says where its numbers come from
    for name, line in zip(config["tables"], lines[1:], strict=True):
        path = demo_run / f"results/{name}.csv"
        table, mine = pd.read_csv(path), drawn[drawn["table"] == table_title(path)]
        assert mine["ours"].fillna(-1).tolist() == table["ours"].fillna(-1).tolist()
        assert mine["diff"].fillna(-1).tolist() == table["diff"].fillna(-1).tolist()
        compared = table.dropna(subset=["diff"])
        assert mine["within"].sum() == (compared["diff"].abs() <= tolerance).sum()
        if compared.empty:
            assert line.startswith(f"{table_title(path)}: no run cell"), line
            continue
        gap = compared.loc[compared["diff"].abs().idxmax()]
        assert line.startswith(
            f"{table_title(path)}: {mine['within'].sum()} of {len(compared)} run cells within ±{tolerance:g} points"
        ), line
        assert f"{gap['column']}: ours {gap['ours']:.2f}, paper {gap['paper']:.2f} ({gap['diff']:+.2f})" in line
    page = (demo_run / "results/summary.html").read_text()
    assert all(line in page for line in lines) and "data:image/png;base64," in page
    assert (demo_run / "results/summary.png").stat().st_size and (demo_run / "results/summary.pdf").stat().st_size

"""The evaluation side of the demo DAG (the session's `demo_run`): Tables 1-4, the baselines, MMAD,
Figures 3-5, and that asking for Table 2 plans only the jobs Table 2 needs."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from conftest import run_config, snakemake

from adfm import vlms

CROSS = ["visa", "mpdd", "dtd_synthetic", "dagm"]
# GPT-4o: fake API; the open-source VLMs: the tiny models of their families
TABLE2_MODELS = [
    "adfm_cross",
    "zero_shot_cross",
    "winclip",
    "anomalyclip",
    "gpt-4o_cross",
    "llava_next_34b_cross",
    "internvl3_8b_cross",
    "internvl3_38b_cross",
]
# Tables 1-3's open-source rows: (model, scale) -> the multi-domain run, its family's response frame
OPEN_SOURCE = {
    ("LLaVA-NeXT", "34B"): ("llava_next_34b", [1, 1]),
    ("InternVL3", "8B"): ("internvl3_8b", [1000, 1000]),
    ("InternVL3", "38B"): ("internvl3_38b", [1000, 1000]),
}


def cell(table, model, column):
    row = table[(table["model"] == model) & (table["column"] == column)]
    assert len(row) == 1, (model, column)
    return row.iloc[0]


def test_all_four_tables_and_their_markdown(demo_run):
    for name in ("table1", "table2", "table3", "table4"):
        table = pd.read_csv(demo_run / f"results/{name}.csv")
        assert {"column", "ours", "paper", "diff", "status"} <= set(table.columns)
        assert (table["status"] == "ok").any(), name
        assert "ours (paper)" in (demo_run / f"results/{name}.md").read_text()
        ok = table[table["status"] == "ok"]
        assert ok["ours"].between(0, 100).all()
        reported = ok.dropna(subset=["paper"])
        assert (reported["diff"] - (reported["ours"] - reported["paper"])).abs().max() < 0.011


def test_table2_rows_from_each_backend(demo_run):
    table = pd.read_csv(demo_run / "results/table2.csv", keep_default_na=False, na_values=[""])
    for model, run, metric in [
        ("WinCLIP (tau=0.5)", "winclip", "accuracy"),
        ("WinCLIP (Youden J)", "winclip", "accuracy_youden"),
        ("AnomalyCLIP (tau=0.5)", "anomalyclip", "accuracy"),
        ("AnomalyCLIP (Youden J)", "anomalyclip", "accuracy_youden"),
        ("Qwen2.5-VL", "zero_shot_cross", "accuracy"),
        ("AD-FM", "adfm_cross", "accuracy"),
        ("GPT-4o", "gpt-4o_cross", "accuracy"),
    ]:
        for column, dataset in zip(["VisA", "MPDD", "DTD", "DAGM"], CROSS, strict=False):
            metrics = pd.read_csv(demo_run / f"results/metrics/{run}/{dataset}.csv")
            ours = metrics.loc[metrics["category"] == "all", metric].iloc[0]
            assert cell(table, model, column).ours == pytest.approx(ours), (model, column)
            assert cell(table, model, column).status == "ok"
    # the Youden-J threshold is one of the scores and separates at least as well (TPR - FPR) as 0.5
    for run in ("winclip", "anomalyclip"):
        for dataset in CROSS:
            metrics = pd.read_csv(demo_run / f"results/metrics/{run}/{dataset}.csv").set_index("category")
            lines = (demo_run / f"results/predictions/{run}/{dataset}.jsonl").read_text().splitlines()
            records = pd.DataFrame([json.loads(line) for line in lines])  # full float precision
            threshold = metrics.loc["all", "threshold_youden"]
            assert (records["score"] - threshold).abs().min() < 1e-9

            def youden(t, records=records):
                called = records["score"] >= t
                return called[records.label == 1].mean() - called[records.label == 0].mean()

            assert youden(threshold) >= youden(0.5) - 1e-9
    for model in ("GPT-4o-mini", "GPT-4.1"):  # the session's demo gives only GPT-4o's rows a (fake) API key
        row = cell(table, model, "Avg")
        assert pd.isna(row.ours) and row.status.startswith("not run: no API key (environment variable ADFM_DEMO_")
    internvl2 = cell(table, "InternVL2", "Avg")
    assert pd.isna(internvl2.ours) and internvl2.status.startswith("not run: InternVL2-76B has no transformers-native")


def test_open_source_rows_run_on_their_tiny_models(demo_run):
    """LLaVA-NeXT and InternVL3 fill Tables 1-3 through the generic backend, each scored as the Qwen row."""
    tables = {name: pd.read_csv(demo_run / f"results/{name}.csv") for name in ("table1", "table2", "table3")}
    for (model, scale), (run, frame) in OPEN_SOURCE.items():
        for name, table in tables.items():
            rows = table[(table["model"] == model) & (table["scale"] == scale)]
            assert (rows["status"] == "ok").all() and len(rows) == (7 if name == "table3" else 5), (name, model, scale)
        metrics = pd.read_csv(demo_run / f"results/metrics/{run}/visa.csv").set_index("category")
        visa = tables["table1"][(tables["table1"]["model"] == model) & (tables["table1"]["scale"] == scale)]
        assert visa.set_index("column").loc["VisA", "ours"] == pytest.approx(metrics.loc["all", "accuracy"])
        records = [json.loads(line) for line in (demo_run / f"results/predictions/{run}/visa.jsonl").open()]
        assert records and all(r["frame"] == frame for r in records), run  # the family's box frame
    for name in ("table1", "table3"):
        for model in ("AnomalyR1", "OmniAD"):
            row = cell(tables[name], model, "Avg")
            assert pd.isna(row.ours) and row.status == "not run: the number is from the model's own paper (‡)"


def test_clip_scores_and_test_sets(demo_run):
    split = pd.read_csv(demo_run / "resources/splits/crossdataset.csv")
    for run in ("winclip", "anomalyclip"):
        for dataset in CROSS:
            records = [
                json.loads(line)
                for line in (demo_run / f"results/predictions/{run}/{dataset}.jsonl").read_text().splitlines()
            ]
            expected = split[(split["role"] == "test") & (split["dataset"] == dataset)]["image_path"]
            assert sorted(r["image_path"] for r in records) == sorted(expected)
            assert all(0.0 <= r["score"] <= 1.0 for r in records)


def test_table3_from_mmad(demo_run):
    table = pd.read_csv(demo_run / "results/table3.csv")
    assert list(dict.fromkeys(table["column"])) == [
        "Defect Classification",
        "Defect Localization",
        "Defect Description",
        "Defect Analysis",
        "Object Classification",
        "Object Analysis",
        "Avg",
    ]
    for model, run in (("Qwen2.5-VL", "zero_shot"), ("AD-FM", "adfm"), ("GPT-4o", "gpt-4o")):
        metrics = pd.read_csv(demo_run / f"results/mmad/metrics/{run}.csv")
        overall = metrics[metrics["dataset"] == "all"].set_index("category")["accuracy"]
        assert cell(table, model, "Object Analysis").ours == pytest.approx(overall["Object Analysis"])
        assert cell(table, model, "Avg").status == "ok"
        assert {"Anomaly Detection", "Object Analysis"} <= set(overall.index)
        assert not {"Object Structure", "Object Details"} & set(metrics["category"])
        sources = set(metrics["dataset"]) - {"all"}
        assert sources == {"DS-MVTec", "MVTec-LOCO", "VisA", "GoodsAD"}


def test_table1_api_rows_follow_mmads_protocol(demo_run):
    # GPT-4o (the fake API) fills Table 1 as MMAD did: its Anomaly Detection question, balanced accuracy
    table = pd.read_csv(demo_run / "results/table1.csv")
    config = run_config(demo_run)
    metrics = pd.read_csv(demo_run / "results/mmad/metrics/gpt-4o.csv")
    anomaly = metrics[metrics["category"] == "Anomaly Detection"].set_index("dataset")["balanced_accuracy"]
    for column, source in config["tables"]["table1"]["mmad_sources"].items():
        assert cell(table, "GPT-4o", column).ours == pytest.approx(anomaly[source]), column
        assert cell(table, "GPT-4o", column).protocol.startswith("MMAD's letter prompt")
    assert "every split row" in cell(table, "Qwen2.5-VL", "VisA").protocol
    assert "held-out" in cell(table, "AD-FM", "VisA").protocol
    notes = (demo_run / "results/table1.md").read_text().split("Protocol of each row:")[1]
    assert "- GPT-4o (gpt-4o): ours: MMAD's letter prompt" in notes and "Paper: from MMAD" in notes
    for dataset in ("mvtec_ad", "visa"):  # every metrics file has both accuracies
        assert {"accuracy", "balanced_accuracy"} <= set(pd.read_csv(demo_run / f"results/metrics/adfm/{dataset}.csv"))


def test_mmad_asks_the_runs_only_about_test_role_images(demo_run):
    from adfm.data.datasets.mmad import source_image

    config = run_config(demo_run)
    split = pd.read_csv(demo_run / "resources/splits/multidomain.csv", keep_default_na=False)
    layouts = {name: config["datasets"][name]["layout"] for name in split["dataset"].unique()}
    roles = {source_image(layouts[r.dataset], r.category, r.label, r.image_path): r.role for r in split.itertuples()}
    questions = pd.read_csv(demo_run / "resources/splits/mmad_questions.csv", keep_default_na=False)
    role = questions["source_image"].map(roles)
    assert set(role) == {"train", "test"}  # the demo MMAD holds the demo datasets' test images
    assert (questions["drop_reason"] == role.map({"train": "training", "test": ""})).all()
    training = questions[role == "train"]
    for run, filtered in (("zero_shot", True), ("adfm", True), ("gpt-4o", False)):
        asked = {
            r["image_path"]
            for r in map(json.loads, (demo_run / f"results/mmad/predictions/{run}.jsonl").read_text().splitlines())
        }
        assert asked.isdisjoint(training["image_path"]) == filtered, run
        metrics = pd.read_csv(demo_run / f"results/mmad/metrics/{run}.csv").set_index(["dataset", "category"])
        assert metrics.loc[("all", "Average"), "dropped_training"] == (len(training) if filtered else 0), run
    log = (demo_run / "logs/mmad_questions.log").read_text()
    assert "not asked under resources/splits/multidomain.csv" in log


def test_figures(demo_run):
    config = run_config(demo_run)
    for figure in ("fig3", "fig4", "fig5"):
        assert (demo_run / f"results/{figure}.png").read_bytes()[:4] == b"\x89PNG"
        assert (demo_run / f"results/{figure}.pdf").read_bytes()[:4] == b"%PDF"
    assert len(pd.read_csv(demo_run / "results/fig3.csv")) == 4
    fig4 = pd.read_csv(demo_run / "results/fig4.csv")
    assert len(fig4) == config["figures"]["fig4"]["num_generations"] and fig4["image_path"].nunique() == 1
    assert sorted(fig4["shown"].dropna()) == ["a", "b", "c", "d"]
    fig5 = pd.read_csv(demo_run / "results/fig5.csv")
    assert fig5["reward"].tolist() == ["r_cls", "r_cls + r_count", "r_cls + r_loc"]
    assert fig5["paper_pct"].tolist() == [41.25, 15.25, 11.0]
    split = pd.read_csv(demo_run / "resources/splits/multidomain.csv")
    rows = (split["dataset"] == config["figures"]["fig5"]["dataset"]).sum()  # figures.fig5.rows: all
    assert (fig5["images"] == min(config["figures"]["fig5"]["images"], rows)).all()
    assert (fig5["responses_per_image"] == config["figures"]["fig5"]["num_generations"]).all()
    samples = [json.loads(line) for line in (demo_run / "results/samples/fig5.jsonl").read_text().splitlines()]
    assert {r["model"] for r in samples} == {config["figures"]["fig5"]["run"]}


def planned_outputs(workdir, *targets):
    """(rule, output) of every job a forced dry run of the targets plans."""
    result = snakemake(workdir, "-n", "--forceall", *targets)
    jobs, rule = [], None
    for line in (result.stdout + result.stderr).splitlines():
        match = re.match(r"(?:local)?rule (\w+):", line)
        if match:
            rule = match.group(1)
        match = re.match(r"\s+output: (.*)", line)
        if match and rule:
            jobs += [(rule, path.strip()) for path in match.group(1).split(",")]
            rule = None
    return jobs


def test_table2_plans_only_what_table2_needs(demo_run):
    config = run_config(demo_run)
    protocol = config["protocols"]["crossdataset"]
    datasets = [*protocol["train"], *protocol["test"]]
    needed = {
        "resources/splits/crossdataset.csv",
        *{f"resources/models/{vlms.folder_of(config, model)}" for model in TABLE2_MODELS if model in config["runs"]},
        "results/table2.csv",
        "results/table2.md",
        "results/table2.html",
    }
    for dataset in datasets:
        spec = config["datasets"][dataset]
        archive = spec["url"].removeprefix("file:")
        needed |= {
            archive,
            spec["checksum_file"],
            f"resources/datasets/{dataset}",
            f"resources/sources/{dataset}.yaml",
            f"resources/manifests/{dataset}.csv",
            f"resources/boxes/{dataset}.csv",
            f"resources/boxes/{dataset}.summary.csv",
        }
    for model in TABLE2_MODELS:
        for dataset in protocol["test"]:
            needed |= {f"results/predictions/{model}/{dataset}.jsonl", f"results/metrics/{model}/{dataset}.csv"}
    jobs = planned_outputs(demo_run, "results/table2.csv")
    # training outputs of the cross-dataset run: its adapter, and the warm start of its protocol
    unexpected = [
        (rule, path)
        for rule, path in jobs
        if path not in needed and "adfm_cross" not in path and "crossdataset" not in path
    ]
    assert unexpected == []
    planned = {path for _, path in jobs}
    assert needed <= planned
    assert "resources/adapters/adfm_cross" in planned
    assert not any("multidomain" in p or "mmad" in p or "fig" in p for p in planned)

import copy

import pandas as pd
import pytest
import yaml
from conftest import REPO
from jsonschema import Draft202012Validator

from adfm.cli import main
from adfm.config import check_references, load_config
from adfm.evaluation.score import accuracy_table, balanced_accuracy
from adfm.evaluation.table_layout import row_protocol, to_markdown
from adfm.evaluation.tables import build_table
from adfm.io import InputError, read_jsonl, write_jsonl
from adfm.settings.evaluation import TableRow, TableSettings


def record(model, category, label, answer, dataset="mvtec_ad"):
    return dict(
        model=model,
        dataset=dataset,
        category=category,
        image_path=f"{category}{label}{answer}",
        label=label,
        sample=0,
        answer=answer,
    )


def test_accuracy_counts_unanswered_as_wrong():
    records = [
        record("m", "a", 1, "yes"),
        record("m", "a", 0, "yes"),
        record("m", "b", 0, "no"),
        record("m", "b", 1, None),
    ]
    table = accuracy_table(records).set_index(["category"])
    assert table.loc["a", "accuracy"] == 50.0
    assert table.loc["b", "accuracy"] == 50.0
    assert table.loc["all", "accuracy"] == 50.0
    assert table.loc["all", "answered"] == 3


def test_accuracy_of_nothing_is_an_error():
    with pytest.raises(InputError, match="no prediction records to score"):
        accuracy_table([])


TABLE1 = {
    "paper": "table1_multidomain.csv",
    "keys": ["model", "scale"],
    "columns": {"MVTec": "mvtec_ad", "VisA": "visa", "MVTec-LOCO": "mvtec_loco", "GoodsAD": "goodsad"},
    "rows": [{"match": {"model": "AD-FM", "scale": "7B"}, "run": "adfm"}],
}


def test_score_writes_one_metrics_file_per_predictions_file(tmp_path, capsys):
    files = {}
    for dataset, answer in (("mvtec_ad", "yes"), ("visa", "no")):
        files[dataset] = tmp_path / f"{dataset}.jsonl"
        write_jsonl(
            files[dataset], [record("m", "bottle", 1, answer, dataset), record("m", "bottle", 0, "no", dataset)]
        )
    outs = [str(tmp_path / "metrics" / f"{d}.csv") for d in files]
    assert main(["score", "--predictions", *map(str, files.values()), "--out", *outs]) == 0
    for dataset, out in zip(files, outs, strict=True):
        assert pd.read_csv(out).equals(accuracy_table(read_jsonl(files[dataset])).reset_index(drop=True))
    with pytest.raises(SystemExit):
        main(["score", "--predictions", *map(str, files.values()), "--out", outs[0]])
    assert "one --out per predictions file" in capsys.readouterr().err


def metrics(run="adfm", **accuracies):
    return pd.DataFrame([dict(model=run, dataset=d, category="all", accuracy=a) for d, a in accuracies.items()])


def test_table_cells_hold_ours_paper_and_difference():
    table = build_table(TableSettings.from_dict(TABLE1), metrics(mvtec_ad=80.0))
    cell = table[(table.model == "AD-FM") & (table.column == "MVTec")].iloc[0]
    assert (cell.ours, cell.paper, cell["diff"], cell.status) == (80.0, 90.72, -10.72, "ok")
    visa = table[(table.model == "AD-FM") & (table.column == "VisA")].iloc[0]
    assert pd.isna(visa.ours) and visa.paper == 79.52 and visa.status.startswith("not run")
    average = table[(table.model == "AD-FM") & (table.column == "Avg")].iloc[0]
    assert pd.isna(average.ours) and "3 of 4 datasets missing" in average.status


def test_rows_not_run_keep_the_paper_value_only():
    table = build_table(TableSettings.from_dict(TABLE1), metrics(mvtec_ad=80.0))
    gpt = table[table.model == "GPT-4.1"]
    assert gpt.ours.isna().all() and (gpt.status == "not run").all()
    assert gpt[gpt.column == "Avg"].paper.iloc[0] == 71.60
    assert len(table) == 11 * 5  # every paper row, every column


def test_average_over_all_columns_when_all_ran():
    table = build_table(
        TableSettings.from_dict(TABLE1), metrics(mvtec_ad=80.0, visa=70.0, mvtec_loco=60.0, goodsad=50.0)
    )
    average = table[(table.model == "AD-FM") & (table.column == "Avg")].iloc[0]
    assert average.ours == 65.0 and average["diff"] == round(65.0 - 73.15, 2)


def test_markdown_has_the_paper_shape():
    text = to_markdown(build_table(TableSettings.from_dict(TABLE1), metrics(mvtec_ad=80.0)), TABLE1["keys"])
    assert "| group | model | scale | MVTec | VisA | MVTec-LOCO | GoodsAD | Avg |" in text
    assert "| Fine-tuned | AD-FM | 7B | 80.00 (90.72) | – (79.52) |" in text


def test_a_row_the_paper_lacks_gets_our_value_and_an_empty_paper_cell():
    spec = copy.deepcopy(TABLE1)
    spec["rows"][0]["match"] = {"model": "AD-FM", "scale": "3B"}
    table = build_table(TableSettings.from_dict(spec), metrics(mvtec_ad=80.0))
    new = table[(table.model == "AD-FM") & (table.scale == "3B")]
    assert len(new) == 5 and new.paper.isna().all() and new["diff"].isna().all()
    assert new[new.column == "MVTec"].ours.iloc[0] == 80.0
    assert table.iloc[-1].model == "AD-FM" and table.iloc[-1].scale == "3B"  # below the paper's rows
    assert "| AD-FM | 3B | 80.00 (–) |" in to_markdown(table, spec["keys"], TableSettings.from_dict(spec))


def test_an_ambiguous_or_unknown_match_is_an_error():
    spec = copy.deepcopy(TABLE1)
    spec["rows"][0]["match"] = {"group": "Open-source"}
    with pytest.raises(InputError, match=r"matches \d+ rows of table1_multidomain.csv; name more"):
        build_table(TableSettings.from_dict(spec), metrics(mvtec_ad=80.0))
    spec["rows"][0]["match"] = {"modle": "AD-FM"}
    with pytest.raises(InputError, match=r"names \['modle'\], not row keys"):
        build_table(TableSettings.from_dict(spec), metrics(mvtec_ad=80.0))


def load(path):
    return yaml.safe_load((REPO / path).read_text())


@pytest.mark.parametrize("configs", [["config.yaml"], ["config.yaml", "workflow/configs/demo.yaml"]])
def test_shipped_configs_are_valid(configs):
    config = load_config([REPO / path for path in configs])
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    errors = list(Draft202012Validator(schema).iter_errors(config))
    assert errors == []
    assert check_references(config) == []


def test_reference_checks_name_the_key():
    config = load("config.yaml")
    config["runs"]["adfm"]["protocol"] = "nowhere"
    config["tables"]["table1"]["rows"][0]["run"] = "ghost"
    config["protocols"]["multidomain"]["datasets"] = ["mvtec_ad", "unknown_set"]
    problems = check_references(config)
    assert "runs.adfm.protocol: unknown protocol 'nowhere'" in problems
    assert "tables.table1.rows: unknown run 'ghost'" in problems
    assert "protocols.multidomain.datasets: unknown dataset 'unknown_set'" in problems


def test_schema_rejects_unknown_keys_and_bad_values():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    config = load("config.yaml")
    config["runs"]["adfm"]["rewards"] = ["cls", "accuracy"]
    config["train"]["grpo"]["num_generation"] = 6
    config["boxes"]["min_area"] = -1
    messages = [e.message for e in Draft202012Validator(schema).iter_errors(config)]
    assert any("'accuracy' is not one of" in m for m in messages)
    assert any("num_generation" in m for m in messages)
    assert any("-1 is less than the minimum" in m for m in messages)


# ---- continuous scores, Youden's J, table rows of baselines and MMAD


def scored(model, dataset, category, label, score):
    return dict(
        model=model,
        dataset=dataset,
        category=category,
        image_path=f"{category}{label}{score}",
        label=label,
        sample=0,
        score=score,
    )


def test_continuous_scores_at_half_and_at_youden_j():
    from adfm.evaluation.score import youden_threshold

    # normals at 0.1-0.3, anomalies at 0.35-0.45: all below 0.5, perfectly separated at 0.35
    records = [scored("clip", "visa", "a", 0, s) for s in (0.1, 0.2, 0.3)] + [
        scored("clip", "visa", "b", 1, s) for s in (0.35, 0.4, 0.45)
    ]
    assert youden_threshold([r["score"] for r in records], [r["label"] for r in records]) == 0.35
    table = accuracy_table(records).set_index("category")
    assert table.loc["all", "accuracy"] == 50.0  # tau = 0.5 calls everything normal
    assert table.loc["all", "accuracy_youden"] == 100.0
    assert table.loc["all", "threshold_youden"] == 0.35 and table.loc["all", "threshold"] == 0.5
    assert table.loc["all", "auroc"] == 100.0
    assert table.loc["b", "accuracy_youden"] == 100.0  # categories use their dataset's threshold


def test_youden_with_one_class_falls_back_to_half_and_ties_count_half_in_auroc():
    from adfm.evaluation.score import auroc, youden_threshold

    assert youden_threshold([0.2, 0.9], [1, 1]) == 0.5
    assert auroc([0.5, 0.5], [0, 1]) == 0.5
    assert auroc([0.5], [1]) is None


TABLE2 = {
    "paper": "table2_crossdataset.csv",
    "keys": ["model", "scale"],
    "columns": {"VisA": "visa", "MPDD": "mpdd", "DTD": "dtd_synthetic", "DAGM": "dagm"},
    "rows": [
        {"match": {"model": "WinCLIP (tau=0.5)"}, "run": "winclip", "metric": "accuracy"},
        {"match": {"model": "WinCLIP (Youden J)"}, "run": "winclip", "metric": "accuracy_youden"},
        {
            "match": {"model": "GPT-4o"},
            "run": "gpt-4o_cross",
            "skip": "not run: no API key (environment variable OPENAI_API_KEY not set)",
        },
    ],
}


def test_table2_has_both_threshold_rows_and_skipped_api_rows():
    metrics = pd.DataFrame(
        [
            dict(model="winclip", dataset=d, category="all", accuracy=50.0, accuracy_youden=75.0)
            for d in ("visa", "mpdd", "dtd_synthetic", "dagm")
        ]
    )
    table = build_table(TableSettings.from_dict(TABLE2), metrics)
    half = table[(table.model == "WinCLIP (tau=0.5)") & (table.column == "Avg")].iloc[0]
    youden = table[(table.model == "WinCLIP (Youden J)") & (table.column == "Avg")].iloc[0]
    assert (half.ours, half.paper) == (50.0, 57.08) and (youden.ours, youden.paper) == (75.0, 75.85)
    gpt = table[table.model == "GPT-4o"]
    assert gpt.ours.isna().all() and gpt.status.str.contains("OPENAI_API_KEY").all()
    assert gpt[gpt.column == "VisA"].paper.iloc[0] == 73.77
    markdown = to_markdown(table, TABLE2["keys"])
    assert "| Proprietary | GPT-4o |  | – (73.77) |" in markdown and "not run: no API key" in markdown


def test_youden_row_on_binary_predictions_is_an_error():
    metrics = pd.DataFrame([dict(model="winclip", dataset="visa", category="all", accuracy=50.0)])
    with pytest.raises(InputError, match="accuracy_youden"):
        build_table(TableSettings.from_dict(TABLE2), metrics)


def test_table3_selects_question_types_averaged_over_mmad_sources():
    from adfm.evaluation.mmad_score import TYPES

    spec = {
        "paper": "table3_multitask.csv",
        "keys": ["model", "scale"],
        "select": "question_type",
        "columns": {t: t for t in TYPES if t != "Anomaly Detection"},
        "rows": [{"match": {"model": "AD-FM", "scale": "7B"}, "run": "adfm"}],
    }
    metrics = pd.DataFrame(
        [
            dict(model="adfm", dataset=d, category=t, accuracy=a)
            for t in TYPES
            for d, a in (("all", 60.0), ("VisA", 10.0))
        ]
    )
    table = build_table(
        TableSettings.from_dict(spec), pd.DataFrame(columns=["model", "dataset", "category", "accuracy"]), metrics
    )
    row = table[table.model == "AD-FM"].set_index("column")
    assert row.loc["Object Analysis", "ours"] == 60.0 and row.loc["Object Analysis", "paper"] == 86.67
    assert row.loc["Avg", "ours"] == 60.0 and row.loc["Avg", "paper"] == 83.56
    assert len(row) == 7  # six question types and the average
    assert (
        row["protocol"] == row_protocol(TableRow(match={}, run="any"), "question_type")
    ).all() and "MMAD's letter prompt" in row["protocol"].iloc[0]


# ---- plain and balanced accuracy; rows filled with the protocol of the paper's number


def test_balanced_accuracy_by_hand():
    # category a: 3 anomalous (2 judged right), 1 normal (judged wrong); b: 1 normal right, 1 anomalous unanswered
    records = [
        record("m", "a", 1, "yes"),
        record("m", "a", 1, "yes") | {"image_path": "a2"},
        record("m", "a", 1, "no"),
        record("m", "a", 0, "yes"),
        record("m", "b", 0, "no"),
        record("m", "b", 1, None),
    ]
    table = accuracy_table(records).set_index("category")
    assert table.loc["a", "accuracy"] == 50.0 and table.loc["a", "balanced_accuracy"] == round(100 * (2 / 3 + 0) / 2, 2)
    assert table.loc["b", "balanced_accuracy"] == 50.0  # (1/1 + 0/1) / 2: unanswered counts as wrong
    # all: anomalous 2 of 4 right, normal 1 of 2 right -> (0.5 + 0.5) / 2
    assert table.loc["all", "accuracy"] == 50.0 and table.loc["all", "balanced_accuracy"] == 50.0
    assert list(table.columns[-2:]) == ["accuracy", "balanced_accuracy"]
    assert balanced_accuracy([True, False, True], [1, 1, 1]) == pytest.approx(200 / 3)  # one class: its share


def test_balanced_accuracy_of_scores_at_both_thresholds():
    records = [scored("clip", "visa", "a", 1, s) for s in (0.9, 0.4)] + [
        scored("clip", "visa", "a", 0, s) for s in (0.3, 0.6, 0.1)
    ]
    row = accuracy_table(records).set_index("category").loc["all"]
    # tau 0.5: anomalous 1/2, normal 2/3; Youden (0.4): anomalous 2/2, normal 2/3
    assert row["accuracy"] == 60.0 and row["balanced_accuracy"] == round(100 * (1 / 2 + 2 / 3) / 2, 2)
    assert row["threshold_youden"] == 0.4
    assert row["accuracy_youden"] == 80.0 and row["balanced_accuracy_youden"] == round(100 * (1 + 2 / 3) / 2, 2)


TABLE1_MMAD = {
    **TABLE1,
    "mmad_sources": {"MVTec": "DS-MVTec", "VisA": "VisA", "MVTec-LOCO": "MVTec-LOCO", "GoodsAD": "GoodsAD"},
    "rows": [
        {
            "match": {"model": "Qwen2.5-VL", "scale": "7B"},
            "run": "zero_shot",
            "eval_rows": "all",
            "reasoning": "multi_stage",
            "paper_protocol": "plain accuracy, full test split",
        },
        {
            "match": {"model": "GPT-4o-mini"},
            "run": "gpt-4o-mini",
            "prompt": "mmad",
            "metric": "balanced_accuracy",
            "paper_protocol": "from MMAD",
        },
    ],
}
SOURCES = {"DS-MVTec": 80.0, "VisA": 70.0, "MVTec-LOCO": 60.0, "GoodsAD": 50.0}


def mmad_metrics(**extra):
    rows = [
        {
            "model": "gpt-4o-mini",
            "dataset": source,
            "category": "Anomaly Detection",
            "accuracy": value - 5,
            "balanced_accuracy": value,
            **extra,
        }
        for source, value in SOURCES.items()
    ]
    rows.append(
        {
            "model": "gpt-4o-mini",
            "dataset": "all",
            "category": "Anomaly Detection",
            "accuracy": 0.0,
            "balanced_accuracy": 0.0,
            **extra,
        }
    )
    return pd.DataFrame(rows)


def test_api_rows_of_table1_take_mmads_balanced_anomaly_detection_accuracy():
    split = pd.DataFrame(
        [
            {"model": "zero_shot", "dataset": d, "category": "all", "accuracy": 55.5, "balanced_accuracy": 50.0}
            for d in TABLE1["columns"].values()
        ]
    )
    table = build_table(TableSettings.from_dict(TABLE1_MMAD), split, mmad_metrics())
    gpt = table[table.model == "GPT-4o-mini"].set_index("column")
    assert gpt.loc["MVTec", "ours"] == 80.0 and gpt.loc["GoodsAD", "ours"] == 50.0
    assert gpt.loc["Avg", "ours"] == 65.0 and gpt.loc["Avg", "diff"] == round(65.0 - 64.33, 2)
    assert gpt.loc["MVTec", "protocol"].startswith("MMAD's letter prompt, its Anomaly Detection question; balanced")
    qwen = table[table.model == "Qwen2.5-VL"].set_index("column")
    assert qwen.loc["VisA", "ours"] == 55.5  # plain accuracy, the default metric
    assert qwen.loc["VisA", "protocol"] == (
        "our multi_stage prompt; plain accuracy; every split row of each dataset "
        "(the full test split under the multi-domain protocol)"
    )
    markdown = to_markdown(table, TABLE1["keys"], TableSettings.from_dict(TABLE1_MMAD))
    assert "- GPT-4o-mini (gpt-4o-mini): ours: MMAD's letter prompt" in markdown and "Paper: from MMAD" in markdown
    assert "- Qwen2.5-VL 7B (zero_shot): ours: our multi_stage prompt; plain accuracy; every split row" in markdown


def test_a_row_no_run_fills_keeps_the_papers_value_and_says_why():
    spec = {
        **TABLE1_MMAD,
        "rows": [*TABLE1_MMAD["rows"], {"match": {"model": "InternVL2"}, "skip": "not run: no checkpoint"}],
    }
    table = build_table(TableSettings.from_dict(spec), metrics(mvtec_ad=80.0), mmad_metrics())
    internvl2 = table[table.model == "InternVL2"].set_index("column")
    assert internvl2["ours"].isna().all() and (internvl2["status"] == "not run: no checkpoint").all()
    assert internvl2.loc["MVTec", "paper"] == 79.42 and (internvl2["protocol"] == "").all()
    markdown = to_markdown(table, TABLE1["keys"], TableSettings.from_dict(spec))
    assert "- InternVL2: not run: no checkpoint." in markdown


def test_mmad_rows_name_what_is_missing():
    spec = {**TABLE1_MMAD, "mmad_sources": {"MVTec": "DS-MVTec"}}
    with pytest.raises(InputError, match="mmad_sources"):
        build_table(TableSettings.from_dict(spec), metrics(mvtec_ad=80.0), mmad_metrics())
    without = mmad_metrics(path="results/mmad/metrics/gpt-4o-mini.csv").drop(columns="balanced_accuracy")
    with pytest.raises(InputError, match="no 'balanced_accuracy' in results/mmad/metrics/gpt-4o-mini.csv"):
        build_table(TableSettings.from_dict(TABLE1_MMAD), metrics(mvtec_ad=80.0), without)


def test_shipped_tables_fill_each_row_with_its_papers_protocol():
    config = load_config([REPO / "config.yaml"])
    rows = {row["run"]: row for row in config["tables"]["table1"]["rows"] if "run" in row}
    for run in ("gpt-4o-mini", "gpt-4o"):
        assert (rows[run]["prompt"], rows[run]["metric"]) == ("mmad", "balanced_accuracy")
    for run in ("zero_shot", "adfm", "gpt-4.1"):
        assert rows[run].get("prompt", "reasoning") == "reasoning" and rows[run].get("metric", "accuracy") == "accuracy"
    # a row no run fills says why instead
    assert all(
        row.get("paper_protocol") or row.get("not_run") for table in config["tables"].values() for row in table["rows"]
    )


def test_protocol_reference_checks():
    config = load("config.yaml")
    config["tables"]["table1"].pop("mmad_sources")
    config["tables"]["table3"]["rows"][0]["prompt"] = "reasoning"
    config["tables"]["table2"]["rows"][2]["prompt"] = "mmad"  # WinCLIP
    problems = check_references(config)
    assert any(p.startswith("tables.table1.mmad_sources: prompt mmad rows need") for p in problems)
    assert any(p.startswith("tables.table3.rows: MMAD's question types are asked with MMAD's prompt") for p in problems)

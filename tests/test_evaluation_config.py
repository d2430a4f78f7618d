"""Config of the evaluation side: baselines, API availability, table inputs, figure settings."""

from __future__ import annotations

import copy

import pytest
from conftest import REPO

from adfm import config as adfm_config
from adfm import targets
from adfm.settings.evaluation import FigureSettings, TableSettings
from adfm.settings.inference import ApiSettings, MmadSettings, PredictSettings


@pytest.fixture(scope="module")
def paper():
    return adfm_config.load_config([REPO / "config.yaml"])


@pytest.fixture(scope="module")
def demo():
    return adfm_config.load_config([REPO / "config.yaml", REPO / "workflow/configs/demo.yaml"])


def test_api_rows_run_only_when_enabled_and_keyed(paper, demo):
    assert targets.unavailable_reason(paper, "gpt-4o", {}) == (
        "not run: no API key (environment variable OPENAI_API_KEY not set)"
    )
    assert targets.unavailable_reason(paper, "gpt-4o", {"OPENAI_API_KEY": "sk-x"}) is None
    assert "api.enabled: false" in targets.unavailable_reason(demo, "gpt-4o", {"OPENAI_API_KEY": "sk-x"})
    assert targets.unavailable_reason(paper, "adfm", {}) is None  # a run is always available


def test_missing_clip_weights_mark_the_rows_not_run(paper, demo):
    assert "not found" in targets.unavailable_reason(paper, "winclip", {})
    assert targets.unavailable_reason(demo, "winclip", {}) is None  # random tiny CLIP
    assert targets.unavailable_reason(demo, "anomalyclip", {}) is None


def test_table_needs_and_spec_follow_availability(paper, monkeypatch):
    without = targets.table_needs(paper, "table2", {})
    assert ("adfm_cross", "visa") in without["metrics"] and without["mmad_metrics"] == []
    assert not any("gpt" in model or "clip" in model for model, _ in without["metrics"])
    keyed = targets.table_needs(paper, "table2", {"OPENAI_API_KEY": "sk-x"})
    assert ("gpt-4o_cross", "dagm") in keyed["metrics"]
    spec = TableSettings.from_config(paper, "table2", {})
    skipped = {row.run: row.skip for row in spec.rows}
    assert skipped["gpt-4o_cross"].startswith("not run") and skipped["adfm_cross"] is None
    # the open-source VLMs answer MMAD's questions as the base model does; InternVL2-76B has no row to run
    asked = ["zero_shot", "adfm", "llava_next_34b", "internvl3_8b", "internvl3_38b"]
    assert targets.table_needs(paper, "table3", {}) == {"metrics": [], "mmad_metrics": asked}
    internvl2 = [
        row for row in TableSettings.from_config(paper, "table3", {}).rows if row.match["model"] == "InternVL2"
    ]
    assert internvl2[0].run is None and "no transformers-native checkpoint" in internvl2[0].skip
    # Table 1's GPT-4o(-mini) rows: MMAD's Anomaly Detection question, not a rerun on the split
    table1 = targets.table_needs(paper, "table1", {"OPENAI_API_KEY": "sk-x"})
    assert table1["mmad_metrics"] == ["gpt-4o-mini", "gpt-4o"]
    assert ("gpt-4.1", "visa") in table1["metrics"]


def test_a_models_one_prediction_job_makes_only_what_tables_read(paper, demo):
    """A model's prediction job (evaluate.smk) writes every dataset its protocol tests; in both
    configs each of them is a table's column wherever a table reads the model at all, so no job
    predicts a file nobody reads."""
    for config in (paper, demo):
        read = {}
        for table in config["tables"]:
            for model, dataset in targets.table_needs(config, table, {"OPENAI_API_KEY": "sk-x"})["metrics"]:
                read.setdefault(model, set()).add(dataset)
        assert read and all(datasets == set(targets.datasets_tested_by(config, m)) for m, datasets in read.items())


def test_settings_never_hold_the_key(paper, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    for text in (
        ApiSettings.from_config(paper, "gpt-4.1").to_json(),
        MmadSettings.from_config(paper, "gpt-4.1").to_json(),
        TableSettings.from_config(paper, "table1").to_json(),
    ):
        assert "sk-secret" not in text
    settings = ApiSettings.from_config(paper, "gpt-4.1").to_dict()
    assert settings["api"]["key_env"] == "OPENAI_API_KEY" and settings["api"]["model"] == "gpt-4.1"


def test_sampling_settings_of_the_figures(paper, demo):
    fig5 = PredictSettings.for_figure(paper, "fig5").to_dict()
    assert (fig5["num_samples"], fig5["temperature"], fig5["max_images"], fig5["role"]) == (6, 0.9, 500, "all")
    assert fig5["max_new_tokens"] == paper["train"]["grpo"]["max_completion_length"]
    fig4 = PredictSettings.for_figure(demo, "fig4").to_dict()
    assert (fig4["label"], fig4["max_images"]) == (1, 1)
    assert FigureSettings.from_config(paper, "fig4").rewards["alpha"] == paper["rewards"]["alpha"]


def test_reference_problems_name_the_key(paper):
    config = copy.deepcopy(paper)
    config["baselines"]["winclip"]["protocol"] = "nowhere"
    config["baselines"]["adfm"] = {"backend": "api", "protocol": "multidomain", "model": "x"}
    config["tables"]["table1"]["rows"].append({"match": {"model": "AD-FM"}, "run": "adfm", "metric": "accuracy_youden"})
    config["figures"]["fig5"]["dataset"] = "dagm"
    config["mmad"]["dataset"] = "mmad2"
    problems = adfm_config.check_references(config)
    assert "baselines.winclip.protocol: unknown protocol 'nowhere'" in problems
    assert "baselines.adfm: the name is also a run" in problems
    assert any(p.startswith("tables.table1.rows: metric 'accuracy_youden' needs a CLIP baseline") for p in problems)
    assert any(p.startswith("figures.fig5.dataset: 'dagm'") for p in problems)
    assert "mmad.dataset: unknown dataset 'mmad2'" in problems


def test_schema_rejects_bad_evaluation_keys(paper):
    config = copy.deepcopy(paper)
    config["baselines"]["winclip"]["shots"] = 5
    config["baselines"]["gpt-4o"].pop("model")
    config["api"]["key_env"] = "not a variable"
    config["tables"]["table2"]["rows"][0]["metric"] = "auroc"
    problems = adfm_config.schema_problems(config)
    assert any(p.startswith("baselines.winclip.shots") for p in problems)
    assert any(p.startswith("baselines.gpt-4o") and "'model' is a required property" in p for p in problems)
    assert any(p.startswith("api.key_env") for p in problems)
    assert any(p.startswith("tables.table2.rows.0.metric") for p in problems)

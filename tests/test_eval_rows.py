"""Which split rows each model is scored on (runs' and baselines' eval_rows) and which images
Figure 5 draws from (figures.fig5.rows): the paper's untrained rows used the full test split."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
from conftest import REPO
from model_fixtures import write_split

from adfm import config as adfm_config
from adfm.inference.records import select_rows
from adfm.settings.evaluation import FigureSettings
from adfm.settings.inference import ApiSettings, ClipSettings, PredictSettings


@pytest.fixture(scope="module")
def paper():
    return adfm_config.load_config([REPO / "config.yaml"])


def test_untrained_rows_use_the_full_test_split_trained_ones_the_held_out_rows(paper):
    role = {name: PredictSettings.from_config(paper, name).role for name in ("zero_shot", "adfm")}
    assert role == {"zero_shot": "all", "adfm": "test"}
    assert ApiSettings.from_config(paper, "gpt-4.1").role == "all"
    assert ClipSettings.from_config(paper, "winclip").role == "test"  # the schema's default


def test_a_trained_run_on_all_rows_is_a_config_error(paper):
    config = copy.deepcopy(paper)
    config["runs"]["adfm"]["eval_rows"] = "all"
    assert "runs.adfm.eval_rows: 'all' would score a trained run on its own training images" in (
        adfm_config.check_references(config)
    )


def test_all_rows_are_every_role_of_the_dataset(tmp_path):
    split = write_split(tmp_path / "data", n_train=2, n_test=5, datasets=("alpha", "beta"))
    table = pd.read_csv(split)
    rows = select_rows(split, "alpha", "all")
    assert sorted(rows["image_path"]) == sorted(table[table["dataset"] == "alpha"]["image_path"])
    assert len(select_rows(split, "alpha", "test")) == 5 and len(rows) == 7


def test_figure5_draws_from_all_rows_so_it_can_reach_500_images(paper):
    fig5 = PredictSettings.for_figure(paper, "fig5")
    assert (fig5.role, fig5.max_images) == ("all", 500)
    assert PredictSettings.for_figure(paper, "fig4").role == "train"
    assert FigureSettings.from_config(paper, "fig5").rows == "all"

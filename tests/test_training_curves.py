"""The training-curves figure from hand-made train_log.csv files."""

import pandas as pd
import pytest

from adfm.evaluation import training_curves as tc
from adfm.io import InputError

LOG_A = pd.DataFrame(
    {
        "step": [1, 2, 3, 3],
        "epoch": [0.1, 0.2, 0.3, 0.3],
        "loss": [0.1, 0.2, 0.3, None],
        "reward": [0.5, 0.75, 1.0, None],  # the last row: TRL's end-of-training summary, no rewards
        "reward_std": [0.1, 0.1, 0.1, None],
        "frac_reward_zero_std": [0.5, 0.25, 0.0, None],
        "kl": [0.0, 0.01, 0.02, None],
        "completions/mean_length": [100, 90, 80, None],
        "rewards/cls_reward/mean": [0.5, 0.5, 1.0, None],
        "rewards/cls_reward/std": [0.5, 0.5, 0.0, None],
        "rewards/loc_reward/mean": [0.0, 0.25, 0.5, None],
        "world_size": [1, 1, 1, 1],
    }
)
LOG_B = LOG_A.drop(columns=["rewards/loc_reward/mean"]).assign(reward=[0.2, 0.3, 0.4, None])


def test_long_form_keeps_each_drawn_metric_per_run_and_step():
    curves = tc.long_form({"r_cls + r_loc": LOG_A, "r_cls": LOG_B})
    assert set(curves["metric"]) == {
        "reward",
        "frac_reward_zero_std",
        "kl",
        "completions/mean_length",
        "rewards/cls_reward/mean",
        "rewards/loc_reward/mean",
    }
    zero_std = curves[(curves["run"] == "r_cls + r_loc") & (curves["metric"] == "frac_reward_zero_std")]
    assert zero_std["step"].tolist() == [1, 2, 3]  # the summary row without a value is left out
    assert zero_std["value"].tolist() == [50.0, 25.0, 0.0]  # a share, drawn in %
    loc = curves[curves["metric"] == "rewards/loc_reward/mean"]
    assert set(loc["run"]) == {"r_cls + r_loc"}  # only the run that has the reward
    assert curves[(curves["run"] == "r_cls") & (curves["metric"] == "reward")]["value"].tolist() == [0.2, 0.3, 0.4]


def test_panels_put_the_mean_reward_first_then_each_reward_then_the_rest():
    assert tc.panel_order(
        [
            "kl",
            "rewards/loc_reward/mean",
            "reward",
            "frac_reward_zero_std",
            "rewards/cls_reward/mean",
            "completions/mean_length",
        ]
    ) == [
        "reward",
        "rewards/cls_reward/mean",
        "rewards/loc_reward/mean",
        "frac_reward_zero_std",
        "kl",
        "completions/mean_length",
    ]
    assert tc.metric_title("rewards/cls_reward/mean") == "reward cls_reward (mean)"
    assert tc.metric_title("rewards/cls_reward/std") is None


def test_figure_draws_a_line_per_run_in_each_panel(tmp_path):
    logs = {}
    for name, frame in {"a": LOG_A, "b": LOG_B}.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        logs[name] = tmp_path / f"{name}.csv"
    out = {kind: tmp_path / f"curves.{kind}" for kind in ("png", "pdf", "csv")}
    tc.training_curves([("r_cls + r_loc", logs["a"]), ("r_cls", logs["b"])], "Table 4", **out)
    assert out["png"].read_bytes()[:4] == b"\x89PNG" and out["pdf"].read_bytes()[:4] == b"%PDF"
    drawn = pd.read_csv(out["csv"])
    assert drawn.groupby("metric")["run"].nunique().to_dict() == {
        "completions/mean_length": 2,
        "frac_reward_zero_std": 2,
        "kl": 2,
        "reward": 2,
        "rewards/cls_reward/mean": 2,
        "rewards/loc_reward/mean": 1,
    }

    curves = tc.long_form({"r_cls + r_loc": pd.read_csv(logs["a"]), "r_cls": pd.read_csv(logs["b"])})
    fig = tc.draw(curves, ["r_cls + r_loc", "r_cls"], "Table 4")
    panels = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in panels] == [
        "mean reward",
        "reward cls_reward (mean)",
        "reward loc_reward (mean)",
        "groups with zero reward spread (%)",
        "KL to the reference model",
        "completion length (tokens)",
    ]
    assert [len(ax.lines) for ax in panels] == [2, 2, 1, 2, 2, 2]
    assert fig._suptitle.get_text() == "Table 4"


def test_a_log_without_steps_is_a_clear_error(tmp_path):
    bad = tmp_path / "train_log.csv"
    bad.write_text("loss,reward\n1,2\n")
    with pytest.raises(InputError, match="train_log.csv: no `step` column"):
        tc.training_curves([("x", bad)], "t", tmp_path / "a.png", tmp_path / "a.pdf", tmp_path / "a.csv")
    assert not (tmp_path / "a.png").exists()


def test_subcommand_titles_the_figure_after_its_table(tmp_path):
    from adfm.cli import main

    LOG_A.to_csv(tmp_path / "a.csv", index=False)
    out = [f"--{kind}={tmp_path / f'curves.{kind}'}" for kind in ("png", "pdf", "csv")]
    assert (
        main(["training-curves", "--run", "adfm: r_cls + r_loc", str(tmp_path / "a.csv"), "--table", "table4", *out])
        == 0
    )
    assert set(pd.read_csv(tmp_path / "curves.csv")["run"]) == {"adfm: r_cls + r_loc"}

"""Training curves: what GRPO logged over the optimizer steps, per run, one figure per table.

    adfm training-curves --run LABEL TRAIN_LOG.csv [--run ...] --table TABLE --png P --pdf P --csv P

Panels, each a line per run: the mean reward; each reward function's mean (`rewards/<fn>/mean`:
one panel per function any run uses, so r_cls, r_cls + r_random and r_cls + r_loc meet in the
r_cls panel); the share of groups whose responses all got the same reward
(`frac_reward_zero_std`, in %), the paper's central claim being that fine-grained rewards and
multi-stage reasoning keep it lower, so GRPO learns from more of the data; the KL to the reference
model; the mean completion length in tokens. The CSV holds what is drawn, in long form
(run, step, metric, value).
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import pandas as pd

from adfm.evaluation.drawing import Outputs, pyplot, save
from adfm.evaluation.table_layout import table_title
from adfm.io import InputError, write_csv_atomic

log = logging.getLogger(__name__)

# logged column -> (panel title, factor): the columns TRL's GRPOTrainer logs (adfm.model.train)
SUMMARY_METRICS = {
    "reward": ("mean reward", 1.0),
    "frac_reward_zero_std": ("groups with zero reward spread (%)", 100.0),
    "kl": ("KL to the reference model", 1.0),
    "completions/mean_length": ("completion length (tokens)", 1.0),
}
REWARD_PREFIX, REWARD_SUFFIX = "rewards/", "/mean"


def read_log(path: Path) -> pd.DataFrame:
    """A run's train_log.csv: one row per logging step, with a `step` column."""
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: cannot read the training log ({error})") from None
    if "step" not in frame.columns:
        raise InputError(f"{path}: no `step` column (not a train_log.csv written by `adfm train`)")
    return frame


def metric_title(column: str) -> str | None:
    """A panel's title for a logged column, None for a column the figure does not draw."""
    if column in SUMMARY_METRICS:
        return SUMMARY_METRICS[column][0]
    if column.startswith(REWARD_PREFIX) and column.endswith(REWARD_SUFFIX):
        return f"reward {column[len(REWARD_PREFIX) : -len(REWARD_SUFFIX)]} (mean)"
    return None


def long_form(logs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """{run label: its log} -> rows (run, step, metric, value) of every drawn metric, steps sorted.
    Steps without a value (TRL logs some rows without rewards, e.g. the final summary) are left out."""
    parts = []
    for run, frame in logs.items():
        for column in frame.columns:
            if metric_title(column) is None:
                continue
            factor = SUMMARY_METRICS.get(column, ("", 1.0))[1]
            values = pd.to_numeric(frame[column], errors="coerce") * factor
            part = pd.DataFrame({"run": run, "step": frame["step"], "metric": column, "value": values})
            parts.append(part.dropna(subset=["value"]))
    if not parts:
        return pd.DataFrame(columns=["run", "step", "metric", "value"])
    return pd.concat(parts, ignore_index=True).sort_values(["metric", "run", "step"], kind="stable")


def panel_order(metrics) -> list[str]:
    """The mean reward first, then each reward function's mean (sorted), then the other summaries."""
    present = set(metrics)
    rewards = sorted(m for m in present if m.startswith(REWARD_PREFIX))
    return [m for m in ["reward", *rewards, *list(SUMMARY_METRICS)[1:]] if m in present]


def draw(curves: pd.DataFrame, runs: list[str], title: str):
    """The figure: one panel per metric (panel_order), a line (with markers) per run."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    panels = panel_order(curves["metric"].unique())
    columns = min(3, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, metric in zip(axes.flat, panels, strict=False):
        for index, run in enumerate(runs):
            line = curves[(curves["metric"] == metric) & (curves["run"] == run)]
            if not line.empty:
                ax.plot(
                    line["step"],
                    line["value"],
                    marker="o",
                    markersize=2.5,
                    linewidth=1.2,
                    color=colors(index % 10),
                    label=run,
                )
        ax.set_title(metric_title(metric), fontsize=9)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(runs), 3), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(runs) / 3), 1, 0.96))
    return fig


def training_curves(runs: list[tuple[str, Path]], title: str, png: Path, pdf: Path, csv: Path) -> None:
    if not runs:
        raise InputError("training-curves: no run given (--run LABEL TRAIN_LOG.csv)")
    logs = {label: read_log(path) for label, path in runs}
    curves = long_form(logs)
    if curves.empty:
        raise InputError(f"training-curves: no logged metric in {[str(path) for _, path in runs]}")
    save(draw(curves, list(logs), title), Outputs(png, pdf, csv))
    write_csv_atomic(curves, csv)
    log.info("training curves of %d run(s), %d panel(s): %s", len(logs), curves["metric"].nunique(), png)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "training-curves",
        help="training curves of GRPO runs from their train_log.csv",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--run",
        nargs=2,
        action="append",
        default=[],
        metavar=("LABEL", "TRAIN_LOG"),
        help="a run's label in the legend and its train_log.csv (repeat per run)",
    )
    parser.add_argument("--table", required=True, help="the table whose runs these are (config tables), for the title")
    for kind in ("png", "pdf", "csv"):
        parser.add_argument(f"--{kind}", required=True, type=Path, help=f"the {kind.upper()} output")
    parser.set_defaults(
        func=lambda a: training_curves(
            [(label, Path(path)) for label, path in a.run],
            f"{table_title(Path(a.table))}: GRPO training of its runs",
            a.png,
            a.pdf,
            a.csv,
        )
    )

"""Figures 4 and 5 (kinds reward_schemes, zero_variance): sampled responses under the three reward
schemes (see adfm.evaluation.figures)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from adfm.evaluation.drawing import Outputs, draw_record_boxes, printable, pyplot, save, show_image
from adfm.io import InputError, write_csv_atomic
from adfm.paper import read as read_paper
from adfm.rewards import DEFAULT_OPTIONS, make_reward_funcs
from adfm.settings.evaluation import FigureSettings

SCHEMES = {"r_cls": ["cls"], "r_cls + r_count": ["cls", "count"], "r_cls + r_loc": ["cls", "loc"]}
ROWS_LABEL = {"all": "all split rows", "train": "training rows", "test": "held-out test rows"}
LETTERS = "abcdefgh"


def scheme_rewards(records: list[dict], options: dict, count_weight: float | None = None) -> pd.DataFrame:
    """Per record: r_cls, count, r_loc (adfm.rewards) and the three schemes' totals.

    `count` is r_count weighted by `count_weight` on anomalous images (None: by alpha, the count term
    inside r_loc), r_focus on normal ones.
    """
    cls, loc = make_reward_funcs(["cls", "loc"], options)
    (count,) = make_reward_funcs(["count"], options if count_weight is None else {**options, "alpha": count_weight})
    completions = [[{"role": "assistant", "content": r.get("response") or ""}] for r in records]
    kwargs = {
        "label": [int(r["label"]) for r in records],
        "boxes": [r.get("gt_boxes") or [] for r in records],
        "frame": [r.get("frame") for r in records],
    }
    parts = {
        "cls": cls(completions, **kwargs),
        "count": count(completions, **kwargs),
        "loc": loc(completions, **kwargs),
    }
    frame = pd.DataFrame(
        {
            "image_path": [r["image_path"] for r in records],
            "sample": [int(r.get("sample", 0)) for r in records],
            **parts,
        }
    )
    for scheme, names in SCHEMES.items():
        frame[scheme] = sum(frame[name] for name in names)
    return frame


def pick_responses(rewards: pd.DataFrame, count: int = 4) -> list[int]:
    """Row positions of `count` responses spread over the range of r_cls + r_loc, in increasing order."""
    ordered = rewards.sort_values(["r_cls + r_loc", "sample"], kind="stable").index.tolist()
    if len(ordered) <= count:
        return ordered
    picks = np.linspace(0, len(ordered) - 1, count).round().astype(int)
    return [ordered[i] for i in picks]


def figure4(records: list[dict], outputs: Outputs, settings: FigureSettings) -> pd.DataFrame:
    plt = pyplot()
    records = _first_image(records)
    rewards = scheme_rewards(records, settings.rewards)
    picks = pick_responses(rewards)
    shown = rewards.loc[picks].assign(response=[LETTERS[i] for i in range(len(picks))])
    variance_shown = {s: float(np.var(shown[s])) for s in SCHEMES}
    variance_all = {s: float(np.var(rewards[s])) for s in SCHEMES}

    fig = plt.figure(figsize=(14, 9))
    grid = fig.add_gridspec(4, 3, width_ratios=[1, 1, 2.2], height_ratios=[3, 1.2, 3, 1.2])
    for i, position in enumerate(picks):
        _draw_response(fig, grid, i, records[position])
    _draw_reward_bars(fig.add_subplot(grid[:, 2]), shown, settings, variance_shown, variance_all, len(rewards))
    fig.suptitle(
        f"Figure 4: {len(rewards)} sampled responses of {settings.title} for one "
        f"anomalous training image ({records[0]['category']}); ground truth green, predicted red",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save(fig, outputs)
    summary = rewards.assign(shown=[LETTERS[picks.index(i)] if i in picks else "" for i in rewards.index])
    for scheme in SCHEMES:
        summary[f"variance_shown {scheme}"] = variance_shown[scheme]
        summary[f"variance_all {scheme}"] = variance_all[scheme]
    write_csv_atomic(summary, outputs.csv)
    return summary


def _first_image(records: list[dict]) -> list[dict]:
    """The sampled responses of the first image, in sample order."""
    images = list(dict.fromkeys(r["image_path"] for r in records))
    if not images:
        raise InputError("no sampled responses to draw")
    return sorted((r for r in records if r["image_path"] == images[0]), key=lambda r: int(r.get("sample", 0)))


def _draw_response(fig, grid, i: int, record: dict) -> None:
    """Response `i` of Figure 4: the image with its boxes, and the start of the text below it."""
    ax_img = fig.add_subplot(grid[2 * (i // 2), i % 2])
    size = show_image(
        ax_img,
        record["image_path"],
        f"({LETTERS[i]}) sample {record['sample']}: {len(record.get('boxes') or [])} box(es)",
    )
    draw_record_boxes(ax_img, record, size)
    ax_text = fig.add_subplot(grid[2 * (i // 2) + 1, i % 2])
    ax_text.axis("off")
    ax_text.text(
        0.0,
        1.0,
        printable(record.get("response") or "", width=40, limit=200),
        va="top",
        ha="left",
        fontsize=6.5,
        family="monospace",
        transform=ax_text.transAxes,
        parse_math=False,
    )


def _draw_reward_bars(
    ax, shown: pd.DataFrame, settings: FigureSettings, variance_shown: dict, variance_all: dict, total: int
) -> None:
    """Figure 4's bars: each shown response's reward under each scheme, the variances in the legend."""
    import seaborn as sns

    table = shown.melt(id_vars=["response", "sample"], value_vars=list(SCHEMES), var_name="reward", value_name="value")
    sns.barplot(data=table, x="response", y="value", hue="reward", ax=ax, palette="Set2")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("reward")
    ax.set_xlabel("response")
    alpha = settings.rewards.get("alpha", DEFAULT_OPTIONS["alpha"])
    shown_as = {"r_cls + r_count": f"r_cls + {alpha:g}·r_count"}  # the count term inside r_loc
    labels = [f"{shown_as.get(s, s)}: {variance_shown[s]:.4f} ({variance_all[s]:.4f})" for s in SCHEMES]
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(
        handles,
        labels,
        title=f"reward: variance over the {len(shown)} shown (over all {total})",
        fontsize=8,
        title_fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1),
        ncol=1,
        frameon=False,
    )


def zero_variance(records: list[dict], options: dict) -> pd.DataFrame:
    """Percentage of images whose sampled responses all get the same reward, per scheme (r_count
    unweighted, as the paper's Figure 5 adds it)."""
    rewards = scheme_rewards(records, options, count_weight=1.0)
    groups = rewards.groupby("image_path")
    sizes = groups.size()
    if sizes.min() < 2:
        raise InputError("zero variance needs at least two responses per image")
    rows = []
    for scheme in SCHEMES:
        spread = groups[scheme].agg(lambda v: float(np.max(v) - np.min(v)))
        zero = int((spread <= 1e-9).sum())
        rows.append(
            {
                "reward": scheme,
                "images": len(spread),
                "responses_per_image": int(sizes.median()),
                "zero_variance": zero,
                "zero_variance_pct": round(100.0 * zero / len(spread), 2),
            }
        )
    return pd.DataFrame(rows)


def figure5(records: list[dict], outputs: Outputs, settings: FigureSettings) -> pd.DataFrame:
    plt = pyplot()
    import seaborn as sns

    ours = zero_variance(records, settings.rewards)
    paper = read_paper(settings.paper)
    paper["zero_variance_pct"] = paper["zero_variance_pct"].astype(float)
    table = ours.merge(paper.rename(columns={"zero_variance_pct": "paper_pct"}), on="reward", how="left")
    table["diff"] = (table["zero_variance_pct"] - table["paper_pct"]).round(2)
    long = pd.concat(
        [
            table.assign(
                source=f"ours ({int(table['images'].iloc[0])} images x {int(table['responses_per_image'].iloc[0])}"
                f"{', ' + ROWS_LABEL[settings.rows] if settings.rows else ''})",
                value=table["zero_variance_pct"],
            ),
            table.assign(source="paper (500 images x 6)", value=table["paper_pct"]),
        ]
    )
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.barplot(data=long, x="reward", y="value", hue="source", ax=ax, palette=["#4c72b0", "#bbbbbb"])
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=8)
    ax.set_ylabel("samples with zero reward variance (%)")
    ax.set_xlabel("")
    ax.set_ylim(0, max(100.0, float(long["value"].max()) * 1.1))
    ax.set_title(f"Figure 5: zero reward variance, {settings.title}", fontsize=11)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, outputs)
    write_csv_atomic(table, outputs.csv)
    return table

"""The summary's figure: per table with a run cell, ours against the paper's value (scatter) and the
differences laid out as the paper's table (heatmap, each cell without a difference hatched and lettered)."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from adfm.evaluation.drawing import pyplot
from adfm.evaluation.summary_cells import COMPARED, shown_tables

MARKERS = "osD^vP*X<>hp"
CMAP = "RdBu"  # red: below the paper, blue: above


def _limits(frame: pd.DataFrame, tolerance: float) -> tuple[float, float]:
    values = pd.concat([frame["ours"], frame["paper"]]).dropna()
    return max(0.0, np.floor(values.min() - 2 * tolerance)), min(100.0, np.ceil(values.max() + 2 * tolerance))


def scatter(ax, table: pd.DataFrame, tolerance: float) -> None:
    """Ours against the paper's value, one marker per table row, on equal axes with the diagonal
    and the band within the tolerance shaded."""
    compared = table[table["kind"] == COMPARED]
    low, high = _limits(compared, tolerance) if not compared.empty else (0.0, 100.0)
    edge = np.array([low, high])
    ax.fill_between(edge, edge - tolerance, edge + tolerance, color="0.85", label=f"within ±{tolerance:g} points")
    ax.plot(edge, edge, color="0.4", linewidth=0.8)
    for index, (row, points) in enumerate(compared.groupby("row", sort=False)):
        ax.scatter(
            points["paper"],
            points["ours"],
            marker=MARKERS[index % len(MARKERS)],
            s=28,
            label=row,
            color=f"C{index % 10}",
            zorder=3,
            clip_on=False,
        )  # a 0 or 100 shown whole
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("paper")
    ax.set_ylabel("ours")
    ax.set_title(f"{table['table'].iloc[0]}: ours against the paper", fontsize=10)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(0, -0.15), ncol=2, frameon=False)


def grid(table: pd.DataFrame, value: str) -> pd.DataFrame:
    """A column of the cells laid out as the paper's table: a row per table row, a column per column."""
    rows, columns = list(dict.fromkeys(table["row"])), list(dict.fromkeys(table["column"]))
    return table.pivot(index="row", columns="column", values=value).reindex(index=rows, columns=columns)


def heatmap(ax, table: pd.DataFrame, tolerance: float):
    """The differences as the paper's table; a cell without one is hatched and lettered."""
    from matplotlib.patches import Rectangle

    diffs, marks = grid(table, "diff"), grid(table, "mark")
    limit = max(tolerance, float(np.nanmax(np.abs(diffs.to_numpy(dtype=float)), initial=0.0)))
    image = ax.imshow(
        np.ma.masked_invalid(diffs.to_numpy(dtype=float)), cmap=CMAP, vmin=-limit, vmax=limit, aspect="auto"
    )
    for (y, x), diff in np.ndenumerate(diffs.to_numpy(dtype=float)):
        if np.isnan(diff):
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.75"))
            ax.text(x, y, marks.iat[y, x], ha="center", va="center", fontsize=7)
        else:
            ax.text(
                x,
                y,
                f"{diff:+.1f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if abs(diff) > 0.6 * limit else "black",
            )
    ax.set_xticks(range(diffs.shape[1]), diffs.columns, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(diffs.shape[0]), diffs.index, fontsize=7)
    ax.set_title(f"{table['table'].iloc[0]}: ours - paper (points)", fontsize=10)
    reasons = table[table["mark"] != ""].drop_duplicates("mark")
    legend = "\n".join(f"{item.mark}: {item.reason}" for item in reasons.itertuples())
    ax.text(0, -0.25, legend, transform=ax.transAxes, va="top", fontsize=6, wrap=True)
    return image


def figure(frame: pd.DataFrame, tolerance: float, demo_note: str = ""):
    """A row of two panels (scatter, differences) per table with a run cell, under the demo's
    warning, so that the image alone cannot pass for the paper's model."""
    plt = pyplot()
    tables = shown_tables(frame)
    if not tables:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "No cell of any table was run.", ha="center", va="center")
    else:
        fig, axes = plt.subplots(
            len(tables), 2, figsize=(13, 6.5 * len(tables)), squeeze=False, gridspec_kw={"width_ratios": [1, 1.4]}
        )
        for (left, right), table in zip(axes, tables, strict=False):
            scatter(left, table, tolerance)
            fig.colorbar(heatmap(right, table, tolerance), ax=right, shrink=0.7)
        fig.subplots_adjust(hspace=0.7, wspace=0.35)
    if demo_note:
        fig.suptitle(textwrap.fill(demo_note, 140), fontsize=9, color="firebrick")
    return fig

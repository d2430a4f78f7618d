"""Figures 3-5 of the paper from our predictions (matplotlib / seaborn; PNG and PDF).

    adfm figure --figure fig3 --predictions PRED.jsonl --settings JSON --out results/fig3.png
    adfm figure --figure fig4 --predictions SAMPLES.jsonl --settings JSON --out results/fig4.png
    adfm figure --figure fig5 --predictions SAMPLES.jsonl --settings JSON --out results/fig5.png

Each writes OUT (PNG), and beside it the PDF and a CSV of what is drawn (fig3: the cases; fig4:
every response's rewards; fig5: the percentages beside the paper's).

- fig3, qualitative examples: four test images of a run's predictions, the kinds the paper shows:
  (a) an anomaly detected and localised (the best-localised correct anomalous case), (b) a normal
  image judged normal, (c) an anomalous image judged correctly after a hesitant <think> stage
  (hedging words such as "might", "normal variation"), (d) another correctly judged anomaly; where
  the model gives no such case (a weak model), the slot takes the nearest kind available and its
  title says what the model answered. Each row: the normal reference, the query with ground-truth
  (green) and predicted (red, from <think>) boxes, and the response text.
- fig4, response variance of one training sample: 4 of the sampled responses of one anomalous
  training image (spread over the range of r_cls + r_loc, ordered a-d by it), their boxes drawn,
  and their rewards under r_cls, r_cls + r_count and r_cls + r_loc (adfm.rewards), with the variance
  of each scheme over the 4 shown and over all sampled responses. Its bars split r_loc into parts,
  so its r_count is the count term inside r_loc, alpha * r_count (alpha: rewards.alpha).
- fig5, zero reward variance: the percentage of sampled images whose responses all get the same
  reward under each of the three schemes, beside the paper's values
  (src/adfm/paper/fig5_zero_variance.csv). Its "r_cls + r_count" is the paper's "adding bounding box
  counting" (section 4.5): r_count itself, unweighted. A weight can create ties and so change the
  share: with alpha = 2, a right answer one box off (1 + 2 * 0.5) ties a wrong one with the right
  count (0 + 2 * 1).

Settings JSON: {"title": run label, "rewards": reward options (alpha, reasoning), "paper": CSV name
(fig5), "rows": the split rows the images were drawn from (fig5, for the label)}.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from adfm.io import InputError, atomic_path, read_jsonl, settings_json, write_csv_atomic

log = logging.getLogger(__name__)

SCHEMES = {"r_cls": ["cls"], "r_cls + r_count": ["cls", "count"], "r_cls + r_loc": ["cls", "loc"]}
HEDGES = re.compile(r"\b(might|may|maybe|perhaps|possibl\w*|slight\w*|unclear|uncertain\w*|normal variation|"
                    r"not sure|could be|seems?)\b", re.IGNORECASE)
GT_COLOR, PRED_COLOR = "#1a9850", "#d73027"
ROWS_LABEL = {"all": "all split rows", "train": "training rows", "test": "held-out test rows"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def printable(text: str, width: int = 64, limit: int = 700) -> str:
    """Response text safe for any font (unprintable characters as ·), wrapped and shortened."""
    text = "".join(c if c.isprintable() and ord(c) < 0x2500 else "·" for c in str(text).replace("\n", " "))
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=True, replace_whitespace=False)) or "(empty)"


def to_image_frame(boxes, frame, size) -> list[list[float]]:
    """Boxes in the model's frame (W, H) -> pixels of the image as displayed (W, H)."""
    if not frame:
        return [list(map(float, b)) for b in boxes]
    sx, sy = size[0] / frame[0], size[1] / frame[1]
    return [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in boxes if len(b) == 4]


def draw_boxes(ax, boxes, color: str, label: str | None = None) -> None:
    from matplotlib.patches import Rectangle

    for i, (x1, y1, x2, y2) in enumerate(boxes):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2,
                               label=label if i == 0 else None))


def show_image(ax, path: str, title: str | None = None):
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        ax.imshow(image)
        size = image.size
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return size


def save(fig, out: Path) -> None:
    """PNG at `out`, PDF beside it; both written atomically."""
    for path in (out, out.with_suffix(".pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=150, bbox_inches="tight")
    _pyplot().close(fig)


# ----------------------------------------------------------------------------------- fig 3


def _localisation(record: dict) -> float:
    from adfm.reward_terms import matched_mean_giou

    return matched_mean_giou(record.get("boxes") or [], record.get("gt_boxes") or [])


def pick_cases(records: list[dict]) -> list[tuple[str, dict, bool]]:
    """Four (kind, record, found) cases of the kinds Figure 3 shows, each image at most once.

    `found` is False when the model gave no case of that kind and the nearest available is shown.
    """
    greedy = [r for r in records if int(r.get("sample", 0)) == 0]
    if not greedy:
        raise InputError("no predictions to draw")
    used: set[str] = set()
    cases: list[tuple[str, dict, bool]] = []

    def take(kind: str, wanted, fallback, key=None) -> None:
        for pool, found in ((wanted, True), (fallback, False)):
            pool = [r for r in pool if r["image_path"] not in used]
            if key is not None:
                pool = sorted(pool, key=key)
            if pool:
                used.add(pool[0]["image_path"])
                cases.append((kind, pool[0], found))
                return

    anomalous = [r for r in greedy if int(r["label"]) == 1]
    normal = [r for r in greedy if int(r["label"]) == 0]
    right = [r for r in anomalous if r.get("answer") == "yes"]
    take("(a) anomaly detected and localised", right, anomalous, key=lambda r: -_localisation(r))
    take("(b) normal sample analysed", [r for r in normal if r.get("answer") == "no"], normal,
         key=lambda r: -len(r.get("response") or ""))
    hedged = [r for r in right if HEDGES.search(_think(r.get("response") or ""))]
    take("(c) hesitant think, resolved by rethink", hedged, anomalous,
         key=lambda r: -len(HEDGES.findall(r.get("response") or "")))
    first = cases[0][1]["category"] if cases else None
    take("(d) irregularity confirmed on closer inspection", [r for r in right if r["category"] != first] or right,
         [r for r in anomalous if r["category"] != first] or anomalous)
    for kind, pool in [("(extra) anomalous image", anomalous), ("(extra) normal image", normal), ("(extra)", greedy)]:
        while len(cases) < 4 and any(r["image_path"] not in used for r in pool):
            take(kind, pool, [])
    return cases[:4]


def _think(text: str) -> str:
    match = re.search(r"<think>(.*?)</think>", text, re.DOTALL)
    return match.group(1) if match else ""


def figure3(records: list[dict], out: Path, settings: dict) -> None:
    plt = _pyplot()
    cases = pick_cases(records)
    fig, axes = plt.subplots(len(cases), 3, figsize=(13, 3.3 * len(cases)),
                             gridspec_kw={"width_ratios": [1, 1, 2.2]}, squeeze=False)
    for (kind, record, found), row in zip(cases, axes):
        label = "anomalous" if int(record["label"]) else "normal"
        verdict = {"yes": "anomalous", "no": "normal"}.get(record.get("answer"), "no answer")
        mark = "correct" if verdict == label else "wrong"
        show_image(row[0], record.get("reference_path") or record["image_path"], "normal reference")
        size = show_image(row[1], record["image_path"], f"query ({record['category']}): {label}")
        draw_boxes(row[1], to_image_frame(record.get("gt_boxes") or [], record.get("frame"), size), GT_COLOR, "truth")
        draw_boxes(row[1], to_image_frame(record.get("boxes") or [], record.get("frame"), size), PRED_COLOR,
                   "predicted")
        row[2].axis("off")
        title = kind if found else f"{kind}: no such case, nearest shown"
        row[2].set_title(f"{title}\nanswer: {verdict} ({mark})", fontsize=10, loc="left")
        row[2].text(0.0, 1.0, printable(record.get("response") or ""), va="top", ha="left", fontsize=7.5,
                    family="monospace", transform=row[2].transAxes, parse_math=False)
    handles = [plt.Line2D([], [], color=GT_COLOR, lw=2, label="ground truth"),
               plt.Line2D([], [], color=PRED_COLOR, lw=2, label="predicted (<think>)")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(f"Figure 3: qualitative examples, {settings.get('title', records[0]['model'])}", fontsize=12)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    save(fig, out)
    chosen = pd.DataFrame([{"case": kind, "found": found, "image_path": r["image_path"], "category": r["category"],
                            "label": r["label"],
                            "answer": r.get("answer"), "boxes": json.dumps(r.get("boxes") or []),
                            "gt_boxes": json.dumps(r.get("gt_boxes") or []), "response": r.get("response")}
                           for kind, r, found in cases])
    write_csv_atomic(chosen, out.with_suffix(".csv"))


# ----------------------------------------------------------------------------------- rewards


def scheme_rewards(records: list[dict], options: dict, count_weight: float | None = None) -> pd.DataFrame:
    """Per record: r_cls, count, r_loc (adfm.rewards) and the three schemes' totals.

    `count` is r_count weighted by `count_weight` on anomalous images (None: by alpha, the count term
    inside r_loc), r_focus on normal ones.
    """
    from adfm.rewards import make_reward_funcs

    cls, loc = make_reward_funcs(["cls", "loc"], options)
    (count,) = make_reward_funcs(["count"], options if count_weight is None else {**options, "alpha": count_weight})
    completions = [[{"role": "assistant", "content": r.get("response") or ""}] for r in records]
    kwargs = {"label": [int(r["label"]) for r in records], "boxes": [r.get("gt_boxes") or [] for r in records],
              "frame": [r.get("frame") for r in records]}
    parts = {"cls": cls(completions, **kwargs), "count": count(completions, **kwargs), "loc": loc(completions, **kwargs)}
    frame = pd.DataFrame({"image_path": [r["image_path"] for r in records],
                          "sample": [int(r.get("sample", 0)) for r in records], **parts})
    for scheme, names in SCHEMES.items():
        frame[scheme] = sum(frame[name] for name in names)
    return frame


# ----------------------------------------------------------------------------------- fig 4


def pick_responses(rewards: pd.DataFrame, count: int = 4) -> list[int]:
    """Row positions of `count` responses spread over the range of r_cls + r_loc, in increasing order."""
    ordered = rewards.sort_values(["r_cls + r_loc", "sample"], kind="stable").index.tolist()
    if len(ordered) <= count:
        return ordered
    picks = np.linspace(0, len(ordered) - 1, count).round().astype(int)
    return [ordered[i] for i in picks]


def figure4(records: list[dict], out: Path, settings: dict) -> pd.DataFrame:
    plt = _pyplot()
    import seaborn as sns

    images = list(dict.fromkeys(r["image_path"] for r in records))
    if not images:
        raise InputError("no sampled responses to draw")
    records = [r for r in records if r["image_path"] == images[0]]
    records.sort(key=lambda r: int(r.get("sample", 0)))
    rewards = scheme_rewards(records, settings.get("rewards", {}))
    picks = pick_responses(rewards)
    letters = "abcdefgh"
    shown = rewards.loc[picks].assign(response=[letters[i] for i in range(len(picks))])
    table = shown.melt(id_vars=["response", "sample"], value_vars=list(SCHEMES), var_name="reward", value_name="value")
    variance_shown = {s: float(np.var(shown[s])) for s in SCHEMES}
    variance_all = {s: float(np.var(rewards[s])) for s in SCHEMES}

    fig = plt.figure(figsize=(14, 9))
    grid = fig.add_gridspec(4, 3, width_ratios=[1, 1, 2.2], height_ratios=[3, 1.2, 3, 1.2])
    for i, position in enumerate(picks):
        record = records[position]
        ax_img = fig.add_subplot(grid[2 * (i // 2), i % 2])
        size = show_image(ax_img, record["image_path"], f"({letters[i]}) sample {record['sample']}: "
                          f"{len(record.get('boxes') or [])} box(es)")
        draw_boxes(ax_img, to_image_frame(record.get("gt_boxes") or [], record.get("frame"), size), GT_COLOR)
        draw_boxes(ax_img, to_image_frame(record.get("boxes") or [], record.get("frame"), size), PRED_COLOR)
        ax_text = fig.add_subplot(grid[2 * (i // 2) + 1, i % 2])
        ax_text.axis("off")
        ax_text.text(0.0, 1.0, printable(record.get("response") or "", width=40, limit=200), va="top", ha="left",
                     fontsize=6.5, family="monospace", transform=ax_text.transAxes, parse_math=False)
    ax = fig.add_subplot(grid[:, 2])
    sns.barplot(data=table, x="response", y="value", hue="reward", ax=ax, palette="Set2")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("reward")
    ax.set_xlabel("response")
    from adfm.rewards import DEFAULT_OPTIONS

    alpha = settings.get("rewards", {}).get("alpha", DEFAULT_OPTIONS["alpha"])
    shown_as = {"r_cls + r_count": f"r_cls + {alpha:g}·r_count"}  # the count term inside r_loc
    labels = [f"{shown_as.get(s, s)}: {variance_shown[s]:.4f} ({variance_all[s]:.4f})" for s in SCHEMES]
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles, labels, title=f"reward: variance over the {len(picks)} shown (over all {len(rewards)})",
              fontsize=8, title_fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=1, frameon=False)
    fig.suptitle(f"Figure 4: {len(rewards)} sampled responses of {settings.get('title', records[0]['model'])} for one "
                 f"anomalous training image ({records[0]['category']}); ground truth green, predicted red",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save(fig, out)
    summary = rewards.assign(shown=[letters[picks.index(i)] if i in picks else "" for i in rewards.index])
    for scheme in SCHEMES:
        summary[f"variance_shown {scheme}"] = variance_shown[scheme]
        summary[f"variance_all {scheme}"] = variance_all[scheme]
    write_csv_atomic(summary, out.with_suffix(".csv"))
    return summary


# ----------------------------------------------------------------------------------- fig 5


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
        rows.append({"reward": scheme, "images": len(spread), "responses_per_image": int(sizes.median()),
                     "zero_variance": zero, "zero_variance_pct": round(100.0 * zero / len(spread), 2)})
    return pd.DataFrame(rows)


def figure5(records: list[dict], out: Path, settings: dict) -> pd.DataFrame:
    plt = _pyplot()
    import seaborn as sns

    from adfm.evaluation.tables import paper_table

    ours = zero_variance(records, settings.get("rewards", {}))
    paper = paper_table(settings.get("paper", "fig5_zero_variance.csv"))
    paper["zero_variance_pct"] = paper["zero_variance_pct"].astype(float)
    table = ours.merge(paper.rename(columns={"zero_variance_pct": "paper_pct"}), on="reward", how="left")
    table["diff"] = (table["zero_variance_pct"] - table["paper_pct"]).round(2)
    long = pd.concat([
        table.assign(source=f"ours ({int(table['images'].iloc[0])} images x {int(table['responses_per_image'].iloc[0])}"
                            f"{', ' + ROWS_LABEL[settings['rows']] if settings.get('rows') else ''})",
                     value=table["zero_variance_pct"]),
        table.assign(source="paper (500 images x 6)", value=table["paper_pct"]),
    ])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.barplot(data=long, x="reward", y="value", hue="source", ax=ax, palette=["#4c72b0", "#bbbbbb"])
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=8)
    ax.set_ylabel("samples with zero reward variance (%)")
    ax.set_xlabel("")
    ax.set_ylim(0, max(100.0, float(long["value"].max()) * 1.1))
    ax.set_title(f"Figure 5: zero reward variance, {settings.get('title', records[0]['model'])}", fontsize=11)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, out)
    write_csv_atomic(table, out.with_suffix(".csv"))
    return table


FIGURES = {"fig3": figure3, "fig4": figure4, "fig5": figure5}


def run_figure(figure: str, predictions: list[Path], settings: dict, out: Path) -> None:
    if figure not in FIGURES:
        raise InputError(f"unknown figure {figure!r}: expected one of {sorted(FIGURES)}")
    if out.suffix != ".png":
        raise InputError(f"{out}: the figure's output must be a .png (the .pdf is written beside it)")
    records = [r for path in predictions for r in read_jsonl(path)]
    if not records:
        raise InputError(f"{figure}: no records in {[str(p) for p in predictions]}")
    FIGURES[figure](records, out, settings)


def register(subparsers) -> None:
    parser = subparsers.add_parser("figure", help="Figures 3-5 (PNG and PDF) from predictions or sampled responses",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figure", required=True, choices=sorted(FIGURES), help="which figure to draw")
    parser.add_argument("--predictions", required=True, nargs="+", type=Path,
                        help="prediction or sampled-response files (JSONL) the figure is drawn from")
    parser.add_argument("--settings", default={}, type=settings_json,
                        help="JSON: title, rewards (alpha, reasoning), paper")
    parser.add_argument("--out", required=True, type=Path, help="PNG path; the PDF (and CSV) go beside it")
    parser.set_defaults(func=lambda a: run_figure(a.figure, a.predictions, a.settings, a.out))

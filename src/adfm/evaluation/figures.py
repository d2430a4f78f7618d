"""Figures 3-5 of the paper from our predictions (matplotlib / seaborn; PNG and PDF).

    adfm figure --predictions PRED.jsonl --settings JSON --png FIG.png --pdf FIG.pdf --csv FIG.csv

Each writes the figure as PNG and PDF and a CSV of what is drawn (cases: the cases; reward_schemes:
every response's rewards; zero_variance: the percentages beside the paper's). The settings' `kind`
says which figure: cases (Figure 3, from a run's predictions), reward_schemes (Figure 4) and
zero_variance (Figure 5), both from sampled responses.

- cases (Figure 3), qualitative examples: four test images of a run's predictions, the kinds the paper shows:
  (a) an anomaly detected and localised (the best-localised correct anomalous case), (b) a normal
  image judged normal, (c) an anomalous image judged correctly after a hesitant <think> stage
  (hedging words such as "might", "normal variation"), (d) another correctly judged anomaly; where
  the model gives no such case (a weak model), the slot takes the nearest kind available and its
  title says what the model answered. Each row: the normal reference, the query with ground-truth
  (green) and predicted (red, from <think>) boxes, and the response text.
- reward_schemes (Figure 4), response variance of one training sample: 4 of the sampled responses of one anomalous
  training image (spread over the range of r_cls + r_loc, ordered a-d by it), their boxes drawn,
  and their rewards under r_cls, r_cls + r_count and r_cls + r_loc (adfm.rewards), with the variance
  of each scheme over the 4 shown and over all sampled responses. Its bars split r_loc into parts,
  so its r_count is the count term inside r_loc, alpha * r_count (alpha: rewards.alpha).
- zero_variance (Figure 5), zero reward variance: the percentage of sampled images whose responses all get the same
  reward under each of the three schemes, beside the paper's values
  (src/adfm/paper/fig5_zero_variance.csv). Its "r_cls + r_count" is the paper's "adding bounding box
  counting" (section 4.5): r_count itself, unweighted. A weight can create ties and so change the
  share: with alpha = 2, a right answer one box off (1 + 2 * 0.5) ties a wrong one with the right
  count (0 + 2 * 1).

Settings: adfm.settings.evaluation.FigureSettings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from adfm.evaluation.drawing import Outputs
from adfm.evaluation.figure_cases import figure3
from adfm.evaluation.figure_rewards import figure4, figure5
from adfm.io import InputError, read_jsonl
from adfm.settings.evaluation import FigureSettings

FIGURES = {"cases": figure3, "reward_schemes": figure4, "zero_variance": figure5}


def run_figure(predictions: list[Path], settings: FigureSettings, outputs: Outputs) -> None:
    records = [r for path in predictions for r in read_jsonl(path)]
    if not records:
        raise InputError(f"{settings.kind}: no records in {[str(p) for p in predictions]}")
    FIGURES[settings.kind](records, outputs, settings)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "figure",
        help="Figures 3-5 (PNG and PDF) from predictions or sampled responses",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--predictions",
        required=True,
        nargs="+",
        type=Path,
        help="prediction or sampled-response files (JSONL) the figure is drawn from",
    )
    parser.add_argument("--settings", required=True, type=FigureSettings.argument, help=FigureSettings.describe())
    parser.add_argument("--png", required=True, type=Path, help="the figure (PNG)")
    parser.add_argument("--pdf", required=True, type=Path, help="the figure (PDF)")
    parser.add_argument("--csv", required=True, type=Path, help="what the figure draws (CSV)")
    parser.set_defaults(func=lambda a: run_figure(a.predictions, a.settings, Outputs(a.png, a.pdf, a.csv)))

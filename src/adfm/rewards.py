"""Reward functions for GRPO (paper section 3.3), with TRL's reward signature.

Each function takes the completions of a batch plus the dataset columns as keyword arguments
(`label`: 1 anomalous / 0 normal; `boxes`: ground-truth boxes in the frame the model sees; `frame`:
that frame's (W, H), optional) and returns one float per completion. `REWARDS` maps the names used
in config (`rewards: [cls, loc]`) to factories taking the reward options of the config.

Defaults are the paper's equations. alpha (the weight of r_count inside r_loc) is not given in the
paper; the default 0.3 is the value in the authors' released reward plugin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from adfm import boxes as box_ops
from adfm.protocol import completion_text, parse_response

log = logging.getLogger(__name__)

RewardFunc = Callable[..., list[float]]

DEFAULT_OPTIONS = {
    "alpha": 0.3,
    "reasoning": "multi_stage",
    "random_std": 1.0,
    "random_seed": 0,
}

ANSWER_OF_LABEL = {1: "yes", 0: "no"}

def r_count(m: int, n: int) -> float:
    """Eq. 5: 1 for the right number of boxes, 0.5 when one off, -0.1 otherwise."""
    gap = abs(m - n)
    return 1.0 if gap == 0 else 0.5 if gap == 1 else -0.1

def r_focus(m: int) -> float:
    """Eq. 6: on a normal image, one region of interest is encouraged, several discouraged."""
    return 0.0 if m == 0 else 0.5 if m == 1 else -0.1

def matched_mean_giou(predicted: Sequence[Sequence[float]], truth: Sequence[Sequence[float]]) -> float:
    """Mean GIoU over the Hungarian matching with cost 1 - GIoU; 0 when either side is empty."""
    if not predicted or not truth:
        return 0.0
    scores = np.array([[box_ops.giou(p, t) for t in truth] for p in predicted])
    rows, cols = linear_sum_assignment(1.0 - scores)
    return float(scores[rows, cols].mean())

def predicted_boxes(text: str, frame, reasoning: str) -> tuple[str | None, list[list[float]]]:
    """Answer and well-formed boxes (clipped to the frame) of one response."""
    parsed = parse_response(text, reasoning)
    frame_tuple = tuple(frame) if frame is not None else None
    kept = [b for b in (box_ops.sanitize(box, frame_tuple) for box in parsed.boxes) if b is not None]
    return parsed.answer, kept

def loc_reward(predicted: list[list[float]], truth: list[list[float]], label: int, alpha: float) -> float:
    """Eq. 4: matched GIoU + alpha * r_count on anomalous images, r_focus on normal ones."""
    if int(label) == 1:
        return matched_mean_giou(predicted, truth) + alpha * r_count(len(predicted), len(truth))
    return r_focus(len(predicted))

def count_reward(predicted: list[list[float]], truth: list[list[float]], label: int, alpha: float) -> float:
    """The "r_cls + r_count" scheme of Figure 5: r_loc without its GIoU term."""
    if int(label) == 1:
        return alpha * r_count(len(predicted), len(truth))
    return r_focus(len(predicted))

def _per_completion(score: Callable, name: str, options: dict) -> RewardFunc:
    """Wrap `score(answer, predicted_boxes, gt_boxes, label)` into TRL's batch signature."""

    def reward(completions, label, boxes=None, frame=None, **kwargs) -> list[float]:
        count = len(completions)
        truth = boxes if boxes is not None else [[] for _ in range(count)]
        frames = frame if frame is not None else [None] * count
        out = []
        for completion, lab, gt, fr in zip(completions, label, truth, frames):
            answer, predicted = predicted_boxes(completion_text(completion), fr, options["reasoning"])
            out.append(float(score(answer, predicted, [list(b) for b in (gt or [])], int(lab))))
        return out

    reward.__name__ = name
    reward.__qualname__ = name
    return reward

def make_cls(options: dict) -> RewardFunc:
    return _per_completion(lambda answer, pred, gt, label: answer == ANSWER_OF_LABEL[label], "cls", options)

def make_loc(options: dict) -> RewardFunc:
    alpha = float(options["alpha"])
    return _per_completion(lambda answer, pred, gt, label: loc_reward(pred, gt, label, alpha), "loc", options)

def make_count(options: dict) -> RewardFunc:
    alpha = float(options["alpha"])
    return _per_completion(lambda answer, pred, gt, label: count_reward(pred, gt, label, alpha), "count", options)

def make_format(options: dict) -> RewardFunc:
    reasoning = options["reasoning"]

    def format_reward(completions, **kwargs) -> list[float]:
        return [float(parse_response(completion_text(c), reasoning).well_formed) for c in completions]

    format_reward.__name__ = format_reward.__qualname__ = "format"
    return format_reward

def make_random(options: dict) -> RewardFunc:
    """Zero-mean Gaussian noise: the reward-as-random-perturbation ablation (RRP, Table 4)."""
    generator = np.random.default_rng(int(options["random_seed"]))
    std = float(options["random_std"])

    def random_reward(completions, **kwargs) -> list[float]:
        return [float(v) for v in generator.normal(0.0, std, size=len(completions))]

    random_reward.__name__ = random_reward.__qualname__ = "random"
    return random_reward

REWARDS: dict[str, Callable[[dict], RewardFunc]] = {
    "cls": make_cls,
    "loc": make_loc,
    "count": make_count,
    "format": make_format,
    "random": make_random,
}

def make_reward_funcs(names: Sequence[str], options: dict | None = None) -> list[RewardFunc]:
    """Reward functions for the config names, in order; unknown names are a clear error."""
    merged = {**DEFAULT_OPTIONS, **(options or {})}
    unknown = [name for name in names if name not in REWARDS]
    if unknown:
        raise ValueError(f"unknown reward(s) {unknown}; known: {sorted(REWARDS)}")
    return [REWARDS[name](merged) for name in names]


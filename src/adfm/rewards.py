"""Reward functions for GRPO (paper section 3.3), with TRL's reward signature.

Each function takes the completions of a batch plus the dataset columns as keyword arguments
(`label`: 1 anomalous / 0 normal; `boxes`: ground-truth boxes in the frame the model sees; `frame`:
that frame's (W, H), optional) and returns one float per completion. `REWARDS` maps the names used
in config (`rewards: [cls, loc]`) to factories taking the reward options of the config.

Defaults are the paper's equations. alpha (the weight of r_count inside r_loc) is not given in the
paper; the default 0.3 is the value in the authors' released reward plugin.

The authors' released reward plugin (GitHub hanawall/AD-FM, scripts/grpo/plugin_adfm.py, for
ms-swift) differs from the paper's equations in details; each difference is an option (config
`rewards:`), off by default:
- `answer_format: letter`: the answer is "a" (anomalous) / "b" (normal) instead of yes / no. It is
  not a reward option in config: `prompts.answer_format` picks the prompt pair and this with it
  (adfm.protocol), so prompt, rewards and prediction cannot disagree.
- `cls_partial_credit: 0.8`: a wrong or unparsable answer still earns this much when its text
  (inside the last <answer> block, or the whole response when there is none) has at most 10
  characters and contains the right answer word (e.g. "(a)" or "a or b" for an anomalous image).
  The release counts only an exact "a" / "b" as correct; here the first word decides, as in
  evaluation, so "a." is correct.
- `giou_mean: predicted`: the GIoU sum over matched pairs is divided by the number of predicted
  boxes m (unmatched predictions count 0) instead of the number of matches min(m, n).
- `loc_no_box_zero: true`: an anomalous image with no predicted box gets r_loc = 0 instead of the
  count term alpha * r_count(0, n).
- `loc_no_gt_as_normal: true`: an anomalous image without ground-truth boxes (its mask gave none)
  gets r_loc of a normal image, r_focus(m), instead of alpha * r_count(m, 0) (eq. 4 with its GIoU
  term, undefined without boxes, left out).
- `loc_rescale: true`: r_loc of an anomalous image is mapped to [0, 1] by (r + 0.5) / 1.5 and
  clipped (normal images keep r_focus).
- `format_reward: graded`: partial credit for each part of the structure, at most 1.2 (see
  `graded_format_reward`) instead of 1 when the whole structure is respected, else 0.
What the release does and we do not: it reads boxes as bare [x1, y1, x2, y2] lists of
non-negative numbers and never clips them; here boxes are read by adfm.protocol.parse_boxes and
clipped to the frame (degenerate ones dropped) in every variant.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import numpy as np

from adfm.io import InputError
from adfm.protocol import ANSWER_WORDS, REASONING_MODES, completion_text, parse_response
from adfm.reward_terms import cls_reward, count_reward, graded_format_reward, loc_reward, predicted_boxes

log = logging.getLogger(__name__)

RewardFunc = Callable[..., list[float]]

DEFAULT_OPTIONS = {
    "alpha": 0.3,
    "reasoning": "multi_stage",
    "random_std": 0.2,  # r_loc's within-group spread on the demo (config.yaml rewards.random_std)
    "random_seed": 0,
    # the paper's equations; the release's values in comments
    "answer_format": "yes_no",  # letter
    "cls_partial_credit": 0.0,  # 0.8
    "giou_mean": "matched",  # predicted
    "loc_no_box_zero": False,  # True
    "loc_no_gt_as_normal": False,  # True
    "loc_rescale": False,  # True
    "format_reward": "strict",  # graded
}

# Allowed values of the options that are not free numbers (checked when the functions are made).
CHOICES = {
    "answer_format": tuple(ANSWER_WORDS),
    "giou_mean": ("matched", "predicted"),
    "format_reward": ("strict", "graded"),
    "reasoning": REASONING_MODES,
}


def _per_completion(score: Callable, name: str, options: dict) -> RewardFunc:
    """Wrap `score(answer, predicted_boxes, gt_boxes, label, text)` into TRL's batch signature."""
    reasoning, answer_format = options["reasoning"], options["answer_format"]

    def reward(completions, label, boxes=None, frame=None, **kwargs) -> list[float]:
        count = len(completions)
        truth = boxes if boxes is not None else [[] for _ in range(count)]
        frames = frame if frame is not None else [None] * count
        out = []
        for completion, lab, gt, fr in zip(completions, label, truth, frames, strict=False):
            text = completion_text(completion)
            answer, predicted = predicted_boxes(text, fr, reasoning, answer_format)
            out.append(float(score(answer, predicted, [list(b) for b in (gt or [])], int(lab), text)))
        return out

    reward.__name__ = name
    reward.__qualname__ = name
    return reward


def make_cls(options: dict) -> RewardFunc:
    answer_format, partial = options["answer_format"], float(options["cls_partial_credit"])
    return _per_completion(
        lambda answer, pred, gt, label, text: cls_reward(
            answer, text, label, answer_format=answer_format, partial_credit=partial
        ),
        "cls",
        options,
    )


def make_loc(options: dict) -> RewardFunc:
    alpha = float(options["alpha"])
    variants = {
        "giou_mean": options["giou_mean"],
        "no_box_zero": bool(options["loc_no_box_zero"]),
        "no_gt_as_normal": bool(options["loc_no_gt_as_normal"]),
        "rescale": bool(options["loc_rescale"]),
    }
    return _per_completion(
        lambda answer, pred, gt, label, text: loc_reward(pred, gt, label, alpha, **variants), "loc", options
    )


def make_count(options: dict) -> RewardFunc:
    alpha, no_gt_as_normal = float(options["alpha"]), bool(options["loc_no_gt_as_normal"])
    return _per_completion(
        lambda answer, pred, gt, label, text: count_reward(pred, gt, label, alpha, no_gt_as_normal=no_gt_as_normal),
        "count",
        options,
    )


def make_format(options: dict) -> RewardFunc:
    reasoning, answer_format, style = options["reasoning"], options["answer_format"], options["format_reward"]

    def format_reward(completions, frame=None, **kwargs) -> list[float]:
        frames = frame if frame is not None else [None] * len(completions)
        texts = [completion_text(c) for c in completions]
        if style == "graded":
            return [graded_format_reward(t, f, answer_format) for t, f in zip(texts, frames, strict=False)]
        return [float(parse_response(t, reasoning, answer_format).well_formed) for t in texts]

    format_reward.__name__ = format_reward.__qualname__ = "format"
    return format_reward


def make_random(options: dict) -> RewardFunc:
    """Zero-mean Gaussian noise: the reward-as-random-perturbation ablation (RRP, Table 4).

    Seeded with random_seed plus this process's rank (torchrun's RANK, 0 in a single process): each
    data-parallel process scores its own completions, and one seed for all would give every process
    the same noise sequence. The generator is exposed as the function's `generator`: training saves
    its state with each checkpoint and restores it on resume (adfm.model.grpo.resumable_trainer), so that
    a resumed run draws the noise an uninterrupted one draws.
    """
    generator = np.random.default_rng(int(options["random_seed"]) + int(os.environ.get("RANK", "0")))
    std = float(options["random_std"])

    def random_reward(completions, **kwargs) -> list[float]:
        return [float(v) for v in generator.normal(0.0, std, size=len(completions))]

    random_reward.__name__ = random_reward.__qualname__ = "random"
    random_reward.generator = generator
    return random_reward


REWARDS: dict[str, Callable[[dict], RewardFunc]] = {
    "cls": make_cls,
    "loc": make_loc,
    "count": make_count,
    "format": make_format,
    "random": make_random,
}


# The options each reward reads: a run's training settings carry only those of its rewards, so that
# changing one (rewards.alpha, say) retrains only the runs whose rewards read it. make_reward_funcs
# hands each factory these options alone, so a factory cannot read one missing here.
REWARD_OPTIONS: dict[str, tuple[str, ...]] = {
    "cls": ("reasoning", "answer_format", "cls_partial_credit"),
    "loc": (
        "reasoning",
        "answer_format",
        "alpha",
        "giou_mean",
        "loc_no_box_zero",
        "loc_no_gt_as_normal",
        "loc_rescale",
    ),
    "count": ("reasoning", "answer_format", "alpha", "loc_no_gt_as_normal"),
    "format": ("reasoning", "answer_format", "format_reward"),
    "random": ("random_seed", "random_std"),
}


def check_options(options: dict) -> dict:
    """The options merged over the defaults; an unknown option or value is a clear error."""
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise InputError(f"unknown reward option(s) {unknown}; known: {sorted(DEFAULT_OPTIONS)}")
    merged = {**DEFAULT_OPTIONS, **options}
    for key, allowed in CHOICES.items():
        if merged[key] not in allowed:
            raise InputError(f"reward option {key}={merged[key]!r}: expected one of {', '.join(allowed)}")
    if not 0.0 <= float(merged["cls_partial_credit"]) <= 1.0:
        raise InputError(f"reward option cls_partial_credit={merged['cls_partial_credit']}: expected 0..1")
    return merged


def make_reward_funcs(names: Sequence[str], options: dict | None = None) -> list[RewardFunc]:
    """Reward functions for the config names, in order; unknown names are a clear error."""
    merged = check_options(dict(options or {}))
    unknown = [name for name in names if name not in REWARDS]
    if unknown:
        raise InputError(f"unknown reward(s) {unknown}; known: {sorted(REWARDS)}")
    return [REWARDS[name]({key: merged[key] for key in REWARD_OPTIONS[name]}) for name in names]

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
from scipy.optimize import linear_sum_assignment

from adfm import boxes as box_ops
from adfm.io import InputError
from adfm.protocol import (
    ANSWER_WORDS,
    REASONING_MODES,
    answer_text,
    answer_word,
    completion_text,
    expected_answer,
    first_block,
    has_box,
    parse_boxes,
    parse_response,
)

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

# The release's rescaling of r_loc (anomalous images): (r - low) / (high - low), clipped to [0, 1].
# r_loc itself spans [-1 - 0.1 alpha, 1 + alpha], so both ends saturate.
LOC_RESCALE_RANGE = (-0.5, 1.0)

def r_count(m: int, n: int) -> float:
    """Eq. 5: 1 for the right number of boxes, 0.5 when one off, -0.1 otherwise."""
    gap = abs(m - n)
    return 1.0 if gap == 0 else 0.5 if gap == 1 else -0.1


def r_focus(m: int) -> float:
    """Eq. 6: on a normal image, one region of interest is encouraged, several discouraged."""
    return 0.0 if m == 0 else 0.5 if m == 1 else -0.1


def matched_giou(predicted: Sequence[Sequence[float]], truth: Sequence[Sequence[float]]) -> list[float]:
    """GIoU of each Hungarian-matched (predicted, truth) pair, with cost 1 - GIoU; [] when a side is empty."""
    if not predicted or not truth:
        return []
    scores = np.array([[box_ops.giou(p, t) for t in truth] for p in predicted])
    rows, cols = linear_sum_assignment(1.0 - scores)
    return [float(v) for v in scores[rows, cols]]


def matched_mean_giou(predicted: Sequence[Sequence[float]], truth: Sequence[Sequence[float]]) -> float:
    """Mean GIoU over the Hungarian matching with cost 1 - GIoU; 0 when either side is empty."""
    pairs = matched_giou(predicted, truth)
    return float(np.mean(pairs)) if pairs else 0.0


def predicted_boxes(
    text: str, frame, reasoning: str, answer_format: str = "yes_no"
) -> tuple[str | None, list[list[float]]]:
    """Answer and well-formed boxes (clipped to the frame) of one response."""
    parsed = parse_response(text, reasoning, answer_format)
    frame_tuple = tuple(frame) if frame is not None else None
    kept = [b for b in (box_ops.sanitize(box, frame_tuple) for box in parsed.boxes) if b is not None]
    return parsed.answer, kept


def loc_reward(
    predicted: list[list[float]],
    truth: list[list[float]],
    label: int,
    alpha: float,
    *,
    giou_mean: str = "matched",
    no_box_zero: bool = False,
    no_gt_as_normal: bool = False,
    rescale: bool = False,
) -> float:
    """Eq. 4: matched GIoU + alpha * r_count on anomalous images, r_focus on normal ones.

    The keyword options are the release's variants (module docstring); their defaults are the paper.
    """
    if int(label) != 1 or (no_gt_as_normal and not truth):
        return r_focus(len(predicted))
    if no_box_zero and not predicted:
        return 0.0
    if giou_mean == "predicted":
        giou_term = sum(matched_giou(predicted, truth)) / len(predicted) if predicted else 0.0
    else:
        giou_term = matched_mean_giou(predicted, truth)
    value = giou_term + alpha * r_count(len(predicted), len(truth))
    if rescale:
        low, high = LOC_RESCALE_RANGE
        value = min(1.0, max(0.0, (value - low) / (high - low)))
    return value


def count_reward(predicted: list[list[float]], truth: list[list[float]], label: int, alpha: float,
                 *, no_gt_as_normal: bool = False) -> float:
    """The "r_cls + r_count" scheme of Figure 5: r_loc without its GIoU term."""
    if int(label) == 1 and not (no_gt_as_normal and not truth):
        return alpha * r_count(len(predicted), len(truth))
    return r_focus(len(predicted))


def _per_completion(score: Callable, name: str, options: dict) -> RewardFunc:
    """Wrap `score(answer, predicted_boxes, gt_boxes, label, text)` into TRL's batch signature."""
    reasoning, answer_format = options["reasoning"], options["answer_format"]

    def reward(completions, label, boxes=None, frame=None, **kwargs) -> list[float]:
        count = len(completions)
        truth = boxes if boxes is not None else [[] for _ in range(count)]
        frames = frame if frame is not None else [None] * count
        out = []
        for completion, lab, gt, fr in zip(completions, label, truth, frames):
            text = completion_text(completion)
            answer, predicted = predicted_boxes(text, fr, reasoning, answer_format)
            out.append(float(score(answer, predicted, [list(b) for b in (gt or [])], int(lab), text)))
        return out

    reward.__name__ = name
    reward.__qualname__ = name
    return reward


def cls_reward(answer: str | None, text: str, label: int, *, answer_format: str = "yes_no",
               partial_credit: float = 0.0) -> float:
    """r_cls: 1 when the parsed answer is the label's, else 0 (the paper).

    With `partial_credit` (the release's 0.8), the answer text (last <answer> block, else the whole
    response), stripped and lower-cased, earns 1 when it is exactly the right answer word (so a bare
    "a" without tags counts, as in the release) and `partial_credit` when it has at most 10
    characters and contains the right word (e.g. "a/b", or "option a" for an anomalous image).
    """
    if answer == expected_answer(label):
        return 1.0
    if partial_credit:
        raw = answer_text(text)
        raw = (text if raw is None else raw).strip().lower()
        word = answer_word(label, answer_format)
        if raw == word:  # the release's exact match also takes a bare answer without tags
            return 1.0
        if len(raw) <= 10 and word in raw:
            return float(partial_credit)
    return 0.0


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


def graded_format_reward(text: str, frame=None, answer_format: str = "yes_no") -> float:
    """The release's graded structure reward, at most 1.2 (first block of each tag, any case):

    - <think> with text: 0.3, and more than 10 characters: + 0.1;
    - <rethink> with text: 0.2, and more than 10 characters: + 0.1 (one-stage responses cannot earn it);
    - <answer> exactly an answer word: 0.2; else one contained in it: 0.1;
    - a [x1, y1, x2, y2] box in <think>: 0.2, and every box inside the frame: + 0.1 (the release
      checks coordinates < 505 for its 504-pixel frame); else a bracket pair in <think>: 0.1.
    """
    def block(tag: str) -> str:  # the release's reading: the first block in any case, stripped
        return (first_block(text, tag, any_case=True) or "").strip()

    reward = 0.0
    think = block("think")
    if think:
        reward += 0.3 + (0.1 if len(think) > 10 else 0.0)
    rethink = block("rethink")
    if rethink:
        reward += 0.2 + (0.1 if len(rethink) > 10 else 0.0)
    answer = block("answer").lower()
    words = ANSWER_WORDS[answer_format]
    if answer in words:
        reward += 0.2
    elif any(word in answer for word in words):
        reward += 0.1
    if think:
        if has_box(think):
            reward += 0.2
            boxes = parse_boxes(f"<think>{think}</think>")
            width, height = frame if frame is not None else (float("inf"), float("inf"))
            inside = all(
                0 <= b[0] <= width and 0 <= b[2] <= width and 0 <= b[1] <= height and 0 <= b[3] <= height for b in boxes
            )
            reward += 0.1 if boxes and inside else 0.0
        elif "[" in think and "]" in think:
            reward += 0.1
    return round(reward, 6)


def make_format(options: dict) -> RewardFunc:
    reasoning, answer_format, style = options["reasoning"], options["answer_format"], options["format_reward"]

    def format_reward(completions, frame=None, **kwargs) -> list[float]:
        frames = frame if frame is not None else [None] * len(completions)
        texts = [completion_text(c) for c in completions]
        if style == "graded":
            return [graded_format_reward(t, f, answer_format) for t, f in zip(texts, frames)]
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
    "loc": ("reasoning", "answer_format", "alpha", "giou_mean", "loc_no_box_zero", "loc_no_gt_as_normal",
            "loc_rescale"),
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

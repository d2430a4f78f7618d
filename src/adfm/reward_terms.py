"""The reward terms of one response (paper section 3.3, eqs. 4-6), and the release's variants of them.

adfm.rewards wraps them into TRL's batch reward functions and documents each variant's option.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from adfm import boxes as box_ops
from adfm.protocol import (
    ANSWER_WORDS,
    answer_text,
    answer_word,
    expected_answer,
    first_block,
    has_box,
    parse_boxes,
    parse_response,
)

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


def count_reward(
    predicted: list[list[float]], truth: list[list[float]], label: int, alpha: float, *, no_gt_as_normal: bool = False
) -> float:
    """The "r_cls + r_count" scheme of Figure 5: r_loc without its GIoU term."""
    if int(label) == 1 and not (no_gt_as_normal and not truth):
        return alpha * r_count(len(predicted), len(truth))
    return r_focus(len(predicted))


def cls_reward(
    answer: str | None, text: str, label: int, *, answer_format: str = "yes_no", partial_credit: float = 0.0
) -> float:
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

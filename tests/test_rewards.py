import math

import pytest

from adfm.protocol import format_response
from adfm.rewards import REWARDS, make_reward_funcs, matched_mean_giou, r_count, r_focus

ALPHA = 0.3


def completions(*texts):
    return [[{"role": "assistant", "content": text}] for text in texts]


def reward(name, texts, labels, boxes, **options):
    (func,) = make_reward_funcs([name], {"alpha": ALPHA, **options})
    return func(completions(*texts), label=labels, boxes=boxes, frame=[[100, 100]] * len(texts))


def test_registry_names_match_function_names():
    assert set(REWARDS) == {"cls", "loc", "count", "random", "format"}
    for name, func in zip(REWARDS, make_reward_funcs(list(REWARDS))):
        assert func.__name__ == name


def test_unknown_reward_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown reward"):
        make_reward_funcs(["accuracy"])


def test_cls():
    texts = [format_response([], "yes"), format_response([], "no"), "garbage"]
    assert reward("cls", texts, [1, 1, 1], [[]] * 3) == [1.0, 0.0, 0.0]
    assert reward("cls", texts, [0, 0, 0], [[]] * 3) == [0.0, 1.0, 0.0]


def test_count_and_focus_tables():
    assert [r_count(m, 2) for m in (2, 1, 3, 0, 4)] == [1.0, 0.5, 0.5, -0.1, -0.1]
    assert [r_focus(m) for m in (0, 1, 2, 5)] == [0.0, 0.5, -0.1, -0.1]


def test_loc_perfect_single_box():
    # GIoU 1 + alpha * 1
    assert reward("loc", [format_response([[10, 10, 50, 50]], "yes")], [1], [[[10, 10, 50, 50]]]) == [pytest.approx(1.3)]


def test_loc_half_overlap():
    # pred [0,0,20,10], gt [10,0,30,10]: inter 100, union 300, hull 300 -> GIoU 1/3; m = n
    value = reward("loc", [format_response([[0, 0, 20, 10]], "yes")], [1], [[[10, 0, 30, 10]]])
    assert value == [pytest.approx(1 / 3 + ALPHA)]


def test_loc_disjoint_boxes_negative_giou():
    # pred [0,0,10,10], gt [20,0,30,10]: IoU 0, union 200, hull 300 -> GIoU -1/3
    value = reward("loc", [format_response([[0, 0, 10, 10]], "yes")], [1], [[[20, 0, 30, 10]]])
    assert value == [pytest.approx(-1 / 3 + ALPHA)]


def test_loc_one_box_missing():
    # two GT boxes, one predicted exactly: mean GIoU over the single match = 1; |m-n| = 1 -> 0.5
    gt = [[0, 0, 10, 10], [50, 50, 60, 60]]
    value = reward("loc", [format_response([[50, 50, 60, 60]], "no")], [1], [gt])
    assert value == [pytest.approx(1 + ALPHA * 0.5)]


def test_loc_hungarian_matching_picks_best_assignment():
    gt = [[0, 0, 10, 10], [50, 50, 60, 60]]
    predicted = [[50, 50, 60, 60], [0, 0, 10, 10]]  # listed in the other order
    assert matched_mean_giou(predicted, gt) == pytest.approx(1.0)
    assert reward("loc", [format_response(predicted, "yes")], [1], [gt]) == [pytest.approx(1 + ALPHA)]


def test_loc_count_off_by_two_or_more():
    # three predictions for one GT box: the match is exact (GIoU 1), |m-n| = 2 -> -0.1
    predicted = [[0, 0, 10, 10], [40, 40, 50, 50], [70, 70, 80, 80]]
    value = reward("loc", [format_response(predicted, "yes")], [1], [[[0, 0, 10, 10]]])
    assert value == [pytest.approx(1 - 0.1 * ALPHA)]


def test_loc_no_predicted_box_on_anomalous_image():
    # GIoU term 0; n = 1 -> |m-n| = 1 -> 0.5 * alpha; n = 3 -> -0.1 * alpha
    assert reward("loc", [format_response([], "yes")], [1], [[[0, 0, 10, 10]]]) == [pytest.approx(0.5 * ALPHA)]
    three = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]
    assert reward("loc", [format_response([], "yes")], [1], [three]) == [pytest.approx(-0.1 * ALPHA)]


def test_loc_normal_image_focus():
    texts = [format_response([], "no"), format_response([[0, 0, 5, 5]], "no"),
             format_response([[0, 0, 5, 5], [10, 10, 20, 20]], "no")]
    assert reward("loc", texts, [0, 0, 0], [[]] * 3) == [0.0, 0.5, -0.1]


def test_degenerate_and_out_of_frame_boxes():
    # zero-area and entirely out-of-frame boxes are dropped (m counts well-formed boxes only)
    degenerate = format_response([[10, 10, 10, 50], [200, 200, 300, 300]], "no")
    assert reward("loc", [degenerate], [0], [[]]) == [0.0]
    # a box spilling out of the 100x100 frame is clipped to [50, 50, 100, 100] before matching
    spilling = format_response([[50, 50, 150, 150]], "yes")
    assert reward("loc", [spilling], [1], [[[50, 50, 100, 100]]]) == [pytest.approx(1 + ALPHA)]
    # reversed corners are reordered
    reversed_box = '<think>[{"bbox_2d": [50, 50, 10, 10]}]</think><rethink>x</rethink><answer>yes</answer>'
    assert reward("loc", [reversed_box], [1], [[[10, 10, 50, 50]]]) == [pytest.approx(1 + ALPHA)]


def test_count_reward_is_loc_without_giou():
    text = format_response([[0, 0, 10, 10]], "yes")
    assert reward("count", [text], [1], [[[80, 80, 90, 90]]]) == [pytest.approx(ALPHA)]
    assert reward("count", [text], [0], [[]]) == [0.5]


def test_format_reward():
    texts = [format_response([], "yes"), format_response([], "yes", reasoning="one_stage"), "<answer>yes</answer>"]
    assert reward("format", texts, [1] * 3, [[]] * 3) == [1.0, 0.0, 0.0]
    assert reward("format", texts, [1] * 3, [[]] * 3, reasoning="one_stage") == [0.0, 1.0, 0.0]


def test_random_reward_is_seeded_zero_mean_noise():
    first = reward("random", ["x"] * 2000, [1] * 2000, [[]] * 2000, random_seed=3, random_std=2.0)
    again = reward("random", ["x"] * 2000, [1] * 2000, [[]] * 2000, random_seed=3, random_std=2.0)
    assert first == again
    mean = sum(first) / len(first)
    std = math.sqrt(sum((v - mean) ** 2 for v in first) / len(first))
    assert abs(mean) < 0.15 and abs(std - 2.0) < 0.15


def test_missing_boxes_column_is_tolerated():
    (func,) = make_reward_funcs(["loc"])
    assert func(completions(format_response([], "no")), label=[0]) == [0.0]

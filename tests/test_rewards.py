import math

import pytest

from adfm.io import InputError
from adfm.protocol import format_response
from adfm.reward_terms import matched_mean_giou, r_count, r_focus
from adfm.rewards import DEFAULT_OPTIONS, REWARDS, make_reward_funcs

ALPHA = 0.3


def completions(*texts):
    return [[{"role": "assistant", "content": text}] for text in texts]


def reward(name, texts, labels, boxes, **options):
    (func,) = make_reward_funcs([name], {"alpha": ALPHA, **options})
    return func(completions(*texts), label=labels, boxes=boxes, frame=[[100, 100]] * len(texts))


def test_registry_names_match_function_names():
    assert set(REWARDS) == {"cls", "loc", "count", "random", "format"}
    for name, func in zip(REWARDS, make_reward_funcs(list(REWARDS)), strict=False):
        assert func.__name__ == name


def test_unknown_reward_is_a_clear_error():
    with pytest.raises(InputError, match="unknown reward"):
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
    assert reward("loc", [format_response([[10, 10, 50, 50]], "yes")], [1], [[[10, 10, 50, 50]]]) == [
        pytest.approx(1.3)
    ]


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
    texts = [
        format_response([], "no"),
        format_response([[0, 0, 5, 5]], "no"),
        format_response([[0, 0, 5, 5], [10, 10, 20, 20]], "no"),
    ]
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


# ----------------------------------------------------------- variants of the authors' release


def answer_only(answer, boxes=(), reasoning="multi_stage"):
    return format_response(list(boxes), answer, reasoning=reasoning)


def test_letter_answers():
    texts = [answer_only("a"), answer_only("b"), answer_only("yes")]
    assert reward("cls", texts, [1, 1, 1], [[]] * 3, answer_format="letter") == [1.0, 0.0, 0.0]
    assert reward("cls", texts, [0, 0, 0], [[]] * 3, answer_format="letter") == [0.0, 1.0, 0.0]
    # the default (yes / no) reads no letter
    assert reward("cls", texts, [1, 1, 1], [[]] * 3) == [0.0, 0.0, 1.0]


def test_cls_partial_credit():
    texts = [
        "<answer>a/b</answer>",  # first word "a" (wrong for a normal image), but "b" is in a short text
        "<answer>option b</answer>",  # no answer word first; short and holds "b"
        "<answer>the answer is b</answer>",  # holds "b" but longer than 10 characters
        "b",  # a bare exact answer without tags: full credit, as in the release
        "<answer>b.</answer>",  # first word "b": correct
        "<answer>option a</answer>",  # short, but the wrong letter
    ]
    labels = [0] * len(texts)
    options = {"answer_format": "letter", "cls_partial_credit": 0.8}
    assert reward("cls", texts, labels, [[]] * len(texts), **options) == [0.8, 0.8, 0.0, 1.0, 1.0, 0.0]
    # off (the paper): only a parsed, right answer counts
    assert reward("cls", texts, labels, [[]] * len(texts), answer_format="letter") == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    # with yes / no answers: "not sure" is short and holds "no"
    yes_no = ["<answer>not sure</answer>", "<answer>yes</answer>", "no"]
    assert reward("cls", yes_no, [0, 0, 0], [[]] * 3, cls_partial_credit=0.8) == [0.8, 0.0, 1.0]


TWO_PREDICTIONS = [[0, 0, 10, 10], [40, 40, 50, 50]]  # one exact (GIoU 1), one unmatched
ONE_GT = [[[0, 0, 10, 10]]]


def test_giou_mean_over_predictions():
    # matched pairs: GIoU 1 over 1 match; |m - n| = 1 -> r_count 0.5
    text = [answer_only("yes", TWO_PREDICTIONS)]
    assert reward("loc", text, [1], ONE_GT) == [pytest.approx(1 + 0.5 * ALPHA)]  # 1.15
    # release: the GIoU sum over m = 2 predictions: 1 / 2
    assert reward("loc", text, [1], ONE_GT, giou_mean="predicted") == [pytest.approx(0.5 + 0.5 * ALPHA)]  # 0.65
    # m = n: the same either way
    exact = [answer_only("yes", [[0, 0, 10, 10]])]
    assert reward("loc", exact, [1], ONE_GT, giou_mean="predicted") == [pytest.approx(1 + ALPHA)]


def test_loc_no_box_zero():
    empty = [answer_only("yes")]
    assert reward("loc", empty, [1], ONE_GT) == [pytest.approx(0.5 * ALPHA)]  # 0 + alpha * r_count(0, 1)
    assert reward("loc", empty, [1], ONE_GT, loc_no_box_zero=True) == [0.0]
    # normal images are unaffected: r_focus(0) = 0
    assert reward("loc", empty, [0], [[]], loc_no_box_zero=True) == [0.0]


def test_loc_rescale():
    texts = [
        answer_only("yes", [[10, 10, 50, 50]]),  # 1 + 0.3 = 1.3 -> 1.2 -> clipped to 1
        answer_only("yes", [[0, 0, 20, 10]]),  # GIoU 1/3 (vs [10,0,30,10]) + 0.3
        answer_only("yes", [[0, 0, 10, 10]]),  # GIoU -1/3 (vs [20,0,30,10]) + 0.3
        answer_only("yes"),  # no box: 0 + 0.5 * 0.3 = 0.15
        answer_only("yes", [[0, 0, 10, 10], [0, 20, 10, 30], [0, 40, 10, 50]]),  # far off, |m - n| = 2
    ]
    truth = [[[10, 10, 50, 50]], [[10, 0, 30, 10]], [[20, 0, 30, 10]], [[0, 0, 10, 10]], [[90, 90, 100, 100]]]
    values = reward("loc", texts, [1] * 5, truth, loc_rescale=True)
    # the last: best GIoU pair [0,40,10,50] vs [90,90,100,100]: hull 100 x 60 = 6000, union 200
    # -> GIoU -5800/6000; + 0.3 * -0.1 -> about -0.997 -> (r + 0.5) / 1.5 < 0 -> clipped to 0
    expected = [1.0, (1 / 3 + ALPHA + 0.5) / 1.5, (-1 / 3 + ALPHA + 0.5) / 1.5, (0.15 + 0.5) / 1.5, 0.0]
    assert values == [pytest.approx(v) for v in expected]
    # normal images keep r_focus (0, 0.5, -0.1): not rescaled
    normal = [answer_only("no"), answer_only("no", [[0, 0, 5, 5]]), answer_only("no", TWO_PREDICTIONS)]
    assert reward("loc", normal, [0, 0, 0], [[]] * 3, loc_rescale=True) == [0.0, 0.5, -0.1]


def test_loc_release_combination():
    # sum / m = 0.5, + 0.3 * 0.5 = 0.65 -> (0.65 + 0.5) / 1.5
    release = {"giou_mean": "predicted", "loc_no_box_zero": True, "loc_rescale": True}
    text = [answer_only("yes", TWO_PREDICTIONS), answer_only("yes")]
    assert reward("loc", text, [1, 1], ONE_GT * 2, **release) == [pytest.approx(1.15 / 1.5), 0.0]


def test_graded_format_reward():
    texts = [
        answer_only("yes", [[10, 10, 50, 50]]),  # think 0.3+0.1, rethink 0.2+0.1, answer 0.2, box 0.2 + in frame 0.1
        answer_only("no"),  # think "[]" is short: 0.3; rethink 0.3; answer 0.2; brackets only: 0.1
        answer_only("yes", [[50, 50, 150, 150]]),  # box out of the 100 x 100 frame: no + 0.1
        "<answer>yes please</answer>",  # an answer word inside, not exactly: 0.1
        answer_only("yes", [[10, 10, 50, 50]], reasoning="one_stage"),  # no rethink: 1.2 - 0.3
        "<think>x</think><rethink>y</rethink><answer>b</answer>",  # 0.3 + 0.2 + (letter? see below) + 0
        "garbage",
    ]
    values = reward("format", texts, [1] * len(texts), [[]] * len(texts), format_reward="graded")
    assert values == [pytest.approx(v) for v in [1.2, 0.9, 1.1, 0.1, 0.9, 0.5, 0.0]]
    letter = reward("format", texts[5:6], [1], [[]], format_reward="graded", answer_format="letter")
    assert letter == [pytest.approx(0.7)]


def test_strict_format_reward_with_letters():
    texts = [answer_only("a"), answer_only("yes")]
    assert reward("format", texts, [1, 1], [[]] * 2, answer_format="letter") == [1.0, 0.0]


def test_bad_reward_options_are_clear_errors():
    with pytest.raises(InputError, match="unknown reward option"):
        make_reward_funcs(["cls"], {"alpah": 0.3})
    with pytest.raises(InputError, match="giou_mean"):
        make_reward_funcs(["loc"], {"giou_mean": "all"})
    with pytest.raises(InputError, match="cls_partial_credit"):
        make_reward_funcs(["cls"], {"cls_partial_credit": 1.5})


def test_anomalous_image_without_ground_truth_box_as_normal():
    # the release: an anomalous image whose mask gave no box is scored like a normal image (r_focus)
    texts = [
        format_response([], "yes"),
        format_response([[10, 10, 20, 20]], "yes"),
        format_response([[10, 10, 20, 20], [30, 30, 40, 40]], "yes"),
    ]
    release = reward("loc", texts, [1] * 3, [[]] * 3, loc_no_gt_as_normal=True)
    assert release == [r_focus(0), r_focus(1), r_focus(2)] == [0.0, 0.5, -0.1]
    ours = reward("loc", texts, [1] * 3, [[]] * 3)
    assert ours == pytest.approx([ALPHA * r_count(0, 0), ALPHA * r_count(1, 0), ALPHA * r_count(2, 0)])
    # images with boxes are untouched, and Figure 5's count scheme follows the same option
    boxed = reward("loc", texts[1:2], [1], [[[10, 10, 20, 20]]], loc_no_gt_as_normal=True)
    assert boxed == pytest.approx([1.0 + ALPHA])
    assert reward("count", texts, [1] * 3, [[]] * 3, loc_no_gt_as_normal=True) == [0.0, 0.5, -0.1]


def test_random_reward_default_spread_is_below_r_cls():
    # rewards.random_std (0.2, r_loc's within-group spread on the demo) must not drown r_cls (std <= 0.5)
    from conftest import REPO

    from adfm.config import load_config

    config = load_config([REPO / "config.yaml"])
    assert config["rewards"]["random_std"] == DEFAULT_OPTIONS["random_std"] == 0.2
    noise = reward("random", ["x"] * 4000, [1] * 4000, [[]] * 4000, random_seed=1)
    mean = sum(noise) / len(noise)
    assert abs(math.sqrt(sum((v - mean) ** 2 for v in noise) / len(noise)) - 0.2) < 0.02

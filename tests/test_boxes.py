import numpy as np
import pytest

from adfm.boxes import from_model_frame, giou, iou, mask_to_boxes, model_frame_size, sanitize, to_model_frame


def blank(h=100, w=120):
    return np.zeros((h, w), np.uint8)


def test_separated_blobs_without_dilation_give_one_box_each():
    mask = blank()
    mask[10:20, 10:30] = 255
    mask[50:70, 60:65] = 255
    mask[80:90, 100:110] = 7  # VisA-style defect id: anything > 0 is a defect
    assert mask_to_boxes(mask, dilation_kernel=1, min_area=1) == [[10, 10, 30, 20], [60, 50, 65, 70], [100, 80, 110, 90]]


def test_dilation_merges_close_fragments_without_growing_the_box():
    mask = blank()
    mask[10:20, 10:20] = 255
    mask[10:20, 23:30] = 255  # 3-pixel gap
    assert len(mask_to_boxes(mask, dilation_kernel=1, min_area=1)) == 2
    assert mask_to_boxes(mask, dilation_kernel=5, min_area=1) == [[10, 10, 30, 20]]


def test_every_mask_pixel_lies_in_a_box():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = (rng.random((60, 80)) > 0.97).astype(np.uint8)
        boxes = mask_to_boxes(mask, dilation_kernel=int(rng.integers(1, 8)), min_area=1)
        ys, xs = np.nonzero(mask)
        for x, y in zip(xs, ys):
            assert any(b[0] <= x < b[2] and b[1] <= y < b[3] for b in boxes)


def test_min_area_drops_specks():
    mask = blank()
    mask[5, 5] = 255
    mask[40:50, 40:50] = 255
    assert mask_to_boxes(mask, dilation_kernel=1, min_area=4) == [[40, 40, 50, 50]]


def test_empty_mask_gives_no_box():
    assert mask_to_boxes(blank(), dilation_kernel=15, min_area=1) == []


def test_model_frame_follows_qwen_resize():
    # the paper's setting: a 512x512 image under max_pixels 262144 becomes 504x504
    assert model_frame_size(512, 512, min_pixels=3136, max_pixels=262144) == (504, 504)
    # a 1024x1024 MVTec image is scaled down under the same budget, sides multiples of 28
    width, height = model_frame_size(1024, 1024, min_pixels=3136, max_pixels=262144)
    assert width % 28 == 0 and height % 28 == 0 and width * height <= 262144


def test_to_model_frame_scales_boxes_and_back():
    boxes, frame = to_model_frame([[0, 0, 512, 256]], 512, 512, min_pixels=3136, max_pixels=262144)
    assert frame == (504, 504)
    assert boxes == [[0.0, 0.0, 504.0, 252.0]]
    assert from_model_frame(boxes, frame, 512, 512) == [[0.0, 0.0, 512.0, 256.0]]


def test_iou_and_giou_hand_values():
    a, b = [0, 0, 20, 10], [10, 0, 30, 10]
    assert iou(a, b) == pytest.approx(1 / 3)
    assert giou(a, b) == pytest.approx(1 / 3)
    assert giou([0, 0, 10, 10], [20, 0, 30, 10]) == pytest.approx(-1 / 3)
    assert giou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0


def test_sanitize():
    assert sanitize([30, 40, 10, 20]) == [10.0, 20.0, 30.0, 40.0]
    assert sanitize([-5, -5, 50, 50], (40, 40)) == [0.0, 0.0, 40.0, 40.0]
    assert sanitize([0, 0, 0, 10]) is None
    assert sanitize([float("nan"), 0, 1, 1]) is None
    assert sanitize([1, 2, 3]) is None
    assert sanitize([50, 50, 60, 60], (40, 40)) is None

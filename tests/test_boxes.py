import numpy as np
import pytest

from adfm.boxes import giou, model_frame_size, sanitize
from adfm.data.masks import box_summary, boxes_table, mask_to_boxes, scaled_sizes
from adfm.io import InputError


def blank(h=100, w=120):
    return np.zeros((h, w), np.uint8)


def test_separated_blobs_without_dilation_give_one_box_each():
    mask = blank()
    mask[10:20, 10:30] = 255
    mask[50:70, 60:65] = 255
    mask[80:90, 100:110] = 7  # VisA-style defect id: anything > 0 is a defect
    assert mask_to_boxes(mask, dilation_kernel=1, min_area=1) == [
        [10, 10, 30, 20],
        [60, 50, 65, 70],
        [100, 80, 110, 90],
    ]


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
        for x, y in zip(xs, ys, strict=False):
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


def test_giou_hand_values():
    a, b = [0, 0, 20, 10], [10, 0, 30, 10]
    assert giou(a, b) == pytest.approx(1 / 3)  # the hull is the union: GIoU is the IoU
    assert giou([0, 0, 10, 10], [20, 0, 30, 10]) == pytest.approx(-1 / 3)
    assert giou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0


def test_sanitize():
    assert sanitize([30, 40, 10, 20]) == [10.0, 20.0, 30.0, 40.0]
    assert sanitize([-5, -5, 50, 50], (40, 40)) == [0.0, 0.0, 40.0, 40.0]
    assert sanitize([0, 0, 0, 10]) is None
    assert sanitize([float("nan"), 0, 1, 1]) is None
    assert sanitize([1, 2, 3]) is None
    assert sanitize([50, 50, 60, 60], (40, 40)) is None


# ---- sizes relative to the image (config boxes.reference_side), box of the dilated component, statistics


def test_sizes_scale_with_the_shorter_side():
    sizes = {"dilation_kernel": 15, "min_area": 16, "reference_side": 512}
    assert scaled_sizes(512, 512, **sizes) == (15, 16)
    assert scaled_sizes(1536, 1024, **sizes) == (31, 64)  # shorter side 1024: twice the kernel, 4x the area
    assert scaled_sizes(3000, 3000, **sizes) == (87, 549)  # 15 * 5.86 = 87.9 -> nearest odd 87
    assert scaled_sizes(112, 112, **sizes) == (3, 1)
    assert scaled_sizes(3000, 3000, dilation_kernel=15, min_area=16, reference_side=None) == (15, 16)
    assert scaled_sizes(3000, 3000, dilation_kernel=1, min_area=16, reference_side=512)[0] == 1  # no dilation stays


def test_relative_kernel_merges_fragments_alike_at_any_resolution():
    def two_fragments(side):
        # two 4 x 4 fragments 12 px apart on a 512-px image, the same drawing scaled to `side`
        s = side / 512
        mask = np.zeros((side, side), np.uint8)
        for x in (100, 116):
            mask[int(100 * s) : int(104 * s), int(x * s) : int((x + 4) * s)] = 1
        return mask

    for side in (512, 2048):
        mask = two_fragments(side)
        kernel, area = scaled_sizes(side, side, dilation_kernel=15, min_area=16, reference_side=512)
        assert len(mask_to_boxes(mask, dilation_kernel=kernel, min_area=area)) == 1
    # absolute 15 px on the 2048-px image: the same fragments lie 48 px apart and stay two boxes
    assert len(mask_to_boxes(two_fragments(2048), dilation_kernel=15, min_area=16)) == 2


def test_box_of_the_dilated_component():
    mask = blank()
    mask[40:50, 40:50] = 1
    assert mask_to_boxes(mask, dilation_kernel=5, min_area=1) == [[40, 40, 50, 50]]
    assert mask_to_boxes(mask, dilation_kernel=5, min_area=1, box_of="dilated") == [[38, 38, 52, 52]]
    mask[0:3, 0:3] = 1  # at the border the dilated box is clipped to the image
    assert mask_to_boxes(mask, dilation_kernel=5, min_area=1, box_of="dilated")[0] == [0, 0, 5, 5]
    with pytest.raises(InputError, match="box_of"):
        mask_to_boxes(mask, dilation_kernel=5, min_area=1, box_of="hull")


def test_boxes_stage_writes_box_count_statistics(tmp_path, caplog):
    import logging

    import cv2
    import pandas as pd

    rows = []
    for name, rects in {
        "one": [(10, 10, 20, 20)],
        "two": [(10, 10, 20, 20), (60, 60, 70, 70)],
        "none": [],
        "good": None,
    }.items():
        mask_path = ""
        if rects is not None:
            mask = np.zeros((100, 100), np.uint8)
            for x1, y1, x2, y2 in rects:
                mask[y1:y2, x1:x2] = 255
            cv2.imwrite(str(tmp_path / f"{name}.png"), mask)
            mask_path = str(tmp_path / f"{name}.png")
        rows.append(
            {
                "dataset": "toy",
                "image_path": f"{name}.png",
                "label": int(rects is not None),
                "mask_paths": [mask_path] if mask_path else [],
                "width": 200,
                "height": 100,
            }
        )
    frame = pd.DataFrame(rows)
    with caplog.at_level(logging.WARNING):
        table = boxes_table(frame, dilation_kernel=3, min_area=1, reference_side=50)
    assert "none.png: anomalous image whose mask yields no box" in caplog.text
    assert table["kernel_px"].tolist() == [7] * 4 and table["min_area_px"].tolist() == [4] * 4
    summary = box_summary("toy", frame, table).iloc[0]
    assert (summary["images"], summary["anomalous"], summary["anomalous_without_box"]) == (4, 3, 1)
    assert (summary["anomalous_with_1"], summary["anomalous_with_2"], summary["boxes_per_anomalous_max"]) == (1, 1, 2)
    assert summary["boxes_per_anomalous_mean"] == 1.0

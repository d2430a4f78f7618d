"""Bounding boxes between frames, and their geometry (GIoU).

Boxes are `[x1, y1, x2, y2]` lists. Ground truth is stored in original image pixels; the one
conversion to the frame a model's responses use is adfm.model.families (Qwen2.5-VL's resize is
`model_frame_size` here; other families write relative coordinates). Rewards and
scoring both use the geometry here so the two can never drift apart. Boxes from masks:
adfm.data.masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Box = list[float]

# Qwen2.5-VL: 14-pixel patches merged 2x2, so resized sides are multiples of 28.
QWEN_RESIZE_FACTOR = 28


def model_frame_size(
    width: int, height: int, *, min_pixels: int, max_pixels: int, factor: int = QWEN_RESIZE_FACTOR
) -> tuple[int, int]:
    """(W, H) of the image as a Qwen2-VL processor resizes it (sides multiples of `factor`, area
    within [min_pixels, max_pixels])."""
    # Imported here: transformers costs seconds to import, and most users of this module never resize.
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    new_height, new_width = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return int(new_width), int(new_height)


def scale_boxes(
    boxes: Sequence[Sequence[float]], from_size: Sequence[float], to_size: Sequence[float], ndigits: int | None = None
) -> list[Box]:
    """Boxes in a frame of `from_size` (W, H) -> the same boxes in a frame of `to_size`, each
    coordinate rounded to `ndigits` when given."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    scaled = [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in boxes]
    return scaled if ndigits is None else [[round(v, ndigits) for v in box] for box in scaled]


def from_model_frame(boxes: Sequence[Sequence[float]], frame: tuple[int, int], width: int, height: int) -> list[Box]:
    """Predicted boxes in a model's response frame back to original pixels (for drawing)."""
    return scale_boxes(boxes, frame, (width, height))


def sanitize(box: Sequence[float], frame: tuple[int, int] | None = None) -> Box | None:
    """A well-formed box (x1 <= x2, y1 <= y2, finite), clipped to the frame; None if impossible.

    Reversed corners are reordered (models sometimes write them so); a box with a non-finite
    coordinate, or one with zero area after clipping, is None.
    """
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    if frame is not None:
        w, h = frame
        x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
        y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
    if x2 <= x1 or y2 <= y1:
        return None
    return [x1, y1, x2, y2]


def area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def giou(a: Sequence[float], b: Sequence[float]) -> float:
    """Generalised IoU (Rezatofighi et al. 2019): IoU minus the hull's share not covered by the union."""
    inter = area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    union = area(a) + area(b) - inter
    hull = area([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])])
    if union <= 0 or hull <= 0:
        return -1.0
    return inter / union - (hull - union) / hull

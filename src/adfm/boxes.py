"""Bounding boxes: from masks, between frames, and their geometry (IoU, GIoU).

Boxes are `[x1, y1, x2, y2]` lists. Ground truth is stored in original image pixels; the one
conversion to the frame the model sees (Qwen2.5-VL's resize) is `to_model_frame`. Rewards and
scoring both use the geometry here so the two can never drift apart.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from adfm.datasets import manifest
from adfm.io import InputError, write_csv_atomic

log = logging.getLogger(__name__)

Box = list[float]

# Qwen2.5-VL: 14-pixel patches merged 2x2, so resized sides are multiples of 28.
QWEN_RESIZE_FACTOR = 28


def mask_to_boxes(mask: np.ndarray, *, dilation_kernel: int, min_area: int) -> list[list[int]]:
    """Pseudo ground-truth boxes from a defect mask (paper section 4.1).

    The mask is binarised with > 0 (VisA and MVTec LOCO encode defect ids as pixel values), dilated
    with a square kernel so that fragments of one defect merge, split into 8-connected components,
    and each component's minimal enclosing box is returned in original pixels, clipped to the
    image. Components smaller than `min_area` pixels (before dilation) are dropped as noise.
    """
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    if binary.ndim == 3:
        binary = binary.max(axis=2)
    height, width = binary.shape
    merged = binary
    if dilation_kernel > 1:
        kernel = np.ones((dilation_kernel, dilation_kernel), np.uint8)
        merged = cv2.dilate(binary, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(merged, connectivity=8)
    boxes = []
    for component in range(1, count):
        inside = (labels == component) & (binary > 0)
        if inside.sum() < max(min_area, 1):
            continue
        ys, xs = np.nonzero(inside)
        # Box of the original pixels only: dilation merges, it must not grow the box.
        boxes.append([int(xs.min()), int(ys.min()), int(min(xs.max() + 1, width)), int(min(ys.max() + 1, height))])
    boxes.sort()
    return boxes


def model_frame_size(width: int, height: int, *, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(W, H) of the image as Qwen2.5-VL's processor resizes it."""
    # Imported here: transformers costs seconds to import, and most users of this module never resize.
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    new_height, new_width = smart_resize(
        height, width, factor=QWEN_RESIZE_FACTOR, min_pixels=min_pixels, max_pixels=max_pixels
    )
    return int(new_width), int(new_height)


def to_model_frame(
    boxes: Sequence[Sequence[float]], width: int, height: int, *, min_pixels: int, max_pixels: int
) -> tuple[list[Box], tuple[int, int]]:
    """Boxes in original pixels -> boxes in the processor's resized frame, and that frame (W, H)."""
    frame_w, frame_h = model_frame_size(width, height, min_pixels=min_pixels, max_pixels=max_pixels)
    sx, sy = frame_w / width, frame_h / height
    scaled = [[round(b[0] * sx, 2), round(b[1] * sy, 2), round(b[2] * sx, 2), round(b[3] * sy, 2)] for b in boxes]
    return scaled, (frame_w, frame_h)


def from_model_frame(boxes: Sequence[Sequence[float]], frame: tuple[int, int], width: int, height: int) -> list[Box]:
    """Inverse of `to_model_frame`: predicted boxes back to original pixels (for drawing)."""
    sx, sy = width / frame[0], height / frame[1]
    return [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in boxes]


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


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def giou(a: Sequence[float], b: Sequence[float]) -> float:
    """Generalised IoU (Rezatofighi et al. 2019): IoU minus the hull's share not covered by the union."""
    inter = area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    union = area(a) + area(b) - inter
    hull = area([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])])
    if union <= 0 or hull <= 0:
        return -1.0
    return inter / union - (hull - union) / hull


def read_mask(paths: Sequence[str]) -> np.ndarray:
    """Union of one image's mask files (MVTec LOCO has one file per defect region)."""
    union = None
    for path in paths:
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise InputError(f"{path}: unreadable mask")
        mask = (mask > 0) if mask.ndim == 2 else (mask > 0).any(axis=2)
        union = mask if union is None else union | mask
    return union.astype(np.uint8)


def boxes_table(frame, *, dilation_kernel: int, min_area: int):
    """One row per image of the manifest: image_path and its boxes (JSON, original pixels)."""
    import pandas as pd

    records = []
    for row in tqdm(frame.itertuples(index=False), total=len(frame), desc="boxes", unit="img"):
        found = []
        if row.label == 1:
            found = mask_to_boxes(read_mask(row.mask_paths), dilation_kernel=dilation_kernel, min_area=min_area)
            if not found:
                log.warning("%s: anomalous image whose mask yields no box (all below min_area?)", row.image_path)
        records.append({"image_path": row.image_path, "boxes": json.dumps(found)})
    return pd.DataFrame.from_records(records, columns=["image_path", "boxes"])


def run_boxes(manifest_path: Path, out: Path, *, dilation_kernel: int, min_area: int) -> None:
    table = boxes_table(manifest.read(manifest_path), dilation_kernel=dilation_kernel, min_area=min_area)
    write_csv_atomic(table, out)


def register(subparsers) -> None:
    parser = subparsers.add_parser("boxes", help="pseudo ground-truth boxes from the manifest's masks")
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--dilation-kernel", required=True, type=int)
    parser.add_argument("--min-area", required=True, type=int)
    parser.add_argument("--out", required=True, type=Path)
    parser.set_defaults(
        func=lambda a: run_boxes(a.manifest, a.out, dilation_kernel=a.dilation_kernel, min_area=a.min_area)
    )

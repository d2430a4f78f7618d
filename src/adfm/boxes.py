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

from adfm.data.datasets import manifest
from adfm.io import InputError, write_csv_atomic

log = logging.getLogger(__name__)

Box = list[float]

# Qwen2.5-VL: 14-pixel patches merged 2x2, so resized sides are multiples of 28.
QWEN_RESIZE_FACTOR = 28


BOX_OF = ("mask", "dilated")


def mask_to_boxes(mask: np.ndarray, *, dilation_kernel: int, min_area: int, box_of: str = "mask") -> list[list[int]]:
    """Pseudo ground-truth boxes from a defect mask (paper section 4.1).

    The mask is binarised with > 0 (VisA and MVTec LOCO encode defect ids as pixel values), dilated
    with a square kernel of `dilation_kernel` pixels so that fragments of one defect merge, and split
    into 8-connected components; components with fewer than `min_area` mask pixels (before dilation)
    are dropped as noise. Each component gives one box in original pixels, clipped to the image:
    `box_of` "mask", the box of its original mask pixels (dilation merges, it does not grow the box),
    or "dilated", the box of the dilated component (the literal reading of "minimal enclosing box"
    after dilation: about half a kernel larger on each side).
    """
    if box_of not in BOX_OF:
        raise ValueError(f"box_of={box_of!r}: expected one of {', '.join(BOX_OF)}")
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    if binary.ndim == 3:
        binary = binary.max(axis=2)
    height, width = binary.shape
    merged = binary
    if dilation_kernel > 1:
        kernel = np.ones((dilation_kernel, dilation_kernel), np.uint8)
        merged = cv2.dilate(binary, kernel)
    count, labels, _, _ = cv2.connectedComponentsWithStats(merged, connectivity=8)
    boxes = []
    for component in range(1, count):
        inside = (labels == component) & (binary > 0)
        if inside.sum() < max(min_area, 1):
            continue
        ys, xs = np.nonzero(labels == component if box_of == "dilated" else inside)
        boxes.append([int(xs.min()), int(ys.min()), int(min(xs.max() + 1, width)), int(min(ys.max() + 1, height))])
    boxes.sort()
    return boxes


def scaled_sizes(width: int, height: int, *, dilation_kernel: int, min_area: int,
                 reference_side: int | None) -> tuple[int, int]:
    """(kernel, min_area) in this image's pixels.

    With a `reference_side`, the configured sizes are pixels of an image whose shorter side is that
    long, scaled to this image's shorter side: the kernel linearly (rounded to an odd side, so that
    dilation stays centred), the area quadratically; at least 1 each. None: the sizes are pixels of
    every image as given.
    """
    if reference_side is None:
        return int(dilation_kernel), int(min_area)
    scale = min(width, height) / float(reference_side)
    kernel = 1 if dilation_kernel <= 1 else 2 * int(dilation_kernel * scale // 2) + 1  # the nearest odd side
    return kernel, max(1, round(min_area * scale * scale))


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
    return scale_boxes(boxes, (width, height), (frame_w, frame_h), ndigits=2), (frame_w, frame_h)


def scale_boxes(boxes: Sequence[Sequence[float]], from_size: Sequence[float], to_size: Sequence[float],
                ndigits: int | None = None) -> list[Box]:
    """Boxes in a frame of `from_size` (W, H) -> the same boxes in a frame of `to_size`, each
    coordinate rounded to `ndigits` when given."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    scaled = [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in boxes]
    return scaled if ndigits is None else [[round(v, ndigits) for v in box] for box in scaled]


def from_model_frame(boxes: Sequence[Sequence[float]], frame: tuple[int, int], width: int, height: int) -> list[Box]:
    """Inverse of `to_model_frame`: predicted boxes back to original pixels (for drawing)."""
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


def boxes_table(frame, *, dilation_kernel: int, min_area: int, reference_side: int | None = None,
                box_of: str = "mask"):
    """One row per image of the manifest: image_path, its boxes (JSON, original pixels), and the
    kernel and minimum area used on it (pixels of that image; see `scaled_sizes`)."""
    import pandas as pd

    records = []
    for row in tqdm(frame.itertuples(index=False), total=len(frame), desc="boxes", unit="img"):
        kernel, area = scaled_sizes(int(row.width), int(row.height), dilation_kernel=dilation_kernel,
                                    min_area=min_area, reference_side=reference_side)
        found = []
        if row.label == 1:
            found = mask_to_boxes(read_mask(row.mask_paths), dilation_kernel=kernel, min_area=area, box_of=box_of)
            if not found:
                log.warning("%s: anomalous image whose mask yields no box (all below min_area?)", row.image_path)
        records.append({"image_path": row.image_path, "boxes": json.dumps(found), "kernel_px": kernel,
                        "min_area_px": area})
    return pd.DataFrame.from_records(records, columns=["image_path", "boxes", "kernel_px", "min_area_px"])


SUMMARY_COLUMNS = ["dataset", "images", "anomalous", "anomalous_without_box", "boxes_per_anomalous_mean",
                   "boxes_per_anomalous_median", "boxes_per_anomalous_max", "anomalous_with_1", "anomalous_with_2",
                   "anomalous_with_3", "anomalous_with_4_or_more", "kernel_px_min", "kernel_px_max",
                   "min_area_px_min", "min_area_px_max"]


def box_summary(dataset: str, manifest_frame, table):
    """Box-count statistics of one dataset (r_count compares the number of predicted boxes with these)."""
    import pandas as pd

    counts = pd.Series([len(json.loads(b)) for b in table["boxes"]], index=table.index)
    anomalous = counts[(manifest_frame["label"] == 1).to_numpy()]
    summary = {
        "dataset": dataset,
        "images": len(table),
        "anomalous": len(anomalous),
        "anomalous_without_box": int((anomalous == 0).sum()),
        "boxes_per_anomalous_mean": round(float(anomalous.mean()), 3) if len(anomalous) else 0.0,
        "boxes_per_anomalous_median": float(anomalous.median()) if len(anomalous) else 0.0,
        "boxes_per_anomalous_max": int(anomalous.max()) if len(anomalous) else 0,
        **{f"anomalous_with_{n}": int((anomalous == n).sum()) for n in (1, 2, 3)},
        "anomalous_with_4_or_more": int((anomalous >= 4).sum()),
        "kernel_px_min": int(table["kernel_px"].min()) if len(table) else 0,
        "kernel_px_max": int(table["kernel_px"].max()) if len(table) else 0,
        "min_area_px_min": int(table["min_area_px"].min()) if len(table) else 0,
        "min_area_px_max": int(table["min_area_px"].max()) if len(table) else 0,
    }
    return pd.DataFrame([summary], columns=SUMMARY_COLUMNS)


def run_boxes(manifest_path: Path, out: Path, summary_out: Path, *, dilation_kernel: int, min_area: int,
              reference_side: int | None, box_of: str) -> None:
    frame = manifest.read(manifest_path)
    table = boxes_table(frame, dilation_kernel=dilation_kernel, min_area=min_area, reference_side=reference_side,
                        box_of=box_of)
    dataset = str(frame["dataset"].iloc[0]) if len(frame) else manifest_path.stem
    summary = box_summary(dataset, frame, table)
    stats = summary.iloc[0]
    log.info(
        "%s: %d images, %d anomalous; boxes per anomalous image: mean %.2f, median %g, max %d; "
        "anomalous images with 0 / 1 / 2 / 3 / 4+ boxes: %d / %d / %d / %d / %d; kernel %d-%d px, min area %d-%d px",
        dataset, stats["images"], stats["anomalous"], stats["boxes_per_anomalous_mean"],
        stats["boxes_per_anomalous_median"], stats["boxes_per_anomalous_max"], stats["anomalous_without_box"],
        stats["anomalous_with_1"], stats["anomalous_with_2"], stats["anomalous_with_3"],
        stats["anomalous_with_4_or_more"], stats["kernel_px_min"], stats["kernel_px_max"], stats["min_area_px_min"],
        stats["min_area_px_max"],
    )
    write_csv_atomic(table, out)
    write_csv_atomic(summary, summary_out)


def _reference_side(value: str) -> int | None:
    return None if value.lower() in ("none", "null", "") else int(value)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "boxes", help="pseudo ground-truth boxes from the manifest's masks",
        description="Pseudo ground-truth boxes of each anomalous image (paper section 4.1): its masks binarised, "
                    "dilated to merge fragments, split into connected components, small ones dropped. Writes one "
                    "row per image with its boxes, and a summary of the box counts.")
    parser.add_argument("--manifest", required=True, type=Path, help="the dataset's manifest (`adfm index`)")
    parser.add_argument("--dilation-kernel", required=True, type=int,
                        help="square kernel side in pixels (of an image with the reference shorter side, if given)")
    parser.add_argument("--min-area", required=True, type=int,
                        help="minimum component size in mask pixels (likewise)")
    parser.add_argument("--reference-side", required=True, type=_reference_side,
                        help="shorter side (pixels) at which the sizes hold, scaled to each image; none: as given")
    parser.add_argument("--box-of", required=True, choices=BOX_OF,
                        help="mask: box of the original mask pixels; dilated: box of the dilated component")
    parser.add_argument("--out", required=True, type=Path, help="boxes per image (CSV)")
    parser.add_argument("--summary", required=True, type=Path, help="box-count statistics (CSV, one row)")
    parser.set_defaults(
        func=lambda a: run_boxes(a.manifest, a.out, a.summary, dilation_kernel=a.dilation_kernel,
                                 min_area=a.min_area, reference_side=a.reference_side, box_of=a.box_of)
    )

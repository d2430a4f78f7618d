"""Mask stage (`adfm boxes`): pseudo ground-truth boxes of every anomalous image from its masks
(paper section 4.1), one row per manifest image (adfm.data.boxes_table), and box-count statistics.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from adfm.data import boxes_table as boxes_file
from adfm.data.datasets import manifest
from adfm.io import InputError, write_csv_atomic

log = logging.getLogger(__name__)

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
        raise InputError(f"box_of={box_of!r}: expected one of {', '.join(BOX_OF)}")
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


def scaled_sizes(
    width: int, height: int, *, dilation_kernel: int, min_area: int, reference_side: int | None
) -> tuple[int, int]:
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


def boxes_table(frame, *, dilation_kernel: int, min_area: int, reference_side: int | None = None, box_of: str = "mask"):
    """One row per image of the manifest: image_path, its boxes (JSON, original pixels), and the
    kernel and minimum area used on it (pixels of that image; see `scaled_sizes`)."""
    records = []
    for row in tqdm(frame.itertuples(index=False), total=len(frame), desc="boxes", unit="img"):
        kernel, area = scaled_sizes(
            int(row.width),
            int(row.height),
            dilation_kernel=dilation_kernel,
            min_area=min_area,
            reference_side=reference_side,
        )
        found = []
        if row.label == 1:
            found = mask_to_boxes(read_mask(row.mask_paths), dilation_kernel=kernel, min_area=area, box_of=box_of)
            if not found:
                log.warning("%s: anomalous image whose mask yields no box (all below min_area?)", row.image_path)
        records.append(
            {"image_path": row.image_path, "boxes": json.dumps(found), "kernel_px": kernel, "min_area_px": area}
        )
    return pd.DataFrame.from_records(records, columns=boxes_file.COLUMNS)


SUMMARY_COLUMNS = [
    "dataset",
    "images",
    "anomalous",
    "anomalous_without_box",
    "boxes_per_anomalous_mean",
    "boxes_per_anomalous_median",
    "boxes_per_anomalous_max",
    "anomalous_with_1",
    "anomalous_with_2",
    "anomalous_with_3",
    "anomalous_with_4_or_more",
    "kernel_px_min",
    "kernel_px_max",
    "min_area_px_min",
    "min_area_px_max",
]


def box_summary(dataset: str, manifest_frame, table):
    """Box-count statistics of one dataset (r_count compares the number of predicted boxes with these)."""
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


def run_boxes(
    manifest_path: Path,
    out: Path,
    summary_out: Path,
    *,
    dilation_kernel: int,
    min_area: int,
    reference_side: int | None,
    box_of: str,
) -> None:
    frame = manifest.read(manifest_path)
    table = boxes_table(
        frame, dilation_kernel=dilation_kernel, min_area=min_area, reference_side=reference_side, box_of=box_of
    )
    dataset = str(frame["dataset"].iloc[0]) if len(frame) else manifest_path.stem
    summary = box_summary(dataset, frame, table)
    stats = summary.iloc[0]
    log.info(
        "%s: %d images, %d anomalous; boxes per anomalous image: mean %.2f, median %g, max %d; "
        "anomalous images with 0 / 1 / 2 / 3 / 4+ boxes: %d / %d / %d / %d / %d; kernel %d-%d px, min area %d-%d px",
        dataset,
        stats["images"],
        stats["anomalous"],
        stats["boxes_per_anomalous_mean"],
        stats["boxes_per_anomalous_median"],
        stats["boxes_per_anomalous_max"],
        stats["anomalous_without_box"],
        stats["anomalous_with_1"],
        stats["anomalous_with_2"],
        stats["anomalous_with_3"],
        stats["anomalous_with_4_or_more"],
        stats["kernel_px_min"],
        stats["kernel_px_max"],
        stats["min_area_px_min"],
        stats["min_area_px_max"],
    )
    boxes_file.write(table, out)
    write_csv_atomic(summary, summary_out)


def _reference_side(value: str) -> int | None:
    return None if value.lower() in ("none", "null", "") else int(value)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "boxes",
        help="pseudo ground-truth boxes from the manifest's masks",
        description="Pseudo ground-truth boxes of each anomalous image (paper section 4.1): its masks binarised, "
        "dilated to merge fragments, split into connected components, small ones dropped. Writes one "
        "row per image with its boxes, and a summary of the box counts.",
    )
    parser.add_argument("--manifest", required=True, type=Path, help="the dataset's manifest (`adfm index`)")
    parser.add_argument(
        "--dilation-kernel",
        required=True,
        type=int,
        help="square kernel side in pixels (of an image with the reference shorter side, if given)",
    )
    parser.add_argument("--min-area", required=True, type=int, help="minimum component size in mask pixels (likewise)")
    parser.add_argument(
        "--reference-side",
        required=True,
        type=_reference_side,
        help="shorter side (pixels) at which the sizes hold, scaled to each image; none: as given",
    )
    parser.add_argument(
        "--box-of",
        required=True,
        choices=BOX_OF,
        help="mask: box of the original mask pixels; dilated: box of the dilated component",
    )
    parser.add_argument("--out", required=True, type=Path, help="boxes per image (CSV)")
    parser.add_argument("--summary", required=True, type=Path, help="box-count statistics (CSV, one row)")
    parser.set_defaults(
        func=lambda a: run_boxes(
            a.manifest,
            a.out,
            a.summary,
            dilation_kernel=a.dilation_kernel,
            min_area=a.min_area,
            reference_side=a.reference_side,
            box_of=a.box_of,
        )
    )

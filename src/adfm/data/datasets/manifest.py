"""The manifest: every dataset's images in one table with the same columns."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from adfm.io import InputError, write_csv_atomic

COLUMNS = ["dataset", "category", "source_split", "image_path", "label", "defect_type", "mask_paths", "width", "height"]


@dataclass(frozen=True)
class ManifestRow:
    dataset: str
    category: str
    source_split: str  # the split the dataset itself assigns: "train" or "test"
    image_path: str
    label: int  # 0 normal, 1 anomalous
    defect_type: str  # "good" for normal images
    mask_paths: list[str] = field(default_factory=list)
    width: int = 0
    height: int = 0


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header, with a clear error for unreadable files."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as error:
        raise InputError(f"{path}: unreadable image ({error})") from None


def measured(
    dataset: str, category: str, source_split: str, image: Path, label: int, defect_type: str, masks: list[str]
) -> ManifestRow:
    """The manifest row of an image, its width and height read from the file."""
    width, height = image_size(image)
    return ManifestRow(dataset, category, source_split, str(image), label, defect_type, masks, width, height)


def documented_counts(table: Iterable[tuple[str, int, int, int]]) -> dict[str, dict[str, int]]:
    """A layout's DOCUMENTED_COUNTS from its (category, train, test, test defective) rows."""
    return {name: {"train": train, "test": test, "test_defective": defective} for name, train, test, defective in table}


def to_frame(rows: list[ManifestRow]) -> pd.DataFrame:
    records = [asdict(row) for row in rows]
    for record in records:
        record["mask_paths"] = json.dumps(record["mask_paths"])
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    return frame.sort_values(["dataset", "category", "source_split", "image_path"], kind="stable").reset_index(
        drop=True
    )


def write(frame: pd.DataFrame, path: Path) -> None:
    write_csv_atomic(frame, path)


def read(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, keep_default_na=False, dtype={"defect_type": str, "category": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: cannot read manifest ({error})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: manifest lacks columns {missing}")
    frame["mask_paths"] = frame["mask_paths"].map(json.loads)
    return frame

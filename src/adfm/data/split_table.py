"""The split table: one row per image of an evaluation protocol, its role (train/test) and reference.

Written by the split stage (adfm.data.split), read by the warm start, training and every
prediction backend. Boxes are a JSON list of [x1, y1, x2, y2] in original pixels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from adfm.io import InputError, write_csv_atomic

COLUMNS = [
    "dataset",
    "category",
    "role",
    "image_path",
    "label",
    "defect_type",
    "boxes",
    "width",
    "height",
    "reference_path",
]


def write(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    write_csv_atomic(frame[COLUMNS], path)


def read(path: str | os.PathLike, role: str | None = None, dataset: str | None = None) -> pd.DataFrame:
    """Rows with the given role (None: every role) and dataset, in file order, boxes parsed from JSON;
    every image and reference must exist."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: split file not found")
    rows = pd.read_csv(path, keep_default_na=False, dtype={"image_path": str, "reference_path": str})
    missing = set(COLUMNS) - {"defect_type"} - set(rows.columns)
    if missing:
        raise InputError(f"{path}: missing column(s) {sorted(missing)}")
    if role is not None:
        rows = rows[rows["role"] == role]
    if dataset is not None:
        rows = rows[rows["dataset"] == dataset]
    rows = rows.reset_index(drop=True)
    try:
        rows["boxes"] = [json.loads(b) if str(b).strip() else [] for b in rows["boxes"]]
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: a boxes cell is not JSON ({error})") from None
    absent = [p for p in pd.unique(pd.concat([rows["image_path"], rows["reference_path"]])) if not Path(p).is_file()]
    if absent:
        raise InputError(f"{path}: {len(absent)} image(s) not found, e.g. {absent[:3]}")
    return rows

"""The boxes table: one row per manifest image, its pseudo ground-truth boxes and the sizes used.

Written by the mask stage (adfm.data.masks), read by the split stage and MMAD's question table.
Boxes are a JSON list of [x1, y1, x2, y2] in original pixels, kept as text: the split table carries
them on as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from adfm.io import InputError, write_csv_atomic

COLUMNS = ["image_path", "boxes", "kernel_px", "min_area_px"]
# what a reader needs; the sizes are a record of how the boxes were found
REQUIRED = ["image_path", "boxes"]


def write(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    write_csv_atomic(frame[COLUMNS], path)


def read(*paths: str | os.PathLike) -> pd.DataFrame:
    """The tables at `paths`, concatenated in order."""
    frames = []
    for path in map(Path, paths):
        try:
            frame = pd.read_csv(path, keep_default_na=False)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise InputError(f"{path}: cannot read boxes table ({error})") from None
        missing = [column for column in REQUIRED if column not in frame.columns]
        if missing:
            raise InputError(f"{path}: boxes table lacks column(s) {missing}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)

"""The MMAD question table: one row per MMAD question (Table 3), with its image's size and boxes.

Written by the MMAD question stage (adfm.data.mmad_questions) from the questions of mmad.json
(adfm.data.datasets.mmad.parse_questions), read by predict-mmad (adfm.inference.mmad). options is
JSON {letter: text}, answer a letter, templates MMAD's random_templates (JSON), reference_path the
first of them (MMAD's one-template setting), source_image the name the leakage filter matches
against a split (adfm.data.datasets.mmad.source_image), drop_reason why the filter leaves the
question out ("" when it does not). Boxes are a JSON list of [x1, y1, x2, y2] in original pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from adfm.io import InputError, write_csv_atomic

# What mmad.json says of each question (parse_questions' columns).
QUESTION_COLUMNS = [
    "image_path",
    "dataset",
    "category",
    "question",
    "options",
    "answer",
    "type",
    "template_path",
    "templates",
    "source_image",
    "label",
]
# The question's template is the table's normal reference, named as in the split table.
RENAMED = {"template_path": "reference_path"}
COLUMNS = [RENAMED.get(c, c) for c in QUESTION_COLUMNS] + ["width", "height", "boxes", "drop_reason"]
# what asking the questions needs; source_image and the image's size and boxes serve the stage that
# makes the table
REQUIRED = [c for c in COLUMNS if c not in ("source_image", "width", "height", "boxes")]


def write(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    write_csv_atomic(frame[COLUMNS], path)


def read(path: str | os.PathLike) -> pd.DataFrame:
    """The questions in file order, every cell text but the label (int)."""
    path = Path(path)
    try:
        questions = pd.read_csv(path, keep_default_na=False, dtype=str)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: cannot read MMAD questions ({error})") from None
    missing = sorted(set(REQUIRED) - set(questions.columns))
    if missing:
        raise InputError(f"{path}: MMAD question table lacks columns {missing}")
    if questions.empty:
        raise InputError(f"{path}: no MMAD questions")
    questions["label"] = questions["label"].astype(int)
    return questions

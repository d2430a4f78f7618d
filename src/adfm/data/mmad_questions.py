"""MMAD question stage (`adfm mmad-questions`): MMAD's questions (Table 3) joined to its indexed
images, with the leakage filter's mark on each question about an image a run trained on."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from adfm.data import boxes_table
from adfm.data import mmad_question_table as question_table
from adfm.data.datasets import manifest, mmad
from adfm.io import InputError, settings_json

log = logging.getLogger(__name__)


def split_drop_reasons(questions: pd.DataFrame, split: pd.DataFrame, layouts: dict[str, str]) -> pd.Series:
    """Why each question is not asked under `split` ("" when its source image is a test image).

    layouts: the split's dataset names -> their layouts (adfm.data.datasets), which name source images."""
    roles: dict[str, str] = {}
    for row in split.itertuples(index=False):
        if row.dataset in layouts:
            roles[mmad.source_image(layouts[row.dataset], row.category, row.label, row.image_path)] = row.role
    role = questions["source_image"].map(roles)
    return pd.Series(
        ["not_in_split" if pd.isna(r) else "training" if r == "train" else "" for r in role],
        index=questions.index,
        dtype=str,
    )


def mmad_question_table(questions: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """MMAD's questions (Table 3) joined to the indexed images: each question keeps its image's
    size and boxes, and its MMAD template (the first random template, MMAD's one-template
    protocol) as the normal reference."""
    sizes = images.drop_duplicates("image_path").set_index("image_path")[["width", "height", "boxes"]]
    unknown = sorted(set(questions["image_path"]) - set(sizes.index))
    if unknown:
        raise InputError(
            f"{unknown[0]}: MMAD question about an image missing from the MMAD manifest ({len(unknown)} such images)"
        )
    table = questions.join(sizes, on="image_path").rename(columns=question_table.RENAMED)
    return table.sort_values(["dataset", "category", "image_path", "type"], kind="stable").reset_index(drop=True)


def run_mmad_questions(
    root: Path,
    manifest_path: Path,
    boxes_path: Path,
    out: Path,
    split_path: Path | None = None,
    layouts: dict | None = None,
) -> None:
    """`split_path` (with `layouts`, its datasets' layouts): mark the questions about images outside
    its test role (adfm.inference.mmad's leakage filter)."""
    images = manifest.read(manifest_path).merge(boxes_table.read(boxes_path), on="image_path")
    table = mmad_question_table(mmad.parse_questions(root), images)
    table["drop_reason"] = (
        ""
        if split_path is None
        else split_drop_reasons(table, pd.read_csv(split_path, keep_default_na=False), layouts or {})
    )
    log.info("MMAD questions: %s", table.groupby("type").size().to_dict())
    if split_path is not None:
        log.info(
            "MMAD questions not asked under %s, per source and reason: %s",
            split_path,
            table[table["drop_reason"] != ""].groupby(["dataset", "drop_reason"]).size().to_dict(),
        )
    question_table.write(table, out)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "mmad-questions",
        help="MMAD's question table, joined to its images",
        description="One row per MMAD question (image, options, answer, type, templates) with its image's boxes; "
        "with --split, only questions about images that the split's runs were not trained on.",
    )
    parser.add_argument("--root", required=True, type=Path, help="the extracted MMAD folder")
    parser.add_argument("--manifest", required=True, type=Path, help="the MMAD manifest")
    parser.add_argument("--boxes", required=True, type=Path, help="the MMAD images' boxes")
    parser.add_argument(
        "--split",
        type=Path,
        default=None,
        help="leakage filter: ask only about the source images in this split's test role",
    )
    parser.add_argument(
        "--layouts",
        type=settings_json,
        default=None,
        help="JSON {dataset: layout} of the split's datasets (with --split)",
    )
    parser.add_argument("--out", required=True, type=Path, help="the question table (CSV)")
    parser.set_defaults(func=lambda a: run_mmad_questions(a.root, a.manifest, a.boxes, a.out, a.split, a.layouts))

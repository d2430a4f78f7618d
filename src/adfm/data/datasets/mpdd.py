"""MPDD (Metal Parts Defect Detection): the MVTec AD layout, parsed by `mvtec_ad`'s parser.

    <category>/train/good/000.png
    <category>/test/{good,<defect>}/000.png
    <category>/ground_truth/<defect>/000_mask.png

A manual download (the owners' SharePoint folder linked from the stepanje/MPDD README); the demo
packs a `.zip`. Only the defect names of the generated demo differ from MVTec AD's.
"""

from __future__ import annotations

from pathlib import Path

from adfm.data.datasets import mvtec_ad
from adfm.data.datasets.manifest import ManifestRow, documented_counts
from adfm.data.datasets.synthetic import DEFECT_KINDS, DemoSpec

ARCHIVE_NAME = "MPDD.zip"
# Defect folders per category (shared/DATASETS.md).
DEFECTS = {
    "bracket_black": ("hole", "scratches"),
    "bracket_brown": ("bend_and_parts_mismatch", "parts_mismatch"),
    "bracket_white": ("defective_painting", "scratches"),
    "connector": ("parts_mismatch",),
    "metal_plate": ("major_rust", "scratches", "total_rust"),
    "tubes": ("flattening",),
}
CATEGORIES = tuple(DEFECTS)
# shared/DATASETS.md (from a committed listing): train / test / test defective per category.
DOCUMENTED_COUNTS = documented_counts(
    [
        ("bracket_black", 289, 79, 47),
        ("bracket_brown", 185, 77, 51),
        ("bracket_white", 110, 60, 30),
        ("connector", 128, 44, 14),
        ("metal_plate", 54, 97, 71),
        ("tubes", 122, 101, 69),
    ]
)
DOCUMENTED_TOTALS = {"train": 888, "test": 458, "test_defective": 282}


def parse(root: Path, dataset: str, categories: list[str] | None = None) -> list[ManifestRow]:
    return mvtec_ad.parse_mvtec_like(root, dataset, categories, layout_name="MPDD (MVTec AD)")


def make_demo(out_dir: Path, spec: DemoSpec) -> None:
    mvtec_ad.make_mvtec_like_demo(out_dir, spec, defects=lambda category: DEFECTS.get(category, DEFECT_KINDS))

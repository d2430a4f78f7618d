"""GoodsAD (PKU-GoodsAD, supermarket goods): the MVTec AD layout with JPEG images.

    <category>/train/good/001001.jpg
    <category>/test/{good,<defect>}/001001.jpg
    <category>/ground_truth/<defect>/001001.png

Images are 3000x3000 `.jpg` named with 6 digits (3 for the product, 3 for the serial number, per the
owners' README). Masks are `.png` with the image's stem: unverified (shared/DATASETS.md), so a
`<stem>_mask.png` mask, as in MVTec AD, is accepted too.

The real distribution is one zip per category (OneDrive / Baidu links in the jianzhang96/GoodsAD
README, no checksums): extract them all into one folder and point the dataset's url at it. A zip
that extracts to `<category>/<category>/train` is accepted as well. The demo packs the whole tree
as one `.zip`.
"""

from __future__ import annotations

from pathlib import Path

from adfm.data.datasets import mvtec_ad
from adfm.data.datasets.manifest import ManifestRow, documented_counts
from adfm.data.datasets.synthetic import DEFECT_KINDS, DemoSpec, jpeg_bytes
from adfm.io import InputError

ARCHIVE_NAME = "GoodsAD.zip"
# Defect folders per category (shared/DATASETS.md).
DEFECTS = {
    "drink_bottle": ("surface_damage", "cap_open", "cap_half_open"),
    "drink_can": ("straw_missing", "surface_damage", "deformation"),
    "food_bottle": ("surface_damage", "deformation", "opened"),
    "food_box": ("surface_damage", "deformation", "opened"),
    "food_package": ("surface_anomaly", "broken"),
    "cigarette_box": ("opened",),
}
CATEGORIES = tuple(DEFECTS)
# Train (good) / test / test defective per category, from the table in the owners' README
# (jianzhang96/GoodsAD); the totals 3,136 / 1,328 good / 1,660 defective match shared/DATASETS.md.
DOCUMENTED_COUNTS = documented_counts(
    (name, train, good + defective, defective)
    for name, train, good, defective in [
        ("drink_bottle", 733, 356, 425),
        ("drink_can", 234, 147, 147),
        ("food_bottle", 1014, 243, 361),
        ("food_box", 432, 146, 251),
        ("food_package", 540, 253, 230),
        ("cigarette_box", 183, 183, 246),
    ]
)
DOCUMENTED_TOTALS = {"train": 3136, "test": 2988, "test_defective": 1660}


def parse(root: Path, dataset: str, categories: list[str] | None = None) -> list[ManifestRow]:
    if not mvtec_ad.category_folders(root):
        zips = sorted(p.name for p in root.glob("*.zip"))
        if zips:
            raise InputError(
                f"{root}: holds the per-category archives {zips} but no extracted category folders; "
                "extract each zip into this folder first"
            )
    return mvtec_ad.parse_mvtec_like(
        root, dataset, categories, layout_name="GoodsAD (MVTec-style)", mask_names=("{stem}.png", "{stem}_mask.png")
    )


def stem(n: int) -> str:
    """6-digit names: product number (3 digits), then serial number (3 digits)."""
    return f"{n % 3 + 1:03d}{n:03d}"


def make_demo(out_dir: Path, spec: DemoSpec) -> None:
    mvtec_ad.make_mvtec_like_demo(
        out_dir,
        spec,
        defects=lambda category: DEFECTS.get(category, DEFECT_KINDS),
        stem=stem,
        image_ext=".jpg",
        encode=jpeg_bytes,
        mask_name="{stem}.png",
    )

"""DTD-Synthetic (textures from DTD with synthetic defects): an MVTec-style layout with one defect
folder, `bad`.

    <class>/train/good/000.png
    <class>/test/{good,bad}/000.png
    <class>/ground_truth/bad/000_mask.png

Layout unverified (shared/DATASETS.md; the AnomalyCLIP loaders pair sorted image and mask names):
the parser also accepts a mask named like its image (`ground_truth/bad/000.png`). A manual download
(Google Drive folder linked from the AnomalyCLIP README), licence not found; the demo packs a `.zip`.
No per-class counts are documented.
"""

from __future__ import annotations

from pathlib import Path

from adfm.data.datasets import mvtec_ad
from adfm.data.datasets.manifest import ManifestRow
from adfm.data.datasets.synthetic import DemoSpec

ARCHIVE_NAME = "DTD-Synthetic.zip"
CATEGORIES = (
    "Blotchy_099",
    "Fibrous_183",
    "Marbled_078",
    "Matted_069",
    "Mesh_114",
    "Perforated_037",
    "Stratified_154",
    "Woven_001",
    "Woven_068",
    "Woven_104",
    "Woven_125",
    "Woven_127",
)
DEFECT = "bad"
DOCUMENTED_COUNTS: dict[str, dict[str, int]] = {}


def parse(root: Path, dataset: str, categories: list[str] | None = None) -> list[ManifestRow]:
    return mvtec_ad.parse_mvtec_like(
        root,
        dataset,
        categories,
        layout_name="DTD-Synthetic (MVTec-style)",
        mask_names=("{stem}_mask.png", "{stem}.png"),
    )


def make_demo(out_dir: Path, spec: DemoSpec) -> None:
    mvtec_ad.make_mvtec_like_demo(out_dir, spec, defects=lambda category: (DEFECT,))

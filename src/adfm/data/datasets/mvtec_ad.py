"""MVTec AD layout (MPDD, DTD-Synthetic and GoodsAD follow it and reuse this parser and generator):

    <category>/train/good/000.png
    <category>/test/{good,<defect>}/000.png
    <category>/ground_truth/<defect>/000_mask.png

Each category folder also holds `license.txt` and `readme.txt` (skipped: only image files count).
Archives packed one category at a time may extract to `<category>/<category>/train/...`: both forms
are accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from adfm.data.datasets.manifest import ManifestRow, documented_counts, measured
from adfm.data.datasets.synthetic import DEFECT_KINDS, DemoSpec, draw_defect, png_bytes, texture, write_file
from adfm.io import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
GOOD = "good"

ARCHIVE_NAME = "mvtec_anomaly_detection.tar.xz"
CATEGORIES = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)
# shared/DATASETS.md (from a committed per-image listing): train / test / test defective per category.
DOCUMENTED_COUNTS = documented_counts(
    [
        ("bottle", 209, 83, 63),
        ("cable", 224, 150, 92),
        ("capsule", 219, 132, 109),
        ("carpet", 280, 117, 89),
        ("grid", 264, 78, 57),
        ("hazelnut", 391, 110, 70),
        ("leather", 245, 124, 92),
        ("metal_nut", 220, 115, 93),
        ("pill", 267, 167, 141),
        ("screw", 320, 160, 119),
        ("tile", 230, 117, 84),
        ("toothbrush", 60, 42, 30),
        ("transistor", 213, 100, 40),
        ("wood", 247, 79, 60),
        ("zipper", 240, 151, 119),
    ]
)
DOCUMENTED_TOTALS = {"train": 3629, "test": 1725, "test_defective": 1258}


def images_in(folder: Path) -> list[Path]:
    """Image files of a folder, sorted (license.txt, Thumbs.db and the like are skipped)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def category_folders(root: Path, required: Sequence[str] = ("train", "test")) -> dict[str, Path]:
    """Category name -> its folder: `<root>/<cat>/` holding `required`, or one level deeper,
    `<root>/<cat>/<cat>/`, as archives packed per category sometimes extract."""
    found = {}
    for entry in sorted(p for p in root.iterdir() if p.is_dir()):
        for folder in (entry, entry / entry.name):
            if all((folder / name).is_dir() for name in required):
                found[entry.name] = folder
                break
    return found


def check_incomplete(root: Path, missing: Sequence[str], required: Sequence[str] = ("train", "test")) -> None:
    """A wanted category whose folder is there but lacks a `required` subfolder: say which."""
    for category in missing:
        folder = root / category
        if folder.is_dir():
            folder = folder / category if (folder / category).is_dir() else folder
            lacking = " and ".join(f"{name}/" for name in required if not (folder / name).is_dir())
            raise InputError(f"{folder}: no {lacking} folder in this category (an incomplete copy?)")


def select_categories(
    root: Path, found: dict[str, Path], categories: list[str] | None, required: Sequence[str] = ("train", "test")
) -> list[str]:
    wanted = list(categories) if categories else sorted(found)
    missing = [c for c in wanted if c not in found]
    check_incomplete(root, missing, required)
    if missing:
        raise InputError(f"{root}: categories {missing} not found (present: {sorted(found)})")
    return wanted


def parse_mvtec_like(
    root: Path,
    dataset: str,
    categories: list[str] | None = None,
    *,
    layout_name: str = "MVTec AD",
    mask_names: Sequence[str] = ("{stem}_mask.png",),
) -> list[ManifestRow]:
    """Parse an MVTec-style tree. `mask_names` are the candidate names of an image's mask under
    `ground_truth/<defect>/`, tried in order ("{stem}" is the image's name without suffix)."""
    found = category_folders(root)
    if not found:
        check_incomplete(root, categories or [])
        raise InputError(f"{root}: no category folders with train/ and test/ (not an {layout_name} layout)")
    rows = []
    for category in select_categories(root, found, categories):
        folder = found[category]
        before = len(rows)
        for split in ("train", "test"):
            for defect_folder in sorted(p for p in (folder / split).iterdir() if p.is_dir()):
                defect = defect_folder.name
                for image in images_in(defect_folder):
                    masks = []
                    if defect != GOOD:
                        candidates = [
                            folder / "ground_truth" / defect / name.format(stem=image.stem) for name in mask_names
                        ]
                        mask = next((c for c in candidates if c.is_file()), None)
                        if mask is None:
                            raise InputError(f"{image}: anomalous image without a mask (expected {candidates[0]})")
                        masks = [str(mask)]
                    rows.append(measured(dataset, category, split, image, int(defect != GOOD), defect, masks))
        if len(rows) == before:
            raise InputError(f"{folder}: category has no images")
    return rows


def parse(root: Path, dataset: str, categories: list[str] | None = None) -> list[ManifestRow]:
    return parse_mvtec_like(root, dataset, categories)


def make_mvtec_like_demo(
    out_dir: Path,
    spec: DemoSpec,
    *,
    defects: Callable[[str], Sequence[str]] = lambda category: DEFECT_KINDS,
    stem: Callable[[int], str] = lambda n: f"{n:03d}",
    image_ext: str = ".png",
    encode: Callable[[np.ndarray], bytes] = png_bytes,
    mask_name: str = "{stem}_mask.png",
    category_files: dict[str, bytes] | None = None,
) -> None:
    """A miniature MVTec-style tree: per category `train_good` and `test_good` normal images and
    `test_defective_per_type` images of each of `defects(category)`, drawn alternately as blobs and
    scratches, with their 0/255 masks."""
    rng = np.random.default_rng(spec.seed)
    for index, category in enumerate(spec.categories):
        folder = out_dir / category
        for name, data in (category_files or {}).items():
            write_file(folder / name, data)
        for n in range(spec.train_good):
            write_file(folder / "train" / GOOD / f"{stem(n)}{image_ext}", encode(texture(rng, index, spec.image_size)))
        for n in range(spec.test_good):
            write_file(folder / "test" / GOOD / f"{stem(n)}{image_ext}", encode(texture(rng, index, spec.image_size)))
        for number, defect in enumerate(defects(category)):
            kind = DEFECT_KINDS[number % len(DEFECT_KINDS)]
            for n in range(spec.test_defective_per_type):
                image = texture(rng, index, spec.image_size)
                mask = draw_defect(image, rng, kind)
                write_file(folder / "test" / defect / f"{stem(n)}{image_ext}", encode(image))
                write_file(folder / "ground_truth" / defect / mask_name.format(stem=stem(n)), png_bytes(mask))


def make_demo(out_dir: Path, spec: DemoSpec) -> None:
    make_mvtec_like_demo(
        out_dir,
        spec,
        category_files={
            "license.txt": b"Synthetic demo data, generated by adfm.\n",
            "readme.txt": b"Miniature MVTec AD layout for the adfm demo.\n",
        },
    )

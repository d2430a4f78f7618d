"""DAGM 2007 layout (categories are the class folders, images grayscale):

    Class<N>/{Train,Test}/0001.PNG
    Class<N>/{Train,Test}/Label/Labels.txt
    Class<N>/{Train,Test}/Label/0002_label.PNG   weak (elliptical) masks of the defective images

`Labels.txt`: a first line holding only `1`, then one tab-separated line per image: id, defective
flag (0/1), image file, 0, mask file or 0. Normal lines end with a trailing tab. An image is
anomalous when it has a mask; a line whose flag and mask disagree is an error. Stray `Thumbs.db`
files are ignored, and so are image files that Labels.txt does not list (with a warning). Without
a Labels.txt, images are labelled by the presence of `Label/<stem>_label.PNG` (with a warning).
Some mirrors nest one more level, `Class<N>/Class<N>/Train`: both forms are accepted.

source_split is the folder (`Train` -> train, `Test` -> test); DAGM's Train holds defective images
too. defect_type is `defect` (DAGM gives no defect types).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from adfm.data.datasets.manifest import ManifestRow, measured
from adfm.data.datasets.mvtec_ad import category_folders, select_categories
from adfm.data.datasets.synthetic import DEFECT_KINDS, DemoSpec, draw_defect, gray, png_bytes, texture, write_file
from adfm.io import InputError

log = logging.getLogger(__name__)

ARCHIVE_NAME = "DAGM_2007.zip"
SPLITS = {"Train": "train", "Test": "test"}
DEFECT = "defect"
CATEGORIES = tuple(f"Class{n}" for n in range(1, 11))
# shared/DATASETS.md: defective images per class in Train and Test; Class8 has 1,150 images in each.
_TRAIN_DEFECTIVE = (79, 66, 66, 82, 70, 83, 150, 150, 150, 150)
_TEST_DEFECTIVE = (71, 84, 84, 68, 80, 67, 150, 150, 150, 150)
DOCUMENTED_COUNTS = {
    name: {"train_defective": train, "test_defective": test}
    for name, train, test in zip(CATEGORIES, _TRAIN_DEFECTIVE, _TEST_DEFECTIVE, strict=False)
}
DOCUMENTED_COUNTS["Class8"].update(train=1150, test=1150)


def read_labels(path: Path) -> list[tuple[str, str | None]]:
    """(image file, mask file or None) per line of a Labels.txt, checked."""
    try:
        lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read ({error})") from None
    if not lines or not lines[0].strip().isdigit():
        raise InputError(
            f"{path}: line 1: expected a first line holding only a number (1), "
            f"got {lines[0] if lines else 'an empty file'!r}"
        )
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        while fields and fields[-1] == "":  # normal lines end with a tab
            fields.pop()
        where = f"{path}: line {number}"
        if len(fields) != 5:
            raise InputError(
                f"{where}: expected 5 tab-separated fields (id, defective, image, 0, mask), got {len(fields)}: {line!r}"
            )
        ident, flag, image, _, mask = (f.strip() for f in fields)
        if not ident.isdigit() or flag not in ("0", "1") or not image.lower().endswith(".png"):
            raise InputError(f"{where}: expected a numeric id, a 0/1 flag and a .PNG image, got {line!r}")
        has_mask = mask != "0"
        if flag == "1" and not has_mask:
            raise InputError(f"{path.parent.parent / image}: anomalous image without a mask ({where} gives mask 0)")
        if flag == "0" and has_mask:
            raise InputError(f"{where}: defective flag 0 but a mask {mask!r}")
        entries.append((image, mask if has_mask else None))
    return entries


def _split_entries(split_dir: Path) -> list[tuple[str, str | None]]:
    images = sorted(p.name for p in split_dir.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    labels = split_dir / "Label" / "Labels.txt"
    if not labels.is_file():
        log.warning("%s: not found; labelling images by their Label/<id>_label.PNG masks", labels)
        masks = (
            {p.name.lower(): p.name for p in (split_dir / "Label").glob("*")} if (split_dir / "Label").is_dir() else {}
        )
        return [(name, masks.get(f"{Path(name).stem}_label.png".lower())) for name in images]
    entries = read_labels(labels)
    unlisted = sorted(set(images) - {image for image, _ in entries})
    if unlisted:
        log.warning(
            "%s: %d image(s) not listed in %s, ignored (e.g. %s)", split_dir, len(unlisted), labels, unlisted[0]
        )
    return entries


def parse(root: Path, dataset: str, categories: list[str] | None = None) -> list[ManifestRow]:
    found = {}
    for required in SPLITS:  # a class folder may hold Train only, or Test only
        found = {**category_folders(root, (required,)), **found}
    if not found:
        raise InputError(f"{root}: no class folders with Train/ or Test/ (not a DAGM layout)")
    rows = []
    for category in select_categories(root, found, categories, required=tuple(SPLITS)):
        folder = found[category]
        before = len(rows)
        for split, source_split in SPLITS.items():
            split_dir = folder / split
            if not split_dir.is_dir():
                continue
            for image_name, mask_name in _split_entries(split_dir):
                image = split_dir / image_name
                if not image.is_file():
                    raise InputError(f"{image}: listed in {split_dir / 'Label' / 'Labels.txt'} but not found")
                masks = []
                if mask_name is not None:
                    mask = split_dir / "Label" / mask_name
                    if not mask.is_file():
                        raise InputError(f"{image}: anomalous image without a mask ({mask} not found)")
                    masks = [str(mask)]
                defect = DEFECT if masks else "good"
                rows.append(measured(dataset, category, source_split, image, int(bool(masks)), defect, masks))
        if len(rows) == before:
            raise InputError(f"{folder}: class has no images")
    return rows


def weak_label(mask: np.ndarray) -> np.ndarray:
    """DAGM-style weak label: a filled ellipse around the defect, larger than it."""
    ys, xs = np.nonzero(mask)
    label = np.zeros_like(mask)
    centre = (int((xs.min() + xs.max()) // 2), int((ys.min() + ys.max()) // 2))
    axes = (int((xs.max() - xs.min()) // 2 + 3), int((ys.max() - ys.min()) // 2 + 3))
    cv2.ellipse(label, centre, axes, 0.0, 0, 360, 255, -1)
    return label


def make_demo(out_dir: Path, spec: DemoSpec) -> None:
    """Per class: Test holds test_good normal + 2 x test_defective_per_type defective images,
    numbered from 0001; Train as many defective and train_good normal ones, numbered on (as in
    the real Class8, where Train starts at 1151). Defective images sit at random positions. Test
    also gets a stray Thumbs.db."""
    rng = np.random.default_rng(spec.seed)
    defective = len(DEFECT_KINDS) * spec.test_defective_per_type
    for index, category in enumerate(spec.categories):
        first = 1
        for split, good in (("Test", spec.test_good), ("Train", spec.train_good)):
            split_dir = out_dir / category / split
            total = good + defective
            is_defective = np.zeros(total, dtype=bool)
            is_defective[rng.choice(total, size=defective, replace=False)] = True
            lines, drawn = ["1"], 0
            for offset in range(total):
                ident = f"{first + offset:04d}"
                image = gray(texture(rng, index, spec.image_size))
                if is_defective[offset]:
                    mask = draw_defect(image, rng, DEFECT_KINDS[drawn % len(DEFECT_KINDS)])
                    drawn += 1
                    write_file(split_dir / "Label" / f"{ident}_label.PNG", png_bytes(weak_label(mask)))
                    lines.append(f"{ident}\t1\t{ident}.PNG\t0\t{ident}_label.PNG")
                else:
                    lines.append(f"{ident}\t0\t{ident}.PNG\t0\t0\t")
                write_file(split_dir / f"{ident}.PNG", png_bytes(image))
            write_file(split_dir / "Label" / "Labels.txt", "\n".join(lines) + "\n")
            if split == "Test":
                write_file(split_dir / "Thumbs.db", bytes(rng.integers(0, 256, 512, dtype=np.uint8)))
            first += total

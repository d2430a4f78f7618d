"""VisA, raw layout (the `VisA_20220922.tar` archive):

    split_csv/1cls.csv                      object,split,label,image,mask (CRLF)
    <category>/image_anno.csv               image,label,mask (CRLF)
    <category>/Data/Images/Normal/0000.JPG  normal images, 4-digit names
    <category>/Data/Images/Anomaly/000.JPG  anomalies, 3-digit names
    <category>/Data/Masks/Anomaly/000.png   multi-class masks (pixel value = defect id, 0 background)

The official 1cls split gives source_split (`train`/`test`) and the label (`normal`/`anomaly`;
the mask column is empty for normal rows). Paths in both CSVs are relative to the root.

defect_type comes from `<category>/image_anno.csv`, whose label is `normal` or one or more defect
names, comma-separated inside one quoted field ("chunk of wax missing,foreign particals on
candle"). Each name is kept as written except that spaces become underscores (MVTec's folder-name
convention), and several names stay joined by commas in their original order:
`chunk_of_wax_missing,foreign_particals_on_candle`. Without an image_anno.csv (or a row for the
image) the defect_type is `anomaly`, with a warning.

Masks are listed as they are; the boxes stage binarises with > 0.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from adfm.data.datasets.manifest import ManifestRow, measured
from adfm.data.datasets.synthetic import DEFECT_KINDS, DemoSpec, draw_defect, jpeg_bytes, png_bytes, texture, write_file
from adfm.io import InputError

log = logging.getLogger(__name__)

ARCHIVE_NAME = "VisA_20220922.tar"
SPLIT_CSV = Path("split_csv") / "1cls.csv"
SPLIT_HEADER = ["object", "split", "label", "image", "mask"]
ANNO_HEADER = ["image", "label", "mask"]
UNKNOWN_DEFECT = "anomaly"
CATEGORIES = (
    "candle",
    "capsules",
    "cashew",
    "chewinggum",
    "fryum",
    "macaroni1",
    "macaroni2",
    "pcb1",
    "pcb2",
    "pcb3",
    "pcb4",
    "pipe_fryum",
)
# The official split_csv/1cls.csv (amazon-science/spot-diff), counted per category: train (all
# normal) / test / test anomalous. Totals 8,659 / 962 normal + 1,200 anomalous (shared/DATASETS.md).
DOCUMENTED_COUNTS = {
    name: {"train": train, "test": test, "test_defective": 100}
    for name, train, test in [
        ("candle", 900, 200),
        ("capsules", 542, 160),
        ("cashew", 450, 150),
        ("chewinggum", 453, 150),
        ("fryum", 450, 150),
        ("macaroni1", 900, 200),
        ("macaroni2", 900, 200),
        ("pcb1", 904, 200),
        ("pcb2", 901, 200),
        ("pcb3", 905, 201),
        ("pcb4", 904, 201),
        ("pipe_fryum", 450, 150),
    ]
}
DOCUMENTED_TOTALS = {"train": 8659, "test": 2162, "test_defective": 1200}


def _read_csv(path: Path, header: list[str]) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each data row, the header checked; CRLF or LF."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: cannot read CSV ({error})") from None
    if not lines or [f.strip() for f in lines[0]] != header:
        got = ",".join(lines[0]) if lines else "an empty file"
        raise InputError(f"{path}: line 1: expected the header {','.join(header)!r}, got {got!r}")
    rows = []
    for number, fields in enumerate(lines[1:], start=2):
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise InputError(
                f"{path}: line {number}: expected {len(header)} fields ({','.join(header)}), got {len(fields)}"
            )
        rows.append((number, [f.strip() for f in fields]))
    return rows


def defect_name(label: str) -> str:
    """image_anno.csv label -> defect_type: 'good' for normal, else the names, spaces -> '_', comma-joined."""
    names = [name.strip().replace(" ", "_") for name in label.split(",") if name.strip()]
    if not names:
        return UNKNOWN_DEFECT
    return "good" if names == ["normal"] else ",".join(names)


def _defect_types(root: Path, category: str) -> dict[str, str]:
    path = root / category / "image_anno.csv"
    if not path.is_file():
        log.warning("%s: not found; defect types of %s are unknown (%r)", path, category, UNKNOWN_DEFECT)
        return {}
    return {fields[0]: defect_name(fields[1]) for _, fields in _read_csv(path, ANNO_HEADER)}


def parse(root: Path, dataset: str, categories: list[str] | None = None) -> list[ManifestRow]:
    split_csv = root / SPLIT_CSV
    if not split_csv.is_file():
        hint = ""
        if any((p / "train").is_dir() and (p / "test").is_dir() for p in root.iterdir() if p.is_dir()):
            hint = " (this looks like a converted MVTec-style copy: use the mvtec_ad layout for it)"
        raise InputError(f"{root}: no {SPLIT_CSV} (not a raw VisA layout){hint}")
    by_category: dict[str, list[tuple[int, list[str]]]] = {}
    for number, fields in _read_csv(split_csv, SPLIT_HEADER):
        by_category.setdefault(fields[0], []).append((number, fields))
    wanted = list(categories) if categories else sorted(by_category)
    missing = [c for c in wanted if c not in by_category]
    if missing:
        raise InputError(f"{split_csv}: categories {missing} not found (present: {sorted(by_category)})")
    rows = []
    for category in wanted:
        defects = _defect_types(root, category)
        for number, (_, split, label, image_rel, mask_rel) in by_category[category]:
            where = f"{split_csv}: line {number}"
            if split not in ("train", "test"):
                raise InputError(f"{where}: split must be train or test, got {split!r}")
            if label not in ("normal", "anomaly"):
                raise InputError(f"{where}: label must be normal or anomaly, got {label!r}")
            image = root / image_rel
            if not image.is_file():
                raise InputError(f"{where}: image {image} not found")
            masks, defect = [], "good"
            if label == "anomaly":
                mask = root / mask_rel if mask_rel else None
                if mask is None or not mask.is_file():
                    raise InputError(f"{image}: anomalous image without a mask ({where} names {mask_rel or 'none'!r})")
                masks = [str(mask)]
                defect = defects.get(image_rel, UNKNOWN_DEFECT)
                if defect == "good":  # image_anno.csv says normal where the split says anomaly
                    log.warning("%s: anomalous in %s but normal in image_anno.csv", image, split_csv)
                    defect = UNKNOWN_DEFECT
                elif defect == UNKNOWN_DEFECT and defects:
                    log.warning("%s: no row in %s/image_anno.csv", image, category)
            rows.append(measured(dataset, category, split, image, int(label == "anomaly"), defect, masks))
    return rows


# Demo defect names: VisA-style (lower case, spaces), one per drawing kind.
DEMO_DEFECTS = {"blob": "different colour spot", "scratch": "crack"}


def _csv_text(rows: list[list[str]]) -> str:
    """CSV text with CRLF line ends and minimal quoting, as VisA's files are written."""
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def make_demo(out_dir: Path, spec: DemoSpec) -> None:
    """Per category `train_good + test_good` normal images (a random `test_good` of them in the test
    split) and `2 x test_defective_per_type` anomalies; every third anomaly has a second defect of
    the other kind, so its image_anno.csv label is a quoted pair of names."""
    rng = np.random.default_rng(spec.seed)
    names = [DEMO_DEFECTS[kind] for kind in DEFECT_KINDS]
    split_rows = [SPLIT_HEADER]
    for index, category in enumerate(spec.categories):
        base = f"{category}/Data"
        anno_rows = [ANNO_HEADER]
        normals = [f"{base}/Images/Normal/{n:04d}.JPG" for n in range(spec.train_good + spec.test_good)]
        for path in normals:
            write_file(out_dir / path, jpeg_bytes(texture(rng, index, spec.image_size)))
            anno_rows.append([path, "normal", ""])
        anomalies = []
        for n in range(len(DEFECT_KINDS) * spec.test_defective_per_type):
            image = texture(rng, index, spec.image_size)
            kinds = [n % len(DEFECT_KINDS)] + ([(n + 1) % len(DEFECT_KINDS)] if n % 3 == 2 else [])
            mask = np.zeros(image.shape[:2], np.uint8)
            for kind in kinds:  # multi-class mask: pixel value = defect id (1-based)
                mask[draw_defect(image, rng, DEFECT_KINDS[kind]) > 0] = kind + 1
            path, mask_path = f"{base}/Images/Anomaly/{n:03d}.JPG", f"{base}/Masks/Anomaly/{n:03d}.png"
            write_file(out_dir / path, jpeg_bytes(image))
            write_file(out_dir / mask_path, png_bytes(mask))
            anno_rows.append([path, ",".join(names[k] for k in kinds), mask_path])
            anomalies.append([category, "test", "anomaly", path, mask_path])
        write_file(out_dir / category / "image_anno.csv", _csv_text(anno_rows))
        order = rng.permutation(len(normals))
        test = set(order[: spec.test_good].tolist())
        train_rows = [[category, "train", "normal", normals[i], ""] for i in order if i not in test]
        test_rows = [[category, "test", "normal", normals[i], ""] for i in order if i in test]
        split_rows += train_rows + test_rows + anomalies
    write_file(out_dir / SPLIT_CSV, _csv_text(split_rows))

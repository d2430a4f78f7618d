"""MMAD benchmark (Hugging Face dataset jiang-cc/MMAD): multiple-choice questions over images of
five anomaly detection datasets.

    mmad.json                                   {"<Dataset>/<category>/...": entry, ...}
    DS-MVTec/<category>/...                     query images of MVTec AD's categories
    MVTec-AD/<category>/train/good/...          their normal templates
    MVTec-LOCO/<category>/...                   native LOCO layout (masks: a folder per image)
    VisA/<category>/{train,test}/...            VisA in its 1cls MVTec-style form (test/bad)
    GoodsAD/<category>/...                      native GoodsAD layout

Each mmad.json entry has `image_path`, `mask_path` (empty or null for normal images),
`similar_templates` and `random_templates` (normal images, relative to the root) and
`conversation`: a list of {Question, Answer (a letter), Options {A: ..., B: ...}, type, annotation}.
An image is anomalous unless its path has a `good` folder.

Manifest rows (`parse`): every query image (the mmad.json keys) as source_split `test`, and every
template they name as a normal `train` row of the query's category, so the split stage draws its
references from them. The category is `<Dataset>/<category>` (e.g. `DS-MVTec/bottle`), since a
category name alone repeats across datasets; DS-MVTec's queries and their MVTec-AD templates share
`DS-MVTec/<category>`. defect_type is the image's folder (`broken_large`, `logical_anomalies`,
VisA's `bad`).

Unverified (mmad.json itself is not in the owners' repository): what `mask_path` is relative to.
MMAD's generate_metadata.py prefixes it with the key's first three path parts; the demo writes it
relative to `<Dataset>/<category>/`. The parser tries `<Dataset>/<category>/`, the first three
parts, then the root, and takes the first that exists; a folder (LOCO) means all the masks in it.
DS-MVTec's inner layout is taken to be MVTec AD's, as MMAD's README says (unverified).
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from adfm.datasets.manifest import ManifestRow, image_size
from adfm.datasets.mvtec_ad import GOOD, images_in
from adfm.datasets.synthetic import DEFECT_KINDS, DemoSpec, draw_defect, jpeg_bytes, png_bytes, texture, write_file
from adfm.io import InputError

ARCHIVE_NAME = "MMAD.zip"
JSON_NAME = "mmad.json"
SOURCES = ("DS-MVTec", "MVTec-AD", "MVTec-LOCO", "VisA", "GoodsAD")
QUESTION_TYPES = ("Anomaly Detection", "Defect Classification", "Defect Localization", "Defect Description",
                  "Defect Analysis", "Object Classification", "Object Structure", "Object Details")
QUESTION_COLUMNS = ["image_path", "dataset", "category", "question", "options", "answer", "type", "template_path",
                    "label"]
# 38 query classes: DS-MVTec's 15, LOCO's 5, VisA's 12, GoodsAD's 6 (MVTec-AD holds templates only).
CATEGORIES = tuple(
    [f"DS-MVTec/{c}" for c in ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
                               "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper")]
    + [f"MVTec-LOCO/{c}" for c in ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")]
    + [f"VisA/{c}" for c in ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1",
                             "pcb2", "pcb3", "pcb4", "pipe_fryum")]
    + [f"GoodsAD/{c}" for c in ("drink_bottle", "drink_can", "food_bottle", "food_box", "food_package",
                                "cigarette_box")]
)
DOCUMENTED_COUNTS: dict[str, dict[str, int]] = {}  # only totals are documented
DOCUMENTED_TOTALS = {"test": 8366}  # query images (shared/DATASETS.md); 39,672 questions


def load(root: Path) -> dict:
    path = root / JSON_NAME
    if not path.is_file():
        raise InputError(f"{root}: no {JSON_NAME} (not an MMAD layout)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot read JSON ({error})") from None
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected a non-empty object keyed by image path")
    for key, entry in data.items():
        parts = PurePosixPath(key).parts
        if len(parts) < 3 or not isinstance(entry, dict) or not isinstance(entry.get("conversation"), list):
            raise InputError(f"{path}: entry {key!r}: expected a key <Dataset>/<category>/... and an object "
                             "with a conversation list")
    return data


def _category(key: str) -> tuple[str, str]:
    parts = PurePosixPath(key).parts
    return parts[0], parts[1]


def is_anomalous(key: str) -> bool:
    return GOOD not in PurePosixPath(key).parts[:-1]


def _templates(entry: dict) -> list[str]:
    return [t for t in [*(entry.get("random_templates") or []), *(entry.get("similar_templates") or [])] if t]


def parse_questions(root: Path) -> pd.DataFrame:
    """One row per question: image_path, dataset, category, question, options (JSON), answer,
    type, template_path (random_templates[0]), label (1 unless the path has a `good` folder)."""
    path = root / JSON_NAME
    records = []
    for key, entry in load(root).items():
        source, category = _category(key)
        templates = entry.get("random_templates") or []
        template = str(root / templates[0]) if templates else ""
        for number, qa in enumerate(entry["conversation"]):
            where = f"{path}: {key}: question {number}"
            if not isinstance(qa, dict) or not all(k in qa for k in ("Question", "Answer", "Options", "type")):
                raise InputError(f"{where}: expected Question, Answer, Options and type")
            options = qa["Options"]
            if not isinstance(options, dict) or qa["Answer"] not in options:
                raise InputError(f"{where}: answer {qa['Answer']!r} is not one of the options "
                                 f"{list(options) if isinstance(options, dict) else options!r}")
            records.append({
                "image_path": str(root / key), "dataset": source, "category": category,
                "question": qa["Question"], "options": json.dumps(options, ensure_ascii=False),
                "answer": qa["Answer"], "type": qa["type"], "template_path": template,
                "label": int(is_anomalous(key)),
            })
    return pd.DataFrame.from_records(records, columns=QUESTION_COLUMNS)


def mask_files(root: Path, key: str, mask_path: str) -> list[Path]:
    """The mask file(s) of a query: `mask_path` resolved as the module docstring says."""
    parts = PurePosixPath(key).parts
    for base in (root.joinpath(*parts[:2]), root.joinpath(*parts[:3]), root):
        candidate = Path(os.path.normpath(base / mask_path))
        if candidate.is_file():
            return [candidate]
        if candidate.is_dir() and images_in(candidate):
            return images_in(candidate)
    return []


def parse(root: Path, dataset: str, categories: list[str] | None = None) -> list[ManifestRow]:
    data = load(root)
    by_category: dict[str, list[str]] = {}
    for key in data:
        by_category.setdefault("/".join(_category(key)), []).append(key)
    wanted = list(categories) if categories else sorted(by_category)
    missing = [c for c in wanted if c not in by_category]
    if missing:
        raise InputError(f"{root / JSON_NAME}: categories {missing} not found (present: {sorted(by_category)})")
    rows, seen = [], set()

    def add(image: Path, category: str, split: str, label: int, defect: str, masks: list[str]) -> None:
        if str(image) in seen:
            return
        seen.add(str(image))
        width, height = image_size(image)
        rows.append(ManifestRow(dataset, category, split, str(image), label, defect, masks, width, height))

    for category in wanted:
        for key in by_category[category]:
            entry = data[key]
            image = root / key
            masks = []
            if is_anomalous(key):
                mask_path = entry.get("mask_path") or ""
                masks = [str(p) for p in mask_files(root, key, mask_path)] if mask_path else []
                if not masks:
                    raise InputError(f"{image}: anomalous image without a mask ({JSON_NAME} gives mask_path "
                                     f"{mask_path!r}, found nowhere)")
            add(image, category, "test", int(bool(masks)), PurePosixPath(key).parent.name if masks else GOOD, masks)
        for key in by_category[category]:
            for template in _templates(data[key]):
                add(root / template, category, "train", 0, GOOD, [])
    return rows


# ---- demo ------------------------------------------------------------------------------------

# How each source dataset lies inside MMAD: image suffix, template folder, defect folders, mask name.
_DEMO_LAYOUT = {
    "DS-MVTec": (".png", "MVTec-AD", DEFECT_KINDS),
    "MVTec-LOCO": (".png", "MVTec-LOCO", ("logical_anomalies", "structural_anomalies")),
    "VisA": (".JPG", "VisA", ("bad",)),
    "GoodsAD": (".jpg", "GoodsAD", ("surface_damage", "deformation")),
}
_DESCRIPTIONS = {True: "A bright spot on the surface.", False: "A dark spot on the surface."}


def _mask_rel(source: str, defect: str, stem: str) -> str:
    """mask_path relative to <Dataset>/<category>/, in each source's own naming."""
    if source == "MVTec-LOCO":
        return f"ground_truth/{defect}/{stem}"  # a folder: one file per region
    if source == "DS-MVTec":
        return f"ground_truth/{defect}/{stem}_mask.png"
    return f"ground_truth/{defect}/{stem}.png"


def _choice(rng: np.random.Generator, correct: str, wrong: list[str]) -> tuple[dict[str, str], str]:
    """Options A.. with the correct one at a random position; (options, answer letter)."""
    values = list(dict.fromkeys(w for w in wrong if w != correct))[:3]
    position = int(rng.integers(0, len(values) + 1))
    values.insert(position, correct)
    letters = "ABCD"
    return {letters[i]: v for i, v in enumerate(values)}, letters[position]


def _conversation(rng, category: str, defect: str | None, mask: np.ndarray | None, bright: bool,
                  all_defects: tuple[str, ...], other_categories: list[str]) -> list[dict]:
    def qa(kind: str, question: str, correct: str, wrong: list[str]) -> dict:
        options, answer = _choice(rng, correct, wrong)
        return {"Question": question, "Answer": answer, "Options": options, "type": kind, "annotation": True}

    anomalous = defect is not None
    yes_no = {"A": "Yes.", "B": "No."}
    items = [{"Question": "Is there any defect in the object?", "Answer": "A" if anomalous else "B",
              "Options": yes_no, "type": "Anomaly Detection", "annotation": True}]
    if anomalous:
        names = [d.replace("_", " ") for d in all_defects if d != defect] + ["crack", "stain", "missing part"]
        items.append(qa("Defect Classification", "There is a defect in the object. What is the type of the defect?",
                        defect.replace("_", " "), names))
        ys, xs = np.nonzero(mask)
        vertical = "Top" if ys.mean() < mask.shape[0] / 2 else "Bottom"
        horizontal = "left" if xs.mean() < mask.shape[1] / 2 else "right"
        corners = [f"{v} {h}." for v in ("Top", "Bottom") for h in ("left", "right")]
        correct = f"{vertical} {horizontal}."
        items.append(qa("Defect Localization", "There is a defect in the object. Where is the defect?", correct,
                        [c for c in corners if c != correct]))
        items.append(qa("Defect Description", "There is a defect in the object. What is its appearance?",
                        _DESCRIPTIONS[bright], [_DESCRIPTIONS[not bright], "A missing piece.", "A bent edge."]))
        items.append(qa("Defect Analysis", "There is a defect in the object. What is its effect on the object?",
                        "It damages the surface of the part.",
                        ["It has no effect.", "It changes the colour of the background.", "It makes the part larger."]))
    items.append(qa("Object Classification", "What kind of product is in the image?", category.replace("_", " "),
                    [c.replace("_", " ") for c in other_categories] + ["screw", "cable", "pill"]))
    items.append(qa("Object Structure", "What is the shape of the object?", "A square part on a dark background.",
                    ["A round part.", "A long thin part.", "A ring."]))
    items.append(qa("Object Details", "What does the surface of the object show?", "Regular stripes.",
                    ["Text.", "Holes.", "Nothing at all."]))
    return items


def make_demo(out_dir: Path, spec: DemoSpec) -> None:
    """`spec.categories` are `<Dataset>/<category>` names, Dataset one of DS-MVTec, MVTec-LOCO, VisA,
    GoodsAD. Per category: train_good templates, test_good normal queries and
    test_defective_per_type anomalous queries per defect folder (LOCO's with one or two mask files),
    and an mmad.json with every question type (the defect questions for anomalous images only)."""
    rng = np.random.default_rng(spec.seed)
    entries = {}
    names = [c.split("/", 1)[-1] for c in spec.categories]
    for index, full in enumerate(spec.categories):
        source, _, category = full.partition("/")
        if source not in _DEMO_LAYOUT or not category:
            raise InputError(f"MMAD demo category {full!r}: expected <Dataset>/<category>, Dataset one of "
                             f"{sorted(_DEMO_LAYOUT)}")
        ext, template_source, defects = _DEMO_LAYOUT[source]
        encode = jpeg_bytes if ext.lower() == ".jpg" else png_bytes
        width = 4 if source == "VisA" else 3  # VisA's normal images have 4-digit names
        templates = []
        for n in range(spec.train_good):
            rel = f"{template_source}/{category}/train/good/{n:0{width}d}{ext}"
            write_file(out_dir / rel, encode(texture(rng, index, spec.image_size)))
            templates.append(rel)
        base = f"{source}/{category}"
        queries = []
        for n in range(spec.test_good):
            serial = spec.train_good + n if source == "VisA" else n  # VisA keeps its unique original names
            rel = f"{base}/test/good/{serial:0{width}d}{ext}"
            write_file(out_dir / rel, encode(texture(rng, index, spec.image_size)))
            queries.append((rel, None, None, None, False))
        for number, defect in enumerate(defects):
            for n in range(spec.test_defective_per_type):
                image, stem = texture(rng, index, spec.image_size), f"{n:03d}"
                regions = 1 + n % 2 if source == "MVTec-LOCO" else 1
                union = np.zeros(image.shape[:2], np.uint8)
                for region in range(regions):
                    mask = draw_defect(image, rng, DEFECT_KINDS[(number + region) % len(DEFECT_KINDS)])
                    union |= mask
                    mask_file = _mask_rel(source, defect, stem) + (f"/{region:03d}.png" if source == "MVTec-LOCO" else "")
                    write_file(out_dir / base / mask_file, png_bytes(mask))
                bright = bool(image[union > 0].mean() > 128)
                rel = f"{base}/test/{defect}/{stem}{ext}"
                write_file(out_dir / rel, encode(image))
                queries.append((rel, defect, union, _mask_rel(source, defect, stem), bright))
        others = [c for c in names if c != category]
        for rel, defect, union, mask_rel, bright in queries:
            picks = rng.choice(len(templates), size=min(3, len(templates)), replace=False)
            entries[rel] = {
                "image_path": rel,
                "mask_path": mask_rel or "",
                "similar_templates": [templates[i] for i in sorted(picks)],
                "random_templates": [templates[i] for i in picks],
                "conversation": _conversation(rng, category, defect, union, bright, defects, others),
            }
    write_file(out_dir / JSON_NAME, json.dumps(entries, indent=4, ensure_ascii=False) + "\n")

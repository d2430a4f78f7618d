"""MMAD benchmark (GitHub jam-cc/MMAD, data on the Hugging Face Hub as jiang-cc/MMAD): multiple-choice
questions over the test images of five anomaly detection datasets.

    mmad.json                                   {"<Dataset>/<category>/...": entry, ...}
    DS-MVTec/<category>/image/{good,<defect>}/  MVTec AD's test images as Defect Spectrum re-annotated them
    DS-MVTec/<category>/{mask,rbg_mask}/<defect>/   their masks (binary; coloured per defect class;
                                                some copies spell the second `rgb_mask`)
    MVTec-AD/<category>/train/good/...          DS-MVTec's normal templates
    MVTec-LOCO/<category>/...                   native LOCO layout (masks: a folder per image)
    VisA/<category>/{train,test}/...            VisA in its 1cls MVTec-style form (test/bad)
    GoodsAD/<category>/...                      native GoodsAD layout

mmad.json ships in MMAD's repository (dataset/MMAD/mmad.json) and on the Hub. Each entry has
`image_path` and `mask_path` (empty or null for normal images), both relative to
`<Dataset>/<category>/` (e.g. `image/broken_large/000.png`, `rbg_mask/broken_large/000_rbg_mask.png`),
`similar_templates` and `random_templates` (normal images, relative to the root) and
`conversation`: a list of {Question, Answer (a letter), Options {A: ..., B: ...}, type, annotation}.
An image is anomalous unless its path has a `good` folder.

`mask_path` is resolved against `<Dataset>/<category>/`, then the key's first three parts (what
MMAD's generate_metadata.py prefixes), then the root, under either spelling of DS-MVTec's
coloured mask folder. What MMAD's own scripts never read, and so tolerate, the parser tolerates
too: a LOCO `mask_path` naming `000.png` where the masks lie in a `000/` folder (the folder's
masks are merged), a `.jpg` mask path whose file is `.png`, and a listed template that is missing
(left out of the manifest with a warning; `adfm predict-mmad` stops only when it needs it).

Manifest rows (`parse`): every query image (the mmad.json keys) as source_split `test`, and every
template they name as a normal `train` row of the query's category, so the split stage draws its
references from them. The category is `<Dataset>/<category>` (e.g. `DS-MVTec/bottle`), since a
category name alone repeats across datasets; DS-MVTec's queries and their MVTec-AD templates share
`DS-MVTec/<category>`. defect_type is the image's folder (`broken_large`, `logical_anomalies`,
VisA's `bad`).

Each query image is also named by its source image (`source_image`: layout, category, label,
defect folder, file stem), so Table 3 can leave out what a model was trained on: DS-MVTec's
`image/<defect>/000.png` is MVTec AD's `test/<defect>/000.png`; VisA's `test/bad/000.JPG` is the
raw `Data/Images/Anomaly/000.JPG` (VisA's names are unique per category and label).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from adfm.data import mmad_question_table
from adfm.data.datasets import goodsad, mmad_demo, mvtec_ad, mvtec_loco, visa
from adfm.data.datasets.manifest import ManifestRow, measured
from adfm.data.datasets.mvtec_ad import GOOD, images_in
from adfm.data.datasets.synthetic import DemoSpec, write_file
from adfm.data.extract import extract
from adfm.io import InputError

log = logging.getLogger(__name__)

ARCHIVE_NAME = "MMAD.zip"
JSON_NAME = "mmad.json"
SOURCES = ("DS-MVTec", "MVTec-AD", "MVTec-LOCO", "VisA", "GoodsAD")
# the layout (adfm.data.datasets) each MMAD source's images come from
SOURCE_LAYOUTS = {
    "DS-MVTec": "mvtec_ad",
    "MVTec-AD": "mvtec_ad",
    "MVTec-LOCO": "mvtec_loco",
    "VisA": "visa",
    "GoodsAD": "goodsad",
}
QUESTION_TYPES = (
    "Anomaly Detection",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Structure",
    "Object Details",
)
# 38 query classes: DS-MVTec's 15, LOCO's 5, VisA's 12, GoodsAD's 6 (MVTec-AD holds templates only).
CATEGORIES = tuple(
    f"{source}/{category}"
    for source, layout in (("DS-MVTec", mvtec_ad), ("MVTec-LOCO", mvtec_loco), ("VisA", visa), ("GoodsAD", goodsad))
    for category in layout.CATEGORIES
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
            raise InputError(
                f"{path}: entry {key!r}: expected a key <Dataset>/<category>/... and an object with a conversation list"
            )
    return data


def _category(key: str) -> tuple[str, str]:
    parts = PurePosixPath(key).parts
    return parts[0], parts[1]


def is_anomalous(key: str) -> bool:
    return GOOD not in PurePosixPath(key).parts[:-1]


def source_image(layout: str, category: str, label: int, path: str) -> str:
    """The name one source image has in MMAD and in its own dataset's manifest alike."""
    where = PurePosixPath(path)
    folder = "" if layout == "visa" else (GOOD if int(label) == 0 else where.parent.name)
    return "/".join([layout, category, str(int(label)), folder, where.stem])


def query_source_image(key: str) -> str:
    """`source_image` of an mmad.json key; empty for a dataset MMAD does not take from a layout."""
    source, category = _category(key)
    layout = SOURCE_LAYOUTS.get(source)
    return source_image(layout, category, int(is_anomalous(key)), key) if layout else ""


def _templates(entry: dict) -> list[str]:
    return [t for t in [*(entry.get("random_templates") or []), *(entry.get("similar_templates") or [])] if t]


def parse_questions(root: Path) -> pd.DataFrame:
    """One row per question, in the columns of adfm.data.mmad_question_table.QUESTION_COLUMNS;
    template_path is random_templates[0], label 1 unless the path has a `good` folder."""
    path = root / JSON_NAME
    records = []
    for key, entry in load(root).items():
        source, category = _category(key)
        templates = [str(root / t) for t in entry.get("random_templates") or [] if t]
        for number, qa in enumerate(entry["conversation"]):
            where = f"{path}: {key}: question {number}"
            if not isinstance(qa, dict) or not all(k in qa for k in ("Question", "Answer", "Options", "type")):
                raise InputError(f"{where}: expected Question, Answer, Options and type")
            options = qa["Options"]
            if not isinstance(options, dict) or qa["Answer"] not in options:
                raise InputError(
                    f"{where}: answer {qa['Answer']!r} is not one of the options "
                    f"{list(options) if isinstance(options, dict) else options!r}"
                )
            records.append(
                {
                    "image_path": str(root / key),
                    "dataset": source,
                    "category": category,
                    "question": qa["Question"],
                    "options": json.dumps(options, ensure_ascii=False),
                    "answer": qa["Answer"],
                    "type": qa["type"],
                    "template_path": templates[0] if templates else "",
                    "templates": json.dumps(templates),
                    "source_image": query_source_image(key),
                    "label": int(is_anomalous(key)),
                }
            )
    return pd.DataFrame.from_records(records, columns=mmad_question_table.QUESTION_COLUMNS)


# DS-MVTec's coloured masks: `rbg_mask/` in mmad.json and Defect Spectrum's release, `rgb_mask/` in some copies
_MASK_SPELLINGS = (("rbg_mask/", "rgb_mask/"), ("rgb_mask/", "rbg_mask/"))


def mask_files(root: Path, key: str, mask_path: str) -> list[Path]:
    """The mask file(s) of a query: `mask_path` resolved as the module docstring says."""
    parts = PurePosixPath(key).parts
    spellings = dict.fromkeys([mask_path, *(mask_path.replace(a, b) for a, b in _MASK_SPELLINGS if a in mask_path)])
    for base, spelling in itertools.product((root.joinpath(*parts[:2]), root.joinpath(*parts[:3]), root), spellings):
        named = Path(os.path.normpath(base / spelling))
        # as named; LOCO's `000.png` whose masks lie in `000/`; a `.jpg` name whose file is `.png`
        for candidate in (named, named.with_suffix(""), named.with_suffix(".png")):
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
    rows, seen, absent = [], set(), set()

    def add(image: Path, category: str, split: str, label: int, defect: str, masks: list[str]) -> None:
        if str(image) in seen:
            return
        seen.add(str(image))
        rows.append(measured(dataset, category, split, image, label, defect, masks))

    for category in wanted:
        for key in by_category[category]:
            entry = data[key]
            image = root / key
            masks = []
            if is_anomalous(key):
                mask_path = entry.get("mask_path") or ""
                masks = [str(p) for p in mask_files(root, key, mask_path)] if mask_path else []
                if not masks:
                    raise InputError(
                        f"{image}: anomalous image without a mask ({JSON_NAME} gives mask_path "
                        f"{mask_path!r}, found nowhere)"
                    )
            add(image, category, "test", int(bool(masks)), PurePosixPath(key).parent.name if masks else GOOD, masks)
        for key in by_category[category]:
            for template in _templates(data[key]):
                if (root / template).is_file():
                    add(root / template, category, "train", 0, GOOD, [])
                elif template not in absent:
                    absent.add(template)
                    log.warning(
                        "%s: template %s named in %s is missing; left out (MMAD's 1-shot setting reads "
                        "random_templates[0] only)",
                        root,
                        template,
                        JSON_NAME,
                    )
    if absent:
        log.warning("%s: %d listed templates missing, left out of the manifest", root, len(absent))
    return rows


# ---- demo ------------------------------------------------------------------------------------


def _source_rows(work: Path, source: str, categories: list[str], spec: DemoSpec) -> list[ManifestRow]:
    """The demo dataset MMAD's `source` takes its images from: the archive `spec.sources` names
    (the very files the demo's own datasets hold), else generated here with `spec`'s sizes."""
    # the registry imports this module: read it when the demo is made, once every layout is loaded
    from adfm.data.datasets import LAYOUTS

    layout, root = SOURCE_LAYOUTS[source], work / source
    archive = dict(spec.sources).get(source)
    if archive:
        extract(Path(archive), root)
    else:
        LAYOUTS[layout].make_demo(root, replace(spec, categories=tuple(categories), sources=()))
    return LAYOUTS[layout].parse(root, layout, categories)


def _demo_categories(spec: DemoSpec) -> dict[str, list[str]]:
    """MMAD source -> the demo's categories of it (`spec.categories` are `<Dataset>/<category>`)."""
    wanted: dict[str, list[str]] = {}
    for full in spec.categories:
        source, _, category = full.partition("/")
        if source not in SOURCE_LAYOUTS or source == "MVTec-AD" or not category:
            raise InputError(
                f"MMAD demo category {full!r}: expected <Dataset>/<category>, Dataset one of "
                f"{sorted(set(SOURCE_LAYOUTS) - {'MVTec-AD'})}"
            )
        wanted.setdefault(source, []).append(category)
    unknown = sorted(set(dict(spec.sources)) - set(wanted))
    if unknown:
        raise InputError(f"MMAD demo sources {unknown}: no category of theirs is asked for")
    return wanted


def make_demo(out_dir: Path, spec: DemoSpec) -> None:
    """`spec.categories` are `<Dataset>/<category>` names, Dataset one of DS-MVTec, MVTec-LOCO, VisA,
    GoodsAD. MMAD holds the test images of its source datasets: per category every test image of the
    source demo dataset (`spec.sources`: MMAD source -> that dataset's demo archive, so MMAD asks about
    the very images the demo trains and tests on; generated with `spec`'s sizes when absent), every
    normal training image as a template, and an mmad.json with every question type (the defect
    questions for anomalous images only)."""
    rng = np.random.default_rng(spec.seed)
    wanted = _demo_categories(spec)
    names = [c.split("/", 1)[-1] for c in spec.categories]
    entries = {}
    with tempfile.TemporaryDirectory() as work:
        for source, categories in wanted.items():
            rows = _source_rows(Path(work), source, categories, spec)
            for category in categories:
                mine = [r for r in rows if r.category == category]
                entries.update(mmad_demo.category_entries(rng, out_dir, source, category, mine, names))
    write_file(out_dir / JSON_NAME, json.dumps(entries, indent=4, ensure_ascii=False) + "\n")

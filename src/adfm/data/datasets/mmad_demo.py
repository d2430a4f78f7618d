"""The MMAD demo's entries (adfm.data.datasets.mmad.make_demo): its questions, one of each of MMAD's
types, and where its query images, masks and templates go in MMAD's layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from adfm.data.datasets.manifest import ManifestRow
from adfm.data.datasets.mvtec_ad import GOOD
from adfm.data.datasets.synthetic import write_file

_DESCRIPTIONS = {True: "A bright spot on the surface.", False: "A dark spot on the surface."}


def choice(rng: np.random.Generator, correct: str, wrong: list[str]) -> tuple[dict[str, str], str]:
    """Options A.. with the correct one at a random position; (options, answer letter)."""
    values = list(dict.fromkeys(w for w in wrong if w != correct))[:3]
    position = int(rng.integers(0, len(values) + 1))
    values.insert(position, correct)
    letters = "ABCD"
    return {letters[i]: v for i, v in enumerate(values)}, letters[position]


# The fixed questions: (type, question, correct option, wrong options).
_DEFECT_ANALYSIS = (
    "Defect Analysis",
    "There is a defect in the object. What is its effect on the object?",
    "It damages the surface of the part.",
    ["It has no effect.", "It changes the colour of the background.", "It makes the part larger."],
)
_OBJECT_QUESTIONS = [
    (
        "Object Structure",
        "What is the shape of the object?",
        "A square part on a dark background.",
        ["A round part.", "A long thin part.", "A ring."],
    ),
    (
        "Object Details",
        "What does the surface of the object show?",
        "Regular stripes.",
        ["Text.", "Holes.", "Nothing at all."],
    ),
]


def _defect_questions(defect: str, mask: np.ndarray, bright: bool, all_defects: list[str]) -> list[tuple]:
    """The questions about an anomalous image's defect: its type, place (the mask's quadrant),
    appearance (bright or dark) and effect."""
    names = [d.replace("_", " ") for d in all_defects if d != defect] + ["crack", "stain", "missing part"]
    ys, xs = np.nonzero(mask)
    vertical = "Top" if ys.mean() < mask.shape[0] / 2 else "Bottom"
    horizontal = "left" if xs.mean() < mask.shape[1] / 2 else "right"
    corner = f"{vertical} {horizontal}."
    corners = [f"{v} {h}." for v in ("Top", "Bottom") for h in ("left", "right")]
    looks = [_DESCRIPTIONS[not bright], "A missing piece.", "A bent edge."]
    asked = "There is a defect in the object."
    return [
        ("Defect Classification", f"{asked} What is the type of the defect?", defect.replace("_", " "), names),
        ("Defect Localization", f"{asked} Where is the defect?", corner, [c for c in corners if c != corner]),
        ("Defect Description", f"{asked} What is its appearance?", _DESCRIPTIONS[bright], looks),
        _DEFECT_ANALYSIS,
    ]


def conversation(
    rng,
    category: str,
    defect: str | None,
    mask: np.ndarray | None,
    bright: bool,
    all_defects: list[str],
    other_categories: list[str],
) -> list[dict]:
    """One question of each of MMAD's types about a query image (the defect ones when `defect` is
    given: the image is anomalous), the options in random order."""

    def qa(kind: str, question: str, correct: str, wrong: list[str]) -> dict:
        options, answer = choice(rng, correct, wrong)
        return {"Question": question, "Answer": answer, "Options": options, "type": kind, "annotation": True}

    detection = {
        "Question": "Is there any defect in the object?",
        "Answer": "B" if defect is None else "A",
        "Options": {"A": "Yes.", "B": "No."},
        "type": "Anomaly Detection",
        "annotation": True,
    }
    asked = [] if defect is None else _defect_questions(defect, mask, bright, all_defects)
    products = [c.replace("_", " ") for c in other_categories] + ["screw", "cable", "pill"]
    asked.append(
        ("Object Classification", "What kind of product is in the image?", category.replace("_", " "), products)
    )
    return [detection, *(qa(*question) for question in [*asked, *_OBJECT_QUESTIONS])]


def copy(source: str | Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def union_mask(masks: list[str]) -> np.ndarray:
    union = None
    for path in masks:
        mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE) > 0
        union = mask if union is None else union | mask
    return union.astype(np.uint8) * 255


def place_query(out_dir: Path, source: str, category: str, row: ManifestRow) -> tuple[str, str]:
    """Copy a query image (and its masks) where MMAD keeps it; (key, mask_path)."""
    name = Path(row.image_path).name
    stem = Path(name).stem
    base = out_dir / source / category
    if row.label == 0:
        rel = f"image/{GOOD}/{name}" if source == "DS-MVTec" else f"test/{GOOD}/{name}"
        copy(row.image_path, base / rel)
        return f"{source}/{category}/{rel}", ""
    folder = "bad" if source == "VisA" else Path(row.image_path).parent.name
    if source == "DS-MVTec":  # Defect Spectrum's layout: binary and coloured masks side by side
        rel = f"image/{folder}/{name}"
        union = union_mask(row.mask_paths)
        write_file(base / f"mask/{folder}/{stem}_mask.png", cv2.imencode(".png", union)[1].tobytes())
        coloured = np.zeros((*union.shape, 3), np.uint8)
        coloured[union > 0] = (0, 0, 255)
        mask_path = f"rbg_mask/{folder}/{stem}_rbg_mask.png"
        write_file(base / mask_path, cv2.imencode(".png", coloured)[1].tobytes())
    elif source == "MVTec-LOCO":  # mask_path names `<stem>.png`; the region masks lie in `<stem>/`
        rel = f"test/{folder}/{name}"
        for mask in row.mask_paths:
            copy(mask, base / f"ground_truth/{folder}/{stem}/{Path(mask).name}")
        mask_path = f"ground_truth/{folder}/{stem}.png"
    else:
        rel = f"test/{folder}/{name}"
        mask_path = f"ground_truth/{folder}/{stem}.png"
        write_file(base / mask_path, cv2.imencode(".png", union_mask(row.mask_paths))[1].tobytes())
    copy(row.image_path, base / rel)
    return f"{source}/{category}/{rel}", mask_path


def category_entries(
    rng: np.random.Generator, out_dir: Path, source: str, category: str, rows: list[ManifestRow], names: list[str]
) -> dict[str, dict]:
    """mmad.json's entries of one demo category, from the rows of its source dataset: every test image
    a query, every normal training image a template, each copied where MMAD keeps it. `names`: the
    demo's categories, the wrong answers of Object Classification."""
    template_source = "MVTec-AD" if source == "DS-MVTec" else source
    templates = {}
    for row in rows:  # LOCO's validation images repeat the train names: the first one wins
        name = Path(row.image_path).name
        if row.source_split == "train" and row.label == 0 and name not in templates:
            templates[name] = f"{template_source}/{category}/train/{GOOD}/{name}"
            copy(row.image_path, out_dir / templates[name])
    listed = sorted(templates.values())
    defects = ["bad"] if source == "VisA" else sorted({Path(r.image_path).parent.name for r in rows if r.label == 1})
    others = [c for c in names if c != category]
    entries = {}
    for row in sorted((r for r in rows if r.source_split == "test"), key=lambda r: r.image_path):
        key, mask_path = place_query(out_dir, source, category, row)
        defect = union = None
        bright = False
        if row.label == 1:
            defect = "bad" if source == "VisA" else Path(row.image_path).parent.name
            union = union_mask(row.mask_paths)
            bright = bool(cv2.imread(row.image_path, cv2.IMREAD_GRAYSCALE)[union > 0].mean() > 128)
        entries[key] = {
            "image_path": key.split("/", 2)[2],
            "mask_path": mask_path,
            "similar_templates": listed,
            "random_templates": [listed[i] for i in rng.permutation(len(listed))],
            "conversation": conversation(rng, category, defect, union, bright, defects, others),
        }
    return entries

"""Index stage: an extracted dataset folder -> the manifest (one row per image, common columns).

After parsing, the image counts per category are compared with the ones the dataset's
documentation gives (the layout module's DOCUMENTED_COUNTS and DOCUMENTED_TOTALS): a difference is
logged as a warning, never an error, since a partial or newer copy may differ on purpose (and the
generated demo always does: `--no-count-check` turns the check off).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from adfm.datasets import LAYOUTS, manifest
from adfm.io import InputError

log = logging.getLogger(__name__)

COUNT_KEYS = ("train", "test", "train_defective", "test_defective")


def observed_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{category: {train, test, train_defective, test_defective}} of a manifest frame."""
    counts = {}
    for category, rows in frame.groupby("category", sort=True):
        defective = rows["label"] == 1
        counts[str(category)] = {
            "train": int((rows["source_split"] == "train").sum()),
            "test": int((rows["source_split"] == "test").sum()),
            "train_defective": int(((rows["source_split"] == "train") & defective).sum()),
            "test_defective": int(((rows["source_split"] == "test") & defective).sum()),
        }
    return counts


def count_differences(frame: pd.DataFrame, documented: dict[str, dict[str, int]],
                      totals: dict[str, int] | None = None, all_categories=()) -> list[str]:
    """One message per count that differs from the documented one. Undocumented categories and
    keys are skipped; totals are compared only when every category of `all_categories` was parsed."""
    observed = observed_counts(frame)
    messages = []
    for category, counts in observed.items():
        for key, expected in documented.get(category, {}).items():
            if counts[key] != expected:
                messages.append(f"{category}: {counts[key]} {key.replace('_', ' ')} images, documented {expected}")
    if totals and all_categories and set(all_categories) <= set(observed):
        for key, expected in totals.items():
            actual = sum(counts[key] for counts in observed.values())
            if actual != expected:
                messages.append(f"all categories: {actual} {key.replace('_', ' ')} images, documented {expected}")
    return messages


def check_counts(frame: pd.DataFrame, dataset: str, layout: str) -> list[str]:
    """Log a warning per count that differs from the layout's documented counts; return them."""
    module = LAYOUTS[layout]
    messages = count_differences(frame, getattr(module, "DOCUMENTED_COUNTS", {}),
                                 getattr(module, "DOCUMENTED_TOTALS", None), getattr(module, "CATEGORIES", ()))
    for message in messages:
        log.warning("%s: %s (a partial or different copy of the dataset?)", dataset, message)
    return messages


def index(root: Path, dataset: str, layout: str, categories: list[str] | None, out: Path,
          count_check: bool = True) -> None:
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r} for dataset {dataset}; known: {sorted(LAYOUTS)}")
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    frame = manifest.to_frame(LAYOUTS[layout].parse(root, dataset, categories))
    counts = frame.groupby(["category", "source_split", "label"]).size().unstack(["source_split", "label"], fill_value=0)
    log.info("%s: %d images\n%s", dataset, len(frame), counts.to_string())
    if count_check:
        check_counts(frame, dataset, layout)
    manifest.write(frame, out)


def register(subparsers) -> None:
    parser = subparsers.add_parser("index", help="list a dataset's images in the common manifest format")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--layout", required=True)
    parser.add_argument("--categories", nargs="*", help="restrict to these categories (default: all found)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--no-count-check", dest="count_check", action="store_false",
                        help="do not compare the counts with the documented ones (for generated demo data)")
    parser.set_defaults(func=lambda a: index(a.root, a.dataset, a.layout, a.categories or None, a.out,
                                             count_check=a.count_check))

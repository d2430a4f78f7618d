"""Index stage: an extracted dataset folder -> the manifest (one row per image, common columns)."""

from __future__ import annotations

import logging
from pathlib import Path

from adfm.datasets import LAYOUTS, manifest
from adfm.io import InputError

log = logging.getLogger(__name__)


def index(root: Path, dataset: str, layout: str, categories: list[str] | None, out: Path) -> None:
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r} for dataset {dataset}; known: {sorted(LAYOUTS)}")
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    frame = manifest.to_frame(LAYOUTS[layout].parse(root, dataset, categories))
    counts = frame.groupby(["category", "source_split", "label"]).size().unstack(["source_split", "label"], fill_value=0)
    log.info("%s: %d images\n%s", dataset, len(frame), counts.to_string())
    manifest.write(frame, out)


def register(subparsers) -> None:
    parser = subparsers.add_parser("index", help="list a dataset's images in the common manifest format")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--layout", required=True)
    parser.add_argument("--categories", nargs="*", help="restrict to these categories (default: all found)")
    parser.add_argument("--out", required=True, type=Path)
    parser.set_defaults(func=lambda a: index(a.root, a.dataset, a.layout, a.categories or None, a.out))

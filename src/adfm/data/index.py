"""Index stage: an extracted dataset folder -> the manifest (one row per image, common columns).

After parsing, the image counts per category are compared with the ones the dataset's
documentation gives (the layout module's DOCUMENTED_COUNTS and DOCUMENTED_TOTALS): a difference is
logged as a warning, never an error, since a partial or newer copy may differ on purpose (and the
generated demo always does: `--no-count-check` turns the check off).

Every image and mask is then decoded once, in full: a truncated or corrupt file, or a mask whose size
differs from its image's, is an error naming the file. (A header-only read passes a truncated PNG,
which then crashed prediction without naming it; a mask of another size gave a box outside its image.)
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from adfm.data.datasets import LAYOUTS, manifest
from adfm.io import InputError

log = logging.getLogger(__name__)

COUNT_KEYS = ("train", "test", "train_defective", "test_defective")
SHOWN_PROBLEMS = 20  # broken files listed in the error; the rest are counted


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


def count_differences(
    frame: pd.DataFrame, documented: dict[str, dict[str, int]], totals: dict[str, int] | None = None, all_categories=()
) -> list[str]:
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
    messages = count_differences(
        frame,
        getattr(module, "DOCUMENTED_COUNTS", {}),
        getattr(module, "DOCUMENTED_TOTALS", None),
        getattr(module, "CATEGORIES", ()),
    )
    for message in messages:
        log.warning("%s: %s (a partial or different copy of the dataset?)", dataset, message)
    return messages


def decoded_size(path: str | Path, what: str = "image") -> tuple[int, int]:
    """(width, height) of a file decoded in full, with a clear error naming a broken one."""
    try:
        with Image.open(path) as image:
            size = image.size
            # JPEG: decode at 1/8 scale (several times faster); every byte is still read, so a
            # truncated file still fails. A no-op for other formats.
            image.draft(image.mode, (size[0] // 8, size[1] // 8))
            image.load()
            return size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"{path}: unreadable {what} ({error})") from None


def file_problem(image: str, mask_paths: list[str]) -> str | None:
    """What is wrong with an image and its masks (None when all decode and sizes agree)."""
    try:
        width, height = decoded_size(image)
        for mask in mask_paths:
            mask_width, mask_height = decoded_size(mask, "mask")
            if (mask_width, mask_height) != (width, height):
                return f"{mask}: mask is {mask_width}x{mask_height}, its image {image} is {width}x{height}"
    except InputError as error:
        return str(error)
    return None


def check_files(rows: list[manifest.ManifestRow], threads: int = 1) -> None:
    """Decode every image and mask of the manifest's rows once (see the module docstring)."""
    with ThreadPoolExecutor(max(1, threads)) as pool:  # Pillow's decoders release the GIL
        found = list(
            tqdm(
                pool.map(lambda row: file_problem(row.image_path, row.mask_paths), rows),
                total=len(rows),
                desc="decode",
                unit="img",
                mininterval=10,
            )
        )
    problems = [problem for problem in found if problem]
    if problems:
        more = len(problems) - SHOWN_PROBLEMS
        raise InputError(
            f"{len(problems)} broken or mismatched file(s); replace them (e.g. download again):\n  "
            + "\n  ".join(problems[:SHOWN_PROBLEMS])
            + (f"\n  ... and {more} more" if more > 0 else "")
        )


def index(
    root: Path,
    dataset: str,
    layout: str,
    categories: list[str] | None,
    out: Path,
    count_check: bool = True,
    threads: int = 1,
) -> None:
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r} for dataset {dataset}; known: {sorted(LAYOUTS)}")
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    try:
        rows = LAYOUTS[layout].parse(root, dataset, categories)
        frame = manifest.to_frame(rows)
        counts = (
            frame.groupby(["category", "source_split", "label"]).size().unstack(["source_split", "label"], fill_value=0)
        )
        log.info("%s: %d images\n%s", dataset, len(frame), counts.to_string())
        if count_check:
            check_counts(frame, dataset, layout)
        check_files(rows, threads)
    except InputError as error:
        if root.is_symlink():  # a manual download, linked: name the user's own folder too
            raise InputError(f"{error}\n({root} is a link to {root.resolve()})") from None
        raise
    manifest.write(frame, out)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "index",
        help="list a dataset's images in the common manifest format",
        description="Parse an extracted dataset folder in its on-disk layout and write the manifest: one row per "
        "image (dataset, category, source split, path, label, defect type, mask paths, size). "
        "Every image and mask is decoded once; a broken file, or a mask whose size differs from "
        "its image's, is an error naming it. Counts that differ from the documented ones are "
        "logged as warnings.",
    )
    parser.add_argument("--root", required=True, type=Path, help="the extracted dataset folder")
    parser.add_argument(
        "--dataset", required=True, help="the dataset's name in the config (the manifest's dataset column)"
    )
    parser.add_argument(
        "--layout",
        required=True,
        choices=sorted(LAYOUTS),
        help="on-disk layout, parsed by src/adfm/data/datasets/<layout>.py",
    )
    parser.add_argument("--categories", nargs="*", help="restrict to these categories (default: all found)")
    parser.add_argument("--out", required=True, type=Path, help="the manifest to write (CSV)")
    parser.add_argument(
        "--no-count-check",
        dest="count_check",
        action="store_false",
        help="do not compare the counts with the documented ones (for generated demo data)",
    )
    parser.add_argument("--threads", type=int, default=1, help="images decoded at once (default: 1)")
    parser.set_defaults(
        func=lambda a: index(
            a.root, a.dataset, a.layout, a.categories or None, a.out, count_check=a.count_check, threads=a.threads
        )
    )

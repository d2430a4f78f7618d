"""Split stage: train/test rows of an evaluation protocol, each with one normal reference image.

Protocols (paper section 4.1):
- holdout (multi-domain): for every dataset, the images of its test split are split per category,
  `train_fraction` sampled uniformly for training, the rest for testing.
- transfer (cross-dataset): training as above on the `train` datasets only; testing on the whole
  standard test split of the `test` datasets.
Every row gets one reference: a normal image of the same category from the dataset's own training
split, which is never evaluated (single normal reference protocol). Sampling is seeded per dataset
and category, so the split is byte-identical on rerun and one dataset's presence does not change
another's split.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from adfm.data import boxes_table, split_table
from adfm.data.datasets import manifest
from adfm.io import InputError, stable_seed
from adfm.settings.data import SplitSettings

log = logging.getLogger(__name__)


def sample_train(rows: pd.DataFrame, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the rows drawn for training: round(fraction * n), at least one."""
    count = min(len(rows), max(1, round(fraction * len(rows))))
    chosen = np.zeros(len(rows), dtype=bool)
    chosen[rng.choice(len(rows), size=count, replace=False)] = True
    return chosen


def split_category(images: pd.DataFrame, roles: str, fraction: float, seed: int) -> pd.DataFrame:
    """Rows of one dataset's category with their role and reference; `roles` is holdout/train/test."""
    dataset, category = images["dataset"].iloc[0], images["category"].iloc[0]
    references = images[(images["source_split"] == "train") & (images["label"] == 0)]["image_path"].to_numpy()
    if len(references) == 0:
        raise InputError(f"{dataset}/{category}: no normal training image to serve as reference")
    pool = images[images["source_split"] == "test"].reset_index(drop=True)
    if pool.empty:
        raise InputError(f"{dataset}/{category}: empty test split")
    is_train = np.zeros(len(pool), dtype=bool)  # role "test": the whole test split
    if roles in ("holdout", "train"):
        is_train = sample_train(pool, fraction, np.random.default_rng(stable_seed(seed, dataset, category, "split")))
    if roles == "train":
        pool, is_train = pool[is_train].reset_index(drop=True), np.ones(is_train.sum(), dtype=bool)
    out = pool.assign(role=np.where(is_train, "train", "test"))
    referencing = np.random.default_rng(stable_seed(seed, dataset, category, "reference"))
    out["reference_path"] = referencing.choice(references, size=len(out))
    return out


def make_split(images: pd.DataFrame, settings: SplitSettings) -> pd.DataFrame:
    """The split of one protocol over the manifest rows (with boxes) of its datasets."""
    roles = settings.roles()
    parts = []
    for (dataset, _), group in images.groupby(["dataset", "category"], sort=True):
        if dataset in roles:
            parts.append(split_category(group, roles[dataset], settings.train_fraction, settings.seed))
    split = pd.concat(parts, ignore_index=True)
    split = split.sort_values(["dataset", "category", "role", "image_path"], kind="stable")
    return split[split_table.COLUMNS].reset_index(drop=True)


def run_split(manifests: list[Path], boxes: list[Path], settings: SplitSettings, out: Path) -> None:
    images = pd.concat([manifest.read(p) for p in manifests], ignore_index=True)
    images = images.merge(boxes_table.read(*boxes), on="image_path", how="left", validate="one_to_one")
    if images["boxes"].isna().any():
        missing = images.loc[images["boxes"].isna(), "image_path"].iloc[0]
        raise InputError(f"{missing}: no boxes computed for this image (boxes and manifest out of step)")
    split = make_split(images, settings)
    log.info("split: %s", split.groupby(["dataset", "role"]).size().to_dict())
    split_table.write(split, out)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "split",
        help="train/test split of a protocol, with normal references",
        description="The train/test split of one protocol (multi-domain or cross-dataset) over its datasets' "
        "manifests: each image with its role, its boxes, and the normal reference image it is shown "
        "with. The same seed gives the same split.",
    )
    parser.add_argument(
        "--manifests", required=True, nargs="+", type=Path, help="the protocol's datasets' manifests (`adfm index`)"
    )
    parser.add_argument("--boxes", required=True, nargs="+", type=Path, help="their boxes (`adfm boxes`)")
    parser.add_argument("--settings", required=True, type=SplitSettings.argument, help=SplitSettings.describe())
    parser.add_argument("--out", required=True, type=Path, help="the split (CSV)")
    parser.set_defaults(func=lambda a: run_split(a.manifests, a.boxes, a.settings, a.out))

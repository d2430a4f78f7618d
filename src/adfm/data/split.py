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

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from adfm.data import split_table
from adfm.data.datasets import manifest
from adfm.io import InputError, write_csv_atomic

log = logging.getLogger(__name__)


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator seeded by the global seed and the keys, independent of everything else."""
    digest = hashlib.sha256("/".join([str(seed), *keys]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


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
    if roles == "holdout":
        is_train = sample_train(pool, fraction, _rng(seed, dataset, category, "split"))
    elif roles == "train":
        is_train = sample_train(pool, fraction, _rng(seed, dataset, category, "split"))
        pool, is_train = pool[is_train].reset_index(drop=True), np.ones(is_train.sum(), dtype=bool)
    else:
        is_train = np.zeros(len(pool), dtype=bool)
    out = pool.assign(role=np.where(is_train, "train", "test"))
    out["reference_path"] = _rng(seed, dataset, category, "reference").choice(references, size=len(out))
    return out


def make_split(images: pd.DataFrame, protocol: dict, seed: int) -> pd.DataFrame:
    """The split of one protocol over the manifest rows (with boxes) of its datasets."""
    roles = {}
    if protocol["kind"] == "holdout":
        roles = {name: "holdout" for name in protocol["datasets"]}
    elif protocol["kind"] == "transfer":
        roles = {**{name: "test" for name in protocol["test"]}, **{name: "train" for name in protocol["train"]}}
    else:
        raise InputError(f"unknown protocol kind {protocol['kind']!r}")
    parts = []
    for (dataset, _), group in images.groupby(["dataset", "category"], sort=True):
        if dataset in roles:
            parts.append(split_category(group, roles[dataset], protocol["train_fraction"], seed))
    split = pd.concat(parts, ignore_index=True)
    split = split.sort_values(["dataset", "category", "role", "image_path"], kind="stable")
    return split[split_table.COLUMNS].reset_index(drop=True)


def run_split(manifests: list[Path], boxes: list[Path], protocol: dict, seed: int, out: Path) -> None:
    images = pd.concat([manifest.read(p) for p in manifests], ignore_index=True)
    box_table = pd.concat([pd.read_csv(p, keep_default_na=False) for p in boxes], ignore_index=True)
    images = images.merge(box_table, on="image_path", how="left", validate="one_to_one")
    if images["boxes"].isna().any():
        missing = images.loc[images["boxes"].isna(), "image_path"].iloc[0]
        raise InputError(f"{missing}: no boxes computed for this image (boxes and manifest out of step)")
    split = make_split(images, protocol, seed)
    log.info("split: %s", split.groupby(["dataset", "role"]).size().to_dict())
    split_table.write(split, out)


def mmad_question_table(questions: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """MMAD's questions (Table 3) joined to the indexed images: each question keeps its image's
    size and boxes, and its MMAD template (the first random template, MMAD's one-template
    protocol) as the normal reference."""
    sizes = images.drop_duplicates("image_path").set_index("image_path")[["width", "height", "boxes"]]
    unknown = sorted(set(questions["image_path"]) - set(sizes.index))
    if unknown:
        raise InputError(f"{unknown[0]}: MMAD question about an image missing from the MMAD manifest "
                         f"({len(unknown)} such images)")
    table = questions.join(sizes, on="image_path").rename(columns={"template_path": "reference_path"})
    return table.sort_values(["dataset", "category", "image_path", "type"], kind="stable").reset_index(drop=True)


def run_mmad_questions(root: Path, manifest_path: Path, boxes_path: Path, out: Path, split_path: Path | None = None,
                       layouts: dict | None = None) -> None:
    """`split_path` (with `layouts`, its datasets' layouts): mark the questions about images outside
    its test role (adfm.inference.mmad's leakage filter)."""
    from adfm.data.datasets import mmad
    from adfm.inference.mmad import split_drop_reasons

    images = manifest.read(manifest_path).merge(pd.read_csv(boxes_path, keep_default_na=False), on="image_path")
    table = mmad_question_table(mmad.parse_questions(root), images)
    table["drop_reason"] = "" if split_path is None else split_drop_reasons(
        table, pd.read_csv(split_path, keep_default_na=False), layouts or {})
    log.info("MMAD questions: %s", table.groupby("type").size().to_dict())
    if split_path is not None:
        log.info("MMAD questions not asked under %s, per source and reason: %s", split_path,
                 table[table["drop_reason"] != ""].groupby(["dataset", "drop_reason"]).size().to_dict())
    write_csv_atomic(table, out)


def register(subparsers) -> None:
    questions = subparsers.add_parser(
        "mmad-questions", help="MMAD's question table, joined to its images",
        description="One row per MMAD question (image, options, answer, type, templates) with its image's boxes; "
                    "with --split, only questions about images that the split's runs were not trained on.")
    questions.add_argument("--root", required=True, type=Path, help="the extracted MMAD folder")
    questions.add_argument("--manifest", required=True, type=Path, help="the MMAD manifest")
    questions.add_argument("--boxes", required=True, type=Path, help="the MMAD images' boxes")
    questions.add_argument("--split", type=Path, default=None,
                           help="leakage filter: ask only about the source images in this split's test role")
    questions.add_argument("--layouts", type=json.loads, default=None,
                           help="JSON {dataset: layout} of the split's datasets (with --split)")
    questions.add_argument("--out", required=True, type=Path, help="the question table (CSV)")
    questions.set_defaults(func=lambda a: run_mmad_questions(a.root, a.manifest, a.boxes, a.out, a.split, a.layouts))

    parser = subparsers.add_parser(
        "split", help="train/test split of a protocol, with normal references",
        description="The train/test split of one protocol (multi-domain or cross-dataset) over its datasets' "
                    "manifests: each image with its role, its boxes, and the normal reference image it is shown "
                    "with. The same seed gives the same split.")
    parser.add_argument("--manifests", required=True, nargs="+", type=Path,
                        help="the protocol's datasets' manifests (`adfm index`)")
    parser.add_argument("--boxes", required=True, nargs="+", type=Path, help="their boxes (`adfm boxes`)")
    parser.add_argument("--protocol", required=True, help="the protocol's config entry, as JSON")
    parser.add_argument("--seed", required=True, type=int, help="random seed of the split and the references")
    parser.add_argument("--out", required=True, type=Path, help="the split (CSV)")
    parser.set_defaults(func=lambda a: run_split(a.manifests, a.boxes, json.loads(a.protocol), a.seed, a.out))

"""Prediction records and their resumable writer, shared by every backend (adfm predict, predict-api,
predict-clip, predict-mmad).

Records are appended and flushed batch by batch to OUT.partial; a restarted job skips the keys
already there (`PredictionWriter.pending`), and OUT.partial is renamed to OUT when every item is
done. A record's key is (model, dataset, image_path, sample), plus question_index for MMAD.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from adfm.data import split_table
from adfm.io import InputError, read_jsonl, stable_seed, write_jsonl
from adfm.protocol import parse_response

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


def key(model: str, dataset: str, image_path: str, sample: int = 0, question_index: int | None = None) -> tuple:
    """Identity of a prediction: (model, dataset, image, sample[, question])."""
    found = (model, dataset, str(image_path), int(sample))
    return found if question_index is None else (*found, int(question_index))


def record_key(record: dict) -> tuple:
    """The key of a written record."""
    return key(
        record["model"], record["dataset"], record["image_path"], record.get("sample", 0), record.get("question_index")
    )


def load_done(partial: Path) -> list[dict]:
    """Records already in the partial file; rewritten without a torn last line so appends stay valid."""
    if not partial.is_file():
        return []
    records = read_jsonl(partial)
    write_jsonl(partial, records)
    return records


class PredictionWriter:
    """Append-only, resumable JSONL of prediction records, shared by every backend.

    Records go to OUT.partial, flushed and fsynced at every `write`; `done` holds the keys already
    there (after a restart); `finish` renames OUT.partial to OUT. Records are written in the order
    given, so a batch is never half-recorded except for a torn last line, which `load_done` drops.
    With `keep_partial`, `finish` writes OUT as a copy and leaves OUT.partial (see `each_dataset`).
    """

    def __init__(self, out: str | os.PathLike, keep_partial: bool = False):
        self.out = Path(out)
        self.partial = partial_of(self.out)
        self.keep_partial = keep_partial
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.done = {record_key(r) for r in load_done(self.partial)}
        self._handle = None

    def pending(self, items: Iterable, keys_of: Callable[[object], Iterable[tuple]]) -> list:
        """The items with at least one of their keys (`keys_of(item)`: see `key`) not yet written."""
        return [item for item in items if any(k not in self.done for k in keys_of(item))]

    def __enter__(self) -> PredictionWriter:
        self._handle = open(self.partial, "a")
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def write(self, records: Iterable[dict]) -> None:
        """Append the records not yet written (a sampled batch may repeat a resumed image's samples)."""
        for record in records:
            if record_key(record) in self.done:
                continue
            self._handle.write(json.dumps(record) + "\n")
            self.done.add(record_key(record))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def finish(self) -> Path:
        if self._handle is not None:
            self.__exit__()
        if not self.partial.exists():  # nothing to do and nothing written: an empty, complete output
            self.partial.touch()
        if self.keep_partial:
            copy = self.out.with_name(self.out.name + ".copy")
            shutil.copyfile(self.partial, copy)
            os.replace(copy, self.out)
        else:
            os.replace(self.partial, self.out)
        log.info("predictions written to %s", self.out)
        return self.out


def partial_of(out: str | os.PathLike) -> Path:
    """Where the records of OUT are appended until it is complete."""
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def paired(parser, datasets: Sequence[str], outs: Sequence[str]) -> list[tuple[str, str]]:
    """(dataset, out) pairs of a prediction command's `--dataset D1 D2 ... --out F1 F2 ...`."""
    if len(datasets) != len(outs):
        parser.error(
            f"--dataset names {len(datasets)} dataset(s) and --out {len(outs)} file(s): give one output per "
            "dataset, in the same order"
        )
    if len(set(outs)) != len(outs):
        parser.error(f"--out names a file twice: {' '.join(map(str, outs))}")
    return list(zip(datasets, outs, strict=True))


def each_dataset(pairs: Sequence[tuple[str, str]], predict_one: Callable[..., Path]) -> list[Path]:
    """`predict_one(dataset, out, keep_partial)` for each (dataset, out) pair, in order, with the model
    loaded once by the caller. With several files, each finished file's records stay in its
    OUT.partial until the last is done: Snakemake deletes every output of a job that failed or was
    killed, and the rerun then copies a finished file back at once instead of predicting it again."""
    several = len(pairs) > 1
    written = [predict_one(dataset, out, several) for dataset, out in pairs]
    for out in written:
        partial_of(out).unlink(missing_ok=True)
    return written


def select_rows(
    split_csv,
    dataset: str,
    role: str = "test",
    *,
    label: int | None = None,
    image: str | None = None,
    max_images: int | None = None,
    seed: int = 0,
):
    """The split rows a prediction job covers: `role` ("all": every row of the dataset in the split,
    which under the holdout protocol is the dataset's whole test split, the paper's rows for its
    untrained models), only `label`, only `image`, a uniform subsample of `max_images` seeded by `seed`."""
    rows = split_table.read(split_csv, None if role == "all" else role, dataset)
    if rows.empty:
        raise InputError(f"{split_csv}: no {role} rows for dataset {dataset!r}")
    if label is not None:
        rows = rows[rows["label"] == int(label)].reset_index(drop=True)
    if image:
        rows = rows[rows["image_path"] == str(image)].reset_index(drop=True)
        if rows.empty:
            raise InputError(f"{split_csv}: image {image!r} is not a {role} row of {dataset!r}")
    if max_images is not None and len(rows) > int(max_images):
        rng = np.random.default_rng(stable_seed(seed, dataset, role, "subsample") % 2**32)
        keep = np.sort(rng.choice(len(rows), size=int(max_images), replace=False))
        rows = rows.iloc[keep].reset_index(drop=True)
    if rows.empty:
        raise InputError(f"{split_csv}: no {role} rows of {dataset!r} with label {label}")
    return rows


def base_record(row, run_name: str, dataset: str, sample: int) -> dict:
    return {
        "model": run_name,
        "dataset": dataset,
        "category": str(row.category),
        "image_path": str(row.image_path),
        "reference_path": str(row.reference_path),
        "label": int(row.label),
        "sample": int(sample),
    }


def pair_prompt(row, template: str) -> list[tuple[str, str]]:
    """The prompt of training for a split row: the normal reference, the query, then the template."""
    return [("image", str(row.reference_path)), ("image", str(row.image_path)), ("text", template)]


def response_record(
    row,
    run_name: str,
    dataset: str,
    sample: int,
    response: str,
    reasoning: str,
    frame_of_row,
    answer_format: str = "yes_no",
) -> dict:
    """A record of one response: parsed answer and boxes, ground truth in the same frame."""
    gt_boxes, frame = frame_of_row(row)
    parsed = parse_response(response, reasoning, answer_format)
    return {
        **base_record(row, run_name, dataset, sample),
        "response": response,
        "answer": parsed.answer,
        "boxes": parsed.boxes,
        "frame": [int(frame[0]), int(frame[1])],
        "gt_boxes": gt_boxes,
    }

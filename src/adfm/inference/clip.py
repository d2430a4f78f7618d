"""CLIP-based anomaly scorers of Table 2: WinCLIP and AnomalyCLIP, on OpenCLIP (open_clip).

    adfm predict-clip --split SPLIT.csv --dataset NAME [NAME ...] --run-name NAME --settings JSON
                      --out PRED.jsonl [PRED.jsonl ...]

Both give every test image of the split a continuous anomaly score in [0, 1] (one JSON line per
image: model, dataset, category, image_path, reference_path, label, sample 0, score and its parts);
`adfm score` turns the scores into accuracy at tau = 0.5 and at the threshold maximising Youden's J.

WinCLIP: adfm.inference.winclip; AnomalyCLIP: adfm.inference.anomalyclip (each with its method and
where it follows its reference code); the OpenCLIP plumbing they share: adfm.inference.clip_model.

Weights: `clip.model` names an open_clip architecture and `clip.pretrained` a checkpoint file (or
an open_clip pretrained tag, which open_clip downloads); with `pretrained: null` the model is
randomly initialised from the seed, which is what the demo does with the tiny architecture
`adfm-tiny-clip` (src/adfm/inference/clip_configs/), running this very code in seconds.
"""

from __future__ import annotations

import argparse
import functools
import logging

from tqdm.auto import tqdm

from adfm.inference.anomalyclip import AnomalyCLIP
from adfm.inference.clip_model import load_clip
from adfm.inference.records import PredictionWriter, base_record, each_dataset, key, paired, select_rows
from adfm.inference.winclip import WinCLIP, object_name
from adfm.settings.inference import ClipSettings

log = logging.getLogger(__name__)


def build_scorer(settings: ClipSettings):
    model, tokenizer = load_clip(settings.clip.model, settings.clip.pretrained, seed=settings.seed)
    if settings.method == "winclip":
        return WinCLIP(model, tokenizer, settings.winclip)
    return AnomalyCLIP(model, tokenizer, settings.anomalyclip, seed=settings.seed)


def predict_clip(split_csv, dataset: str, run_name: str, settings: ClipSettings, out, *, load=None, keep_partial=False):
    """Scores of every selected split row (test rows of `dataset` by default), resumable; `load()`
    gives the scorer (shared among datasets by `predict_clip_datasets`)."""
    method = settings.method
    rows = select_rows(split_csv, dataset, settings.role)
    writer = PredictionWriter(out, keep_partial)
    todo = writer.pending(rows.itertuples(index=False), lambda row: [key(run_name, dataset, row.image_path)])
    log.info("%s (%s) on %s: %d images, %d to go", run_name, method, dataset, len(rows), len(todo))
    if not todo:
        return writer.finish()
    scorer = (load or (lambda: build_scorer(settings)))()
    with writer, tqdm(total=len(todo), desc=f"{method} on {dataset}", unit="img") as bar:
        for start in range(0, len(todo), settings.batch_size):
            batch = todo[start : start + settings.batch_size]
            results = scorer.score(
                [str(r.image_path) for r in batch],
                [str(r.reference_path) for r in batch],
                [object_name(str(r.category)) for r in batch],
            )
            writer.write(
                [
                    {**base_record(row, run_name, dataset, 0), "method": method, **result}
                    for row, result in zip(batch, results, strict=False)
                ]
            )
            bar.update(len(batch))
    return writer.finish()


def predict_clip_datasets(args, pairs: list[tuple[str, str]]):
    """`adfm predict-clip`: every (dataset, out) pair with the scorer built once."""
    load = functools.cache(lambda: build_scorer(args.settings))
    return each_dataset(
        pairs,
        lambda dataset, out, keep: predict_clip(
            args.split, dataset, args.run_name, args.settings, out, load=load, keep_partial=keep
        ),
    )


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict-clip",
        help="WinCLIP / AnomalyCLIP anomaly scores of a split's test images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--split", required=True, help="split CSV")
    parser.add_argument("--dataset", required=True, nargs="+", help="dataset names (the test rows of each are scored)")
    parser.add_argument("--run-name", required=True, help="name written in each record's `model` field")
    parser.add_argument("--settings", required=True, type=ClipSettings.argument, help=ClipSettings.describe())
    parser.add_argument(
        "--out", required=True, nargs="+", help="predictions JSONL, one per --dataset in the same order"
    )
    parser.set_defaults(func=lambda a: predict_clip_datasets(a, paired(parser, a.dataset, a.out)))

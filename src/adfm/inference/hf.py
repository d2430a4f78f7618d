"""Predictions of a Hugging Face vision-language model (base, or with a LoRA adapter) on a split.

    adfm predict --split SPLIT.csv --dataset NAME [NAME ...] --model MODEL_DIR [--adapter ADAPTER_DIR]
                 --run-name NAME --settings JSON --out PRED.jsonl [PRED.jsonl ...]

The model (and adapter) is loaded once for all the datasets, each written to its own --out (same
order). For every selected row of the split (by default role == "test" and dataset == NAME), the model sees
the normal reference image, the query image and the prompt template (the prompt of training).
Prompts are batched with left padding. Evaluation decodes greedily (one response per image, sample
0); with "num_samples" n > 1 or a "temperature" the model samples n responses per image (samples
0..n-1) at that temperature, the material of Figures 4 and 5. One JSON line per (image, sample):

    model, dataset, category, image_path, reference_path, label, sample, response (raw text),
    answer ("yes" / "no" / null, from adfm.protocol.parse_response), boxes (parsed from <think>, in
    the frame the model's family writes boxes in: adfm.model.families), frame [W, H] (that frame),
    gt_boxes (ground truth in the same frame)

Resumable (adfm.inference.records.PredictionWriter, the writer of every backend): a restarted job
skips the (model, dataset, image_path, sample) keys already written.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
from pathlib import Path

from tqdm.auto import tqdm

from adfm.inference.generate import HFBackend, greedy_config, load_backend, sampling_config
from adfm.inference.records import (
    PARTIAL_SUFFIX,
    PredictionWriter,
    each_dataset,
    key,
    pair_prompt,
    paired,
    response_record,
    select_rows,
)
from adfm.io import stable_seed
from adfm.model.families import boxes_in_response_frame
from adfm.settings.inference import PredictSettings
from adfm.settings.model import ModelSettings

log = logging.getLogger(__name__)


def generation_of(settings: PredictSettings):
    """The generation config of the settings: plain greedy, or sampling as GRPO samples."""

    def generation(model):
        if settings.sampling:
            return sampling_config(
                model,
                max_new_tokens=settings.max_new_tokens,
                temperature=settings.temperature or 1.0,
                repetition_penalty=settings.repetition_penalty,
                top_k=settings.top_k,
                top_p=settings.top_p,
            )
        return greedy_config(
            model, max_new_tokens=settings.max_new_tokens, repetition_penalty=settings.repetition_penalty
        )

    return generation


def hf_backend(model_dir, settings: PredictSettings, run_name: str, adapter_dir=None) -> HFBackend:
    """The model (with its adapter), decoding as the settings say."""
    return load_backend(
        model_dir,
        settings.model,
        adapter_dir=adapter_dir,
        generation=generation_of(settings),
        batch_size=settings.batch_size,
        num_return_sequences=settings.num_samples,
        # seeded by the batch's first image: a rerun of the same batch samples the same
        seed_of=(lambda row: stable_seed(settings.seed, run_name, row.image_path) % 2**32)
        if settings.sampling
        else None,
    )


def model_frame_of(model: ModelSettings):
    """row -> (its ground-truth boxes in the frame the model's responses use, that frame)."""
    return lambda row: boxes_in_response_frame(model, row.boxes, int(row.width), int(row.height))


def predict(
    split_csv: str | os.PathLike,
    dataset: str,
    model_dir: str | os.PathLike,
    run_name: str,
    settings: PredictSettings,
    out: str | os.PathLike,
    *,
    adapter_dir: str | os.PathLike | None = None,
    load=None,
    keep_partial: bool = False,
) -> Path:
    """One dataset's predictions; `load()` (shared by `predict_datasets`) gives the backend when needed."""
    filters = {"label": settings.label, "image": settings.image, "max_images": settings.max_images}
    rows = select_rows(split_csv, dataset, settings.role, **filters, seed=settings.seed)
    writer = PredictionWriter(out, keep_partial)
    samples = range(settings.num_samples)
    todo = writer.pending(
        rows.itertuples(index=False), lambda row: [key(run_name, dataset, row.image_path, s) for s in samples]
    )
    log.info(
        "%s on %s: %d images x %d sample(s), %d images already predicted, %d to go",
        run_name,
        dataset,
        len(rows),
        settings.num_samples,
        len(rows) - len(todo),
        len(todo),
    )
    if not todo:
        return writer.finish()
    backend = (load or (lambda: hf_backend(model_dir, settings, run_name, adapter_dir)))()
    frame_of_row = model_frame_of(settings.model)

    def record(answers):
        writer.write(
            [
                response_record(
                    row, run_name, dataset, sample, response, settings.reasoning, frame_of_row, settings.answer_format
                )
                for row, responses in answers
                for sample, response in enumerate(responses)
            ]
        )
        bar.update(len(answers))

    with writer, tqdm(total=len(todo), desc=f"predict {run_name} on {dataset}", unit="img") as bar:
        backend.answer(todo, lambda row: pair_prompt(row, settings.prompt), record)
    return writer.finish()


def predict_datasets(args, pairs: list[tuple[str, str]]) -> list[Path]:
    """`adfm predict`: every (dataset, out) pair with the model loaded once."""
    load = functools.cache(lambda: hf_backend(args.model, args.settings, args.run_name, args.adapter))
    return each_dataset(
        pairs,
        lambda dataset, out, keep: predict(
            args.split, dataset, args.model, args.run_name, args.settings, out, load=load, keep_partial=keep
        ),
    )


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="greedy (or sampled) responses of a Hugging Face VLM (optionally with a LoRA adapter) on a split",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--split", required=True, help="split CSV")
    parser.add_argument(
        "--dataset", required=True, nargs="+", help="dataset names (test rows of each are predicted, into its --out)"
    )
    parser.add_argument("--model", required=True, help="base model folder")
    parser.add_argument(
        "--adapter", default=None, help="LoRA adapter folder (from `adfm train`); omit for the base model"
    )
    parser.add_argument("--run-name", required=True, help="name written in each record's `model` field")
    parser.add_argument("--settings", required=True, type=PredictSettings.argument, help=PredictSettings.describe())
    parser.add_argument(
        "--out",
        required=True,
        nargs="+",
        help=f"predictions JSONL, one per --dataset in the same order (work in progress in OUT{PARTIAL_SUFFIX})",
    )
    parser.set_defaults(func=lambda a: predict_datasets(a, paired(parser, a.dataset, a.out)))

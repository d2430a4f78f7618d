"""MMAD multiple-choice evaluation (Table 3), following MMAD's own evaluation scripts.

    adfm predict-mmad --questions QUESTIONS.csv --run-name NAME --settings JSON --out PRED.jsonl
                      [--model MODEL_DIR [--adapter ADAPTER_DIR]]      (Hugging Face backend)

QUESTIONS.csv is the question table of `adfm mmad-questions` (one row per question: image_path,
dataset (MMAD's source dataset), category, question, options (JSON), answer, type, reference_path
(the template, MMAD's random_templates[0]), templates (random_templates, JSON), source_image,
drop_reason, label).

Leakage filter: a model trained on a split's training images must not be asked about them. The
question table names each question's source image (adfm.data.datasets.mmad.source_image) and, when
`mmad.split_filter` names a protocol, `adfm mmad-questions` (adfm.data.mmad_questions) marks the
questions about images that are not in that split's test role: `training` (a training image of the
split) or `not_in_split` (a source image the split does not hold). A model held to the filter
(settings "filter", true for the runs: see adfm.targets.mmad_filtered) is asked only the unmarked
questions; the log and the metrics (`dropped_training`, `dropped_not_in_split`) say how many were
left out.

Backends: the Hugging Face model (--model), or the chat API when the settings carry `api`; both
behind the same seam (adfm.inference.backend).

Prompt and answer parsing (`instruction`, `parse`): adfm.inference.mmad_prompt.

Decoding: `generation` "model" is MMAD's (generate() with the model's own generation config: for
Qwen2.5-VL top_k 1, repetition penalty 1.05), "greedy" plain greedy decoding; `max_new_tokens`
(MMAD: 128). The image budget of a pixels family (Qwen2.5-VL) is `model.min_pixels` /
`model.max_pixels` (MMAD: 64*28*28 and 1280*28*28); other families keep their own (adfm.model.families).

Scores: adfm.evaluation.mmad_score (`adfm score-mmad`).

Records (one per question, adfm.inference.records.PredictionWriter, keyed by model, dataset "mmad", image,
sample 0 and question_index): model, dataset, source, category, image_path, template_path, label,
sample, question_index, question, options, correct_answer, type, response, answer, answer_from.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from adfm.data import mmad_question_table
from adfm.inference.api import ApiBackend
from adfm.inference.backend import Backend
from adfm.inference.generate import greedy_config, load_backend, model_config
from adfm.inference.mmad_prompt import parse_reply, prompt_parts
from adfm.inference.records import PredictionWriter, key
from adfm.io import InputError
from adfm.settings.inference import MmadSettings

log = logging.getLogger(__name__)

DATASET = "mmad"


def question_rows(questions_csv: Path, settings: MmadSettings) -> pd.DataFrame:
    """MMAD's questions (the `adfm mmad-questions` table), numbered within each image in file order,
    less those the leakage filter marks (unless settings "filter" is false)."""
    path = Path(questions_csv)
    questions = mmad_question_table.read(path)
    questions["question_index"] = questions.groupby("image_path", sort=False).cumcount()
    dropped = (questions["drop_reason"] != "") & settings.filter
    if dropped.any():
        counts = questions[dropped].groupby(["dataset", "drop_reason"]).size().to_dict()
        log.info(
            "MMAD: %d of %d questions not asked (their source image is not a test image of the split): %s",
            int(dropped.sum()),
            len(questions),
            counts,
        )
    questions = questions[~dropped].reset_index(drop=True)
    if questions.empty:
        raise InputError(f"{path}: every MMAD question is about an image outside the split's test role")
    if settings.sources:
        questions = questions[questions["dataset"].isin(settings.sources)].reset_index(drop=True)
    if settings.max_images:
        keep = list(dict.fromkeys(questions["image_path"]))[: settings.max_images]
        questions = questions[questions["image_path"].isin(keep)].reset_index(drop=True)
    return questions


def _templates(row, count: int) -> list[str]:
    """MMAD's random_templates[:count], each of which must exist."""
    templates = json.loads(row.templates)[:count]
    if len(templates) < count:
        raise InputError(
            f"{row.image_path}: mmad.templates is {count} but MMAD lists {len(templates)} "
            "random templates for this image"
        )
    missing = [t for t in templates if not Path(t).is_file()]
    if missing:
        raise InputError(f"{missing[0]}: template of {row.image_path} (random_templates[:{count}]) not found")
    return templates


def generation_config(model, settings: MmadSettings):
    """MMAD's decoding ("model": generate() with the model's own generation config) or plain greedy."""
    if settings.generation == "greedy":
        return greedy_config(model, max_new_tokens=settings.max_new_tokens, repetition_penalty=1.0)
    return model_config(model, max_new_tokens=settings.max_new_tokens)


def mmad_record(row, run_name: str, response: str, parse: str) -> dict:
    """The record of one answered question."""
    options = json.loads(row.options)
    answer, answer_from = parse_reply(response, options, parse)
    return {
        "model": run_name,
        "dataset": DATASET,
        "source": row.dataset,
        "category": row.category,
        "image_path": row.image_path,
        "template_path": row.reference_path,
        "label": int(row.label),
        "sample": 0,
        "question_index": int(row.question_index),
        "question": row.question,
        "options": options,
        "correct_answer": row.answer,
        "type": row.type,
        "response": response,
        "answer": answer,
        "answer_from": answer_from,
    }


def mmad_backend(settings: MmadSettings, model_dir, adapter_dir) -> Backend:
    """The chat API when the settings name one, else the Hugging Face model of `model_dir`."""
    if settings.api is not None:
        # MMAD's API script: greedy (temperature 0), its own response budget
        return ApiBackend(settings.api, max_tokens=settings.max_new_tokens, temperature=0.0)
    if model_dir is None:
        raise InputError("predict-mmad: --model is required without an API configuration")
    return load_backend(
        model_dir,
        settings.model,
        adapter_dir=adapter_dir,
        batch_size=settings.batch_size,
        generation=lambda model: generation_config(model, settings),
        add_vision_id=True,
    )


def predict_mmad(questions_csv, run_name: str, settings: MmadSettings, out, *, model_dir=None, adapter_dir=None):
    """Answers to every MMAD question, with the Hugging Face model or the API backend (settings `api`)."""
    questions = question_rows(questions_csv, settings)
    writer = PredictionWriter(out)
    todo = writer.pending(
        questions.itertuples(index=False),
        lambda row: [key(run_name, DATASET, row.image_path, question_index=row.question_index)],
    )
    log.info("%s on MMAD: %d questions, %d to go", run_name, len(questions), len(todo))
    templates = {row.image_path: _templates(row, settings.templates) for row in todo}
    reasoning = settings.reasoning_instruction if settings.instruction == "reasoning" else None
    if not todo:
        return writer.finish()
    backend = mmad_backend(settings, model_dir, adapter_dir)

    def parts(row):
        return prompt_parts(row.image_path, templates[row.image_path], row.question, json.loads(row.options), reasoning)

    def record(answers):
        writer.write([mmad_record(row, run_name, texts[0], settings.parse) for row, texts in answers])
        bar.update(len(answers))

    with writer, tqdm(total=len(todo), desc=f"MMAD {run_name}", unit="question") as bar:
        backend.answer(todo, parts, record)
    return writer.finish()


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict-mmad",
        help="answers to MMAD's multiple-choice questions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--questions", required=True, help="MMAD question table (`adfm mmad-questions`)")
    parser.add_argument("--model", default=None, help="model folder (Hugging Face backend)")
    parser.add_argument("--adapter", default=None, help="LoRA adapter folder")
    parser.add_argument("--run-name", required=True, help="name written in each record's `model` field")
    parser.add_argument("--settings", required=True, type=MmadSettings.argument, help=MmadSettings.describe())
    parser.add_argument("--out", required=True, help="predictions JSONL")
    parser.set_defaults(
        func=lambda a: predict_mmad(
            a.questions, a.run_name, a.settings, a.out, model_dir=a.model, adapter_dir=a.adapter
        )
    )

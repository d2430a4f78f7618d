"""MMAD multiple-choice evaluation (Table 3), following MMAD's own evaluation scripts.

    adfm predict-mmad --questions QUESTIONS.csv --run-name NAME --settings JSON --out PRED.jsonl
                      [--model MODEL_DIR [--adapter ADAPTER_DIR]]      (Hugging Face backend)

QUESTIONS.csv is the question table of `adfm mmad-questions` (one row per question: image_path,
dataset (MMAD's source dataset), category, question, options (JSON), answer, type, reference_path
(the template, MMAD's random_templates[0]), label).
    adfm score-mmad --predictions PRED.jsonl --out METRICS.csv

Prompt (MMAD's one-template setting, as its Qwen2.5-VL script builds it): MMAD's instruction (the
model is an industrial inspector who answers with the option's letter), "Answer with the option's
letter from the given choices directly!", "Following is/are 1 image of normal sample, which can be
used as a template to compare the image being queried.", the template image (random_templates[0]),
"Following is the query image: ", the query image, "Following is the question list: ", then the
question and its options ("Question: ...", "A. ...", "B. ..."). Each question is asked on its own,
greedily, with at most 128 new tokens; images are given "Picture n:" ids (add_vision_id).

Answer parsing (MMAD's parse_answer): the last standalone capital A-E in the reply; if there is
none, the option whose text is closest to the reply (difflib, cutoff 0, so any reply, the empty
one included, maps to some option). A record that still has no letter (a question without
options) is left out of the scores, as MMAD's summary does (`unparsed` counts it).

Scores (MMAD's caculate_accuracy_mmad): accuracy per source dataset (DS-MVTec, MVTec-LOCO, VisA,
GoodsAD) and question type, Object Structure and Object Details merged into Object Analysis;
Anomaly Detection as balanced accuracy ((accuracy on normal + accuracy on anomalous images) / 2,
an image being normal when its path contains "good"); the dataset "all" rows are the mean over
the source datasets (MMAD's "Average" row), and the type "Average" is the mean over the types.

Records (one per question, adfm.predict.PredictionWriter, keyed by model, dataset "mmad", image,
sample 0 and question_index): model, dataset, source, category, image_path, template_path, label,
sample, question_index, question, options, correct_answer, type, response, answer.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from difflib import get_close_matches
from pathlib import Path

import pandas as pd

from adfm.io import InputError, read_jsonl, settings_json, write_csv_atomic

log = logging.getLogger(__name__)

DATASET = "mmad"
INSTRUCTION = (
    "\nYou are an industrial inspector who checks products by images. You should judge whether there is a defect "
    "in the query image and answer the questions about it.\nAnswer with the option's letter from the given choices "
    "directly.\n"
)
LETTER_PROMPT = "Answer with the option's letter from the given choices directly! "
MERGED_TYPES = {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}
TYPES = ("Anomaly Detection", "Defect Classification", "Defect Localization", "Defect Description",
         "Defect Analysis", "Object Classification", "Object Analysis")
AVERAGE = "Average"
_LETTER = re.compile(r"\b([A-E])\b")


def question_text(question: str, options: dict) -> str:
    return f"Question: {question} \n" + "".join(f"{key}. {value}\n" for key, value in options.items())


def prompt_parts(query: str, templates: list[str], question: str, options: dict) -> list[tuple[str, str]]:
    """MMAD's prompt as (kind, value) parts, templates before the query."""
    parts = [("text", INSTRUCTION), ("text", LETTER_PROMPT)]
    if templates:
        parts.append(("text", f"Following is/are {len(templates)} image of normal sample, which can be used as a "
                              "template to compare the image being queried."))
        parts.extend(("image", t) for t in templates)
    parts += [("text", "Following is the query image: "), ("image", query), ("text", "Following is the question list: "),
              ("text", question_text(question, options))]
    return parts


def parse_choice(response: str, options: dict) -> str | None:
    """MMAD's answer parsing: last standalone A-E, else the closest option text (cutoff 0)."""
    if not isinstance(response, str):
        return None
    letters = _LETTER.findall(response)
    if letters:
        return letters[-1]
    if not options:
        return None
    closest = get_close_matches(response, list(options.values()), n=1, cutoff=0.0)
    if closest:
        return next(key for key, value in options.items() if value == closest[0])
    return None


def question_rows(questions_csv: Path, settings: dict) -> pd.DataFrame:
    """MMAD's questions (the `adfm mmad-questions` table), numbered within each image in file order."""
    path = Path(questions_csv)
    try:
        questions = pd.read_csv(path, keep_default_na=False, dtype=str)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: cannot read MMAD questions ({error})") from None
    needed = {"image_path", "dataset", "category", "question", "options", "answer", "type", "reference_path", "label"}
    missing = sorted(needed - set(questions.columns))
    if missing:
        raise InputError(f"{path}: MMAD question table lacks columns {missing}")
    if questions.empty:
        raise InputError(f"{path}: no MMAD questions")
    questions["label"] = questions["label"].astype(int)
    questions["question_index"] = questions.groupby("image_path", sort=False).cumcount()
    sources = settings.get("sources")
    if sources:
        questions = questions[questions["dataset"].isin(sources)].reset_index(drop=True)
    limit = settings.get("max_images")
    if limit:
        keep = list(dict.fromkeys(questions["image_path"]))[: int(limit)]
        questions = questions[questions["image_path"].isin(keep)].reset_index(drop=True)
    return questions


def _templates(row, count: int) -> list[str]:
    return [row.reference_path] if count and row.reference_path else []


def predict_mmad(questions_csv, run_name: str, settings: dict, out, *, model_dir=None, adapter_dir=None):
    """Answers to every MMAD question, with the Hugging Face model or the API backend (settings "api")."""
    from tqdm.auto import tqdm

    from adfm.predict import PredictionWriter

    questions = question_rows(questions_csv, settings)
    writer = PredictionWriter(out)
    todo = [row for row in questions.itertuples(index=False)
            if (run_name, DATASET, row.image_path, 0, int(row.question_index)) not in writer.done]
    log.info("%s on MMAD: %d questions, %d to go", run_name, len(questions), len(todo))
    count = int(settings.get("templates", 1))

    def record(row, response: str) -> dict:
        options = json.loads(row.options)
        return {
            "model": run_name, "dataset": DATASET, "source": row.dataset, "category": row.category,
            "image_path": row.image_path, "template_path": row.reference_path, "label": int(row.label), "sample": 0,
            "question_index": int(row.question_index), "question": row.question, "options": options,
            "correct_answer": row.answer, "type": row.type, "response": response,
            "answer": parse_choice(response, options),
        }

    def parts(row):
        return prompt_parts(row.image_path, _templates(row, count), row.question, json.loads(row.options))

    if todo and "api" in settings:
        from adfm.api_backend import DEFAULTS, client_from_settings, openai_content, run_requests

        api = {**DEFAULTS, **settings["api"]}
        client = client_from_settings(api)
        with writer:
            run_requests(client, todo, lambda row: openai_content(parts(row), int(api["max_image_side"])),
                         lambda row, texts: writer.write([record(row, texts[0])]), concurrency=api["concurrency"],
                         max_tokens=int(settings.get("max_new_tokens", 128)), temperature=0.0)
    elif todo:
        from adfm.models import load_model_and_processor
        from adfm.predict import generate_conversations, greedy_config

        if model_dir is None:
            raise InputError("predict-mmad: --model is required without an API configuration")
        model_settings = settings.get("model", {})
        model, processor = load_model_and_processor(
            model_dir, dtype=model_settings.get("dtype", "auto"), min_pixels=int(model_settings["min_pixels"]),
            max_pixels=int(model_settings["max_pixels"]), adapter_dir=adapter_dir)
        config = greedy_config(model, max_new_tokens=int(settings.get("max_new_tokens", 128)), repetition_penalty=1.0)
        batch_size = int(settings.get("batch_size", 8))
        with writer, tqdm(total=len(todo), desc=f"MMAD {run_name}", unit="question") as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                responses = generate_conversations(model, processor, [parts(row) for row in batch], config,
                                                   add_vision_id=True)
                writer.write([record(row, texts[0]) for row, texts in zip(batch, responses)])
                bar.update(len(batch))
    return writer.finish()


def mmad_table(records: list[dict]) -> pd.DataFrame:
    """Accuracy (%) per model, source dataset (and "all") and question type (and "Average")."""
    if not records:
        raise InputError("no MMAD prediction records to score")
    frame = pd.DataFrame.from_records(records)
    frame["type"] = frame["type"].replace(MERGED_TYPES)
    frame["parsed"] = frame["answer"].isin(list("ABCDE"))
    frame["correct"] = frame["parsed"] & (frame["answer"] == frame["correct_answer"])
    frame["normal"] = frame["label"].astype(int) == 0  # MMAD: "good" in the image path (parse_questions' label)
    rows = []
    for (model, source), group in frame.groupby(["model", "source"], sort=True):
        for kind, questions in group.groupby("type", sort=False):
            scored = questions[questions["parsed"]]
            n, correct = len(scored), int(scored["correct"].sum())
            accuracy = 100.0 * correct / n if n else 0.0
            if kind == "Anomaly Detection":
                normal, anomalous = scored[scored["normal"]], scored[~scored["normal"]]
                normal_acc = normal["correct"].mean() if len(normal) else 0.0
                anomalous_acc = anomalous["correct"].mean() if len(anomalous) else 0.0
                accuracy = 100.0 * (normal_acc + anomalous_acc) / 2
            rows.append({"model": model, "dataset": source, "category": kind, "n": n, "correct": correct,
                         "unparsed": int((~questions["parsed"]).sum()), "accuracy": accuracy})
    table = pd.DataFrame(rows)
    averages = table.groupby(["model", "category"], as_index=False, sort=False).agg(
        n=("n", "sum"), correct=("correct", "sum"), unparsed=("unparsed", "sum"), accuracy=("accuracy", "mean"))
    table = pd.concat([table, averages.assign(dataset="all")], ignore_index=True)
    per_row = table.groupby(["model", "dataset"], as_index=False, sort=False).agg(
        n=("n", "sum"), correct=("correct", "sum"), unparsed=("unparsed", "sum"), accuracy=("accuracy", "mean"))
    table = pd.concat([table, per_row.assign(category=AVERAGE)], ignore_index=True)
    order = {t: i for i, t in enumerate([*TYPES, AVERAGE])}
    table = table.sort_values(["model", "dataset", "category"], key=lambda c: c.map(order).fillna(99)
                              if c.name == "category" else c, kind="stable")
    table["accuracy"] = table["accuracy"].round(2)
    return table[["model", "dataset", "category", "n", "correct", "unparsed", "accuracy"]].reset_index(drop=True)


def run_score(predictions: list[Path], out: Path) -> None:
    records = [r for path in predictions for r in read_jsonl(path)]
    table = mmad_table(records)
    write_csv_atomic(table, out)


def _predict_main(args: argparse.Namespace) -> None:
    predict_mmad(args.questions, args.run_name, args.settings, args.out, model_dir=args.model,
                 adapter_dir=args.adapter)


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict-mmad", help="answers to MMAD's multiple-choice questions",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", required=True, help="MMAD question table (`adfm mmad-questions`)")
    parser.add_argument("--model", default=None, help="model folder (Hugging Face backend)")
    parser.add_argument("--adapter", default=None, help="LoRA adapter folder")
    parser.add_argument("--run-name", required=True, help="name written in each record's `model` field")
    parser.add_argument("--settings", required=True, type=settings_json,
                        help='JSON: {"model": {dtype, min_pixels, max_pixels}, "batch_size", "max_new_tokens" (128), '
                        '"templates" (1), optional "api", "sources", "max_images"}')
    parser.add_argument("--out", required=True, help="predictions JSONL")
    parser.set_defaults(func=_predict_main)

    scorer = subparsers.add_parser("score-mmad", help="MMAD accuracy per source dataset and question type")
    scorer.add_argument("--predictions", required=True, nargs="+", type=Path)
    scorer.add_argument("--out", required=True, type=Path)
    scorer.set_defaults(func=lambda a: run_score(a.predictions, a.out))

"""MMAD multiple-choice evaluation (Table 3), following MMAD's own evaluation scripts.

    adfm predict-mmad --questions QUESTIONS.csv --run-name NAME --settings JSON --out PRED.jsonl
                      [--model MODEL_DIR [--adapter ADAPTER_DIR]]      (Hugging Face backend)
    adfm score-mmad --predictions PRED.jsonl [--questions QUESTIONS.csv] --out METRICS.csv

QUESTIONS.csv is the question table of `adfm mmad-questions` (one row per question: image_path,
dataset (MMAD's source dataset), category, question, options (JSON), answer, type, reference_path
(the template, MMAD's random_templates[0]), templates (random_templates, JSON), source_image,
drop_reason, label).

Leakage filter: a model trained on a split's training images must not be asked about them. The
question table names each question's source image (adfm.data.datasets.mmad.source_image) and, when
`mmad.split_filter` names a protocol, marks the questions about images that are not in that split's
test role: `training` (a training image of the split) or `not_in_split` (a source image the split
does not hold). A model held to the filter (settings "filter", true for the runs: see
adfm.config.mmad_filtered) is asked only the unmarked questions; the log and the metrics
(`dropped_training`, `dropped_not_in_split`) say how many were left out.

Prompt (MMAD's one-template setting, as its Qwen2.5-VL script builds it): MMAD's instruction (the
model is an industrial inspector who answers with the option's letter), "Answer with the option's
letter from the given choices directly!", "Following is/are N image of normal sample, which can be
used as a template to compare the image being queried.", the templates (random_templates[:N],
N = `templates`), "Following is the query image: ", the query image, "Following is the question
list: ", then the question and its options ("Question: ...", "A. ...", "B. ..."). Each question is
asked on its own; images are given "Picture n:" ids (add_vision_id). Runs of the `reasoning` kind
(trained runs: they were taught to think before answering) get the inspector sentence and the
reasoning instruction instead of the two letter instructions, the rest unchanged.

Decoding: `generation` "model" is MMAD's (generate() with the model's own generation config: for
Qwen2.5-VL top_k 1, repetition penalty 1.05), "greedy" plain greedy decoding; `max_new_tokens`
(MMAD: 128). The image budget is `model.min_pixels` / `model.max_pixels` (MMAD: 64*28*28 and
1280*28*28).

Answer parsing: `parse` "letter" is MMAD's parse_answer: the last standalone capital A-E in the
reply; if there is none, the option whose text is closest to the reply (difflib, cutoff 0, so any
reply, the empty one included, maps to some option). "answer_tag" reads the letter inside the last
<answer> block first and falls back to MMAD's rule (records say which: `answer_from`). A record that
still has no letter (a question without options) is left out of the scores, as MMAD's summary does
(`unparsed` counts it).

Scores (MMAD's caculate_accuracy_mmad): accuracy per source dataset (DS-MVTec, MVTec-LOCO, VisA,
GoodsAD) and question type, Object Structure and Object Details merged into Object Analysis;
Anomaly Detection as balanced accuracy ((accuracy on normal + accuracy on anomalous images) / 2,
an image being normal when its path contains "good"); the dataset "all" rows are the mean over
the source datasets (MMAD's "Average" row), and the type "Average" is the mean over the types.

Records (one per question, adfm.inference.hf.PredictionWriter, keyed by model, dataset "mmad", image,
sample 0 and question_index): model, dataset, source, category, image_path, template_path, label,
sample, question_index, question, options, correct_answer, type, response, answer, answer_from.
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
from adfm.protocol import answer_text

log = logging.getLogger(__name__)

DATASET = "mmad"
INSPECTOR = ("\nYou are an industrial inspector who checks products by images. You should judge whether there is a "
             "defect in the query image and answer the questions about it.\n")
INSTRUCTION = INSPECTOR + "Answer with the option's letter from the given choices directly.\n"
LETTER_PROMPT = "Answer with the option's letter from the given choices directly! "
MERGED_TYPES = {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}
TYPES = ("Anomaly Detection", "Defect Classification", "Defect Localization", "Defect Description",
         "Defect Analysis", "Object Classification", "Object Analysis")
AVERAGE = "Average"
_LETTER = re.compile(r"\b([A-E])\b")
_TAGGED_LETTER = re.compile(r"\b([A-Ea-e])\b")
DROP_REASONS = ("training", "not_in_split")  # why a question is not asked (module docstring)


def question_text(question: str, options: dict) -> str:
    return f"Question: {question} \n" + "".join(f"{key}. {value}\n" for key, value in options.items())


def prompt_parts(query: str, templates: list[str], question: str, options: dict,
                 reasoning_instruction: str | None = None) -> list[tuple[str, str]]:
    """MMAD's prompt as (kind, value) parts, templates before the query; with a reasoning
    instruction in place of MMAD's two letter instructions when one is given."""
    if reasoning_instruction:
        parts = [("text", INSPECTOR), ("text", reasoning_instruction)]
    else:
        parts = [("text", INSTRUCTION), ("text", LETTER_PROMPT)]
    if templates:
        parts.append(("text", (f"Following is/are {len(templates)} image of normal sample, which can be used as a "
                               "template to compare the image being queried.")))
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


def parse_reply(response: str, options: dict, mode: str = "letter") -> tuple[str | None, str]:
    """(letter, where it was read): "answer" (inside the last <answer> block, mode "answer_tag")
    or "mmad" (MMAD's parse_answer over the whole reply)."""
    if mode == "answer_tag":
        tagged = answer_text(response) if isinstance(response, str) else None
        letters = _TAGGED_LETTER.findall(tagged or "")
        if letters and letters[0].upper() in options:
            return letters[0].upper(), "answer"
    elif mode != "letter":
        raise InputError(f"unknown MMAD answer parsing {mode!r} (letter or answer_tag)")
    return parse_choice(response, options), "mmad"


def split_drop_reasons(questions: pd.DataFrame, split: pd.DataFrame, layouts: dict[str, str]) -> pd.Series:
    """Why each question is not asked under `split` ("" when its source image is a test image).

    layouts: the split's dataset names -> their layouts (adfm.data.datasets), which name source images."""
    from adfm.data.datasets.mmad import source_image

    roles: dict[str, str] = {}
    for row in split.itertuples(index=False):
        if row.dataset in layouts:
            roles[source_image(layouts[row.dataset], row.category, row.label, row.image_path)] = row.role
    role = questions["source_image"].map(roles)
    return pd.Series(["not_in_split" if pd.isna(r) else "training" if r == "train" else "" for r in role],
                     index=questions.index, dtype=str)


def question_rows(questions_csv: Path, settings: dict) -> pd.DataFrame:
    """MMAD's questions (the `adfm mmad-questions` table), numbered within each image in file order,
    less those the leakage filter marks (unless settings "filter" is false)."""
    path = Path(questions_csv)
    try:
        questions = pd.read_csv(path, keep_default_na=False, dtype=str)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: cannot read MMAD questions ({error})") from None
    needed = {"image_path", "dataset", "category", "question", "options", "answer", "type", "reference_path",
              "templates", "drop_reason", "label"}
    missing = sorted(needed - set(questions.columns))
    if missing:
        raise InputError(f"{path}: MMAD question table lacks columns {missing}")
    if questions.empty:
        raise InputError(f"{path}: no MMAD questions")
    questions["label"] = questions["label"].astype(int)
    questions["question_index"] = questions.groupby("image_path", sort=False).cumcount()
    dropped = (questions["drop_reason"] != "") & bool(settings.get("filter", True))
    if dropped.any():
        counts = questions[dropped].groupby(["dataset", "drop_reason"]).size().to_dict()
        log.info("MMAD: %d of %d questions not asked (their source image is not a test image of the split): %s",
                 int(dropped.sum()), len(questions), counts)
    questions = questions[~dropped].reset_index(drop=True)
    if questions.empty:
        raise InputError(f"{path}: every MMAD question is about an image outside the split's test role")
    sources = settings.get("sources")
    if sources:
        questions = questions[questions["dataset"].isin(sources)].reset_index(drop=True)
    limit = settings.get("max_images")
    if limit:
        keep = list(dict.fromkeys(questions["image_path"]))[: int(limit)]
        questions = questions[questions["image_path"].isin(keep)].reset_index(drop=True)
    return questions


def _templates(row, count: int) -> list[str]:
    """MMAD's random_templates[:count], each of which must exist."""
    templates = json.loads(row.templates)[:count]
    if len(templates) < count:
        raise InputError(f"{row.image_path}: mmad.templates is {count} but MMAD lists {len(templates)} "
                         "random templates for this image")
    missing = [t for t in templates if not Path(t).is_file()]
    if missing:
        raise InputError(f"{missing[0]}: template of {row.image_path} (random_templates[:{count}]) not found")
    return templates


def generation_config(model, settings: dict):
    """MMAD's decoding ("model": generate() with the model's own generation config) or plain greedy."""
    import copy

    from adfm.inference.hf import greedy_config

    max_new_tokens = int(settings.get("max_new_tokens", 128))
    kind = settings.get("generation", "model")
    if kind == "greedy":
        return greedy_config(model, max_new_tokens=max_new_tokens, repetition_penalty=1.0)
    if kind != "model":
        raise InputError(f"unknown MMAD generation {kind!r} (model or greedy)")
    config = copy.deepcopy(model.generation_config)
    config.max_new_tokens = max_new_tokens
    if config.pad_token_id is None:
        config.pad_token_id = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    return config


def predict_mmad(questions_csv, run_name: str, settings: dict, out, *, model_dir=None, adapter_dir=None):
    """Answers to every MMAD question, with the Hugging Face model or the API backend (settings "api")."""
    from tqdm.auto import tqdm

    from adfm.inference.hf import PredictionWriter

    questions = question_rows(questions_csv, settings)
    writer = PredictionWriter(out)
    todo = [row for row in questions.itertuples(index=False)
            if (run_name, DATASET, row.image_path, 0, int(row.question_index)) not in writer.done]
    log.info("%s on MMAD: %d questions, %d to go", run_name, len(questions), len(todo))
    count = int(settings.get("templates", 1))
    reasoning = settings.get("reasoning_instruction") if settings.get("instruction") == "reasoning" else None
    mode = settings.get("parse", "letter")
    templates = {row.image_path: _templates(row, count) for row in todo}

    def record(row, response: str) -> dict:
        options = json.loads(row.options)
        answer, answer_from = parse_reply(response, options, mode)
        return {
            "model": run_name, "dataset": DATASET, "source": row.dataset, "category": row.category,
            "image_path": row.image_path, "template_path": row.reference_path, "label": int(row.label), "sample": 0,
            "question_index": int(row.question_index), "question": row.question, "options": options,
            "correct_answer": row.answer, "type": row.type, "response": response,
            "answer": answer, "answer_from": answer_from,
        }

    def parts(row):
        return prompt_parts(row.image_path, templates[row.image_path], row.question, json.loads(row.options),
                            reasoning)

    if todo and "api" in settings:
        from adfm.inference.api import (
            DEFAULTS,
            client_from_settings,
            openai_content,
            run_requests,
        )

        api = {**DEFAULTS, **settings["api"]}
        client = client_from_settings(api)
        with writer:
            run_requests(client, todo, lambda row: openai_content(parts(row), int(api["max_image_side"])),
                         lambda row, texts: writer.write([record(row, texts[0])]), concurrency=api["concurrency"],
                         max_tokens=int(settings.get("max_new_tokens", 128)), temperature=0.0)
    elif todo:
        from adfm.model.load import load_model_and_processor
        from adfm.inference.hf import generate_conversations

        if model_dir is None:
            raise InputError("predict-mmad: --model is required without an API configuration")
        model_settings = settings.get("model", {})
        model, processor = load_model_and_processor(
            model_dir, dtype=model_settings.get("dtype", "auto"), min_pixels=int(model_settings["min_pixels"]),
            max_pixels=int(model_settings["max_pixels"]), adapter_dir=adapter_dir)
        config = generation_config(model, settings)
        batch_size = int(settings.get("batch_size", 8))
        with writer, tqdm(total=len(todo), desc=f"MMAD {run_name}", unit="question") as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                responses = generate_conversations(model, processor, [parts(row) for row in batch], config,
                                                   add_vision_id=True)
                writer.write([record(row, texts[0]) for row, texts in zip(batch, responses)])
                bar.update(len(batch))
    return writer.finish()


# accuracy: MMAD's score of the cell (balanced on Anomaly Detection, plain elsewhere), what Table 3
# shows; plain_accuracy: correct / answered on every cell; balanced_accuracy: Anomaly Detection only
SCORE_COLUMNS = ["accuracy", "plain_accuracy", "balanced_accuracy"]


def mmad_table(records: list[dict], questions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Accuracy (%) per model, source dataset (and "all") and question type (and "Average"), with
    the questions the leakage filter left out of each cell (`questions`: the question table)."""
    if not records:
        raise InputError("no MMAD prediction records to score")
    frame = pd.DataFrame.from_records(records)
    frame["type"] = frame["type"].replace(MERGED_TYPES)
    frame["parsed"] = frame["answer"].isin(list("ABCDE"))
    frame["correct"] = frame["parsed"] & (frame["answer"] == frame["correct_answer"])
    frame["normal"] = frame["label"].astype(int) == 0  # MMAD: "good" in the image path (parse_questions' label)
    rows = []
    for (model, source), group in frame.groupby(["model", "source"], sort=True):
        for kind, asked in group.groupby("type", sort=False):
            scored = asked[asked["parsed"]]
            n, correct = len(scored), int(scored["correct"].sum())
            plain = 100.0 * correct / n if n else 0.0
            balanced = float("nan")
            if kind == "Anomaly Detection":
                normal, anomalous = scored[scored["normal"]], scored[~scored["normal"]]
                normal_acc = normal["correct"].mean() if len(normal) else 0.0
                anomalous_acc = anomalous["correct"].mean() if len(anomalous) else 0.0
                balanced = 100.0 * (normal_acc + anomalous_acc) / 2
            rows.append({"model": model, "dataset": source, "category": kind, "n": n, "correct": correct,
                         "unparsed": int((~asked["parsed"]).sum()),
                         "accuracy": balanced if kind == "Anomaly Detection" else plain,
                         "plain_accuracy": plain, "balanced_accuracy": balanced})
    table = pd.DataFrame(rows)
    sums = {"n": ("n", "sum"), "correct": ("correct", "sum"), "unparsed": ("unparsed", "sum")}
    means = {name: (name, "mean") for name in SCORE_COLUMNS}
    averages = table.groupby(["model", "category"], as_index=False, sort=False).agg(**sums, **means)
    table = pd.concat([table, averages.assign(dataset="all")], ignore_index=True)
    per_row = table.groupby(["model", "dataset"], as_index=False, sort=False).agg(**sums, **means)
    # balanced accuracy is defined on the anomaly question alone, not on an average over types
    table = pd.concat([table, per_row.assign(category=AVERAGE, balanced_accuracy=float("nan"))], ignore_index=True)
    order = {t: i for i, t in enumerate([*TYPES, AVERAGE])}
    table = table.sort_values(["model", "dataset", "category"], key=lambda c: c.map(order).fillna(99)
                              if c.name == "category" else c, kind="stable")
    table[SCORE_COLUMNS] = table[SCORE_COLUMNS].round(2)
    table = table.join(_dropped(questions), on=["dataset", "category"]).fillna({c: 0 for c in DROP_COLUMNS})
    table[DROP_COLUMNS] = table[DROP_COLUMNS].astype(int)
    columns = ["model", "dataset", "category", "n", "correct", "unparsed", *SCORE_COLUMNS, *DROP_COLUMNS]
    return table[columns].reset_index(drop=True)


DROP_COLUMNS = [f"dropped_{reason}" for reason in DROP_REASONS]


def _dropped(questions: pd.DataFrame | None) -> pd.DataFrame:
    """Questions not asked, per (dataset, type) as the scores group them, "all" and "Average" summed."""
    frame = pd.DataFrame(columns=["dataset", "type", "drop_reason"]) if questions is None else questions
    frame = frame[frame["drop_reason"] != ""].assign(type=lambda f: f["type"].replace(MERGED_TYPES))
    counts = pd.crosstab([frame["dataset"], frame["type"]], frame["drop_reason"]) if len(frame) else pd.DataFrame(
        index=pd.MultiIndex.from_tuples([], names=["dataset", "type"]))
    counts = counts.reindex(columns=list(DROP_REASONS), fill_value=0)
    counts.columns = DROP_COLUMNS
    counts = counts.rename_axis(["dataset", "category"]).reset_index()
    by_type = counts.groupby("category", as_index=False)[DROP_COLUMNS].sum().assign(dataset="all")
    counts = pd.concat([counts, by_type], ignore_index=True)
    by_dataset = counts.groupby("dataset", as_index=False)[DROP_COLUMNS].sum().assign(category=AVERAGE)
    return pd.concat([counts, by_dataset], ignore_index=True).set_index(["dataset", "category"])


def run_score(predictions: list[Path], out: Path, questions_csv: Path | None = None) -> None:
    records = [r for path in predictions for r in read_jsonl(path)]
    questions = None
    if questions_csv is not None:
        try:
            questions = pd.read_csv(questions_csv, keep_default_na=False, dtype=str)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise InputError(f"{questions_csv}: cannot read MMAD questions ({error})") from None
        if "drop_reason" not in questions.columns:
            raise InputError(f"{questions_csv}: MMAD question table lacks column drop_reason")
    table = mmad_table(records, questions)
    dropped = int(table.loc[(table["dataset"] == "all") & (table["category"] == AVERAGE), DROP_COLUMNS].sum().sum())
    if dropped:
        log.info("MMAD scores leave out %d questions (leakage filter): %s", dropped,
                 table.loc[(table["dataset"] == "all") & (table["category"] == AVERAGE), DROP_COLUMNS].to_dict("records"))
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
                        '"templates" (1), "generation" (model | greedy), "instruction" (letter | reasoning), '
                        '"reasoning_instruction", "parse" (letter | answer_tag), optional "api", "sources", '
                        '"max_images"}')
    parser.add_argument("--out", required=True, help="predictions JSONL")
    parser.set_defaults(func=_predict_main)

    scorer = subparsers.add_parser(
        "score-mmad", help="MMAD accuracy per source dataset and question type",
        description="MMAD accuracy of one model's answers per source dataset and question type, as MMAD's own "
                    "evaluation counts it, with the number of questions the leakage filter left out.")
    scorer.add_argument("--predictions", required=True, nargs="+", type=Path,
                        help="the model's MMAD answers (`adfm predict-mmad`, JSONL)")
    scorer.add_argument("--questions", type=Path, default=None,
                        help="the question table, to count the questions the leakage filter left out")
    scorer.add_argument("--out", required=True, type=Path, help="the metrics (CSV)")
    scorer.set_defaults(func=lambda a: run_score(a.predictions, a.out, a.questions))

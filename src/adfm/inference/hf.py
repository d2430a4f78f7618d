"""Predictions of a Hugging Face vision-language model (base, or with a LoRA adapter) on a split.

    adfm predict --split SPLIT.csv --dataset NAME --model MODEL_DIR [--adapter ADAPTER_DIR]
                 --run-name NAME --settings JSON --out PRED.jsonl

For every selected row of the split (by default role == "test" and dataset == NAME), the model sees
the normal reference image, the query image and the prompt template (the prompt of training).
Prompts are batched with left padding. Evaluation decodes greedily (one response per image, sample
0); with "num_samples" n > 1 or a "temperature" the model samples n responses per image (samples
0..n-1) at that temperature, the material of Figures 4 and 5. One JSON line per (image, sample):

    model, dataset, category, image_path, reference_path, label, sample, response (raw text),
    answer ("yes" / "no" / null, from adfm.protocol.parse_response), boxes (parsed from <think>, in
    the model's frame), frame [W, H] (that frame), gt_boxes (ground truth in the same frame)

Resumable: records are appended and flushed batch by batch to OUT.partial; a restarted job skips
the (model, dataset, image_path, sample) keys already there, and OUT.partial is renamed to OUT
when every image is done. The same writer (`PredictionWriter`) serves every backend (the API
backend of adfm.inference.api, the CLIP baselines of adfm.inference.clip, MMAD in adfm.inference.mmad).

Settings JSON: {"prompt": template, "model": {"dtype", "min_pixels", "max_pixels"},
"batch_size": 8, "max_new_tokens": 512, and optionally "reasoning" ("multi_stage" / "one_stage", for
the parser), "answer_format" ("yes_no" / "letter", for the parser: see adfm.protocol),
"repetition_penalty" (1.0, plain greedy, unless set), "num_samples" and "temperature"
(sampling), "top_k" and "top_p" (sampling truncation, GRPO's: off unless set), "seed" (sampling seed, 0), "role" ("test", "train" or "all"), "max_images" (a uniform,
seeded subsample of that many rows; all when absent), "label" (only rows with this label), "image"
(only this image)}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from adfm.io import InputError, read_jsonl, settings_json

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"

# A prompt as a sequence of parts, in order: ("image", path) or ("text", text).
Part = tuple[str, str]


def record_key(record: dict) -> tuple:
    """Identity of a prediction record: (model, dataset, image, sample[, question])."""
    key = (record["model"], record["dataset"], record["image_path"], int(record.get("sample", 0)))
    if record.get("question_index") is not None:
        key += (int(record["question_index"]),)
    return key


def load_done(partial: Path) -> list[dict]:
    """Records already in the partial file; rewritten without a torn last line so appends stay valid."""
    if not partial.is_file():
        return []
    records = read_jsonl(partial)
    with open(partial, "w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return records


class PredictionWriter:
    """Append-only, resumable JSONL of prediction records, shared by every backend.

    Records go to OUT.partial, flushed and fsynced at every `write`; `done` holds the keys already
    there (after a restart); `finish` renames OUT.partial to OUT. Records are written in the order
    given, so a batch is never half-recorded except for a torn last line, which `load_done` drops.
    """

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + PARTIAL_SUFFIX)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.done = {record_key(r) for r in load_done(self.partial)}
        self._handle = None

    def __enter__(self) -> PredictionWriter:
        self._handle = open(self.partial, "a")
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def write(self, records: Iterable[dict]) -> None:
        for record in records:
            self._handle.write(json.dumps(record) + "\n")
            self.done.add(record_key(record))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def finish(self) -> Path:
        if self._handle is not None:
            self.__exit__()
        if not self.partial.exists():  # nothing to do and nothing written: an empty, complete output
            self.partial.touch()
        os.replace(self.partial, self.out)
        log.info("predictions written to %s", self.out)
        return self.out


def _open_rgb(path: str):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def chat_content(parts: Sequence[Part]) -> tuple[list[dict], list[str]]:
    """A user message's content blocks (images as placeholders) and the image paths, in order."""
    content, images = [], []
    for kind, value in parts:
        if kind == "image":
            content.append({"type": "image"})
            images.append(value)
        elif kind == "text":
            content.append({"type": "text", "text": value})
        else:
            raise ValueError(f"unknown prompt part {kind!r}")
    return content, images


def generate_texts(
    model, processor, texts: list[str], images: list, generation_config, *, num_return_sequences: int = 1
) -> list[list[str]]:
    """Responses for a batch of chat-formatted prompts (one list of num_return_sequences each).

    `images` are the images of all prompts, in order (PIL images or paths). Left padding (set by
    adfm.model.load.load_processor) keeps the prompts' last tokens aligned.
    """
    import copy

    import torch

    loaded = [_open_rgb(i) if isinstance(i, (str, os.PathLike)) else i for i in images]
    inputs = processor(text=texts, images=loaded or None, padding=True, return_tensors="pt")
    inputs = inputs.to(model.device)
    if num_return_sequences != getattr(generation_config, "num_return_sequences", 1):
        generation_config = copy.deepcopy(generation_config)
        generation_config.num_return_sequences = num_return_sequences
    with torch.inference_mode():
        output = model.generate(**inputs, generation_config=generation_config)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    decoded = processor.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return [decoded[i : i + num_return_sequences] for i in range(0, len(decoded), num_return_sequences)]


def generate_conversations(
    model, processor, conversations: list[Sequence[Part]], generation_config, *, add_vision_id: bool = False,
    num_return_sequences: int = 1,
) -> list[list[str]]:
    """Responses for a batch of single-turn conversations of interleaved images and text."""
    texts, images = [], []
    for parts in conversations:
        content, paths = chat_content(parts)
        texts.append(processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False,
            add_vision_id=add_vision_id))
        images.extend(paths)
    return generate_texts(model, processor, texts, images, generation_config, num_return_sequences=num_return_sequences)


def generate_batch(
    model, processor, prompt: list[dict], pairs: list[tuple[str, str]], generation_config, num_return_sequences: int = 1
) -> list:
    """Responses for a batch of (reference, query) image pairs sharing one prompt.

    One string per pair (greedy), or one list of num_return_sequences strings per pair (sampling).
    """
    text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    images = [path for pair in pairs for path in pair]
    responses = generate_texts(model, processor, [text] * len(pairs), images, generation_config,
                               num_return_sequences=num_return_sequences)
    return [r[0] for r in responses] if num_return_sequences == 1 else responses


def _neutral_config(model, *, max_new_tokens: int, repetition_penalty: float):
    import copy

    # Sampling knobs are set to their neutral values, not None: generate() fills None fields from the
    # model's generation_config (Qwen2.5-VL's: top_k 1, top_p 0.001, repetition_penalty 1.05).
    config = copy.deepcopy(model.generation_config)
    config.temperature = 1.0
    config.top_p = 1.0
    config.top_k = 0
    config.num_beams = 1
    config.max_new_tokens = int(max_new_tokens)
    config.repetition_penalty = float(repetition_penalty)
    if config.pad_token_id is None:
        config.pad_token_id = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    return config


def greedy_config(model, *, max_new_tokens: int, repetition_penalty: float):
    """The model's generation config (eos, pad) switched to plain greedy decoding."""
    config = _neutral_config(model, max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
    config.do_sample = False
    config.top_k = 50  # unused when not sampling; 50 is transformers' default (no warning)
    return config


def sampling_config(model, *, max_new_tokens: int, temperature: float, repetition_penalty: float = 1.0,
                    top_k: int = 0, top_p: float = 1.0):
    """Multinomial sampling at `temperature`, truncated by `top_k` / `top_p` as GRPO's settings say
    (train.grpo; 0 and 1.0: no truncation)."""
    if temperature <= 0:
        raise InputError(f"sampling temperature {temperature} must be > 0")
    config = _neutral_config(model, max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
    config.do_sample = True
    config.temperature = float(temperature)
    config.top_k, config.top_p = int(top_k), float(top_p)
    return config


def _seed_of(*keys) -> int:
    digest = hashlib.sha256("/".join(map(str, keys)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def select_rows(split_csv, dataset: str, settings: dict):
    """The split rows a prediction job covers (role, label, image, seeded uniform subsample)."""
    import numpy as np

    from adfm.data import split_table

    role = settings.get("role", "test")
    # "all": every row of the dataset in the split, which under the holdout protocol is the
    # dataset's whole test split (the paper evaluated its untrained rows on it)
    rows = split_table.read(split_csv, None if role == "all" else role, dataset)
    if rows.empty:
        raise InputError(f"{split_csv}: no {role} rows for dataset {dataset!r}")
    if settings.get("label") is not None:
        rows = rows[rows["label"] == int(settings["label"])].reset_index(drop=True)
    if settings.get("image"):
        rows = rows[rows["image_path"] == str(settings["image"])].reset_index(drop=True)
        if rows.empty:
            raise InputError(f"{split_csv}: image {settings['image']!r} is not a {role} row of {dataset!r}")
    limit = settings.get("max_images")
    if limit is not None and len(rows) > int(limit):
        rng = np.random.default_rng(_seed_of(settings.get("seed", 0), dataset, role, "subsample"))
        keep = np.sort(rng.choice(len(rows), size=int(limit), replace=False))
        rows = rows.iloc[keep].reset_index(drop=True)
    if rows.empty:
        raise InputError(f"{split_csv}: no {role} rows of {dataset!r} match {settings}")
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


def response_record(row, run_name: str, dataset: str, sample: int, response: str, reasoning: str,
                    frame_of_row, answer_format: str = "yes_no") -> dict:
    """A record of one response: parsed answer and boxes, ground truth in the same frame."""
    from adfm.protocol import parse_response

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


def predict(
    split_csv: str | os.PathLike,
    dataset: str,
    model_dir: str | os.PathLike,
    run_name: str,
    settings: dict,
    out: str | os.PathLike,
    *,
    adapter_dir: str | os.PathLike | None = None,
) -> Path:
    from tqdm.auto import tqdm

    from adfm.boxes import to_model_frame
    from adfm.model.load import load_model_and_processor
    from adfm.protocol import build_prompt

    if "prompt" not in settings:
        raise InputError("predict settings: no prompt template")
    model_settings = settings.get("model", {})
    min_pixels, max_pixels = int(model_settings["min_pixels"]), int(model_settings["max_pixels"])
    batch_size = int(settings.get("batch_size", 8))
    if batch_size < 1:
        raise InputError(f"predict settings: batch_size {batch_size} < 1")
    sampling = settings.get("temperature") is not None or int(settings.get("num_samples", 1)) > 1
    num_samples = int(settings.get("num_samples", 1))
    if num_samples < 1:
        raise InputError(f"predict settings: num_samples {num_samples} < 1")

    rows = select_rows(split_csv, dataset, settings)
    writer = PredictionWriter(out)
    samples = range(num_samples)
    todo = [row for row in rows.itertuples(index=False)
            if any((run_name, dataset, str(row.image_path), s) not in writer.done for s in samples)]
    log.info("%s on %s: %d images x %d sample(s), %d images already predicted, %d to go", run_name, dataset,
             len(rows), num_samples, len(rows) - len(todo), len(todo))

    def frame_of_row(row):
        return to_model_frame(row.boxes, int(row.width), int(row.height), min_pixels=min_pixels, max_pixels=max_pixels)

    if todo:
        import torch

        model, processor = load_model_and_processor(
            model_dir,
            dtype=model_settings.get("dtype", "auto"),
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            adapter_dir=adapter_dir,
        )
        max_new_tokens = int(settings.get("max_new_tokens", 512))
        repetition_penalty = float(settings.get("repetition_penalty", 1.0))
        if sampling:
            generation_config = sampling_config(model, max_new_tokens=max_new_tokens,
                                                temperature=float(settings.get("temperature") or 1.0),
                                                repetition_penalty=repetition_penalty,
                                                top_k=int(settings.get("top_k", 0)),
                                                top_p=float(settings.get("top_p", 1.0)))
        else:
            generation_config = greedy_config(model, max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
        prompt = build_prompt(settings["prompt"])
        reasoning = settings.get("reasoning", "multi_stage")
        bar = tqdm(total=len(todo), desc=f"predict {run_name} on {dataset}", unit="img")
        with writer, bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                pairs = [(str(row.reference_path), str(row.image_path)) for row in batch]
                if sampling:
                    # Seeded by the batch's first image: a rerun of the same batch samples the same.
                    torch.manual_seed(_seed_of(settings.get("seed", 0), run_name, pairs[0][1]))
                    responses = generate_batch(model, processor, prompt, pairs, generation_config, num_samples)
                else:
                    responses = [[r] for r in generate_batch(model, processor, prompt, pairs, generation_config)]
                records = []
                for row, row_responses in zip(batch, responses):
                    for sample, response in enumerate(row_responses):
                        if (run_name, dataset, str(row.image_path), sample) in writer.done:
                            continue
                        records.append(response_record(row, run_name, dataset, sample, response, reasoning,
                                                       frame_of_row, settings.get("answer_format", "yes_no")))
                writer.write(records)
                bar.update(len(batch))
    return writer.finish()


def _predict_main(args: argparse.Namespace) -> None:
    predict(
        args.split,
        args.dataset,
        args.model,
        args.run_name,
        args.settings,
        args.out,
        adapter_dir=args.adapter,
    )


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="greedy (or sampled) responses of a Hugging Face VLM (optionally with a LoRA adapter) on a split",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--split", required=True, help="split CSV")
    parser.add_argument("--dataset", required=True, help="dataset name (test rows of this dataset are predicted)")
    parser.add_argument("--model", required=True, help="base model folder")
    parser.add_argument(
        "--adapter", default=None, help="LoRA adapter folder (from `adfm train`); omit for the base model"
    )
    parser.add_argument("--run-name", required=True, help="name written in each record's `model` field")
    parser.add_argument(
        "--settings",
        required=True,
        type=settings_json,
        help='JSON object: {"prompt", "reasoning", "model": {dtype, min_pixels, max_pixels}, "batch_size", '
        '"max_new_tokens", optional "num_samples", "temperature", "seed", "role", "max_images", "label", "image"}',
    )
    parser.add_argument("--out", required=True, help=f"predictions JSONL (work in progress in OUT{PARTIAL_SUFFIX})")
    parser.set_defaults(func=_predict_main)

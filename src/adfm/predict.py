"""Predictions of a Hugging Face vision-language model (base, or with a LoRA adapter) on a split.

    adfm predict --split SPLIT.csv --dataset NAME --model MODEL_DIR [--adapter ADAPTER_DIR]
                 --run-name NAME --settings JSON --out PRED.jsonl

For every row of the split with role == "test" and dataset == NAME, the model sees the normal
reference image, the query image and the prompt template (the prompt of training), and answers
greedily; prompts are batched with left padding. One JSON line per image:

    model, dataset, category, image_path, label, sample (0), response (raw text),
    answer ("yes" / "no" / null, from adfm.protocol.parse_response), boxes (parsed from <think>, in
    the model's frame), frame [W, H] (that frame), gt_boxes (ground truth in the same frame)

Resumable: records are appended and flushed batch by batch to OUT.partial; a restarted job skips
the (model, dataset, image_path, sample) keys already there, and OUT.partial is renamed to OUT
when every image is done.

Settings JSON: {"prompt": template, "model": {"dtype", "min_pixels", "max_pixels"},
"batch_size": 8, "max_new_tokens": 512, and optionally "reasoning" ("multi_stage" / "one_stage", for
the parser) and "repetition_penalty" (1.0, plain greedy, unless set)}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from adfm.io import InputError, read_jsonl

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


def record_key(record: dict) -> tuple:
    return (record["model"], record["dataset"], record["image_path"], int(record["sample"]))


def load_done(partial: Path) -> list[dict]:
    """Records already in the partial file; rewritten without a torn last line so appends stay valid."""
    if not partial.is_file():
        return []
    records = read_jsonl(partial)
    with open(partial, "w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return records


def _open_rgb(path: str):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def generate_batch(model, processor, prompt: list[dict], pairs: list[tuple[str, str]], generation_config) -> list[str]:
    """Greedy responses for a batch of (reference, query) image pairs sharing one prompt."""
    import torch

    text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    images = [_open_rgb(path) for pair in pairs for path in pair]
    inputs = processor(text=[text] * len(pairs), images=images, padding=True, return_tensors="pt")
    inputs = inputs.to(model.device)
    with torch.inference_mode():
        output = model.generate(**inputs, generation_config=generation_config)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return processor.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def greedy_config(model, *, max_new_tokens: int, repetition_penalty: float):
    """The model's generation config (eos, pad) switched to plain greedy decoding."""
    import copy

    # Sampling knobs are set to their neutral values, not None: generate() fills None fields from the
    # model's generation_config (Qwen2.5-VL's: top_k 1, top_p 0.001, repetition_penalty 1.05).
    config = copy.deepcopy(model.generation_config)
    config.do_sample = False
    config.temperature = 1.0
    config.top_p = 1.0
    config.top_k = 50
    config.num_beams = 1
    config.max_new_tokens = int(max_new_tokens)
    config.repetition_penalty = float(repetition_penalty)
    if config.pad_token_id is None:
        config.pad_token_id = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    return config


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
    from adfm.models import load_model_and_processor
    from adfm.protocol import build_prompt, parse_response
    from adfm.train import read_split_rows

    out = Path(out)
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    if "prompt" not in settings:
        raise InputError("predict settings: no prompt template")
    model_settings = settings.get("model", {})
    min_pixels, max_pixels = int(model_settings["min_pixels"]), int(model_settings["max_pixels"])
    batch_size = int(settings.get("batch_size", 8))
    if batch_size < 1:
        raise InputError(f"predict settings: batch_size {batch_size} < 1")

    rows = read_split_rows(split_csv, "test", dataset)
    if rows.empty:
        raise InputError(f"{split_csv}: no test rows for dataset {dataset!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {record_key(r) for r in load_done(partial)}
    todo = [row for row in rows.itertuples(index=False) if (run_name, dataset, str(row.image_path), 0) not in done]
    log.info(
        "%s on %s: %d test images, %d already predicted, %d to go",
        run_name,
        dataset,
        len(rows),
        len(rows) - len(todo),
        len(todo),
    )

    if todo:
        model, processor = load_model_and_processor(
            model_dir,
            dtype=model_settings.get("dtype", "auto"),
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            adapter_dir=adapter_dir,
        )
        generation_config = greedy_config(
            model,
            max_new_tokens=int(settings.get("max_new_tokens", 512)),
            repetition_penalty=float(settings.get("repetition_penalty", 1.0)),
        )
        prompt = build_prompt(settings["prompt"])
        reasoning = settings.get("reasoning", "multi_stage")
        bar = tqdm(total=len(todo), desc=f"predict {run_name} on {dataset}", unit="img")
        with open(partial, "a") as handle, bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                responses = generate_batch(
                    model,
                    processor,
                    prompt,
                    [(str(row.reference_path), str(row.image_path)) for row in batch],
                    generation_config,
                )
                for row, response in zip(batch, responses):
                    gt_boxes, frame = to_model_frame(
                        row.boxes, int(row.width), int(row.height), min_pixels=min_pixels, max_pixels=max_pixels
                    )
                    parsed = parse_response(response, reasoning)
                    record = {
                        "model": run_name,
                        "dataset": dataset,
                        "category": str(row.category),
                        "image_path": str(row.image_path),
                        "label": int(row.label),
                        "sample": 0,
                        "response": response,
                        "answer": parsed.answer,
                        "boxes": parsed.boxes,
                        "frame": [int(frame[0]), int(frame[1])],
                        "gt_boxes": gt_boxes,
                    }
                    handle.write(json.dumps(record) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
                bar.update(len(batch))
    os.replace(partial, out)
    log.info("predictions written to %s", out)
    return out


def _predict_main(args: argparse.Namespace) -> None:
    from adfm.train import parse_settings

    predict(
        args.split,
        args.dataset,
        args.model,
        args.run_name,
        parse_settings(args.settings),
        args.out,
        adapter_dir=args.adapter,
    )


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="greedy predictions of a Hugging Face VLM (optionally with a LoRA adapter) on a split's test images",
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
        help='JSON object: {"prompt", "reasoning", "model": {dtype, min_pixels, max_pixels}, "batch_size", '
        '"max_new_tokens"}',
    )
    parser.add_argument("--out", required=True, help=f"predictions JSONL (work in progress in OUT{PARTIAL_SUFFIX})")
    parser.set_defaults(func=_predict_main)

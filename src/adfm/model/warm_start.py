"""Warm start: a short supervised fine-tuning on well-formed responses, before GRPO.

    adfm warm-start --split SPLIT.csv --model MODEL_DIR --settings JSON --out MODEL_OUT

Why. GRPO learns only from reward differences inside a group of responses sampled for one prompt.
A model that never writes the response format earns the same reward (0) on every sample, every
group has zero variance, and the policy gradient is zero: the tiny random demo model never writes
an answer, so GRPO alone cannot move it. The paper starts from Qwen2.5-VL-7B-Instruct, which follows
the format from the prompt alone, and has no such stage: `train.warm_start.enabled` is false in
config.yaml and true only in the demo.

Targets. One well-formed response per training image of the split (role == train), built by
adfm.protocol.format_response from its label and ground-truth boxes in the frame the model sees:
the boxes in <think> (none for a normal image), a fixed <rethink> (multi-stage only), the answer.

Loss. Token cross-entropy on the response, weighted. Averaged evenly over the ~40 tokens of a
response, the decision is one token among many and stays unlearnt (a model trained so always answers
"no"). The decision tokens get `decision_weight` instead of 1: the answer word (the tokens
inside the <answer> tags) and the first token at which the response for the other label would differ (the
opening of the box list: `[]` for no region, `[{"bbox_2d": ...` for regions). Teacher forcing makes
the answer easy to copy from the boxes written before it, so the weight on the box list's opening
is what asks the model to decide from the images.

Method. `lora`: a LoRA adapter on `lora.target_modules` (the language model only), merged into the
weights at the end; `full`: every weight of the language model, embeddings and output head included
(practical for the tiny demo model, whose random embeddings a low-rank update cannot fix in a few
hundred steps). The vision tower stays frozen either way, as in the paper.

Output: a complete model folder (weights, processor, generation config), loaded like any base
model, plus warm_start_log.csv (step, loss, decision_loss, learning_rate) and warm_start.json (the
settings). GRPO then trains a fresh LoRA adapter on top of it. Merging, rather than letting GRPO
continue the warm-start adapter, is deliberate: GRPO's KL term pulls the policy towards its
reference, which TRL takes to be the model with the adapter disabled. Continuing one adapter would
make the reference the untrained base, and the KL term would pull away from the format just
learnt; on merged weights the reference is the warm-started policy (as in SFT-then-RL pipelines),
and the GRPO adapter keeps the paper's LoRA settings whatever the warm start used. The price is one
model copy per (protocol, reasoning) pair.

Several processes: the loop runs under accelerate (`accelerate launch ... -m adfm warm-start ...`, the
launcher of the GRPO runs), each process drawing its own batches of `batch_size` (N processes see N x
batch_size responses per step; warm_start_log.csv has the main process's losses); on GPUs, or on the
CPU with the gloo backend where no GPU is visible (workflow/accelerate/multi_cpu.yaml); bf16 autocast
on GPUs when `bf16` is set.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import pandas as pd

from adfm.io import InputError, atomic_path, settings_json

log = logging.getLogger(__name__)

METHODS = ("lora", "full")

DEFAULTS = {
    "method": "lora",
    "max_steps": 200,
    "batch_size": 8,
    "learning_rate": 1.0e-4,
    "decision_weight": 10.0,
    "warmup_ratio": 0.0,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "logging_steps": 10,
    "bf16": True,
    "lora": {"r": 64, "alpha": 128, "dropout": 0.0},
}


# ----------------------------------------------------------------------------------------- targets


def response_targets(rows: pd.DataFrame, *, reasoning: str, answer_format: str, min_pixels: int,
                     max_pixels: int) -> list[tuple[str, str]]:
    """(target response, the response the other label would get) per row: boxes in the model frame."""
    from adfm.boxes import to_model_frame
    from adfm.protocol import answer_word, format_response

    pairs = []
    for row in rows.itertuples(index=False):
        boxes, _ = to_model_frame(row.boxes, int(row.width), int(row.height), min_pixels=min_pixels,
                                  max_pixels=max_pixels)
        label = int(row.label)
        target = format_response(boxes if label else [], answer_word(label, answer_format), reasoning=reasoning)
        # the other label's response: no region and the other answer, or a region and the other answer
        other_boxes = [] if label else [[0, 0, 1, 1]]
        other = format_response(other_boxes, answer_word(1 - label, answer_format), reasoning=reasoning)
        pairs.append((target, other))
    return pairs


def token_weights(tokenizer, target: str, other: str, decision_weight: float) -> tuple[list[int], list[float]]:
    """Token ids of `target` + end of turn, and their loss weights (the decision tokens weighted).

    Decision tokens: the tokens overlapping the answer word inside <answer> (not the tags), and the
    first token at which the other label's response differs.
    """
    eos = tokenizer.eos_token or ""
    encoded = tokenizer(target + eos, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    other_ids = tokenizer(other + eos, add_special_tokens=False)["input_ids"]
    weights = [1.0] * len(ids)
    first = next((i for i, (a, b) in enumerate(zip(ids, other_ids)) if a != b), None)
    if first is not None:
        weights[first] = decision_weight
    start = target.rfind("<answer>")
    end = target.find("</answer>", start) if start >= 0 else -1
    if start >= 0 and end > start:
        start += len("<answer>")  # the answer itself, not the tags: weighting the tags' `</` + `answer`
        for i, (begin, finish) in enumerate(offsets):  # teaches a small model to close every block so
            if begin < end and finish > start:
                weights[i] = decision_weight
    return ids, weights


# -------------------------------------------------------------------------------------------- model


def trainable_model(model, spec: dict):
    """The model with the warm start's trainable weights: a LoRA adapter, or the language model."""
    if spec["method"] == "lora":
        from peft import get_peft_model

        from adfm.model.train import check_trainable, lora_config

        model = get_peft_model(model, lora_config(spec["lora"]))
        check_trainable(model)
        return model
    for name, parameter in model.named_parameters():
        parameter.requires_grad = "visual" not in name
    return model


def _open_rgb(path: str):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def batch_tensors(processor, prompt_text: str, batch: list[dict]):
    """Model inputs for a batch: left-padded prompts (with images), then right-padded responses."""
    import torch

    images = [_open_rgb(path) for example in batch for path in example["images"]]
    encoded = processor(text=[prompt_text] * len(batch), images=images, padding=True, return_tensors="pt")
    length = max(len(example["ids"]) for example in batch)
    pad = processor.tokenizer.pad_token_id
    ids = torch.full((len(batch), length), pad if pad is not None else 0, dtype=torch.long)
    weights = torch.zeros((len(batch), length))
    for i, example in enumerate(batch):
        ids[i, : len(example["ids"])] = torch.tensor(example["ids"])
        weights[i, : len(example["ids"])] = torch.tensor(example["weights"])
    inputs = {
        "input_ids": torch.cat([encoded["input_ids"], ids], dim=1),
        "attention_mask": torch.cat([encoded["attention_mask"], (weights > 0).long()], dim=1),
        "pixel_values": encoded["pixel_values"],
        "image_grid_thw": encoded["image_grid_thw"],
    }
    # Per-token modality ids (Qwen2.5-VL's mm_token_type_ids: 1 on image tokens) extended with 0 (text)
    # over the response: without them the model silently falls back to 1-D positions for the images,
    # which generation does not use, and what is learnt here would not carry over to generation.
    for key in ("mm_token_type_ids", "token_type_ids"):
        if key in encoded:
            inputs[key] = torch.cat([encoded[key], torch.zeros_like(ids, dtype=encoded[key].dtype)], dim=1)
    return inputs, encoded["input_ids"].shape[1], ids, weights


def weighted_loss(logits, prompt_length: int, ids, weights):
    """Weighted token cross-entropy of the responses, and the mean loss of the decision tokens."""
    import torch

    response_logits = logits[:, prompt_length - 1 : prompt_length - 1 + ids.shape[1]].float()
    losses = torch.nn.functional.cross_entropy(
        response_logits.reshape(-1, response_logits.shape[-1]), ids.reshape(-1), reduction="none"
    ).view(ids.shape)
    loss = (losses * weights).sum() / weights.sum()
    decision = weights > 1.0
    decision_loss = losses[decision].mean() if decision.any() else losses.new_zeros(())
    return loss, decision_loss


# -------------------------------------------------------------------------------------------- train


def warm_start(split_csv: str | os.PathLike, model_dir: str | os.PathLike, settings: dict,
               out_dir: str | os.PathLike) -> Path:
    """Supervised warm start on the split's training rows; write the resulting model folder."""
    import torch
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    from adfm.model.load import load_model_and_processor
    from adfm.protocol import build_prompt
    from adfm.data import split_table

    spec = {**DEFAULTS, **settings.get("warm_start", {})}
    spec["lora"] = {**DEFAULTS["lora"], **spec.get("lora", {})}
    if spec["method"] not in METHODS:
        raise InputError(f"warm start settings: method {spec['method']!r}, expected one of {', '.join(METHODS)}")
    if "prompt" not in settings:
        raise InputError("warm start settings: no prompt template")
    model_settings = settings.get("model", {})
    min_pixels, max_pixels = int(model_settings["min_pixels"]), int(model_settings["max_pixels"])
    reasoning = settings.get("reasoning", "multi_stage")
    answer_format = settings.get("answer_format", "yes_no")
    max_steps, batch_size = int(spec["max_steps"]), int(spec["batch_size"])
    if max_steps < 1 or batch_size < 1:
        raise InputError("warm start settings: max_steps and batch_size must be at least 1")
    seed = int(settings.get("seed", 0))

    rows = split_table.read(split_csv, "train")
    if rows.empty:
        raise InputError(f"{split_csv}: no rows with role == 'train'")
    use_bf16 = bool(spec["bf16"]) and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    accelerator = Accelerator(mixed_precision="bf16" if use_bf16 else "no", cpu=not torch.cuda.is_available())
    torch.manual_seed(seed + accelerator.process_index)

    model, processor = load_model_and_processor(
        model_dir, dtype=model_settings.get("dtype", "auto"), min_pixels=min_pixels, max_pixels=max_pixels,
        for_training=True,
    )
    tokenizer = processor.tokenizer
    prompt_text = processor.apply_chat_template(build_prompt(settings["prompt"]), add_generation_prompt=True,
                                                tokenize=False)
    examples = []
    targets = response_targets(rows, reasoning=reasoning, answer_format=answer_format, min_pixels=min_pixels,
                               max_pixels=max_pixels)
    for row, (target, other) in zip(rows.itertuples(index=False), targets):
        ids, weights = token_weights(tokenizer, target, other, float(spec["decision_weight"]))
        examples.append({"images": [str(row.reference_path), str(row.image_path)], "ids": ids, "weights": weights})
    log.info(
        "warm start (%s): %d training responses (%d anomalous), %d steps of %d per process (world size %d), lr %g, "
        "decision weight %g; e.g. %r",
        spec["method"], len(examples), int(rows["label"].astype(int).sum()), max_steps, batch_size,
        accelerator.num_processes, float(spec["learning_rate"]), float(spec["decision_weight"]), targets[0][0],
    )

    model = trainable_model(model, spec)
    parameters = [p for p in model.parameters() if p.requires_grad]
    log.info("trainable: %d parameters (%s)", sum(p.numel() for p in parameters), spec["method"])
    optimizer = torch.optim.AdamW(parameters, lr=float(spec["learning_rate"]), weight_decay=float(spec["weight_decay"]))
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(float(spec["warmup_ratio"]) * max_steps), max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    order = random.Random(seed * 1000 + accelerator.process_index)
    queue: list[dict] = []
    history = []
    started = time.monotonic()
    for step in range(1, max_steps + 1):
        batch = []
        while len(batch) < batch_size:
            if not queue:
                queue = examples[:]
                order.shuffle(queue)
            batch.append(queue.pop())
        inputs, prompt_length, ids, weights = batch_tensors(processor, prompt_text, batch)
        inputs = {k: v.to(accelerator.device) for k, v in inputs.items()}
        with accelerator.autocast():
            logits = model(**inputs).logits
        loss, decision_loss = weighted_loss(logits, prompt_length, ids.to(logits.device), weights.to(logits.device))
        accelerator.backward(loss)
        if float(spec["max_grad_norm"]) > 0:
            accelerator.clip_grad_norm_(parameters, float(spec["max_grad_norm"]))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        history.append({"step": step, "loss": loss.item(), "decision_loss": decision_loss.item(),
                        "learning_rate": scheduler.get_last_lr()[0]})
        if step % int(spec["logging_steps"]) == 0 or step == max_steps:
            log.info("warm start step %d/%d: loss %.4f, decision loss %.4f, %.2f s/step", step, max_steps,
                     history[-1]["loss"], history[-1]["decision_loss"], (time.monotonic() - started) / step)

    accelerator.wait_for_everyone()
    out_dir = Path(out_dir)
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(model)
        if spec["method"] == "lora":
            model = model.merge_and_unload()
        for parameter in model.parameters():
            parameter.requires_grad = False
        with atomic_path(out_dir) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
            processor.save_pretrained(str(tmp))
            pd.DataFrame(history).to_csv(tmp / "warm_start_log.csv", index=False)
            (tmp / "warm_start.json").write_text(json.dumps({**settings, "warm_start": spec}, indent=2) + "\n")
        log.info("warm-started model written to %s", out_dir)
    return out_dir


def _warm_start_main(args: argparse.Namespace) -> None:
    warm_start(args.split, args.model, args.settings, args.out)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "warm-start",
        help="short supervised fine-tuning on well-formed responses before GRPO (writes a model folder)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--split", required=True, help="split CSV (rows with role == train are used)")
    parser.add_argument("--model", required=True, help="base model folder (from `adfm fetch-model`)")
    parser.add_argument(
        "--settings",
        required=True,
        type=settings_json,
        help='JSON object: {"prompt", "reasoning", "answer_format", "model": {dtype, min_pixels, max_pixels}, '
        '"seed", "warm_start": {method, max_steps, batch_size, learning_rate, decision_weight, warmup_ratio, '
        'weight_decay, max_grad_norm, logging_steps, bf16, lora: {r, alpha, dropout, target_modules}}}',
    )
    parser.add_argument("--out", required=True, help="model folder to create (weights, processor, warm_start_log.csv)")
    parser.set_defaults(func=_warm_start_main)

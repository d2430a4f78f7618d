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

from adfm.data import split_table
from adfm.io import InputError, atomic_path
from adfm.model.grpo import check_trainable, lora_config
from adfm.model.load import load_model
from adfm.model.warm_start_data import batch_tensors, training_examples, weighted_loss
from adfm.protocol import build_prompt
from adfm.settings.model import WarmStartOptions, WarmStartSettings

log = logging.getLogger(__name__)


def trainable_model(model, spec: WarmStartOptions):
    """The model with the warm start's trainable weights: a LoRA adapter, or the language model."""
    if spec.method == "lora":
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(spec.lora))
        check_trainable(model)
        return model
    for name, parameter in model.named_parameters():
        parameter.requires_grad = "visual" not in name
    return model


def training_rows(split_csv, spec: WarmStartOptions) -> pd.DataFrame:
    if spec.max_steps < 1 or spec.batch_size < 1:
        raise InputError("warm start settings: max_steps and batch_size must be at least 1")
    rows = split_table.read(split_csv, "train")
    if rows.empty:
        raise InputError(f"{split_csv}: no rows with role == 'train'")
    return rows


def make_accelerator(spec: WarmStartOptions, seed: int):
    import torch
    from accelerate import Accelerator

    use_bf16 = spec.bf16 and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    accelerator = Accelerator(mixed_precision="bf16" if use_bf16 else "no", cpu=not torch.cuda.is_available())
    torch.manual_seed(seed + accelerator.process_index)
    return accelerator


def optimiser(model, spec: WarmStartOptions):
    """AdamW over the trainable weights, with a linear schedule (warm-up, then decay to 0)."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    parameters = [p for p in model.parameters() if p.requires_grad]
    log.info("trainable: %d parameters (%s)", sum(p.numel() for p in parameters), spec.method)
    optimizer = torch.optim.AdamW(parameters, lr=spec.learning_rate, weight_decay=spec.weight_decay)
    warmup = math.ceil(spec.warmup_ratio * spec.max_steps)
    return parameters, optimizer, get_linear_schedule_with_warmup(optimizer, warmup, spec.max_steps)


def batches(examples: list[dict], batch_size: int, order: random.Random):
    """Endless batches: the examples reshuffled each time they run out."""
    queue: list[dict] = []
    while True:
        batch = []
        while len(batch) < batch_size:
            if not queue:
                queue = examples[:]
                order.shuffle(queue)
            batch.append(queue.pop())
        yield batch


def fit(
    model, processor, prompt_text: str, examples: list[dict], spec: WarmStartOptions, accelerator, seed: int
) -> tuple[list[dict], object]:
    """The training loop; returns one history row per step (loss, decision_loss, learning_rate) and the
    trained model, unwrapped."""
    parameters, optimizer, scheduler = optimiser(model, spec)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    history = []
    started = time.monotonic()
    stream = batches(examples, spec.batch_size, random.Random(seed * 1000 + accelerator.process_index))
    for step, batch in zip(range(1, spec.max_steps + 1), stream, strict=False):
        inputs, prompt_length, ids, weights = batch_tensors(processor, prompt_text, batch)
        inputs = {k: v.to(accelerator.device) for k, v in inputs.items()}
        with accelerator.autocast():
            logits = model(**inputs).logits
        loss, decision_loss = weighted_loss(logits, prompt_length, ids.to(logits.device), weights.to(logits.device))
        accelerator.backward(loss)
        if spec.max_grad_norm > 0:
            accelerator.clip_grad_norm_(parameters, spec.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        history.append(
            {
                "step": step,
                "loss": loss.item(),
                "decision_loss": decision_loss.item(),
                "learning_rate": scheduler.get_last_lr()[0],
            }
        )
        if step % spec.logging_steps == 0 or step == spec.max_steps:
            log.info(
                "warm start step %d/%d: loss %.4f, decision loss %.4f, %.2f s/step",
                step,
                spec.max_steps,
                history[-1]["loss"],
                history[-1]["decision_loss"],
                (time.monotonic() - started) / step,
            )
    accelerator.wait_for_everyone()
    return history, accelerator.unwrap_model(model)


def save_model(model, processor, history: list[dict], settings: WarmStartSettings, out_dir: Path) -> None:
    """The warm-started model folder: a LoRA adapter merged into the weights, frozen, with its log."""
    if settings.warm_start.method == "lora":
        model = model.merge_and_unload()
    for parameter in model.parameters():
        parameter.requires_grad = False
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        processor.save_pretrained(str(tmp))
        pd.DataFrame(history).to_csv(tmp / "warm_start_log.csv", index=False)
        (tmp / "warm_start.json").write_text(json.dumps(settings.to_dict(), indent=2) + "\n")
    log.info("warm-started model written to %s", out_dir)


def warm_start(
    split_csv: str | os.PathLike, model_dir: str | os.PathLike, settings: WarmStartSettings, out_dir: str | os.PathLike
) -> Path:
    """Supervised warm start on the split's training rows; write the resulting model folder."""
    spec, model_settings, out_dir = settings.warm_start, settings.model, Path(out_dir)
    rows = training_rows(split_csv, spec)
    accelerator = make_accelerator(spec, settings.seed)
    model, processor = load_model(model_dir, model_settings, for_training=True)
    prompt_text = processor.apply_chat_template(
        build_prompt(settings.prompt), add_generation_prompt=True, tokenize=False
    )
    examples, targets = training_examples(
        rows,
        processor.tokenizer,
        reasoning=settings.reasoning,
        answer_format=settings.answer_format,
        model=model_settings,
        decision_weight=spec.decision_weight,
    )
    log.info(
        "warm start (%s): %d training responses (%d anomalous), %d steps of %d per process (world size %d), lr %g, "
        "decision weight %g; e.g. %r",
        spec.method,
        len(examples),
        int(rows["label"].astype(int).sum()),
        spec.max_steps,
        spec.batch_size,
        accelerator.num_processes,
        spec.learning_rate,
        spec.decision_weight,
        targets[0][0],
    )
    history, model = fit(
        trainable_model(model, spec), processor, prompt_text, examples, spec, accelerator, settings.seed
    )
    if accelerator.is_main_process:
        save_model(model, processor, history, settings, out_dir)
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
    parser.add_argument("--settings", required=True, type=WarmStartSettings.argument, help=WarmStartSettings.describe())
    parser.add_argument("--out", required=True, help="model folder to create (weights, processor, warm_start_log.csv)")
    parser.set_defaults(func=_warm_start_main)

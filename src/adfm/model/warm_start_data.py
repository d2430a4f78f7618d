"""The warm start's targets, token weights, batches and loss (see adfm.model.warm_start)."""

from __future__ import annotations

import pandas as pd

from adfm.io import open_rgb
from adfm.model.families import boxes_in_response_frame
from adfm.protocol import answer_word, format_response
from adfm.settings.model import ModelSettings


def response_targets(
    rows: pd.DataFrame, *, reasoning: str, answer_format: str, model: ModelSettings
) -> list[tuple[str, str]]:
    """(target response, the response the other label would get) per row: boxes in the model frame."""
    pairs = []
    for row in rows.itertuples(index=False):
        boxes, _ = boxes_in_response_frame(model, row.boxes, int(row.width), int(row.height))
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
    first = next((i for i, (a, b) in enumerate(zip(ids, other_ids, strict=False)) if a != b), None)
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


def batch_tensors(processor, prompt_text: str, batch: list[dict]):
    """Model inputs for a batch: left-padded prompts (with images), then right-padded responses."""
    import torch

    images = [open_rgb(path) for example in batch for path in example["images"]]
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


def training_examples(
    rows: pd.DataFrame, tokenizer, *, reasoning: str, answer_format: str, model: ModelSettings, decision_weight: float
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Per training row: its images, target token ids and loss weights; and the (target, other) texts."""
    targets = response_targets(rows, reasoning=reasoning, answer_format=answer_format, model=model)
    examples = []
    for row, (target, other) in zip(rows.itertuples(index=False), targets, strict=False):
        ids, weights = token_weights(tokenizer, target, other, decision_weight)
        examples.append({"images": [str(row.reference_path), str(row.image_path)], "ids": ids, "weights": weights})
    return examples, targets

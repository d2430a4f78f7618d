"""Hugging Face generation: chat prompts of interleaved images and text -> response texts.

Prompts are batched with left padding (set by adfm.model.load.load_processor), so that the prompts'
last tokens stay aligned. `HFBackend` is the Hugging Face side of the backend seam every
prediction stage uses (adfm.inference.backend).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence

from adfm.inference.backend import OnAnswers, Part, PromptOf
from adfm.io import InputError, open_rgb
from adfm.model.families import apply_generation_defaults
from adfm.model.load import load_model


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
            raise InputError(f"unknown prompt part {kind!r}")
    return content, images


def template_of(processor) -> str:
    """The processor's chat template (a name -> template mapping joined; "" without one)."""
    template = getattr(processor, "chat_template", None) or ""
    return template if isinstance(template, str) else "\n".join(template.values())


def generate_texts(
    model, processor, texts: list[str], images: list, generation_config, *, num_return_sequences: int = 1
) -> list[list[str]]:
    """Responses for a batch of chat-formatted prompts (one list of num_return_sequences each).

    `images` are the images of all prompts, in order (PIL images or paths).
    """
    import torch

    loaded = [open_rgb(i) if isinstance(i, (str, os.PathLike)) else i for i in images]
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
    model,
    processor,
    conversations: list[Sequence[Part]],
    generation_config,
    *,
    add_vision_id: bool = False,
    num_return_sequences: int = 1,
) -> list[list[str]]:
    """Responses for a batch of single-turn conversations of interleaved images and text."""
    texts, images = [], []
    # "Picture n:" ids are a variable of Qwen's template only; given to a template without it,
    # transformers warns on every call
    template_options = {"add_vision_id": True} if add_vision_id and "add_vision_id" in template_of(processor) else {}
    for parts in conversations:
        content, paths = chat_content(parts)
        texts.append(
            processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False, **template_options
            )
        )
        images.extend(paths)
    return generate_texts(model, processor, texts, images, generation_config, num_return_sequences=num_return_sequences)


def generate_batch(
    model, processor, prompt: list[dict], pairs: list[tuple[str, str]], generation_config, num_return_sequences: int = 1
) -> list:
    """Responses for a batch of (reference, query) image pairs sharing one prompt (adfm detect).

    One string per pair (greedy), or one list of num_return_sequences strings per pair (sampling).
    """
    text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    images = [path for pair in pairs for path in pair]
    responses = generate_texts(
        model, processor, [text] * len(pairs), images, generation_config, num_return_sequences=num_return_sequences
    )
    return [r[0] for r in responses] if num_return_sequences == 1 else responses


def _with_pad_token(config):
    if config.pad_token_id is None:
        config.pad_token_id = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    return config


def model_config(model, *, max_new_tokens: int):
    """The model's own generation config (for Qwen2.5-VL top_k 1, repetition penalty 1.05), as MMAD decodes."""
    config = copy.deepcopy(model.generation_config)
    config.max_new_tokens = max_new_tokens
    return _with_pad_token(config)


def _neutral_config(model, *, max_new_tokens: int, repetition_penalty: float):
    # Sampling knobs are set to their neutral values, not None: generate() fills None fields from the
    # model's generation_config (Qwen2.5-VL's: top_k 1, top_p 0.001, repetition_penalty 1.05).
    config = copy.deepcopy(model.generation_config)
    config.temperature = 1.0
    config.top_p = 1.0
    config.top_k = 0
    config.num_beams = 1
    config.max_new_tokens = int(max_new_tokens)
    config.repetition_penalty = float(repetition_penalty)
    return _with_pad_token(config)


def greedy_config(model, *, max_new_tokens: int, repetition_penalty: float):
    """The model's generation config (eos, pad) switched to plain greedy decoding."""
    config = _neutral_config(model, max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
    config.do_sample = False
    config.top_k = 50  # unused when not sampling; 50 is transformers' default (no warning)
    return config


def sampling_config(
    model,
    *,
    max_new_tokens: int,
    temperature: float,
    repetition_penalty: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
):
    """Multinomial sampling at `temperature`, truncated by `top_k` / `top_p` as GRPO's settings say
    (train.grpo; 0 and 1.0: no truncation)."""
    if temperature <= 0:
        raise InputError(f"sampling temperature {temperature} must be > 0")
    config = _neutral_config(model, max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
    config.do_sample = True
    config.temperature = float(temperature)
    config.top_k, config.top_p = int(top_k), float(top_p)
    return config


class HFBackend:
    """Prompts -> responses with a loaded model, `batch_size` prompts per generate() call.

    `seed_of(first job of a batch)`: when given, torch is seeded with it before each batch, so that a
    rerun of the same batch samples the same responses.
    """

    def __init__(
        self,
        model,
        processor,
        generation_config,
        *,
        batch_size: int,
        num_return_sequences: int = 1,
        add_vision_id: bool = False,
        seed_of: Callable[[object], int] | None = None,
    ):
        if batch_size < 1:
            raise InputError(f"batch_size {batch_size} < 1")
        self.model, self.processor, self.generation_config = model, processor, generation_config
        self.batch_size, self.num_return_sequences = batch_size, num_return_sequences
        self.add_vision_id, self.seed_of = add_vision_id, seed_of

    def answer(self, jobs: list, prompt_of: PromptOf, on_answers: OnAnswers) -> None:
        """`on_answers([(job, texts), ...])` once per batch, in job order."""
        import torch

        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start : start + self.batch_size]
            if self.seed_of is not None:
                torch.manual_seed(self.seed_of(batch[0]))
            responses = generate_conversations(
                self.model,
                self.processor,
                [prompt_of(job) for job in batch],
                self.generation_config,
                add_vision_id=self.add_vision_id,
                num_return_sequences=self.num_return_sequences,
            )
            on_answers(list(zip(batch, responses, strict=False)))


def load_backend(model_dir, model_settings, *, adapter_dir=None, generation: Callable, **options) -> HFBackend:
    """The model of `model_dir` (with its LoRA adapter) as a backend; `generation(model)`: the
    stage's generation config, under the model family's defaults; `options`: HFBackend's."""
    model, processor = load_model(model_dir, model_settings, adapter_dir=adapter_dir)
    config = apply_generation_defaults(generation(model), model_settings, processor.tokenizer)
    return HFBackend(model, processor, config, **options)

"""A tiny, randomly initialised Qwen2.5-VL for the CPU demo and the tests.

It has the architecture, the special tokens, the chat template and the stock processor of
Qwen/Qwen2.5-VL-7B-Instruct, only very small: 2 text layers of width 64, 2 vision blocks of width
32, and a byte-level BPE vocabulary of about a thousand tokens trained offline (no download) on the
words our prompts and responses use (adfm.model.demo_tokenizer, shared with the other demo models).
It is saved in the Hugging Face format, so it is loaded by the same code
(`adfm.model.load.load_model_and_processor`) as the real 7B model.

Everything is seeded: two builds give byte-identical weights and tokenizer.
"""

from __future__ import annotations

import os
from pathlib import Path

from adfm.model import demo_tokenizer
from adfm.model.demo_save import save_tiny_model
from adfm.model.demo_tokenizer import DEFAULT_VOCAB_SIZE

DEMO_SOURCE = "demo:tiny-qwen2.5-vl"

# Qwen2.5's special tokens, in Qwen's order (ids 151643.. in the real vocabulary; appended after the
# BPE vocabulary here).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]

# The chat template shipped with Qwen/Qwen2.5-VL-7B-Instruct (chat_template.json).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Image processor settings of Qwen/Qwen2.5-VL-7B-Instruct (preprocessor_config.json).
IMAGE_PROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}

# Architecture: the 7B's, shrunk. head_dim 16 (64 / 4), mrope sections sum to head_dim / 2 = 8.
TEXT_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "max_window_layers": 2,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
    "use_sliding_window": False,
    "hidden_act": "silu",
}
VISION_CONFIG = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": 64,  # = text hidden size
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [1],
    "tokens_per_second": 2,
}

# Sampling defaults of Qwen/Qwen2.5-VL-7B-Instruct (generation_config.json).
GENERATION_DEFAULTS = {"do_sample": True, "repetition_penalty": 1.05, "temperature": 0.1, "top_p": 0.001, "top_k": 1}


def build_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE):
    """A Qwen2Tokenizer over the shared offline BPE (adfm.model.demo_tokenizer), with Qwen2.5's tokens."""
    return demo_tokenizer.build_tokenizer(
        SPECIAL_TOKENS,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        vocab_size=vocab_size,
    )


def _ordered_specials(tokenizer) -> dict[str, int]:
    return demo_tokenizer.special_token_ids(tokenizer, SPECIAL_TOKENS)


def build_processor(vocab_size: int = DEFAULT_VOCAB_SIZE):
    """The stock Qwen2_5_VLProcessor around the tiny tokenizer."""
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = build_tokenizer(vocab_size)
    image_processor = Qwen2VLImageProcessor(**IMAGE_PROCESSOR)
    video_processor = Qwen2VLVideoProcessor(
        **{k: v for k, v in IMAGE_PROCESSOR.items() if k not in ("min_pixels", "max_pixels")}
    )
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(tokenizer):
    from transformers import Qwen2_5_VLConfig

    ids = _ordered_specials(tokenizer)
    text = dict(
        TEXT_CONFIG,
        vocab_size=demo_tokenizer.padded_vocab_size(tokenizer),
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(VISION_CONFIG),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_demo_model(out_dir: str | os.PathLike, *, seed: int = 0, vocab_size: int = DEFAULT_VOCAB_SIZE) -> Path:
    """Build the tiny model, its tokenizer and its processor, and save them to `out_dir`."""
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    processor = build_processor(vocab_size)
    ids = _ordered_specials(processor.tokenizer)
    return save_tiny_model(
        out_dir,
        name="Qwen2.5-VL",
        model_class=Qwen2_5_VLForConditionalGeneration,
        config=build_config(processor.tokenizer),
        processor=processor,
        # The 7B's generation_config.json (near-greedy sampling), so that training and prediction are
        # exercised against the same defaults they must override.
        generation=GenerationConfig(
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
            pad_token_id=ids["<|endoftext|>"],
            **GENERATION_DEFAULTS,
        ),
        seed=seed,
    )

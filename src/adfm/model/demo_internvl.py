"""A tiny, randomly initialised InternVL3 for the CPU demo and the tests.

It has the transformers-native architecture (InternVLForConditionalGeneration: InternViT vision
encoder, pixel-shuffle projector, Qwen2 text model), the image special tokens, the chat template and
the stock processor (InternVLProcessor around a GotOcr2 image processor that cuts images into tiles)
of OpenGVLab/InternVL3-8B-hf, only very small: 2 text layers of width 64, 2 vision layers of width
32, and the shared offline byte-level BPE of adfm.model.demo_tokenizer. It is saved in the Hugging
Face format, so AutoProcessor and AutoModelForImageTextToText load it as they load the real model.

Sizes: the real model cuts an image into 448-px tiles (at most 12, plus a thumbnail when there is
more than one) and turns each into 256 tokens: 32 x 32 patches of 14 px, halved each way by the
pixel shuffle (downsample 0.5). Here a tile is 112 px, the size of the demo's images, so that a demo
image is one tile as a 448-px image is for the real model, and a tile costs 16 tokens (8 x 8
patches of 14 px, shuffled to 4 x 4): two images per prompt stay a few dozen tokens.

Everything is seeded: two builds give byte-identical weights and tokenizer.
"""

from __future__ import annotations

import os
from pathlib import Path

from adfm.model import demo_tokenizer
from adfm.model.demo import SPECIAL_TOKENS as QWEN_SPECIAL_TOKENS
from adfm.model.demo_save import save_tiny_model
from adfm.model.demo_tokenizer import DEFAULT_VOCAB_SIZE

DEMO_SOURCE = "demo:tiny-internvl"

# InternVL3's tokens follow Qwen2.5's (151665.. in the real vocabulary: <IMG_CONTEXT> is its image
# token 151667), then the <video> token the -hf conversion adds.
SPECIAL_TOKENS = [
    *QWEN_SPECIAL_TOKENS,
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
    "<video>",
]
# InternVLProcessor reads these attributes of the tokenizer (tokenizer_config.json of the -hf model).
NAMED_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}

# In the shape of InternVL3-8B-hf's chat template: chatml without a default system turn, each image
# item one "<IMG_CONTEXT>\n" placeholder (the processor expands it into <img>, the tile tokens and
# </img>), the generation prompt on request.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TILE = 112  # px: a demo image is one tile (the real model's tiles are 448 px)
PATCH = 14  # px, as InternViT's
DOWNSAMPLE = 0.5  # the pixel shuffle's, as the real model's: 2 x 2 patches make one token
TOKENS_PER_TILE = int((TILE // PATCH * DOWNSAMPLE) ** 2)  # 16 (the real model's: 256)

# The real preprocessor_config.json's, with the tile shrunk. crop_to_patches is False here as there:
# InternVLProcessor passes crop_to_patches=True itself on every call.
IMAGE_PROCESSOR = {
    "size": {"height": TILE, "width": TILE},
    "crop_to_patches": False,
    "min_patches": 1,
    "max_patches": 12,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,  # bicubic
}

# Architecture: InternVL3-8B's (Qwen2.5-7B text, InternViT-300M vision), shrunk.
TEXT_CONFIG = {
    "model_type": "qwen2",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "max_window_layers": 2,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "use_sliding_window": False,
    "hidden_act": "silu",
}
VISION_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": [TILE, TILE],  # the position embeddings cover one tile
    "patch_size": [PATCH, PATCH],
    "attention_bias": True,
    "norm_type": "layer_norm",
    "layer_scale_init_value": 0.1,
    "hidden_act": "gelu",
}


def build_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE):
    """The shared offline BPE with InternVL3's special tokens and chat template."""
    return demo_tokenizer.build_tokenizer(
        SPECIAL_TOKENS,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        named_tokens=NAMED_TOKENS,
        vocab_size=vocab_size,
    )


def build_processor(vocab_size: int = DEFAULT_VOCAB_SIZE):
    """The stock InternVLProcessor (GotOcr2 tiles) around the tiny tokenizer."""
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    video = {k: v for k, v in IMAGE_PROCESSOR.items() if k in ("size", "image_mean", "image_std", "resample")}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(**IMAGE_PROCESSOR),
        tokenizer=build_tokenizer(vocab_size),
        video_processor=InternVLVideoProcessor(**video),
        image_seq_length=TOKENS_PER_TILE,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(tokenizer):
    from transformers import InternVLConfig

    ids = demo_tokenizer.special_token_ids(tokenizer, SPECIAL_TOKENS)
    text = dict(
        TEXT_CONFIG,
        vocab_size=demo_tokenizer.padded_vocab_size(tokenizer),
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    return InternVLConfig(
        text_config=text,
        vision_config=dict(VISION_CONFIG),
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=TOKENS_PER_TILE,
        downsample_ratio=DOWNSAMPLE,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,  # as the 8B's (Qwen2.5-7B unties them)
    )


def build_demo_model(out_dir: str | os.PathLike, *, seed: int = 0, vocab_size: int = DEFAULT_VOCAB_SIZE) -> Path:
    """Build the tiny InternVL, its tokenizer and its processor, and save them to `out_dir`."""
    from transformers import GenerationConfig, InternVLForConditionalGeneration

    processor = build_processor(vocab_size)
    ids = demo_tokenizer.special_token_ids(processor.tokenizer, SPECIAL_TOKENS)
    return save_tiny_model(
        out_dir,
        name="InternVL",
        model_class=InternVLForConditionalGeneration,
        config=build_config(processor.tokenizer),
        processor=processor,
        # greedy by default (no sampling knobs): the prediction code sets its own decoding anyway
        generation=GenerationConfig(
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]
        ),
        seed=seed,
    )

"""A tiny, randomly initialised LLaVA-NeXT (LLaVA-1.6) for the CPU demo and the tests.

It has the architecture (LlavaNextForConditionalGeneration: CLIP vision tower, two-layer projector,
Llama text model, "anyres" image grid with learned row-end tokens), the image token, a chat
template like and the stock processor (LlavaNextProcessor, LlavaNextImageProcessor) of
llava-hf/llava-v1.6-34b-hf, only very small: 2 text layers of width 64, 2 vision layers of width
32, and the shared offline byte-level BPE of adfm.model.demo_tokenizer (the 34B's is Yi's
SentencePiece; the processor only needs the `<image>` token). It is saved in the Hugging Face
format, so AutoProcessor and AutoModelForImageTextToText load it as they load the real model.

Sizes: the real model sees an image as a 336-px base view plus a grid of 336-px crops (the
pinpoint resolution nearest the image: 1x2, 2x1, 2x2, 1x3 or 3x1 crops), each 24 x 24 patches of
14 px, so an image costs one to three thousand tokens. Here the base size is 112 px, the demo's
image size, with the same pinpoints in multiples of 112, and patches of 28 px: a base view or crop
is 4 x 4 patches, so a 112-px image costs tens of tokens (patches of 14 px would make it 136).

Everything is seeded: two builds give byte-identical weights and tokenizer.
"""

from __future__ import annotations

import os
from pathlib import Path

from adfm.model import demo_tokenizer
from adfm.model.demo_save import save_tiny_model
from adfm.model.demo_tokenizer import DEFAULT_VOCAB_SIZE

DEMO_SOURCE = "demo:tiny-llava-next"

# Yi's chat tokens, then the <image> token of the llava-hf conversion (64000 in the 34B's vocabulary)
# and a padding token of its own.
SPECIAL_TOKENS = [
    "<unk>",
    "<|startoftext|>",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|im_sep|>",
    "<image>",
    "<pad>",
]

# Like llava-v1.6-34b-hf's chat template: chatml, no default system turn, each message's images
# first (one "<image>\n" each, which the processor expands into the image's tokens), then its texts;
# string contents are accepted too.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}"
    "{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

BASE = 112  # px: the base view and each crop (the real model's: 336), a demo image's size
PATCH = 28  # px: 4 x 4 patches per view (the real model's: 14 px, 24 x 24)
# The 34B's pinpoints (in units of its 336-px base), in units of 112 px: (height, width).
PINPOINTS = [[BASE * h, BASE * w] for h, w in ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))]

# The real preprocessor_config.json's, with the base size shrunk.
IMAGE_PROCESSOR = {
    "size": {"shortest_edge": BASE},
    "crop_size": {"height": BASE, "width": BASE},
    "image_grid_pinpoints": PINPOINTS,
    "do_pad": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,  # bicubic
}

# Architecture: the 34B's (Yi-34B text with grouped-query attention, CLIP ViT-L/14-336), shrunk.
TEXT_CONFIG = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0},
    "hidden_act": "silu",
}
VISION_CONFIG = {
    "model_type": "clip_vision_model",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,  # the features come from the second-to-last layer, as the 34B's
    "num_attention_heads": 2,
    "image_size": BASE,
    "patch_size": PATCH,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
}


def build_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE):
    """The shared offline BPE with Yi's chat tokens, `<image>` and `<pad>`, and the chatml template."""
    return demo_tokenizer.build_tokenizer(
        SPECIAL_TOKENS,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
        named_tokens={"image_token": "<image>"},
        model_max_length=4096,  # Yi-34B's context
        vocab_size=vocab_size,
    )


def build_processor(vocab_size: int = DEFAULT_VOCAB_SIZE):
    """The stock LlavaNextProcessor (anyres grid) around the tiny tokenizer."""
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    return LlavaNextProcessor(
        image_processor=LlavaNextImageProcessor(**IMAGE_PROCESSOR),
        tokenizer=build_tokenizer(vocab_size),
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token="<image>",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
    )


def build_config(tokenizer):
    from transformers import LlavaNextConfig

    ids = demo_tokenizer.special_token_ids(tokenizer, SPECIAL_TOKENS)
    text = dict(
        TEXT_CONFIG,
        vocab_size=demo_tokenizer.padded_vocab_size(tokenizer),
        bos_token_id=ids["<|startoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<pad>"],
    )
    return LlavaNextConfig(
        text_config=text,
        vision_config=dict(VISION_CONFIG),
        image_token_index=ids["<image>"],
        image_grid_pinpoints=PINPOINTS,
        image_seq_length=(BASE // PATCH) ** 2,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


def build_demo_model(out_dir: str | os.PathLike, *, seed: int = 0, vocab_size: int = DEFAULT_VOCAB_SIZE) -> Path:
    """Build the tiny LLaVA-NeXT, its tokenizer and its processor, and save them to `out_dir`."""
    from transformers import GenerationConfig, LlavaNextForConditionalGeneration

    processor = build_processor(vocab_size)
    ids = demo_tokenizer.special_token_ids(processor.tokenizer, SPECIAL_TOKENS)
    return save_tiny_model(
        out_dir,
        name="LLaVA-NeXT",
        model_class=LlavaNextForConditionalGeneration,
        config=build_config(processor.tokenizer),
        processor=processor,
        # greedy by default (no sampling knobs): the prediction code sets its own decoding anyway
        generation=GenerationConfig(
            bos_token_id=ids["<|startoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<pad>"]
        ),
        seed=seed,
    )

"""What a model family needs, applied: its image budget on the processor, the frame its responses
write boxes in, its generation defaults. The traits come from config `model_families`
(adfm.settings.model.FamilySettings), so adding a model of a known family is a config entry and no
code branches on a model's name.

Pure functions but `apply_image_budget` and `apply_generation_defaults`, which set the results on
a loaded processor and generation config.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from adfm.boxes import Box, model_frame_size, scale_boxes
from adfm.io import InputError
from adfm.settings.model import ModelSettings


def image_processor_settings(model: ModelSettings) -> dict[str, Any]:
    """The image processor attributes that give the model entry's image budget (none: its own)."""
    budget = model.family.image_budget
    if budget == "pixels":
        if model.min_pixels > model.max_pixels:
            raise InputError(f"min_pixels {model.min_pixels} > max_pixels {model.max_pixels}")
        # Qwen2-VL processors read the budget as size's shortest_edge / longest_edge (pixel areas)
        return {"size": {"shortest_edge": model.min_pixels, "longest_edge": model.max_pixels}}
    if budget == "tiles" and model.max_tiles is not None:
        if model.max_tiles < 1:
            raise InputError(f"max_tiles {model.max_tiles} < 1")
        # GotOcr2's tiling (InternVL, whose processor always crops): 1..max_patches tiles, plus a thumbnail
        return {"min_patches": 1, "max_patches": model.max_tiles}
    return {}


def apply_image_budget(processor, model: ModelSettings) -> None:
    """Set the budget on the processor's image processor itself: passed to from_pretrained, the
    keys would also reach the tokenizer's init kwargs and every processor call."""
    from transformers.image_utils import SizeDict

    image_processor = processor.image_processor
    for name, value in image_processor_settings(model).items():
        if not hasattr(image_processor, name):
            raise InputError(
                f"{type(image_processor).__name__} has no {name!r}: image_budget "
                f"{model.family.image_budget!r} does not fit this model (see config model_families)"
            )
        setattr(image_processor, name, SizeDict(**value) if name == "size" else value)


def response_frame(model: ModelSettings, width: int, height: int) -> tuple[float, float]:
    """(W, H) of the frame the model's responses write boxes in, for an image of width x height."""
    family = model.family
    if family.boxes == "resized":
        return model_frame_size(
            width, height, min_pixels=model.min_pixels, max_pixels=model.max_pixels, factor=family.resize_factor
        )
    if family.boxes == "relative":
        return family.box_scale, family.box_scale
    return width, height


def boxes_in_response_frame(
    model: ModelSettings, boxes: Sequence[Sequence[float]], width: int, height: int
) -> tuple[list[Box], tuple[float, float]]:
    """Boxes in the image's pixels -> the same boxes in the model's response frame, and that frame."""
    frame = response_frame(model, width, height)
    return scale_boxes(boxes, (width, height), frame, ndigits=2), frame


def apply_generation_defaults(generation_config, model: ModelSettings, tokenizer):
    """The family's generation defaults on a stage's generation config (a copy): its repetition
    penalty when it has one, its end-of-turn tokens as further eos ids."""
    config = copy.deepcopy(generation_config)
    family = model.family
    if family.repetition_penalty is not None:
        config.repetition_penalty = float(family.repetition_penalty)
    if family.eos_tokens:
        ids = []
        for token in family.eos_tokens:
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == tokenizer.unk_token_id:
                raise InputError(f"model family eos token {token!r} is not a token of this model's tokenizer")
            ids.append(token_id)
        current = config.eos_token_id
        current = [] if current is None else [current] if isinstance(current, int) else list(current)
        config.eos_token_id = list(dict.fromkeys([*current, *ids]))
    return config

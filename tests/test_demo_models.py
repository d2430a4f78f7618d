"""The tiny InternVL and LLaVA-NeXT demo models: built offline and deterministically, loaded by the
Auto classes as real checkpoints are, their processors' image token counts, and generation through
the prediction code."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from model_fixtures import tiny_internvl_dir, tiny_llava_next_dir  # noqa: F401 (fixtures)
from PIL import Image

from adfm.inference.generate import chat_content, generate_conversations, greedy_config
from adfm.io import InputError
from adfm.model.load import DEMO_MODELS, fetch_model

FAMILIES = {
    "internvl": SimpleNamespace(
        source="demo:tiny-internvl",
        fixture="tiny_internvl_dir",
        classes=("InternVLProcessor", "GotOcr2ImageProcessor", "InternVLForConditionalGeneration"),
        placeholder="<IMG_CONTEXT>\n",
        tokens={(112, 112): 16, (224, 112): 48},  # one 112-px tile; two tiles and a thumbnail
    ),
    "llava-next": SimpleNamespace(
        source="demo:tiny-llava-next",
        fixture="tiny_llava_next_dir",
        classes=("LlavaNextProcessor", "LlavaNextImageProcessor", "LlavaNextForConditionalGeneration"),
        placeholder="<image>\n",
        # base view 4 x 4 + 1x2 crops unpadded to 4 x 4 + 4 row ends; 1x2 crops 4 x 8 + 4 row ends
        tokens={(112, 112): 36, (224, 112): 52},
    ),
}
PROMPT = "Is there any defect in the object?"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[tuple[int, int], str]:
    """Grey images of the demo's size and of twice its width, by (width, height)."""
    folder = tmp_path_factory.mktemp("images")
    paths = {}
    for size in ((112, 112), (224, 112)):
        path = folder / f"{size[0]}x{size[1]}.png"
        Image.new("RGB", size, (120, 130, 140)).save(path)
        paths[size] = str(path)
    return paths


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def loaded(request):
    """(family, model folder, processor, model), loaded as the prediction code loads a checkpoint."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    family = FAMILIES[request.param]
    folder = request.getfixturevalue(family.fixture)
    processor = AutoProcessor.from_pretrained(str(folder), padding_side="left")
    model = AutoModelForImageTextToText.from_pretrained(str(folder)).eval()
    return family, folder, processor, model


def _chat(processor, parts, *, generation: bool = True) -> tuple[str, list[str]]:
    """The prompt text of one user turn of `parts`, and its image paths."""
    content, paths = chat_content(parts)
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=generation, tokenize=False), paths


def _image_tokens(processor, parts) -> int:
    text, paths = _chat(processor, parts)
    batch = processor(text=[text], images=[Image.open(p).convert("RGB") for p in paths], return_tensors="pt")
    return batch["input_ids"][0].tolist().count(processor.image_token_id)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_demo_models_are_registered_and_deterministic(name, request, tmp_path):
    family = FAMILIES[name]
    built = request.getfixturevalue(family.fixture)
    again = fetch_model(family.source, None, tmp_path / "again")
    names = sorted(p.name for p in built.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert "model.safetensors" in names and "tokenizer.json" in names
    for file in names:
        assert (again / file).read_bytes() == (built / file).read_bytes(), file
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temp folder left behind


def test_unknown_demo_models_list_the_known_ones(tmp_path):
    with pytest.raises(InputError, match="demo:huge") as error:
        fetch_model("demo:huge", None, tmp_path / "m")
    assert all(source in str(error.value) for source in DEMO_MODELS)
    assert {"demo:tiny-qwen2.5-vl", "demo:tiny-internvl", "demo:tiny-llava-next"} <= set(DEMO_MODELS)
    assert not (tmp_path / "m").exists()


def test_auto_classes_load_the_stock_processor_and_model(loaded):
    family, folder, processor, model = loaded
    names = (type(processor).__name__, type(processor.image_processor).__name__, type(model).__name__)
    assert names == family.classes
    tokenizer = processor.tokenizer
    assert (tokenizer.eos_token, tokenizer.padding_side) == ("<|im_end|>", "left")
    assert tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert not model.generation_config.do_sample
    assert (
        model.config.image_token_id
        == processor.image_token_id
        == tokenizer.convert_tokens_to_ids(family.placeholder.strip())
    )
    config = json.loads((Path(folder) / "config.json").read_text())
    assert config["text_config"]["hidden_size"] == 64 and config["text_config"]["num_hidden_layers"] == 2
    assert sum(p.numel() for p in model.parameters()) < 500_000


def test_chat_template_renders_one_placeholder_per_image(loaded):
    family, _folder, processor, _model = loaded
    text, _ = _chat(processor, [("image", "a.png"), ("image", "b.png"), ("text", PROMPT)])
    assert text == f"<|im_start|>user\n{family.placeholder * 2}{PROMPT}<|im_end|>\n<|im_start|>assistant\n"


def test_llava_next_template_puts_images_before_texts(tiny_llava_next_dir):
    """As llava-v1.6-34b-hf's: a message's images first, whatever their place among its texts."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_llava_next_dir))
    text, _ = _chat(processor, [("text", "Reference:"), ("image", "a.png"), ("text", " Query?")], generation=False)
    assert text == "<|im_start|>user\n<image>\nReference: Query?<|im_end|>\n"


def test_processor_expands_each_image_into_tens_of_tokens(loaded, images):
    family, _folder, processor, _model = loaded
    counts = {size: _image_tokens(processor, [("image", path), ("text", PROMPT)]) for size, path in images.items()}
    assert counts == family.tokens
    two = [("image", images[112, 112]), ("image", images[224, 112]), ("text", PROMPT)]
    assert _image_tokens(processor, two) == sum(family.tokens.values())


def test_internvl_image_budget_is_its_tile_count(tiny_internvl_dir, images):
    """The image processor's max_patches bounds the tiles; InternVLProcessor crops to tiles on every
    call (crop_to_patches=True), whatever the image processor's own crop_to_patches says."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_internvl_dir), padding_side="left")
    processor.image_processor.crop_to_patches = True
    processor.image_processor.max_patches = 4
    wide = [("image", images[224, 112]), ("text", PROMPT)]
    assert _image_tokens(processor, wide) == 48
    processor.image_processor.max_patches = 1
    assert _image_tokens(processor, wide) == 16
    processor.image_processor.crop_to_patches = False
    processor.image_processor.max_patches = 4
    assert _image_tokens(processor, wide) == 48


def test_generate_conversations_answers_a_batch_of_two(loaded, images):
    _family, _folder, processor, model = loaded
    reference, query = images[112, 112], images[224, 112]
    conversations = [
        [("image", reference), ("image", reference), ("text", PROMPT)],
        [("image", reference), ("image", query), ("text", "The second image is the query image. " + PROMPT)],
    ]
    config = greedy_config(model, max_new_tokens=8, repetition_penalty=1.0)
    answers = generate_conversations(model, processor, conversations, config)
    assert len(answers) == 2 and all(len(a) == 1 and isinstance(a[0], str) for a in answers), answers
    assert generate_conversations(model, processor, conversations, config) == answers  # greedy

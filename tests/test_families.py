"""Model families: the image budget each puts on its processor, the frame its responses' boxes are
read in, its generation defaults, and which model a run answers with (config models, runs.<run>.model)."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import GenerationConfig

from adfm import vlms
from adfm.boxes import from_model_frame
from adfm.config import check_references, load_config
from adfm.io import InputError
from adfm.model.families import (
    apply_generation_defaults,
    apply_image_budget,
    boxes_in_response_frame,
    image_processor_settings,
    response_frame,
)
from adfm.settings import SettingsError
from adfm.settings.inference import MmadSettings, PredictSettings
from adfm.settings.model import FamilySettings, ModelSettings

REPO = Path(__file__).resolve().parents[1]
QWEN = FamilySettings(image_budget="pixels", resize_factor=28, boxes="resized")
INTERNVL = FamilySettings(image_budget="tiles", boxes="relative", box_scale=1000, eos_tokens=["<|im_end|>"])
LLAVA_NEXT = FamilySettings(image_budget="native", boxes="relative", box_scale=1)


@pytest.fixture(scope="module")
def paper():
    return load_config([REPO / "config.yaml"])


def test_pixels_budget_is_the_processors_size_and_boxes_follow_its_resize():
    model = ModelSettings(family=QWEN, min_pixels=3136, max_pixels=262144)
    assert image_processor_settings(model) == {"size": {"shortest_edge": 3136, "longest_edge": 262144}}
    assert response_frame(model, 512, 512) == (504, 504)  # smart_resize on the 28-px grid
    boxes, frame = boxes_in_response_frame(model, [[0, 0, 512, 256]], 512, 512)
    assert frame == (504, 504) and boxes == [[0.0, 0.0, 504.0, 252.0]]
    assert from_model_frame(boxes, frame, 512, 512) == [[0.0, 0.0, 512.0, 256.0]]
    # another factor, another grid: the factor is the family's, not a constant of the code
    coarse = ModelSettings(family=FamilySettings(resize_factor=56), min_pixels=3136, max_pixels=262144)
    assert response_frame(coarse, 512, 512) == (504, 504) and response_frame(coarse, 300, 300) == (280, 280)


def test_tiles_budget_sets_internvls_tiling_and_boxes_are_on_a_0_1000_grid():
    model = ModelSettings(family=INTERNVL, max_tiles=6)
    assert image_processor_settings(model) == {"min_patches": 1, "max_patches": 6}
    assert image_processor_settings(ModelSettings(family=INTERNVL)) == {}  # null: the processor's own
    boxes, frame = boxes_in_response_frame(model, [[0, 0, 512, 256]], 512, 1024)
    assert frame == (1000, 1000) and boxes == [[0.0, 0.0, 1000.0, 250.0]]
    assert from_model_frame(boxes, frame, 512, 1024) == [[0.0, 0.0, 512.0, 256.0]]


def test_native_budget_leaves_the_processor_and_fraction_boxes():
    model = ModelSettings(family=LLAVA_NEXT, min_pixels=1, max_pixels=2)  # a pixel budget it does not read
    assert image_processor_settings(model) == {}
    boxes, frame = boxes_in_response_frame(model, [[10, 20, 60, 120]], 100, 200)
    assert frame == (1, 1) and boxes == [[0.1, 0.1, 0.6, 0.6]]


def test_original_frame_keeps_the_images_pixels():
    model = ModelSettings(family=FamilySettings(image_budget="native", boxes="original"))
    assert boxes_in_response_frame(model, [[1, 2, 3, 4]], 640, 480) == ([[1.0, 2.0, 3.0, 4.0]], (640, 480))


def test_bad_budgets_are_named():
    with pytest.raises(SettingsError, match="resized' needs image_budget 'pixels'"):
        FamilySettings(image_budget="tiles", boxes="resized")
    with pytest.raises(InputError, match="min_pixels 9 > max_pixels 4"):
        image_processor_settings(ModelSettings(family=QWEN, min_pixels=9, max_pixels=4))
    with pytest.raises(InputError, match="max_tiles 0 < 1"):
        image_processor_settings(ModelSettings(family=INTERNVL, max_tiles=0))


def test_budget_goes_on_the_image_processor_and_a_misfit_is_named():
    processor = SimpleNamespace(image_processor=SimpleNamespace(min_patches=1, max_patches=12))
    apply_image_budget(processor, ModelSettings(family=INTERNVL, max_tiles=4))
    assert processor.image_processor.max_patches == 4 and processor.image_processor.min_patches == 1
    # an InternVL processor under a pixels family: no `size` to set
    with pytest.raises(InputError, match="has no 'size'.*image_budget 'pixels'"):
        apply_image_budget(processor, ModelSettings(family=QWEN))


class Tokenizer:
    unk_token_id = None

    def convert_tokens_to_ids(self, token):
        return {"<|im_end|>": 7, "<|endoftext|>": 5}.get(token)


def test_generation_defaults_add_end_of_turn_tokens_on_a_copy():
    stage = GenerationConfig(eos_token_id=5, repetition_penalty=1.0)
    before = copy.deepcopy(stage.to_dict())
    family = FamilySettings(image_budget="native", boxes="original", eos_tokens=["<|im_end|>"], repetition_penalty=1.05)
    config = apply_generation_defaults(stage, ModelSettings(family=family), Tokenizer())
    assert config.eos_token_id == [5, 7] and config.repetition_penalty == 1.05
    assert stage.to_dict() == before
    assert apply_generation_defaults(stage, ModelSettings(family=QWEN), Tokenizer()).eos_token_id == 5
    unknown = FamilySettings(image_budget="native", boxes="original", eos_tokens=["<end>"])
    with pytest.raises(InputError, match="'<end>' is not a token"):
        apply_generation_defaults(stage, ModelSettings(family=unknown), Tokenizer())


def test_every_family_of_the_config_is_valid_settings(paper):
    for name, spec in paper["model_families"].items():
        FamilySettings.from_dict(spec, f"model_families.{name}")


def test_a_run_answers_with_its_model_entry(paper):
    internvl = PredictSettings.from_config(paper, "internvl3_38b").model
    assert internvl.family.image_budget == "tiles" and internvl.max_tiles == 12
    assert PredictSettings.from_config(paper, "zero_shot").model.family.boxes == "resized"
    assert vlms.folder_of(paper, "llava_next_34b_cross") == "llava-v1.6-34b"
    assert vlms.folder_of(paper, "adfm") == paper["model"]["name"]
    assert vlms.prediction_resources(paper, "internvl3_38b")["gpu"] == 2
    assert vlms.prediction_resources(paper, "zero_shot") == {}
    # MMAD's pixel budget replaces a pixels family's; a tiles family keeps its tiles
    mmad = MmadSettings.from_config(paper, "internvl3_8b").model
    assert mmad.family.image_budget == "tiles" and mmad.max_tiles == 12


def test_model_references_are_checked(paper):
    config = copy.deepcopy(paper)
    config["runs"]["internvl3_8b"]["model"] = "internvl9"
    config["runs"]["adfm"]["model"] = "internvl3-8b"
    config["models"]["llava-v1.6-34b"]["family"] = "llava_twelve"
    config["models"][config["model"]["name"]] = dict(config["models"]["internvl3-8b"])
    problems = check_references(config)
    assert "runs.internvl3_8b.model: unknown model 'internvl9'" in " ".join(problems)
    assert any(
        p.startswith("runs.adfm.model: trained and warm-started runs start from the base model") for p in problems
    )
    assert "models.llava-v1.6-34b.family: unknown family 'llava_twelve'" in problems
    assert f"models.{config['model']['name']}: the name of the base model (model.name)" in problems

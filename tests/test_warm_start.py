"""The supervised warm start: targets, decision weights, the merged model GRPO starts from."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from model_fixtures import MODEL_SETTINGS, PROMPT, split_csv, tiny_model_dir, train_settings  # noqa: F401 (fixtures)

from adfm.data import split_table
from adfm.model.demo import build_tokenizer
from adfm.model.train import train
from adfm.model.warm_start import warm_start
from adfm.model.warm_start_data import response_targets, token_weights
from adfm.protocol import format_response, parse_response
from adfm.settings import SettingsError
from adfm.settings.model import ModelSettings, TrainSettings, WarmStartSettings

BUDGET = ModelSettings(min_pixels=3136, max_pixels=12544)  # the tiny model's two 112-px images


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def weighted_tokens(tokenizer, target, other):
    ids, weights = token_weights(tokenizer, target, other, 10.0)
    return [(tokenizer.convert_ids_to_tokens(i), w) for i, w in zip(ids, weights, strict=False)]


def test_decision_tokens_are_the_box_list_opening_and_the_answer(tokenizer):
    target, other = format_response([[1, 2, 30, 40]], "yes"), format_response([], "no")
    tokens = weighted_tokens(tokenizer, target, other)
    decoded = lambda pairs: "".join(t for t, _ in pairs).replace("Ġ", " ")  # noqa: E731
    heavy = [(t, w) for t, w in tokens if w == 10.0]
    light = [(t, w) for t, w in tokens if w == 1.0]
    # the first token that differs from the other label's response opens the box list
    assert heavy[0][0].startswith(">[{") and "[{" not in decoded(light)
    # the answer word is heavy, the tags around it are not (the module docstring says why)
    assert decoded(heavy[1:]).strip(">") == "yes" and "answer" not in decoded(heavy[1:])
    assert tokens[-1] == ("<|im_end|>", 1.0)
    assert decoded(tokens).startswith(target) and sum(w == 10.0 for _, w in tokens) < len(tokens) / 3


def test_normal_target_is_weighted_at_its_empty_box_list(tokenizer):
    tokens = weighted_tokens(tokenizer, format_response([], "no"), format_response([[0, 0, 1, 1]], "yes"))
    assert tokens[1] == (">[]</", 10.0)


def test_training_forward_matches_generation_positions(tiny_model_dir, split_csv):
    """The warm start's teacher-forced forward must see the images at the positions generation uses
    (Qwen2.5-VL's 3-D rope needs mm_token_type_ids): its logits equal the processor's own encoding."""
    import torch
    from PIL import Image

    from adfm.model.load import load_model
    from adfm.model.warm_start_data import batch_tensors
    from adfm.protocol import build_prompt
    from adfm.settings.model import ModelSettings

    model, processor = load_model(tiny_model_dir, ModelSettings(dtype="float32", min_pixels=3136, max_pixels=12544))
    rows = split_table.read(split_csv, "train").iloc[:2]
    prompt = processor.apply_chat_template(build_prompt(PROMPT), add_generation_prompt=True, tokenize=False)
    target = format_response([[1, 2, 30, 40]], "yes")
    ids, weights = token_weights(processor.tokenizer, target, format_response([], "no"), 10.0)
    batch = [{"images": [r.reference_path, r.image_path], "ids": ids, "weights": weights} for r in rows.itertuples()]
    inputs, prompt_length, _, _ = batch_tensors(processor, prompt, batch)
    assert inputs["mm_token_type_ids"][:, prompt_length:].eq(0).all()
    images = [Image.open(p).convert("RGB") for example in batch for p in example["images"]]
    reference = processor(
        text=[prompt + target + processor.tokenizer.eos_token] * 2, images=images, padding=True, return_tensors="pt"
    )
    assert torch.equal(reference["input_ids"], inputs["input_ids"])
    with torch.no_grad():
        ours, theirs = model(**inputs).logits, model(**reference).logits
    assert torch.allclose(ours, theirs, atol=1e-4)
    # without the modality ids the model silently falls back to 1-D positions: different logits
    plain = {k: v for k, v in inputs.items() if k != "mm_token_type_ids"}
    with torch.no_grad():
        assert not torch.allclose(model(**plain).logits, theirs, atol=1e-4)


def test_targets_from_labels_and_boxes(split_csv):
    rows = split_table.read(split_csv, "train")
    pairs = response_targets(rows, reasoning="multi_stage", answer_format="yes_no", model=BUDGET)
    for row, (target, other) in zip(rows.itertuples(), pairs, strict=False):
        parsed = parse_response(target)
        assert parsed.well_formed and parsed.answer == ("yes" if row.label else "no")
        assert len(parsed.boxes) == len(row.boxes)
        assert parse_response(other).answer == ("no" if row.label else "yes")
    one_stage = response_targets(rows, reasoning="one_stage", answer_format="letter", model=BUDGET)
    assert all(parse_response(t, "one_stage", "letter").well_formed for t, _ in one_stage)


def warm_settings(**spec) -> WarmStartSettings:
    return WarmStartSettings.from_dict(
        {
            "prompt": PROMPT,
            "reasoning": "multi_stage",
            "answer_format": "yes_no",
            "model": dict(MODEL_SETTINGS),
            "seed": 0,
            "warm_start": {
                "method": "full",
                "max_steps": 3,
                "batch_size": 2,
                "learning_rate": 1e-3,
                "logging_steps": 1,
                **spec,
            },
        }
    )


def test_warm_start_then_grpo_on_top(tiny_model_dir, split_csv, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from adfm.model.load import load_model
    from adfm.settings.model import ModelSettings

    warm = warm_start(split_csv, tiny_model_dir, warm_settings(), tmp_path / "warm")
    log = pd.read_csv(warm / "warm_start_log.csv")
    assert log["step"].tolist() == [1, 2, 3] and {"loss", "decision_loss", "learning_rate"} <= set(log.columns)
    assert json.loads((warm / "warm_start.json").read_text())["warm_start"]["decision_weight"] == 10.0
    # a complete model folder: loaded by the same code as the base model, weights changed
    model, _ = load_model(warm, ModelSettings(dtype="float32", min_pixels=3136, max_pixels=12544))
    base, _ = load_model(tiny_model_dir, ModelSettings(dtype="float32", min_pixels=3136, max_pixels=12544))
    changed = {
        n for (n, a), (_, b) in zip(model.named_parameters(), base.named_parameters(), strict=False) if not a.equal(b)
    }
    assert any("language_model" in n for n in changed) and not any("visual" in n for n in changed)

    adapter = tmp_path / "adapter"
    train(split_csv, warm, TrainSettings.from_dict(train_settings(max_steps=1)), adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(warm)
    loaded = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(str(warm)), str(adapter))
    assert any("lora_" in name for name, _ in loaded.named_parameters())


def test_lora_warm_start_is_merged(tiny_model_dir, split_csv, tmp_path):
    warm = warm_start(
        split_csv,
        tiny_model_dir,
        warm_settings(method="lora", max_steps=1, lora={"r": 2, "alpha": 4, "dropout": 0.0}),
        tmp_path / "warm",
    )
    assert not (warm / "adapter_config.json").exists()  # merged: a plain model folder
    weights = (warm / "model.safetensors").read_bytes()
    assert b"lora_" not in weights


def test_bad_method_is_a_clear_error(tiny_model_dir, split_csv, tmp_path):
    with pytest.raises(SettingsError, match="method"):
        warm_settings(method="qlora")

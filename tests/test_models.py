"""The tiny demo model and the one loading path shared with Qwen2.5-VL-7B."""

from __future__ import annotations

import argparse
import json

import pytest
from model_fixtures import MAX_PIXELS, MIN_PIXELS, tiny_model_dir  # noqa: F401 (fixture)
from PIL import Image

from adfm.io import InputError
from adfm.model import demo as demo_model
from adfm.model.load import fetch_model, load_model, register
from adfm.protocol import build_prompt
from adfm.settings.model import ModelSettings


def test_demo_model_is_deterministic(tiny_model_dir, tmp_path):
    again = fetch_model("demo:tiny-qwen2.5-vl", None, tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (again / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_demo_model_has_qwen_architecture_and_tokens(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    text, vision = config["text_config"], config["vision_config"]
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    assert sum(text["rope_parameters"]["mrope_section"]) == head_dim // 2
    assert vision["out_hidden_size"] == text["hidden_size"]
    tokenizer_json = json.loads((tiny_model_dir / "tokenizer.json").read_text())
    added = {t["content"]: t["id"] for t in tokenizer_json["added_tokens"]}
    assert set(demo_model.SPECIAL_TOKENS) <= set(added)
    assert config["image_token_id"] == added["<|image_pad|>"]
    assert config["vision_start_token_id"] == added["<|vision_start|>"]


def test_tiny_model_reloads_through_the_shared_loader(tiny_model_dir):
    model, processor = load_model(
        tiny_model_dir, ModelSettings(dtype="float32", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    )
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert model.config._attn_implementation == "sdpa"
    assert not model.training
    size = processor.image_processor.size
    assert (size.shortest_edge, size.longest_edge) == (MIN_PIXELS, MAX_PIXELS)

    # Qwen2.5-VL's chat template: default system turn, one vision block per image, generation prompt.
    text = processor.apply_chat_template(build_prompt("Any defect?"), add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>Any defect?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )

    # The processor pads on the left (generation needs it), and resizes within the pixel budget.
    image = Image.new("RGB", (300, 200), (128, 128, 128))
    batch = processor(
        text=[text, text.replace("Any defect?", "Is there any defect in the object?")],
        images=[image, image, image, image],
        padding=True,
        return_tensors="pt",
    )
    assert processor.tokenizer.padding_side == "left"
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][0, -1] == 1
    _t, h, w = batch["image_grid_thw"][0].tolist()
    assert MIN_PIXELS <= h * w * 14 * 14 <= MAX_PIXELS
    assert batch["input_ids"][1].tolist().count(processor.image_token_id) == 2 * h * w // 4


def test_tokenizer_round_trips_responses(tiny_model_dir):
    _, processor = load_model(
        tiny_model_dir, ModelSettings(dtype="float32", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    )
    text = '<think>[{"bbox_2d": [12, 34, 156, 78], "label": "defect"}]</think><rethink>ok</rethink><answer>yes</answer>'
    ids = processor.tokenizer(text).input_ids
    assert processor.tokenizer.decode(ids) == text
    assert len(ids) < len(text.encode())  # BPE merges, not bytes


def test_unknown_sources_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="s3://bucket/model"):
        fetch_model("s3://bucket/model", None, tmp_path / "m")
    with pytest.raises(InputError, match="demo:huge"):
        fetch_model("demo:huge", None, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_hub_download_goes_through_a_staging_folder(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, revision, local_dir):
        calls.append((repo_id, revision))
        (local_dir / ".cache").mkdir(parents=True)
        (local_dir / "config.json").write_text("{}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    out = fetch_model("hf://Qwen/Qwen2.5-VL-7B-Instruct", "abc123", tmp_path / "qwen")
    assert calls == [("Qwen/Qwen2.5-VL-7B-Instruct", "abc123")]
    assert (out / "config.json").is_file() and not (out / ".cache").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qwen"]


def test_fetch_model_subcommand():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["fetch-model", "--source", "demo:tiny-qwen2.5-vl", "--out", "m"])
    assert (args.source, args.revision, args.out) == ("demo:tiny-qwen2.5-vl", None, "m")
    assert callable(args.func)

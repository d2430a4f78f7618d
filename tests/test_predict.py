"""Batched, resumable predictions of the Hugging Face VLM backend on the tiny model."""

from __future__ import annotations

import argparse
import json

import model_fixtures
import pandas as pd
import pytest
from conftest import REPO
from model_fixtures import (  # noqa: F401 (fixtures)
    MAX_PIXELS,
    MIN_PIXELS,
    MODEL_SETTINGS,
    tiny_internvl_dir,
    tiny_llava_next_dir,
    tiny_model_dir,
    write_split,
)
from PIL import Image

from adfm.cli import main
from adfm.config import load_config
from adfm.inference import generate as generate_module
from adfm.inference import hf as hf_module
from adfm.inference.generate import greedy_config, sampling_config
from adfm.inference.hf import predict, register
from adfm.inference.records import PredictionWriter, key, record_key, select_rows
from adfm.io import InputError, read_jsonl
from adfm.model.families import boxes_in_response_frame
from adfm.model.load import load_model
from adfm.settings.inference import PredictSettings
from adfm.settings.model import ModelSettings


def predict_settings(**overrides) -> PredictSettings:
    return PredictSettings.from_dict(model_fixtures.predict_settings(**overrides))


FIELDS = {
    "model",
    "dataset",
    "category",
    "image_path",
    "reference_path",
    "label",
    "sample",
    "response",
    "answer",
    "boxes",
    "frame",
    "gt_boxes",
}


@pytest.fixture
def two_dataset_split(tmp_path):
    return write_split(tmp_path / "data", n_train=2, n_test=5, datasets=("alpha", "beta"))


def test_one_record_per_test_image_of_the_dataset(tiny_model_dir, two_dataset_split, tmp_path):
    out = tmp_path / "pred" / "beta.jsonl"
    predict(two_dataset_split, "beta", tiny_model_dir, "tiny-base", predict_settings(batch_size=2), out)
    records = read_jsonl(out)
    split = pd.read_csv(two_dataset_split)
    expected = split[(split["role"] == "test") & (split["dataset"] == "beta")]
    assert [r["image_path"] for r in records] == expected["image_path"].tolist()
    assert not (tmp_path / "pred" / "beta.jsonl.partial").exists()
    for record, row in zip(records, expected.itertuples(), strict=False):
        assert set(record) == FIELDS
        assert (record["model"], record["dataset"], record["sample"]) == ("tiny-base", "beta", 0)
        assert record["label"] == row.label and record["category"] == "widget"
        assert record["reference_path"] == row.reference_path
        assert isinstance(record["response"], str) and record["answer"] in ("yes", "no", None)
        budget = ModelSettings(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
        gt, frame = boxes_in_response_frame(budget, json.loads(row.boxes), 128, 96)
        assert record["gt_boxes"] == gt and record["frame"] == list(frame)


@pytest.mark.parametrize("family, fixture", [("internvl", "tiny_internvl_dir"), ("llava_next", "tiny_llava_next_dir")])
def test_other_families_predict_through_the_same_stage(family, fixture, two_dataset_split, tmp_path, request):
    """The tiny InternVL and LLaVA-NeXT, with config.yaml's traits of their family: the image budget
    reaches their processors and the records' boxes are in the family's frame."""
    traits = load_config([REPO / "config.yaml"])["model_families"][family]
    model = {**MODEL_SETTINGS, "family": traits, "max_tiles": 2}
    out = tmp_path / f"{family}.jsonl"
    predict(two_dataset_split, "beta", request.getfixturevalue(fixture), family, predict_settings(model=model), out)
    records = read_jsonl(out)
    assert len(records) == 5 and all(isinstance(r["response"], str) for r in records)
    scale = traits["box_scale"]
    assert all(r["frame"] == [scale, scale] for r in records)
    anomalous = next(r for r in records if r["gt_boxes"])
    assert all(0 <= v <= scale for box in anomalous["gt_boxes"] for v in box)


def test_restart_skips_records_already_written(tiny_model_dir, two_dataset_split, tmp_path, monkeypatch):
    out = tmp_path / "alpha.jsonl"
    predict(two_dataset_split, "alpha", tiny_model_dir, "tiny-base", predict_settings(batch_size=2), out)
    complete = read_jsonl(out)

    # An interrupted run: two records flushed, a third torn mid-write.
    partial = tmp_path / "alpha.jsonl.partial"
    out.rename(partial)
    lines = partial.read_text().splitlines()
    partial.write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])

    generated = []
    original = generate_module.generate_conversations

    def counting(model, processor, conversations, config, **options):
        generated.extend(parts[1][1] for parts in conversations)  # (reference, query, prompt)
        return original(model, processor, conversations, config, **options)

    monkeypatch.setattr(generate_module, "generate_conversations", counting)
    predict(two_dataset_split, "alpha", tiny_model_dir, "tiny-base", predict_settings(batch_size=2), out)
    assert generated == [r["image_path"] for r in complete[2:]]
    assert read_jsonl(out) == complete  # greedy: the resumed run writes what the full run wrote
    assert not partial.exists()


def test_batched_generation_matches_one_by_one(tiny_model_dir, tmp_path):
    # Images of different sizes give prompts of different lengths: left padding must not change outputs.
    split = write_split(tmp_path / "data", n_train=1, n_test=4)
    rows = pd.read_csv(split)
    for i, path in enumerate(rows.loc[rows["role"] == "test", "image_path"]):
        Image.open(path).resize((128 + 40 * i, 96 + 16 * i)).save(path)
        rows.loc[rows["image_path"] == path, ["width", "height"]] = [128 + 40 * i, 96 + 16 * i]
    rows.to_csv(split, index=False)

    one = predict(split, "toyset", tiny_model_dir, "m", predict_settings(batch_size=1), tmp_path / "one.jsonl")
    four = predict(split, "toyset", tiny_model_dir, "m", predict_settings(batch_size=4), tmp_path / "four.jsonl")
    frames = {tuple(r["frame"]) for r in read_jsonl(one)}
    assert len(frames) > 1
    assert [r["response"] for r in read_jsonl(one)] == [r["response"] for r in read_jsonl(four)]


def test_adapter_is_applied(tiny_model_dir, two_dataset_split, tmp_path):
    from peft import get_peft_model

    from adfm.model.grpo import lora_config
    from adfm.model.load import load_model
    from adfm.settings.model import LoraSettings, ModelSettings

    model, _ = load_model(
        tiny_model_dir, ModelSettings(dtype="float32", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS), for_training=True
    )
    peft_config = lora_config(LoraSettings(r=4, alpha=64, dropout=0.0))
    peft_config.init_lora_weights = False  # random B: the adapter changes the outputs
    get_peft_model(model, peft_config).save_pretrained(str(tmp_path / "adapter"))

    settings = predict_settings(batch_size=5)
    base = predict(two_dataset_split, "alpha", tiny_model_dir, "base", settings, tmp_path / "base.jsonl")
    tuned = predict(
        two_dataset_split,
        "alpha",
        tiny_model_dir,
        "tuned",
        settings,
        tmp_path / "tuned.jsonl",
        adapter_dir=tmp_path / "adapter",
    )
    assert {r["model"] for r in read_jsonl(tuned)} == {"tuned"}
    assert [r["response"] for r in read_jsonl(base)] != [r["response"] for r in read_jsonl(tuned)]


def test_unknown_dataset_is_an_input_error(tiny_model_dir, two_dataset_split, tmp_path):
    with pytest.raises(InputError, match="gamma"):
        predict(two_dataset_split, "gamma", tiny_model_dir, "m", predict_settings(), tmp_path / "p.jsonl")


def test_predict_subcommand():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    argv = [
        "predict",
        "--split",
        "s.csv",
        "--dataset",
        "visa",
        "--model",
        "m",
        "--run-name",
        "base",
        "--settings",
        '{"prompt": "Defect?"}',
        "--out",
        "p.jsonl",
    ]
    args = parser.parse_args(argv)
    assert (args.dataset, args.adapter, args.run_name, args.out) == (["visa"], None, "base", ["p.jsonl"])
    assert parser.parse_args([*argv, "--adapter", "a"]).adapter == "a"
    assert args.settings == PredictSettings(prompt="Defect?")
    with pytest.raises(SystemExit):  # a misspelt key is a usage error
        parser.parse_args([*argv[:-4], "--settings", '{"prompt": "p", "batchsize": 2}', "--out", "p.jsonl"])


@pytest.mark.parametrize("outs", [["a.jsonl"], ["a.jsonl", "b.jsonl", "c.jsonl"], ["a.jsonl", "a.jsonl"]])
def test_one_output_per_dataset_or_a_usage_error(outs, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    argv = ["predict", "--split", "s.csv", "--dataset", "alpha", "beta", "--model", "m", "--run-name", "r"]
    args = parser.parse_args([*argv, "--settings", '{"prompt": "p"}', "--out", *outs])
    with pytest.raises(SystemExit) as stop:  # before any model is loaded
        args.func(args)
    assert stop.value.code == 2 and "--out" in capsys.readouterr().err


def test_several_datasets_load_the_model_once(tiny_model_dir, two_dataset_split, tmp_path, monkeypatch):
    settings = predict_settings(batch_size=2)
    alone = {
        d: read_jsonl(predict(two_dataset_split, d, tiny_model_dir, "m", settings, tmp_path / d))
        for d in ("alpha", "beta")
    }
    loads = []
    load_backend = hf_module.load_backend
    monkeypatch.setattr(hf_module, "load_backend", lambda *a, **k: loads.append(a) or load_backend(*a, **k))
    outs = [tmp_path / "both" / "beta.jsonl", tmp_path / "both" / "alpha.jsonl"]
    argv = ["predict", "--split", str(two_dataset_split), "--dataset", "beta", "alpha", "--model", str(tiny_model_dir)]
    assert main([*argv, "--run-name", "m", "--settings", settings.to_json(), "--out", *map(str, outs)]) == 0
    assert len(loads) == 1
    assert [read_jsonl(out) for out in outs] == [alone["beta"], alone["alpha"]]
    assert sorted(path.name for path in outs[0].parent.iterdir()) == ["alpha.jsonl", "beta.jsonl"]


def test_decoding_is_plain_greedy_despite_checkpoint_sampling_defaults(tiny_model_dir):
    model, _ = load_model(tiny_model_dir, ModelSettings(dtype="float32", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS))
    assert model.generation_config.do_sample and model.generation_config.top_k == 1  # as Qwen2.5-VL-7B ships
    config = greedy_config(model, max_new_tokens=7, repetition_penalty=1.0)
    resolved, _ = model._prepare_generation_config(config)  # what generate() will use
    assert not resolved.do_sample and resolved.num_beams == 1
    assert resolved.repetition_penalty == 1.0 and resolved.max_new_tokens == 7


def test_sampling_writes_n_samples_per_image_and_resumes(tiny_model_dir, two_dataset_split, tmp_path, monkeypatch):
    settings = predict_settings(batch_size=3, num_samples=3, temperature=0.9, role="train", seed=1)
    out = tmp_path / "samples.jsonl"
    predict(two_dataset_split, "alpha", tiny_model_dir, "m", settings, out)
    records = read_jsonl(out)
    split = pd.read_csv(two_dataset_split)
    train = split[(split["role"] == "train") & (split["dataset"] == "alpha")]["image_path"].tolist()
    assert [(r["image_path"], r["sample"]) for r in records] == [(p, s) for p in train for s in range(3)]
    by_image = {}
    for record in records:
        by_image.setdefault(record["image_path"], []).append(record["response"])
    assert any(len(set(responses)) > 1 for responses in by_image.values())  # sampled, not greedy

    # the same seed and batches sample the same responses; a complete file is not regenerated
    again = predict(two_dataset_split, "alpha", tiny_model_dir, "m", settings, tmp_path / "again.jsonl")
    assert [r["response"] for r in read_jsonl(again)] == [r["response"] for r in records]
    monkeypatch.setattr(generate_module, "generate_conversations", lambda *a, **k: pytest.fail("regenerated"))
    out.rename(tmp_path / "samples.jsonl.partial")
    predict(two_dataset_split, "alpha", tiny_model_dir, "m", settings, out)
    assert read_jsonl(out) == records


def test_row_selection_label_image_and_seeded_subsample(two_dataset_split):
    rows = select_rows(two_dataset_split, "beta", "test", label=1)
    assert set(rows["label"]) == {1}
    first = select_rows(two_dataset_split, "beta", max_images=3, seed=0)
    assert len(first) == 3
    assert (
        first["image_path"].tolist()
        == select_rows(two_dataset_split, "beta", max_images=3, seed=0)["image_path"].tolist()
    )
    one = select_rows(two_dataset_split, "beta", image=first["image_path"].iloc[0])
    assert one["image_path"].tolist() == [first["image_path"].iloc[0]]
    with pytest.raises(InputError, match="not a test row"):
        select_rows(two_dataset_split, "beta", image="nowhere.png")


def test_sampling_config_samples_without_truncation(tiny_model_dir):
    model, _ = load_model(tiny_model_dir, ModelSettings(dtype="float32", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS))
    resolved, _ = model._prepare_generation_config(sampling_config(model, max_new_tokens=5, temperature=0.9))
    assert resolved.do_sample and resolved.temperature == 0.9
    assert resolved.top_k in (0, None) and resolved.top_p == 1.0 and resolved.repetition_penalty == 1.0
    with pytest.raises(InputError, match="sampling temperature 0.0 must be > 0"):
        sampling_config(model, max_new_tokens=5, temperature=0.0)


def test_writer_keys_include_the_question(tmp_path):
    base = {"model": "m", "dataset": "mmad", "image_path": "a.png", "sample": 0}
    assert record_key({**base, "question_index": 2}) != record_key({**base, "question_index": 3})
    with PredictionWriter(tmp_path / "p.jsonl") as writer:
        writer.write([{**base, "question_index": 0}])
    resumed = PredictionWriter(tmp_path / "p.jsonl")
    assert ("m", "mmad", "a.png", 0, 0) in resumed.done
    assert resumed.pending(["a.png", "b.png"], lambda image: [key("m", "mmad", image, question_index=0)]) == ["b.png"]
    assert resumed.finish().is_file() and not (tmp_path / "p.jsonl.partial").exists()


def test_sampling_config_truncates_as_grpo_does(tiny_model_dir):
    # Figures 4 and 5 sample as GRPO does: train.grpo's top_k / top_p (the release's 50 / 0.9)
    from conftest import REPO

    from adfm import config as adfm_config

    settings = PredictSettings.for_figure(adfm_config.load_config([REPO / "config.yaml"]), "fig5")
    assert (settings.top_k, settings.top_p) == (50, 0.9)
    model, _ = load_model(tiny_model_dir, ModelSettings(dtype="float32", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS))
    config = sampling_config(model, max_new_tokens=5, temperature=0.9, top_k=settings.top_k, top_p=settings.top_p)
    resolved, _ = model._prepare_generation_config(config)
    assert (resolved.top_k, resolved.top_p, resolved.temperature) == (50, 0.9, 0.9)

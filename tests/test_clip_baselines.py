"""WinCLIP and AnomalyCLIP on the tiny randomly initialised CLIP (the demo's), and their pieces."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import write_split

from adfm.cli import main
from adfm.inference import clip as clip_baselines
from adfm.inference.anomalyclip import AnomalyCLIP
from adfm.inference.clip import predict_clip
from adfm.inference.clip_model import TINY_CLIP, load_clip
from adfm.inference.winclip import (
    ANOMALOUS_STATES,
    NORMAL_STATES,
    TEMPLATES,
    WinCLIP,
    association,
    harmonic_aggregation,
    prompt_ensemble,
    window_masks,
)
from adfm.io import InputError, read_jsonl
from adfm.settings.inference import ClipSettings


@pytest.fixture(scope="module")
def tiny():
    return load_clip(TINY_CLIP, None, seed=0, device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    split = write_split(tmp_path_factory.mktemp("clip"), n_train=1, n_test=4)
    import pandas as pd

    rows = pd.read_csv(split)
    test = rows[rows.role == "test"]
    return split, test["image_path"].tolist(), test["reference_path"].tolist()


def test_compositional_prompt_ensemble():
    normal, anomalous = prompt_ensemble("metal nut")
    assert len(normal) == len(NORMAL_STATES) * len(TEMPLATES) == 147
    assert len(anomalous) == len(ANOMALOUS_STATES) * len(TEMPLATES) == 84
    assert "a photo of a flawless metal nut for visual inspection." in normal
    assert "a cropped photo of the damaged metal nut." in anomalous


def test_windows_and_harmonic_aggregation_match_anomalib_examples():
    assert window_masks((3, 3), 2).tolist() == [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    scores = torch.tensor([[1.0, 0.75, 0.5, 0.25]])
    aggregated = harmonic_aggregation(scores, window_masks((3, 3), 2), 9).reshape(3, 3)
    expected = torch.tensor([[1.0, 0.8571, 0.75], [0.6667, 0.48, 0.375], [0.5, 0.3333, 0.25]])
    assert torch.allclose(aggregated, expected, atol=1e-4)
    with pytest.raises(InputError, match="larger than the patch grid"):
        window_masks((2, 2), 3)


def test_association_is_half_the_cosine_distance_to_the_nearest_memory():
    query = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    memory = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    assert torch.allclose(association(query, memory), torch.tensor([[(1 - 2**-0.5) / 2, 0.0]]), atol=1e-6)


def test_winclip_scores(tiny, images):
    _, queries, references = images
    model, tokenizer = tiny
    few = WinCLIP(model, tokenizer, scales=(2, 3), shots=1).score(queries, references, ["widget"] * len(queries))
    zero = WinCLIP(model, tokenizer, scales=(2, 3), shots=0).score(queries, references, ["widget"] * len(queries))
    for f, z in zip(few, zero, strict=False):
        assert 0.0 <= f["score"] <= 1.0 and 0.0 <= z["score"] <= 1.0
        assert z["score"] == pytest.approx(f["zero_shot_score"])
        assert f["score"] == pytest.approx((f["zero_shot_score"] + f["few_shot_map_max"]) / 2)
    # the query as its own reference: nothing is far from the memory
    itself = WinCLIP(model, tokenizer, shots=1).score(queries[:1], queries[:1], ["widget"])[0]
    assert itself["few_shot_map_max"] == pytest.approx(0.0, abs=1e-5)
    # batched and one by one agree
    one = WinCLIP(model, tokenizer, shots=1).score(queries[1:2], references[1:2], ["widget"])[0]
    assert one["score"] == pytest.approx(few[1]["score"], abs=1e-5)


def test_anomalyclip_scores_and_learned_prompts(tiny, images, tmp_path):
    _, queries, references = images
    model, tokenizer = tiny
    options = dict(prompt_length=4, deep_prompt_depth=2, deep_prompt_length=2, image_size=96)
    scorer = AnomalyCLIP(model, tokenizer, seed=0, **options)
    random_scores = [r["score"] for r in scorer.score(queries, references, ["widget"] * len(queries))]
    assert all(0.0 <= s <= 1.0 for s in random_scores)
    assert scorer.images.grid == (6, 6)  # 96 / 16, positional embedding interpolated from 7 x 7
    # a checkpoint in the authors' format (prompt_learner state dict) is loaded and used
    width = model.ln_final.weight.shape[0]
    state = {
        "ctx_pos": torch.randn(1, 1, 4, width),
        "ctx_neg": torch.randn(1, 1, 4, width) * 3,
        "compound_prompts_text.0": torch.randn(2, width),
    }
    torch.save({"prompt_learner": state}, tmp_path / "prompts.pth")
    learned = AnomalyCLIP(model, tokenizer, prompts=str(tmp_path / "prompts.pth"), **options)
    assert torch.equal(learned.ctx[1].cpu(), state["ctx_neg"].reshape(4, width))
    assert [r["score"] for r in learned.score(queries, references, ["widget"] * 4)] != random_scores
    with pytest.raises(InputError, match="do not match"):
        AnomalyCLIP(
            model,
            tokenizer,
            prompts=str(tmp_path / "prompts.pth"),
            prompt_length=5,
            deep_prompt_depth=2,
            deep_prompt_length=2,
        )
    with pytest.raises(InputError, match="exceeds"):
        AnomalyCLIP(model, tokenizer, deep_prompt_depth=9)


def test_predict_clip_records_are_resumable(images, tmp_path, monkeypatch):
    split, queries, _ = images
    settings = ClipSettings.from_dict(
        {"method": "winclip", "clip": {"model": TINY_CLIP, "pretrained": None}, "seed": 0, "batch_size": 3}
    )
    out = predict_clip(split, "toyset", "winclip", settings, tmp_path / "w.jsonl")
    records = read_jsonl(out)
    assert [r["image_path"] for r in records] == queries
    assert all(r["sample"] == 0 and r["method"] == "winclip" and 0 <= r["score"] <= 1 for r in records)
    out.rename(tmp_path / "w.jsonl.partial")
    monkeypatch.setattr(clip_baselines, "build_scorer", lambda *a: pytest.fail("rescored"))
    assert read_jsonl(predict_clip(split, "toyset", "winclip", settings, out)) == records


def test_predict_clip_builds_the_scorer_once_for_several_datasets(tmp_path, monkeypatch):
    split = write_split(tmp_path / "data", n_train=1, n_test=2, datasets=("alpha", "beta"))
    settings = ClipSettings.from_dict({"method": "winclip", "clip": {"model": TINY_CLIP, "pretrained": None}})
    alone = [
        read_jsonl(predict_clip(split, d, "winclip", settings, tmp_path / f"{d}.jsonl")) for d in ("alpha", "beta")
    ]
    builds = []
    build = clip_baselines.build_scorer
    monkeypatch.setattr(clip_baselines, "build_scorer", lambda *a: builds.append(a) or build(*a))
    outs = [str(tmp_path / "both" / f"{d}.jsonl") for d in ("alpha", "beta")]
    argv = ["predict-clip", "--split", str(split), "--dataset", "alpha", "beta", "--run-name", "winclip"]
    assert main([*argv, "--settings", settings.to_json(), "--out", *outs]) == 0
    assert len(builds) == 1 and [read_jsonl(out) for out in outs] == alone


def test_missing_weights_and_unknown_models_are_input_errors():
    with pytest.raises(InputError, match="not found"):
        load_clip(TINY_CLIP, "weights/missing.bin")
    with pytest.raises(InputError, match="unknown open_clip model"):
        load_clip("ViT-Nonexistent", None)

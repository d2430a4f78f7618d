"""MMAD's multiple-choice evaluation: prompt, answer parsing, scores, and the tiny model end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from model_fixtures import MAX_PIXELS, MIN_PIXELS, tiny_model_dir  # noqa: F401 (fixture)
from PIL import Image

from adfm.data.mmad_questions import split_drop_reasons
from adfm.evaluation.mmad_score import mmad_table
from adfm.inference import generate as generate_module
from adfm.inference.mmad import generation_config, predict_mmad, question_rows
from adfm.inference.mmad_prompt import INSPECTOR, INSTRUCTION, parse_choice, parse_reply, prompt_parts, question_text
from adfm.io import InputError, read_jsonl
from adfm.settings import SettingsError
from adfm.settings.inference import MmadSettings

YES_NO = {"A": "Yes.", "B": "No."}
FOUR = {"A": "scratch", "B": "crack", "C": "stain", "D": "blob"}


def write_questions(root, sources=("DS-MVTec", "VisA")):
    """A small question table in `adfm mmad-questions`' format, with its images."""
    rng = np.random.default_rng(0)
    rows = []
    for source in sources:
        template = root / f"{source}_template.png"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(template)
        for kind in ("good", "crack"):
            image = root / source / "bottle" / "test" / kind / "000.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
            label = int(kind != "good")
            rows.append(
                {
                    "image_path": str(image),
                    "dataset": source,
                    "category": "bottle",
                    "question": "Is there any defect in the object?",
                    "options": json.dumps(YES_NO),
                    "answer": "A" if label else "B",
                    "type": "Anomaly Detection",
                    "reference_path": str(template),
                    "templates": json.dumps([str(template)]),
                    "drop_reason": "",
                    "label": label,
                    "width": 64,
                    "height": 64,
                }
            )
            rows.append(
                {
                    "image_path": str(image),
                    "dataset": source,
                    "category": "bottle",
                    "question": "What kind of product is in the image?",
                    "options": json.dumps(FOUR),
                    "answer": "C",
                    "type": "Object Structure",
                    "reference_path": str(template),
                    "templates": json.dumps([str(template)]),
                    "drop_reason": "",
                    "label": label,
                    "width": 64,
                    "height": 64,
                }
            )
    path = root / "mmad_questions.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "response, expected",
    [
        ("B", "B"),
        ("Answer: A.", "A"),
        ("A. Yes. Actually, on reflection the answer is B.", "B"),  # the last standalone letter
        ("I think it is (C) stain", "C"),
        ("The BLOB is D-shaped", "D"),  # "BLOB" is no standalone letter, "D" is
        ("crack", "B"),  # no letter: the closest option text
        ("cracks everywhere", "B"),
    ],
)
def test_answer_parsing_follows_mmad(response, expected):
    assert parse_choice(response, FOUR) == expected


def test_a_reply_without_letter_always_maps_to_an_option_as_in_mmad():
    # difflib with cutoff 0 matches anything, the empty reply included; only no options gives None
    assert parse_choice("", FOUR) in FOUR
    assert parse_choice("no idea", {}) is None
    assert parse_choice(None, FOUR) is None


def test_prompt_is_mmads_one_template_prompt():
    parts = prompt_parts("query.png", ["template.png"], "Is there any defect in the object?", YES_NO)
    kinds = [kind for kind, _ in parts]
    assert kinds == ["text", "text", "text", "image", "text", "image", "text", "text"]
    assert parts[0][1] == INSTRUCTION and "industrial inspector" in INSTRUCTION
    assert parts[3] == ("image", "template.png") and parts[5] == ("image", "query.png")
    assert "image of normal sample" in parts[2][1]
    assert parts[4][1].startswith("Following is the query image")
    assert (
        parts[-1][1]
        == question_text("Is there any defect in the object?", YES_NO)
        == ("Question: Is there any defect in the object? \nA. Yes.\nB. No.\n")
    )


def record(source, kind, answer, correct, label, image):
    return {
        "model": "m",
        "source": source,
        "type": kind,
        "answer": answer,
        "correct_answer": correct,
        "label": label,
        "image_path": image,
    }


def test_scores_merge_object_types_balance_detection_and_average_sources():
    records = [
        # DS-MVTec: 3 anomalous images all called anomalous, 1 normal image called anomalous
        *[record("DS-MVTec", "Anomaly Detection", "A", "A", 1, f"a{i}") for i in range(3)],
        record("DS-MVTec", "Anomaly Detection", "A", "B", 0, "good/n0"),
        record("DS-MVTec", "Object Structure", "A", "A", 1, "a0"),
        record("DS-MVTec", "Object Details", "B", "A", 1, "a0"),
        record("DS-MVTec", "Defect Classification", None, "A", 1, "a0"),  # unparsed: left out
        record("VisA", "Anomaly Detection", "B", "B", 0, "good/n1"),
        record("VisA", "Anomaly Detection", "A", "A", 1, "v1"),
        record("VisA", "Object Structure", "A", "A", 1, "v1"),
    ]
    table = mmad_table(records).set_index(["dataset", "category"])
    assert table.loc[("DS-MVTec", "Anomaly Detection"), "accuracy"] == 50.0  # (0/1 + 3/3) / 2, not 3/4
    assert table.loc[("DS-MVTec", "Object Analysis"), "accuracy"] == 50.0
    assert table.loc[("DS-MVTec", "Defect Classification"), "unparsed"] == 1
    assert table.loc[("DS-MVTec", "Defect Classification"), "n"] == 0
    assert table.loc[("VisA", "Anomaly Detection"), "accuracy"] == 100.0
    assert table.loc[("all", "Anomaly Detection"), "accuracy"] == 75.0  # mean over source datasets
    assert table.loc[("all", "Object Analysis"), "accuracy"] == 75.0
    assert "Object Structure" not in table.index.get_level_values("category")


def test_tiny_model_answers_every_question_and_resumes(tiny_model_dir, tmp_path, monkeypatch):
    questions = write_questions(tmp_path)
    settings = MmadSettings.from_dict(
        {
            "model": {"dtype": "float32", "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS},
            "max_new_tokens": 6,
            "batch_size": 3,
            "templates": 1,
        }
    )
    out = predict_mmad(questions, "tiny", settings, tmp_path / "p.jsonl", model_dir=tiny_model_dir)
    records = read_jsonl(out)
    assert len(records) == 8
    assert {(r["image_path"], r["question_index"]) for r in records} == {
        (p, i) for p in pd.read_csv(questions)["image_path"].unique() for i in (0, 1)
    }
    assert all(r["answer"] in (None, "A", "B", "C", "D") for r in records)
    table = mmad_table(records)
    assert set(table["category"]) <= {"Anomaly Detection", "Object Analysis", "Average"}

    out.rename(tmp_path / "p.jsonl.partial")
    monkeypatch.setattr(generate_module, "generate_conversations", lambda *a, **k: pytest.fail("regenerated"))
    predict_mmad(questions, "tiny", settings, out, model_dir=tiny_model_dir)
    assert read_jsonl(out) == records


def test_question_table_must_have_its_columns(tmp_path):
    (tmp_path / "q.csv").write_text("image_path,question\nx.png,why\n")
    with pytest.raises(InputError, match="lacks columns"):
        predict_mmad(tmp_path / "q.csv", "m", {}, tmp_path / "p.jsonl")


# ---- issue 13: reasoning runs, MMAD's decoding and templates, the leakage filter ----------------


@pytest.mark.parametrize(
    "response, expected",
    [
        ("<think>A small scratch at the top.</think><rethink>B is wrong.</rethink><answer>C</answer>", ("C", "answer")),
        ("<think>Looks fine</think><answer> b. </answer>", ("B", "answer")),  # the release writes lower case
        ("<think>A small scratch near the top", ("A", "mmad")),  # truncated before <answer>: MMAD's rule
        ("<think>x</think><answer>E</answer>", ("E", "mmad")),  # not an option: MMAD's rule (E, scored wrong)
    ],
)
def test_reasoning_replies_are_read_from_the_answer_tag_first(response, expected):
    assert parse_reply(response, FOUR, "answer_tag") == expected


def test_letter_runs_keep_mmads_rule_even_with_an_answer_tag():
    reply = "<think>A crack? No.</think><answer>B</answer> D"
    assert parse_reply(reply, FOUR, "letter") == ("D", "mmad") == (parse_choice(reply, FOUR), "mmad")


def test_reasoning_prompt_replaces_only_mmads_letter_instructions():
    letter = prompt_parts("q.png", ["t.png"], "Why?", YES_NO)
    reasoning = prompt_parts("q.png", ["t.png"], "Why?", YES_NO, "Think, then answer in <answer></answer>.")
    assert reasoning[:2] == [("text", INSPECTOR), ("text", "Think, then answer in <answer></answer>.")]
    assert "letter" not in reasoning[0][1] and "letter" in letter[0][1] + letter[1][1]
    assert reasoning[2:] == letter[2:]


def test_model_generation_config_is_mmads_and_greedy_is_plain():
    from transformers import GenerationConfig

    class Model:
        generation_config = GenerationConfig(
            do_sample=True, top_k=1, top_p=0.001, repetition_penalty=1.05, eos_token_id=[7, 8]
        )

    mmad = generation_config(Model(), MmadSettings(generation="model", max_new_tokens=512))
    assert (mmad.repetition_penalty, mmad.top_k, mmad.max_new_tokens, mmad.pad_token_id) == (1.05, 1, 512, 7)
    greedy = generation_config(Model(), MmadSettings(generation="greedy", max_new_tokens=128))
    assert (greedy.do_sample, greedy.repetition_penalty, greedy.max_new_tokens) == (False, 1.0, 128)
    assert Model.generation_config.max_new_tokens != 512  # the model's own config is left alone
    with pytest.raises(SettingsError, match="generation: 'beam'"):
        MmadSettings.from_dict({"generation": "beam"})


def test_templates_above_one_show_that_many(tmp_path, monkeypatch):
    questions = write_questions(tmp_path, sources=("VisA",))
    table = pd.read_csv(questions)
    extra = []
    for n in range(2):
        path = tmp_path / f"extra{n}.png"
        Image.new("RGB", (32, 32)).save(path)
        extra.append(str(path))
    table["templates"] = [json.dumps([t, *extra]) for t in table["reference_path"]]
    table.to_csv(questions, index=False)
    seen = []
    monkeypatch.setattr(generate_module, "load_model", lambda *a, **k: (None, SimpleNamespace(tokenizer=None)))
    monkeypatch.setattr(
        generate_module,
        "generate_conversations",
        lambda model, processor, conversations, config, **k: (
            seen.extend(conversations) or [["A"] for _ in conversations]
        ),
    )
    monkeypatch.setattr("adfm.inference.mmad.generation_config", lambda model, settings: None)
    settings = MmadSettings.from_dict({"model": {"min_pixels": 1, "max_pixels": 2}, "templates": 3})
    predict_mmad(questions, "m", settings, tmp_path / "p.jsonl", model_dir=tmp_path)
    images = [value for kind, value in seen[0] if kind == "image"]
    assert images == [table["reference_path"][0], *extra, table["image_path"][0]]
    assert "Following is/are 3 image of normal sample" in seen[0][2][1]
    with pytest.raises(InputError, match="mmad.templates is 4 but MMAD lists 3"):
        predict_mmad(
            questions, "m", dataclasses.replace(settings, templates=4), tmp_path / "p4.jsonl", model_dir=tmp_path
        )
    Path(extra[1]).unlink()
    with pytest.raises(InputError, match=r"extra1.png: template of .* not found"):
        predict_mmad(questions, "m", settings, tmp_path / "p3.jsonl", model_dir=tmp_path)


def test_filtered_questions_are_not_asked_and_are_counted(tmp_path):
    questions = write_questions(tmp_path)
    table = pd.read_csv(questions, keep_default_na=False)
    train_image = table["image_path"][0]  # DS-MVTec's good image
    table.loc[table["image_path"] == train_image, "drop_reason"] = "training"
    table.loc[(table["dataset"] == "VisA") & (table["label"] == 1), "drop_reason"] = "not_in_split"
    table.to_csv(questions, index=False)
    asked = question_rows(questions, MmadSettings())
    assert train_image not in set(asked["image_path"]) and len(asked) == 4
    assert len(question_rows(questions, MmadSettings(filter=False))) == 8
    records = [record(r.dataset, r.type, r.answer, r.answer, int(r.label), r.image_path) for r in asked.itertuples()]
    metrics = mmad_table(records, pd.read_csv(questions, keep_default_na=False, dtype=str)).set_index(
        ["dataset", "category"]
    )
    assert metrics.loc[("DS-MVTec", "Anomaly Detection"), "dropped_training"] == 1
    assert metrics.loc[("DS-MVTec", "Object Analysis"), "dropped_training"] == 1
    assert metrics.loc[("VisA", "Average"), "dropped_not_in_split"] == 2
    assert metrics.loc[("all", "Average"), ["dropped_training", "dropped_not_in_split"]].tolist() == [2, 2]
    assert metrics.loc[("VisA", "Anomaly Detection"), "dropped_training"] == 0
    assert mmad_table(records)[["dropped_training", "dropped_not_in_split"]].sum().sum() == 0


def test_drop_reasons_map_mmad_images_to_the_split():
    from adfm.data.datasets.mmad import query_source_image

    keys = [
        "DS-MVTec/bottle/image/broken_large/000.png",
        "DS-MVTec/bottle/image/good/001.png",
        "VisA/candle/test/bad/002.JPG",
        "VisA/candle/test/good/0105.JPG",
        "GoodsAD/drink_can/test/good/7.jpg",
    ]
    questions = pd.DataFrame({"source_image": [query_source_image(k) for k in keys]})
    split = pd.DataFrame(
        [
            ("mvtec", "bottle", "train", "data/mvtec/bottle/test/broken_large/000.png", 1),
            ("mvtec", "bottle", "test", "data/mvtec/bottle/test/good/001.png", 0),
            ("mvtec", "bottle", "test", "data/mvtec/bottle/test/broken_small/000.png", 1),
            ("visa", "candle", "test", "data/visa/candle/Data/Images/Anomaly/002.JPG", 1),
            ("visa", "candle", "train", "data/visa/candle/Data/Images/Normal/0105.JPG", 0),
        ],
        columns=["dataset", "category", "role", "image_path", "label"],
    )
    reasons = split_drop_reasons(questions, split, {"mvtec": "mvtec_ad", "visa": "visa"})
    assert reasons.tolist() == ["training", "", "", "training", "not_in_split"]


def test_config_decodes_each_run_kind_as_mmad_says_and_filters_runs_only():
    import copy

    from conftest import REPO

    from adfm import config as adfm_config
    from adfm import targets

    paper = adfm_config.load_config([REPO / "config.yaml"])
    trained, base = (MmadSettings.from_config(paper, name).to_dict() for name in ("adfm", "zero_shot"))
    assert (base["instruction"], base["max_new_tokens"], base["parse"]) == ("letter", 128, "letter")  # MMAD
    assert (trained["instruction"], trained["max_new_tokens"], trained["parse"]) == ("reasoning", 512, "answer_tag")
    assert trained["reasoning_instruction"] == paper["mmad"]["reasoning_instructions"]["multi_stage"]
    assert base["reasoning_instruction"] is None
    for settings in (trained, base):
        assert (settings["model"]["min_pixels"], settings["model"]["max_pixels"]) == (64 * 28 * 28, 1280 * 28 * 28)
        assert settings["generation"] == "model" and settings["templates"] == 1 and settings["filter"] is True
    assert MmadSettings.from_config(paper, "gpt-4o").filter is False  # MMAD's whole question set
    assert targets.mmad_filter_protocol(paper) == "multidomain"
    assert targets.mmad_filter_layouts(paper) == {d: d for d in ("mvtec_ad", "visa", "mvtec_loco", "goodsad")}
    config = copy.deepcopy(paper)
    config["mmad"]["split_filter"] = None
    assert targets.mmad_filter_protocol(config) is None and targets.mmad_filter_layouts(config) == {}
    config["mmad"]["split_filter"] = "nowhere"
    assert "mmad.split_filter: unknown protocol 'nowhere'" in adfm_config.check_references(config)

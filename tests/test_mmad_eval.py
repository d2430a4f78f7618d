"""MMAD's multiple-choice evaluation: prompt, answer parsing, scores, and the tiny model end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from model_fixtures import MAX_PIXELS, MIN_PIXELS, tiny_model_dir  # noqa: F401 (fixture)
from PIL import Image

from adfm.io import InputError, read_jsonl
from adfm.mmad_eval import INSTRUCTION, mmad_table, parse_choice, predict_mmad, prompt_parts, question_text

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
            rows.append({"image_path": str(image), "dataset": source, "category": "bottle",
                         "question": "Is there any defect in the object?", "options": json.dumps(YES_NO),
                         "answer": "A" if label else "B", "type": "Anomaly Detection", "reference_path": str(template),
                         "label": label, "width": 64, "height": 64})
            rows.append({"image_path": str(image), "dataset": source, "category": "bottle",
                         "question": "What kind of product is in the image?", "options": json.dumps(FOUR),
                         "answer": "C", "type": "Object Structure", "reference_path": str(template), "label": label,
                         "width": 64, "height": 64})
    path = root / "mmad_questions.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("response, expected", [
    ("B", "B"),
    ("Answer: A.", "A"),
    ("A. Yes. Actually, on reflection the answer is B.", "B"),  # the last standalone letter
    ("I think it is (C) stain", "C"),
    ("The BLOB is D-shaped", "D"),  # "BLOB" is no standalone letter, "D" is
    ("crack", "B"),  # no letter: the closest option text
    ("cracks everywhere", "B"),
])
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
    assert parts[-1][1] == question_text("Is there any defect in the object?", YES_NO) == (
        "Question: Is there any defect in the object? \nA. Yes.\nB. No.\n")


def record(source, kind, answer, correct, label, image):
    return {"model": "m", "source": source, "type": kind, "answer": answer, "correct_answer": correct, "label": label,
            "image_path": image}


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
    settings = {"model": {"dtype": "float32", "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS},
                "max_new_tokens": 6, "batch_size": 3, "templates": 1}
    out = predict_mmad(questions, "tiny", settings, tmp_path / "p.jsonl", model_dir=tiny_model_dir)
    records = read_jsonl(out)
    assert len(records) == 8
    assert {(r["image_path"], r["question_index"]) for r in records} == {
        (p, i) for p in pd.read_csv(questions)["image_path"].unique() for i in (0, 1)}
    assert all(r["answer"] in (None, "A", "B", "C", "D") for r in records)
    table = mmad_table(records)
    assert set(table["category"]) <= {"Anomaly Detection", "Object Analysis", "Average"}

    out.rename(tmp_path / "p.jsonl.partial")
    import adfm.predict

    monkeypatch.setattr(adfm.predict, "generate_conversations", lambda *a, **k: pytest.fail("regenerated"))
    predict_mmad(questions, "tiny", settings, out, model_dir=tiny_model_dir)
    assert read_jsonl(out) == records


def test_question_table_must_have_its_columns(tmp_path):
    (tmp_path / "q.csv").write_text("image_path,question\nx.png,why\n")
    with pytest.raises(InputError, match="lacks columns"):
        predict_mmad(tmp_path / "q.csv", "m", {}, tmp_path / "p.jsonl")

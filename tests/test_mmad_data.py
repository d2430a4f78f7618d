"""MMAD's data (issue 13): what MMAD's own scripts tolerate in its real data, DS-MVTec's layout, and
the demo MMAD built from the demo datasets' images, on which the leakage filter drops exactly the
training-role images."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from adfm.data import mmad_question_table as question_table
from adfm.data.datasets import LAYOUTS, manifest, mmad
from adfm.data.datasets.synthetic import DemoSpec
from adfm.data.demo_archive import make_demo_archive
from adfm.data.extract import extract
from adfm.data.mmad_questions import mmad_question_table, split_drop_reasons
from adfm.data.split import make_split
from adfm.io import InputError
from adfm.settings.data import SplitSettings

SIZE = 48
SOURCES = {
    "DS-MVTec": ("mvtec_ad", "bottle"),
    "MVTec-LOCO": ("mvtec_loco", "pushpins"),
    "VisA": ("visa", "candle"),
    "GoodsAD": ("goodsad", "drink_can"),
}


def png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def tiny_mmad(root, key, mask_path, templates=("MVTec-AD/bottle/train/good/000.png",)):
    """An mmad.json of one anomalous query (its image written) and the first template written."""
    image = np.full((16, 16, 3), 100, np.uint8)
    png(root / key, image)
    png(root / templates[0], image)
    conversation = [
        {
            "Question": "Is there any defect in the object?",
            "Answer": "A",
            "Options": {"A": "Yes.", "B": "No."},
            "type": "Anomaly Detection",
            "annotation": True,
        }
    ]
    entry = {
        "image_path": key.split("/", 2)[2],
        "mask_path": mask_path,
        "similar_templates": list(templates),
        "random_templates": list(templates),
        "conversation": conversation,
    }
    (root / "mmad.json").write_text(json.dumps({key: entry}))


def mask(value=255):
    out = np.zeros((16, 16), np.uint8)
    out[4:8, 4:8] = value
    return out


def test_loco_mask_path_naming_a_file_whose_masks_lie_in_a_folder_merges_the_folder(tmp_path):
    key = "MVTec-LOCO/pushpins/test/logical_anomalies/000.png"
    tiny_mmad(
        tmp_path, key, "ground_truth/logical_anomalies/000.png", templates=("MVTec-LOCO/pushpins/train/good/000.png",)
    )
    folder = tmp_path / "MVTec-LOCO/pushpins/ground_truth/logical_anomalies/000"
    png(folder / "000.png", mask(255))
    png(folder / "001.png", mask(12))
    query = next(r for r in mmad.parse(tmp_path, "mmad") if r.source_split == "test")
    assert query.label == 1 and query.mask_paths == [str(folder / "000.png"), str(folder / "001.png")]


def test_jpg_mask_path_whose_file_is_png_is_found(tmp_path):
    key = "GoodsAD/drink_can/test/deformation/001.jpg"
    tiny_mmad(tmp_path, key, "ground_truth/deformation/001.jpg", templates=("GoodsAD/drink_can/train/good/000.jpg",))
    png(tmp_path / "GoodsAD/drink_can/ground_truth/deformation/001.png", mask())
    query = next(r for r in mmad.parse(tmp_path, "mmad") if r.source_split == "test")
    assert query.mask_paths == [str(tmp_path / "GoodsAD/drink_can/ground_truth/deformation/001.png")]


def test_a_mask_found_nowhere_is_still_an_error(tmp_path):
    key = "DS-MVTec/bottle/image/broken_large/000.png"
    tiny_mmad(tmp_path, key, "rbg_mask/broken_large/000_rbg_mask.png")
    with pytest.raises(InputError, match="anomalous image without a mask"):
        mmad.parse(tmp_path, "mmad")


def test_a_missing_template_that_is_never_used_is_a_warning(tmp_path, caplog):
    key = "DS-MVTec/bottle/image/broken_large/000.png"
    templates = ("MVTec-AD/bottle/train/good/000.png", "MVTec-AD/bottle/train/good/404.png")
    tiny_mmad(tmp_path, key, "rbg_mask/broken_large/000_rbg_mask.png", templates=templates)
    png(tmp_path / "DS-MVTec/bottle/rbg_mask/broken_large/000_rbg_mask.png", np.dstack([mask()] * 3))
    with caplog.at_level(logging.WARNING):
        rows = mmad.parse(tmp_path, "mmad")
    assert [r.image_path for r in rows if r.source_split == "train"] == [str(tmp_path / templates[0])]
    assert "404.png" in caplog.text and "missing" in caplog.text
    questions = mmad.parse_questions(tmp_path)
    assert json.loads(questions["templates"][0]) == [str(tmp_path / t) for t in templates]  # predict-mmad checks


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The source demo datasets, the MMAD demo built from their archives, and their roots."""
    base = tmp_path_factory.mktemp("mmad_demo")
    archives, roots = {}, {}
    for source, (layout, category) in SOURCES.items():
        archive = base / "archives" / LAYOUTS[layout].ARCHIVE_NAME
        make_demo_archive(layout, archive, DemoSpec((category,), SIZE, 3, 3, 2))
        archives[source] = archive
        extract(archive, base / layout)
        roots[layout] = base / layout
    categories = tuple(f"{source}/{category}" for source, (_, category) in SOURCES.items())
    make_demo_archive(
        "mmad",
        base / "MMAD.zip",
        DemoSpec(categories, SIZE, sources=tuple((source, str(archive)) for source, archive in archives.items())),
    )
    extract(base / "MMAD.zip", base / "mmad")
    return base / "mmad", roots


def test_demo_ds_mvtec_lies_as_defect_spectrum_does(demo):
    root, _ = demo
    data = json.loads((root / "mmad.json").read_text())
    anomalous = [k for k in data if k.startswith("DS-MVTec/") and "/good/" not in k]
    assert anomalous and all(k.startswith("DS-MVTec/bottle/image/") for k in data if k.startswith("DS-MVTec/"))
    for key in anomalous:
        entry = data[key]
        defect, name = key.split("/")[-2:]
        stem = name.rsplit(".", 1)[0]
        assert entry["image_path"] == f"image/{defect}/{name}"
        assert entry["mask_path"] == f"rbg_mask/{defect}/{stem}_rbg_mask.png"
        assert (root / f"DS-MVTec/bottle/mask/{defect}/{stem}_mask.png").is_file()
        assert (root / "DS-MVTec/bottle" / entry["mask_path"]).is_file()
    loco = [k for k in data if k.startswith("MVTec-LOCO/") and "/good/" not in k]
    assert all(
        data[k]["mask_path"].endswith(".png") and (root / "MVTec-LOCO/pushpins" / data[k]["mask_path"][:-4]).is_dir()
        for k in loco
    )  # MMAD's naming, masks in a folder


def test_demo_mmad_holds_the_very_images_of_the_demo_datasets(demo):
    root, roots = demo
    questions = mmad.parse_questions(root)
    for source, (layout, category) in SOURCES.items():
        rows = [r for r in LAYOUTS[layout].parse(roots[layout], layout, [category]) if r.source_split == "test"]
        names = {mmad.source_image(layout, category, r.label, r.image_path): r.image_path for r in rows}
        mine = questions[questions["dataset"] == source].drop_duplicates("image_path")
        assert set(mine["source_image"]) == set(names)  # every test image, no other
        for row in mine.itertuples():
            assert Path(row.image_path).read_bytes() == Path(names[row.source_image]).read_bytes()


def test_filter_on_the_demo_drops_exactly_the_training_role_images(demo):
    root, roots = demo
    frames = [
        manifest.to_frame(LAYOUTS[layout].parse(roots[layout], layout, [category]))
        for layout, category in SOURCES.values()
    ]
    images = pd.concat(frames, ignore_index=True).assign(boxes="[]")
    protocol = SplitSettings(
        kind="holdout", datasets=[layout for layout, _ in SOURCES.values()], train_fraction=0.2, seed=0
    )
    split = make_split(images, protocol)
    mmad_images = manifest.to_frame(mmad.parse(root, "mmad")).assign(boxes="[]")
    questions = mmad_question_table(mmad.parse_questions(root), mmad_images)
    reasons = split_drop_reasons(questions, split, {layout: layout for layout, _ in SOURCES.values()})

    training = split[split["role"] == "train"]
    expected = {mmad.source_image(r.dataset, r.category, r.label, r.image_path) for r in training.itertuples()}
    dropped = set(questions.loc[reasons == "training", "source_image"])
    assert dropped == expected and len(expected) >= len(SOURCES)  # at least one per category
    assert set(reasons) == {"", "training"}  # every MMAD image is a test-split image of its source
    tested = {
        mmad.source_image(r.dataset, r.category, r.label, r.image_path)
        for r in split[split["role"] == "test"].itertuples()
    }
    assert set(questions.loc[reasons == "", "source_image"]) == tested


def test_the_question_table_reads_back_what_the_stage_writes(demo, tmp_path):
    root, _ = demo
    images = manifest.to_frame(mmad.parse(root, "mmad")).assign(boxes="[[1, 2, 3, 4]]")
    table = mmad_question_table(mmad.parse_questions(root), images).assign(drop_reason="")
    question_table.write(table, tmp_path / "q.csv")
    back = question_table.read(tmp_path / "q.csv")
    assert list(back.columns) == question_table.COLUMNS
    assert back["label"].tolist() == table["label"].tolist() and set(back["label"]) == {0, 1}
    assert back["options"].tolist() == table["options"].tolist()
    assert back["reference_path"].tolist() == table["reference_path"].tolist()


def test_a_question_table_without_its_columns_or_questions_is_refused(tmp_path):
    (tmp_path / "q.csv").write_text("image_path,question\nx.png,why\n")
    with pytest.raises(InputError, match="lacks columns"):
        question_table.read(tmp_path / "q.csv")
    (tmp_path / "empty.csv").write_text(",".join(question_table.COLUMNS) + "\n")
    with pytest.raises(InputError, match="no MMAD questions"):
        question_table.read(tmp_path / "empty.csv")
    with pytest.raises(InputError, match="cannot read MMAD questions"):
        question_table.read(tmp_path / "absent.csv")


def test_ds_mvtec_coloured_masks_are_found_under_either_spelling(tmp_path):
    key = "DS-MVTec/bottle/image/broken_large/000.png"
    tiny_mmad(tmp_path, key, "rbg_mask/broken_large/000_rbg_mask.png")
    found = tmp_path / "DS-MVTec/bottle/rgb_mask/broken_large/000_rbg_mask.png"
    png(found, np.dstack([mask()] * 3))
    query = next(r for r in mmad.parse(tmp_path, "mmad") if r.source_split == "test")
    assert query.mask_paths == [str(found)]

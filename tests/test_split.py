import filecmp

import pandas as pd
import pytest

from adfm.data.split import make_split, run_split
from adfm.io import InputError
from adfm.settings.data import SplitSettings


def images(categories=("a", "b"), n_test=10, n_train=4):
    rows = []
    for category in categories:
        for i in range(n_train):
            rows.append(
                dict(
                    dataset="d",
                    category=category,
                    source_split="train",
                    image_path=f"{category}/train/{i}.png",
                    label=0,
                    defect_type="good",
                    mask_paths=[],
                    width=10,
                    height=10,
                    boxes="[]",
                )
            )
        for i in range(n_test):
            label = int(i % 2)
            rows.append(
                dict(
                    dataset="d",
                    category=category,
                    source_split="test",
                    image_path=f"{category}/test/{i}.png",
                    label=label,
                    defect_type="x" if label else "good",
                    mask_paths=[],
                    width=10,
                    height=10,
                    boxes="[[1, 1, 2, 2]]" if label else "[]",
                )
            )
    return pd.DataFrame(rows)


HOLDOUT = {"kind": "holdout", "datasets": ["d"], "train_fraction": 0.2}


def protocol(entry: dict, seed: int = 0) -> SplitSettings:
    return SplitSettings.from_dict({**entry, "seed": seed})


def test_holdout_takes_a_fifth_per_category_for_training():
    split = make_split(images(), protocol(HOLDOUT))
    counts = split.groupby(["category", "role"]).size().to_dict()
    assert counts == {("a", "test"): 8, ("a", "train"): 2, ("b", "test"): 8, ("b", "train"): 2}
    assert not split["image_path"].str.contains("/train/").any()  # the dataset's train split is never evaluated


def test_every_row_has_a_normal_training_reference_of_its_category():
    frame = images()
    split = make_split(frame, protocol(HOLDOUT))
    normal_train = set(frame[(frame.source_split == "train") & (frame.label == 0)].image_path)
    assert split["reference_path"].isin(normal_train).all()
    assert (split["reference_path"].str[0] == split["category"]).all()


def test_seed_changes_the_split_and_same_seed_reproduces_it():
    first, again, other = (make_split(images(), protocol(HOLDOUT, seed=s)) for s in (0, 0, 1))
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_transfer_protocol_trains_on_source_and_tests_on_whole_target():
    frame = pd.concat([images(), images().assign(dataset="e")], ignore_index=True)
    transfer = {"kind": "transfer", "train": ["d"], "test": ["e"], "train_fraction": 0.2}
    split = make_split(frame, protocol(transfer))
    assert set(split[split.dataset == "d"].role) == {"train"} and (split.dataset == "d").sum() == 4
    assert set(split[split.dataset == "e"].role) == {"test"} and (split.dataset == "e").sum() == 20


def test_category_without_normal_training_image_is_an_error():
    frame = images()
    frame = frame[~((frame.category == "b") & (frame.source_split == "train"))]
    with pytest.raises(InputError, match="d/b: no normal training image"):
        make_split(frame, protocol(HOLDOUT))


def test_rerun_is_byte_identical(tmp_path):
    frame = images()
    manifest = tmp_path / "manifest.csv"
    frame.drop(columns="boxes").assign(mask_paths="[]").to_csv(manifest, index=False)
    boxes = tmp_path / "boxes.csv"
    frame[["image_path", "boxes"]].to_csv(boxes, index=False)
    run_split([manifest], [boxes], protocol(HOLDOUT), tmp_path / "one.csv")
    run_split([manifest], [boxes], protocol(HOLDOUT), tmp_path / "two.csv")
    assert filecmp.cmp(tmp_path / "one.csv", tmp_path / "two.csv", shallow=False)


def test_mmad_questions_join_their_images_and_templates():
    from adfm.data.mmad_questions import mmad_question_table

    questions = pd.DataFrame(
        [
            dict(
                image_path="r/DS-MVTec/bottle/test/broken/000.png",
                dataset="DS-MVTec",
                category="bottle",
                question="Is there any defect in the object?",
                options='{"A": "Yes.", "B": "No."}',
                answer="A",
                type="Anomaly Detection",
                template_path="r/MVTec-AD/bottle/train/good/001.png",
                label=1,
            )
        ]
    )
    images = pd.DataFrame(
        [dict(image_path="r/DS-MVTec/bottle/test/broken/000.png", width=900, height=800, boxes="[[10, 20, 30, 40]]")]
    )
    table = mmad_question_table(questions, images)
    assert table.loc[0, "reference_path"] == "r/MVTec-AD/bottle/train/good/001.png"
    assert (table.loc[0, "width"], table.loc[0, "height"], table.loc[0, "boxes"]) == (900, 800, "[[10, 20, 30, 40]]")
    with pytest.raises(InputError, match="000.png: MMAD question about an image missing"):
        mmad_question_table(questions, images.assign(image_path="elsewhere.png"))

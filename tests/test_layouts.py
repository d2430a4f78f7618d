"""Every dataset layout: demo generator -> archive in the original's format -> extract -> parse,
the quirks of each real layout, and the parsers' errors on bad input."""

import csv
import json
import logging
import shutil
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from adfm.data import mmad_question_table
from adfm.data.datasets import LAYOUTS, dagm, goodsad, manifest, mmad, mpdd, mvtec_loco, visa
from adfm.data.datasets.synthetic import DEFECT_KINDS, DemoSpec, jpeg_bytes, png_bytes, texture
from adfm.data.demo_archive import make_demo_archive
from adfm.data.extract import extract
from adfm.data.index import count_differences, index
from adfm.io import InputError

FIXTURES = Path(__file__).parent / "fixtures"
SIZE = 48
CATEGORIES = {
    "mvtec_ad": ("bottle", "wood"),
    "visa": ("candle", "pcb1"),
    "mvtec_loco": ("pushpins", "juice_bottle"),
    "goodsad": ("drink_can", "cigarette_box"),
    "mpdd": ("metal_plate", "tubes"),
    "dtd_synthetic": ("Woven_001", "Mesh_114"),
    "dagm": ("Class1", "Class8"),
    "mmad": ("DS-MVTec/bottle", "MVTec-LOCO/pushpins", "VisA/candle", "GoodsAD/drink_can"),
}
ARCHIVE_FORMATS = {
    "mvtec_ad": "xz",
    "mvtec_loco": "xz",
    "visa": "tar",
    "goodsad": "zip",
    "mpdd": "zip",
    "dtd_synthetic": "zip",
    "dagm": "zip",
    "mmad": "zip",
}


def spec(layout: str) -> DemoSpec:
    return DemoSpec(CATEGORIES[layout], image_size=SIZE, train_good=3, test_good=2, test_defective_per_type=2)


def expected_counts(layout: str, category: str) -> dict:
    """(source_split, label) -> images of the demo of `layout` (DemoSpec above)."""
    per_type = 2
    defect_types = {
        "goodsad": len(goodsad.DEFECTS.get(category, ())),
        "mpdd": len(mpdd.DEFECTS.get(category, ())),
        "dtd_synthetic": 1,
        "mvtec_loco": 2,
    }.get(layout, len(DEFECT_KINDS))
    train = 3 + (1 if layout == "mvtec_loco" else 0)  # LOCO: validation/good is on the train side
    if layout == "mmad":  # the test images of its source demo dataset; templates from its train/good
        source, _, name = category.partition("/")
        return {**expected_counts(mmad.SOURCE_LAYOUTS[source], name), ("train", 0): 3}
    counts = {("train", 0): train, ("test", 0): 2, ("test", 1): per_type * defect_types}
    if layout == "dagm":  # DAGM's Train holds defective images too
        counts[("train", 1)] = per_type * len(DEFECT_KINDS)
    return counts


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """layout -> (archive, extracted root), each archive named like the original."""
    base = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout, module in LAYOUTS.items():
        archive = base / "archives" / layout / module.ARCHIVE_NAME
        make_demo_archive(layout, archive, spec(layout))
        extract(archive, base / layout)
        out[layout] = (archive, base / layout)
    return out


def tree(demos, layout, tmp_path) -> Path:
    """A private, modifiable copy of an extracted demo."""
    root = tmp_path / layout
    shutil.copytree(demos[layout][1], root)
    return root


def frame_of(layout: str, root: Path, categories=None) -> pd.DataFrame:
    """The manifest frame of a parse, mask_paths as lists (as manifest.read gives them)."""
    frame = manifest.to_frame(LAYOUTS[layout].parse(root, layout, categories))
    frame["mask_paths"] = frame["mask_paths"].map(json.loads)
    return frame


# ---- round trip per layout -------------------------------------------------------------------


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_demo_round_trip_counts_masks_and_sizes(demos, layout):
    _archive, root = demos[layout]
    frame = frame_of(layout, root)
    assert list(frame.columns) == manifest.COLUMNS
    assert sorted(frame["category"].unique()) == sorted(CATEGORIES[layout])
    for category in CATEGORIES[layout]:
        rows = frame[frame["category"] == category]
        counts = rows.groupby(["source_split", "label"]).size().to_dict()
        assert counts == expected_counts(layout, category), category
    anomalous = frame[frame["label"] == 1]
    assert all(paths and all(Path(p).is_file() for p in paths) for paths in anomalous["mask_paths"])
    assert all(paths == [] for paths in frame[frame["label"] == 0]["mask_paths"])
    assert (frame.loc[frame["label"] == 0, "defect_type"] == "good").all()
    assert (frame.loc[frame["label"] == 1, "defect_type"] != "good").all()
    assert all(Path(p).is_file() for p in frame["image_path"])
    assert (frame["width"] == SIZE).all() and (frame["height"] == SIZE).all()
    assert frame["image_path"].is_unique


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_demo_archive_format_and_reproducibility(demos, layout, tmp_path):
    archive, _ = demos[layout]
    head = archive.read_bytes()[:6]
    kind = ARCHIVE_FORMATS[layout]
    if kind == "zip":
        assert zipfile.is_zipfile(archive)
        with zipfile.ZipFile(archive) as bundle:
            assert {info.date_time for info in bundle.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    elif kind == "xz":
        assert head == b"\xfd7zXZ\x00"
    else:
        assert not zipfile.is_zipfile(archive) and tarfile.is_tarfile(archive) and head != b"\xfd7zXZ\x00"
    again = tmp_path / archive.name
    make_demo_archive(layout, again, spec(layout))
    assert again.read_bytes() == archive.read_bytes()
    assert again.with_name(again.name + ".sha256").read_text().endswith(f"  {archive.name}\n")


def test_mpdd_and_dtd_use_the_mvtec_parser_with_their_own_defects(demos):
    frame = frame_of("mpdd", demos["mpdd"][1])
    defects = frame[frame.label == 1].groupby("category")["defect_type"].unique()
    assert sorted(defects["metal_plate"]) == ["major_rust", "scratches", "total_rust"]
    assert all(p[0].endswith("_mask.png") for p in frame[frame.label == 1].mask_paths)
    dtd = frame_of("dtd_synthetic", demos["dtd_synthetic"][1])
    assert set(dtd[dtd.label == 1].defect_type) == {"bad"}
    assert Path(dtd[dtd.label == 1].mask_paths.iloc[0][0]).parent.name == "bad"


# ---- VisA -------------------------------------------------------------------------------------


def test_visa_layout_crlf_names_and_multi_defect_field(demos):
    root = demos["visa"][1]
    split_bytes = (root / "split_csv" / "1cls.csv").read_bytes()
    anno_bytes = (root / "candle" / "image_anno.csv").read_bytes()
    for data in (split_bytes, anno_bytes):
        assert data.count(b"\r\n") == data.count(b"\n") > 1  # CRLF everywhere
    assert split_bytes.startswith(b"object,split,label,image,mask\r\n")
    assert anno_bytes.startswith(b"image,label,mask\r\n")
    assert b',"different colour spot,crack",' in anno_bytes  # several names in one quoted field
    assert sorted(p.name for p in (root / "candle/Data/Images/Normal").iterdir())[0] == "0000.JPG"
    assert sorted(p.name for p in (root / "candle/Data/Images/Anomaly").iterdir())[0] == "000.JPG"
    assert (root / "candle/Data/Images/Normal/0000.JPG").read_bytes()[:2] == b"\xff\xd8"  # JPEG
    frame = frame_of("visa", root)
    multi = frame[frame.image_path.str.endswith("candle/Data/Images/Anomaly/002.JPG")].iloc[0]
    assert multi.defect_type == "different_colour_spot,crack"
    mask = cv2.imread(multi.mask_paths[0], cv2.IMREAD_UNCHANGED)
    assert set(np.unique(mask)) == {0, 1, 2}  # multi-class mask: pixel value = defect id


def visa_tree_from_fixtures(root: Path) -> Path:
    """A raw VisA tree around the real metadata excerpts: synthetic images at the listed paths."""
    (root / "split_csv").mkdir(parents=True)
    shutil.copy(FIXTURES / "visa" / "split_csv_1cls.excerpt.csv", root / "split_csv" / "1cls.csv")
    (root / "candle").mkdir()
    shutil.copy(FIXTURES / "visa" / "candle_image_anno.excerpt.csv", root / "candle" / "image_anno.csv")
    rng = np.random.default_rng(0)
    with open(root / "split_csv" / "1cls.csv", newline="") as handle:
        for row in list(csv.DictReader(handle)):
            path = root / row["image"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg_bytes(texture(rng, 0, 32)))
            if row["mask"]:
                (root / row["mask"]).parent.mkdir(parents=True, exist_ok=True)
                (root / row["mask"]).write_bytes(png_bytes(np.full((32, 32), 3, np.uint8)))
    return root


def test_visa_parses_the_real_metadata_format(tmp_path):
    root = visa_tree_from_fixtures(tmp_path / "visa")
    frame = frame_of("visa", root)
    assert frame.groupby(["source_split", "label"]).size().to_dict() == {
        ("train", 0): 3,
        ("test", 0): 2,
        ("test", 1): 5,
    }
    defects = dict(zip(frame.image_path.map(lambda p: Path(p).name), frame.defect_type, strict=False))
    assert defects["000.JPG"] == "chunk_of_wax_missing"
    assert defects["005.JPG"] == "chunk_of_wax_missing,foreign_particals_on_candle"
    assert defects["044.JPG"] == "damaged_corner_of_packaging,different_colour_spot,other"
    assert defects["0836.JPG"] == "good"


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda text: text.replace("object,split,label,image,mask", "object,split,image"),
            "line 1: expected the header",
        ),
        (
            lambda text: text.replace("candle,train,normal,candle/Data/Images/Normal/0836.JPG,", "candle,train,normal"),
            "line 2: expected 5 fields",
        ),
        (
            lambda text: text.replace(
                "candle,train,normal,candle/Data/Images/Normal/0451.JPG",
                "candle,val,normal,candle/Data/Images/Normal/0451.JPG",
            ),
            "line 3: split must be",
        ),
        (
            lambda text: text.replace("Anomaly/005.JPG,candle/Data/Masks/Anomaly/005.png", "Anomaly/005.JPG,"),
            "005.JPG: anomalous image without a mask",
        ),
    ],
)
def test_visa_malformed_split_csv_lines_are_errors(tmp_path, edit, message):
    root = visa_tree_from_fixtures(tmp_path / "visa")
    path = root / "split_csv" / "1cls.csv"
    path.write_bytes(edit(path.read_bytes().decode()).encode())
    with pytest.raises(InputError, match=message) as error:
        visa.parse(root, "visa")
    assert "1cls.csv" in str(error.value) or "005.JPG" in str(error.value)


# ---- MVTec LOCO -------------------------------------------------------------------------------


def test_loco_several_masks_per_image_validation_and_config(demos):
    root = demos["mvtec_loco"][1]
    frame = frame_of("mvtec_loco", root)
    anomalous = frame[frame.label == 1]
    assert set(anomalous.defect_type) == {"logical_anomalies", "structural_anomalies"}
    assert anomalous.mask_paths.map(len).max() == 2 and anomalous.mask_paths.map(len).min() == 1
    two = anomalous[anomalous.mask_paths.map(len) == 2].iloc[0]
    assert [Path(p).name for p in two.mask_paths] == ["000.png", "001.png"]
    assert Path(two.mask_paths[0]).parent.name == Path(two.image_path).stem
    validation = frame[frame.image_path.str.contains("/validation/good/")]
    assert len(validation) == 2 and set(validation.source_split) == {"train"}
    config = json.loads((root / "pushpins" / "defects_config.json").read_text())
    values = {entry["pixel_value"] for entry in config}
    assert {"defect_name", "pixel_value", "saturation_threshold", "relative_saturation"} <= set(config[0])
    for path in two.mask_paths:  # masks encode the defect type as a pixel value from the config
        assert set(np.unique(cv2.imread(path, cv2.IMREAD_UNCHANGED))) - {0} <= values


# ---- GoodsAD ----------------------------------------------------------------------------------


def test_goodsad_names_and_per_category_archive_layout(demos, tmp_path):
    root = tree(demos, "goodsad", tmp_path)
    frame = frame_of("goodsad", root)
    names = frame.image_path.map(lambda p: Path(p).name)
    assert names.str.fullmatch(r"\d{6}\.jpg").all()
    masks = frame[frame.label == 1]
    assert all(
        Path(m[0]).name == Path(i).stem + ".png" for m, i in zip(masks.mask_paths, masks.image_path, strict=False)
    )
    # one category's zip extracted into its own folder: <cat>/<cat>/train
    shutil.move(str(root / "drink_can"), str(tmp_path / "drink_can"))
    (root / "drink_can").mkdir()
    shutil.move(str(tmp_path / "drink_can"), str(root / "drink_can" / "drink_can"))
    nested = frame_of("goodsad", root)
    assert (
        nested.groupby(["category", "source_split", "label"]).size().to_dict()
        == frame.groupby(["category", "source_split", "label"]).size().to_dict()
    )


def test_goodsad_unextracted_per_category_zips_are_a_clear_error(tmp_path):
    (tmp_path / "drink_can.zip").write_bytes(b"PK")
    with pytest.raises(InputError, match=r"per-category archives \['drink_can.zip'\].*extract"):
        goodsad.parse(tmp_path, "goodsad")


# ---- DAGM -------------------------------------------------------------------------------------


def test_dagm_labels_format_thumbs_db_and_grayscale(demos):
    root = demos["dagm"][1]
    labels = (root / "Class8" / "Test" / "Label" / "Labels.txt").read_text()
    lines = labels.split("\n")
    assert lines[0] == "1" and labels.endswith("\n") and "\r" not in labels
    normal = next(line for line in lines[1:] if line.split("\t")[1:2] == ["0"])
    defective = next(line for line in lines[1:] if line.split("\t")[1:2] == ["1"])
    assert normal.endswith("\t0\t0\t") and normal.split("\t")[2].endswith(".PNG")
    assert defective.split("\t")[4] == defective.split("\t")[0] + "_label.PNG"
    assert (root / "Class8" / "Test" / "Thumbs.db").is_file()
    frame = frame_of("dagm", root)
    assert not frame.image_path.str.contains("Thumbs").any()
    assert set(frame[frame.label == 1].defect_type) == {"defect"}
    test_ids = frame[(frame.category == "Class8") & (frame.source_split == "test")].image_path.map(
        lambda p: Path(p).stem
    )
    train_ids = frame[(frame.category == "Class8") & (frame.source_split == "train")].image_path.map(
        lambda p: Path(p).stem
    )
    assert min(test_ids) == "0001" and min(train_ids) == f"{len(test_ids) + 1:04d}"  # Train numbered after Test
    image = cv2.imread(frame.image_path.iloc[0], cv2.IMREAD_UNCHANGED)
    assert image.ndim == 2


def test_dagm_nested_class_folders_are_accepted(demos, tmp_path):
    root = tree(demos, "dagm", tmp_path)
    flat = frame_of("dagm", root).groupby(["category", "source_split", "label"]).size().to_dict()
    shutil.move(str(root / "Class8"), str(tmp_path / "Class8"))
    (root / "Class8").mkdir()
    shutil.move(str(tmp_path / "Class8"), str(root / "Class8" / "Class8"))
    nested = frame_of("dagm", root)
    assert nested.groupby(["category", "source_split", "label"]).size().to_dict() == flat
    assert nested[nested.category == "Class8"].image_path.str.contains("Class8/Class8/").all()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda lines: lines[1:], "line 1: expected a first line holding only a number"),
        (lambda lines: [*lines[:2], "0002\t0\t0002.PNG", *lines[3:]], "line 3: expected 5 tab-separated fields"),
        (lambda lines: [*lines[:2], "0002\tx\t0002.PNG\t0\t0\t", *lines[3:]], "line 3: expected a numeric id"),
        (
            lambda lines: [*lines[:1], lines[1].replace("\t0\t", "\t1\t", 1), *lines[2:]],
            "anomalous image without a mask",
        ),
    ],
)
def test_dagm_malformed_labels_are_errors(demos, tmp_path, edit, message):
    root = tree(demos, "dagm", tmp_path)
    path = root / "Class1" / "Test" / "Label" / "Labels.txt"
    lines = path.read_text().split("\n")
    path.write_text("\n".join(edit(lines)))
    with pytest.raises(InputError, match=message) as error:
        dagm.parse(root, "dagm")
    assert "Class1/Test" in str(error.value)


def test_dagm_flag_without_mask_and_missing_mask_file(demos, tmp_path):
    root = tree(demos, "dagm", tmp_path)
    path = root / "Class1" / "Train" / "Label" / "Labels.txt"
    lines = path.read_text().split("\n")
    number = next(i for i, line in enumerate(lines) if line.split("\t")[1:2] == ["1"])
    mask = lines[number].split("\t")[4]
    (path.parent / mask).unlink()
    with pytest.raises(InputError, match=f"Class1/Train/{mask[:4]}.PNG: anomalous image without a mask"):
        dagm.parse(root, "dagm")
    lines[number] = lines[number].replace("\t0\t" + mask, "\t0\t0\t").replace("\t1\t", "\t0\t", 1)
    ident = lines[number].split("\t")[0]
    other = next(i for i, line in enumerate(lines) if line.split("\t")[1:2] == ["0"] and i != number)
    lines[other] = lines[other].rstrip("\t").rsplit("\t", 1)[0] + f"\t{ident}_label.PNG"
    path.write_text("\n".join(lines))
    with pytest.raises(InputError, match="defective flag 0 but a mask"):
        dagm.parse(root, "dagm")


# ---- MMAD -------------------------------------------------------------------------------------


def test_mmad_questions_of_all_types(demos):
    root = demos["mmad"][1]
    questions = mmad.parse_questions(root)
    assert list(questions.columns) == mmad_question_table.QUESTION_COLUMNS
    assert set(questions["type"]) == set(mmad.QUESTION_TYPES)
    assert set(questions["dataset"]) == {"DS-MVTec", "MVTec-LOCO", "VisA", "GoodsAD"}
    for row in questions.itertuples():
        assert row.answer in json.loads(row.options)
        assert Path(row.template_path).is_file() and "/train/good/" in row.template_path
        assert row.label == int("/good/" not in row.image_path)
    per_image = questions.groupby("image_path")["type"].apply(set)
    labels = questions.groupby("image_path")["label"].first()
    assert all(per_image[p] == set(mmad.QUESTION_TYPES) for p in labels[labels == 1].index)
    assert all("Defect Classification" not in per_image[p] for p in labels[labels == 0].index)
    detection = questions[questions.type == "Anomaly Detection"]
    assert ((detection.answer == "A") == (detection.label == 1)).all()  # A: Yes
    frame = frame_of("mmad", root)
    test = frame[frame.source_split == "test"]
    assert set(test.image_path) == set(questions.image_path)
    assert set(test.category) == set(CATEGORIES["mmad"])
    templates = frame[frame.source_split == "train"]
    ds_templates = templates[templates.category == "DS-MVTec/bottle"]
    assert ds_templates.image_path.str.contains("/MVTec-AD/bottle/train/good/").all()  # references for DS-MVTec
    loco = test[(test.category == "MVTec-LOCO/pushpins") & (test.label == 1)]
    assert loco.mask_paths.map(len).max() == 2  # mask_path names a folder of region masks


def test_mmad_bad_answer_and_bad_json_are_errors(demos, tmp_path):
    root = tree(demos, "mmad", tmp_path)
    path = root / "mmad.json"
    data = json.loads(path.read_text())
    key = next(iter(data))
    data[key]["conversation"][0]["Answer"] = "Z"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=rf"mmad.json: {key}: question 0: answer 'Z' is not one of the options"):
        mmad.parse_questions(root)
    path.write_text("{not json")
    with pytest.raises(InputError, match="mmad.json: cannot read JSON"):
        mmad.parse(root, "mmad")


# ---- errors shared by all layouts -------------------------------------------------------------


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_unrecognised_layout_is_an_error(layout, tmp_path):
    (tmp_path / "something" / "else").mkdir(parents=True)
    with pytest.raises(InputError, match=rf"{tmp_path}: no .*(not an? .*layout|not a raw VisA layout)"):
        LAYOUTS[layout].parse(tmp_path, layout)


def _first_anomalous(frame: pd.DataFrame) -> pd.Series:
    return frame[frame.label == 1].iloc[0]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_anomalous_image_without_mask_is_an_error(demos, layout, tmp_path):
    root = tree(demos, layout, tmp_path)
    row = _first_anomalous(frame_of(layout, root))
    for path in row.mask_paths:
        Path(path).unlink()
    image = Path(row.image_path).relative_to(root).as_posix()
    with pytest.raises(InputError, match=rf"{image}: anomalous image without a mask"):
        frame_of(layout, root)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_unreadable_image_is_an_error(demos, layout, tmp_path):
    root = tree(demos, layout, tmp_path)
    row = frame_of(layout, root).iloc[-1]
    Path(row.image_path).write_bytes(b"not an image")
    with pytest.raises(InputError, match=rf"{Path(row.image_path).name}: unreadable image"):
        frame_of(layout, root)


@pytest.mark.parametrize("layout", sorted(set(LAYOUTS) - {"visa", "mmad"}))
def test_empty_category_is_an_error(demos, layout, tmp_path):
    root = tree(demos, layout, tmp_path)
    category = CATEGORIES[layout][0]
    for path in list((root / category).rglob("*")):
        if path.is_file():  # the folders stay
            path.unlink()
    with pytest.raises(InputError, match=rf"{category}: (category|class) has no images"):
        frame_of(layout, root)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_unknown_category_is_an_error(demos, layout):
    with pytest.raises(InputError, match=r"categories \['nope'\] not found"):
        LAYOUTS[layout].parse(demos[layout][1], layout, ["nope"])


def test_unknown_archive_suffix_is_an_error(tmp_path):
    with pytest.raises(InputError, match="unknown archive format"):
        make_demo_archive("mvtec_ad", tmp_path / "demo.rar", spec("mvtec_ad"))


def test_tar_gz_is_reproducible_too(tmp_path):
    first, second = tmp_path / "a" / "demo.tar.gz", tmp_path / "b" / "demo.tar.gz"
    small = DemoSpec(("bottle",), image_size=32, train_good=1, test_good=1, test_defective_per_type=1)
    make_demo_archive("mvtec_ad", first, small)
    make_demo_archive("mvtec_ad", second, small)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as bundle:
        assert "bottle/train/good/000.png" in bundle.getnames()


# ---- documented counts ------------------------------------------------------------------------


def test_count_differences_per_category_and_totals():
    frame = pd.DataFrame(
        {"category": ["a", "a", "a", "b"], "source_split": ["train", "test", "test", "train"], "label": [0, 0, 1, 1]}
    )
    documented = {"a": {"train": 1, "test": 2, "test_defective": 2}, "b": {"train_defective": 1}}
    assert count_differences(frame, documented) == ["a: 1 test defective images, documented 2"]
    assert count_differences(frame, {}, {"train": 2, "test": 3}, ("a", "b")) == [
        "all categories: 2 test images, documented 3"
    ]
    assert count_differences(frame, {}, {"test": 3}, ("a", "b", "c")) == []  # not every category parsed


def test_index_warns_on_undocumented_counts_unless_told_not_to(demos, tmp_path, caplog):
    root = demos["mvtec_ad"][1]
    with caplog.at_level(logging.WARNING, logger="adfm.data.index"):
        index(root, "mvtec_ad", "mvtec_ad", None, tmp_path / "m.csv")
    assert "mvtec_ad: bottle: 3 train images, documented 209" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="adfm.data.index"):
        index(root, "mvtec_ad", "mvtec_ad", None, tmp_path / "m2.csv", count_check=False)
    assert "documented" not in caplog.text
    assert (tmp_path / "m2.csv").read_bytes() == (tmp_path / "m.csv").read_bytes()


def test_every_layout_documents_its_counts_in_the_known_keys():
    for layout, module in LAYOUTS.items():
        for category, counts in module.DOCUMENTED_COUNTS.items():
            assert category in module.CATEGORIES, (layout, category)
            assert set(counts) <= {"train", "test", "train_defective", "test_defective"}, layout
    assert mvtec_loco.DOCUMENTED_COUNTS == {}  # not documented: nothing to compare


def test_index_cli_has_the_no_count_check_flag():
    from adfm.cli import build_parser

    args = build_parser("index").parse_args(
        ["index", "--root", "r", "--dataset", "d", "--layout", "visa", "--out", "o", "--no-count-check"]
    )
    assert args.count_check is False

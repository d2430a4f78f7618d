import json

import numpy as np
import pytest
from model_fixtures import tiny_model_dir  # noqa: F401 (fixture)
from PIL import Image

from adfm.cli import main
from adfm.detect import annotate
from adfm.io import InputError

from conftest import REPO


def write_image(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    return path


def test_detect_prints_answers_and_writes_annotated_images(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    reference = write_image(tmp_path / "normal.png", 0)
    queries = [write_image(tmp_path / f"part{i}.png", i + 1) for i in range(2)]
    config = [str(REPO / "config.yaml"), str(REPO / "workflow/configs/demo.yaml")]
    code = main(["detect", "--model", str(tiny_model_dir), "--reference", str(reference), *map(str, queries),
                 "--out-dir", str(tmp_path / "out"), "--config", *config])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"] for line in lines] == [str(q) for q in queries]
    for line in lines:
        assert line["answer"] in ("yes", "no", None)
        with Image.open(line["annotated"]) as image:
            assert image.size == (120, 90)


def test_annotate_draws_boxes_in_original_pixels(tmp_path):
    query = tmp_path / "q.png"
    Image.new("RGB", (100, 80), (0, 0, 0)).save(query)
    annotate(query, [[10, 10, 50, 40]], "yes", tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as image:
        assert image.getpixel((10, 30)) == (255, 40, 40)  # left edge of the box
        assert image.getpixel((30, 25)) == (0, 0, 0)  # inside stays untouched


def test_missing_image_is_a_clear_error(tiny_model_dir, tmp_path):  # noqa: F811
    from adfm.detect import detect

    with pytest.raises(InputError, match="nowhere.png: image not found"):
        detect(tiny_model_dir, None, tmp_path / "nowhere.png", [], tmp_path, [REPO / "config.yaml"], "multi_stage")

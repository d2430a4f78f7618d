import json
import shutil

import numpy as np
import pytest
import yaml
from conftest import REPO
from model_fixtures import (
    tiny_model_dir,  # noqa: F401 (fixture)
    train_settings,
    write_split,
)
from PIL import Image

from adfm.cli import main
from adfm.inference.detect import annotate, output_names
from adfm.io import InputError

DEMO_CONFIG = [str(REPO / "config.yaml"), str(REPO / "workflow/configs/demo.yaml")]


def write_image(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """An adapter trained by `adfm train` (1 step) on the tiny model, with its training.json."""
    from adfm.model.train import train
    from adfm.settings.model import TrainSettings

    root = tmp_path_factory.mktemp("trained")
    split = write_split(root / "data", n_train=2, n_test=1)
    settings = train_settings(max_steps=1)
    settings.update(reasoning="multi_stage", answer_format="yes_no")
    train(split, tiny_model_dir, TrainSettings.from_dict(settings), root / "adapter")
    return root / "adapter"


@pytest.fixture
def images(tmp_path):
    reference = write_image(tmp_path / "normal.png", 0)
    return reference, [write_image(tmp_path / f"part{i}.png", i + 1) for i in range(2)]


def lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def errors(caplog) -> list[str]:
    """The messages logged as errors (what the console shows as ERROR lines), then forgotten."""
    found = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    caplog.clear()
    return found


def test_detect_prints_answers_and_writes_annotated_images(tiny_model_dir, images, tmp_path, capsys):
    reference, queries = images
    code = main(
        [
            "detect",
            "--model",
            str(tiny_model_dir),
            "--reference",
            str(reference),
            *map(str, queries),
            "--out-dir",
            str(tmp_path / "out"),
            "--config",
            *DEMO_CONFIG,
        ]
    )
    assert code == 0
    results = lines(capsys)
    assert [line["image"] for line in results] == [str(q) for q in queries]
    for line in results:
        assert line["answer"] in ("yes", "no", None)
        with Image.open(line["annotated"]) as image:
            assert image.size == (120, 90)


def test_training_records_what_detect_needs(trained, tiny_model_dir):
    record = json.loads((trained / "training.json").read_text())
    assert record["base_model"] == str(tiny_model_dir)
    assert (record["reasoning"], record["answer_format"]) == ("multi_stage", "yes_no")
    assert record["prompt"] == train_settings()["prompt"]
    assert record["model"]["max_pixels"] == train_settings()["model"]["max_pixels"]
    assert record["resumes"] == []


def test_adapter_brings_its_base_model_prompt_and_dtype(trained, images, tmp_path, capsys, monkeypatch):
    """No --model, no --config, run from another folder: all from the adapter's training.json; the
    model loads in its own dtype (float32) where config.yaml says bfloat16."""
    import adfm.inference.detect

    assert yaml.safe_load((REPO / "config.yaml").read_text())["model"]["dtype"] == "bfloat16"
    loaded = []
    original = adfm.inference.detect.load_model

    def spy(*args, **kwargs):
        model, processor = original(*args, **kwargs)
        loaded.append(model.dtype)
        return model, processor

    monkeypatch.setattr(adfm.inference.detect, "load_model", spy)
    monkeypatch.chdir(tmp_path)
    reference, queries = images
    assert main(["detect", "--adapter", str(trained), "--reference", str(reference), str(queries[0])]) == 0
    assert [line["image"] for line in lines(capsys)] == [str(queries[0])]
    assert (tmp_path / "detections" / "part0.annotated.png").is_file()
    import torch

    assert loaded == [torch.float32]


def test_adapter_on_another_base_model_is_a_one_line_error(trained, tiny_model_dir, images, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    for path in other.glob("*.safetensors"):  # same architecture, other weights (a warm start's base, say)
        tensors = load_file(path)
        save_file(
            {name: t + 0.01 if t.is_floating_point() else t for name, t in tensors.items()},
            path,
            metadata={"format": "pt"},
        )
    reference, queries = images
    code = main(
        ["detect", "--model", str(other), "--adapter", str(trained), "--reference", str(reference), str(queries[0])]
    )
    assert code == 2
    error = errors(caplog)
    assert len(error) == 1 and "\n" not in error[0]
    assert f"was trained on {tiny_model_dir}, not on {other}" in error[0]


def test_adapter_with_other_reasoning_is_an_error(trained, images, caplog):
    reference, queries = images
    code = main(
        [
            "detect",
            "--adapter",
            str(trained),
            "--reasoning",
            "one_stage",
            "--reference",
            str(reference),
            str(queries[0]),
        ]
    )
    assert code == 2
    assert "trained with multi_stage" in errors(caplog)[0]


def test_adapter_that_does_not_fit_is_a_one_line_error(trained, tiny_model_dir, images, tmp_path, caplog):
    """An adapter from elsewhere (no training.json) whose tensors have other shapes: one line, not
    PEFT's 60-line size-mismatch traceback."""
    from safetensors.torch import load_file, save_file

    foreign = tmp_path / "foreign"
    shutil.copytree(trained, foreign)
    (foreign / "training.json").unlink()
    tensors = load_file(foreign / "adapter_model.safetensors")
    save_file(
        {name: t.repeat(2, 1) if "lora_A" in name else t for name, t in tensors.items()},
        foreign / "adapter_model.safetensors",
    )
    reference, queries = images
    code = main(
        [
            "detect",
            "--model",
            str(tiny_model_dir),
            "--adapter",
            str(foreign),
            "--reference",
            str(reference),
            str(queries[0]),
            "--config",
            *DEMO_CONFIG,
        ]
    )
    assert code == 2
    error = errors(caplog)
    assert len(error) == 1 and "\n" not in error[0]
    assert "does not fit the model" in error[0] and "size mismatch" in error[0]


def test_same_name_other_extension_and_unreadable_image(trained, images, tmp_path, capsys):
    """a.png and a.jpg keep their own outputs; an unreadable image is reported, the others answer,
    and the call ends with status 1."""
    reference, _ = images
    png = write_image(tmp_path / "a.png", 5)
    jpg = tmp_path / "a.jpg"
    with Image.open(png) as image:
        image.save(jpg)
    broken = tmp_path / "broken.png"
    broken.write_bytes(png.read_bytes()[:200])  # truncated
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "detect",
                "--adapter",
                str(trained),
                "--reference",
                str(reference),
                str(png),
                str(broken),
                str(jpg),
                str(text),
                "--out-dir",
                str(out),
            ]
        )
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    results = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["image"] for r in results] == [str(png), str(broken), str(jpg), str(text)]
    assert [r["annotated"] for r in results if "annotated" in r] == [
        str(out / "a.png.annotated.png"),
        str(out / "a.jpg.annotated.png"),
    ]
    assert "cannot read image" in results[1]["error"] and "cannot read image" in results[3]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg.annotated.png", "a.png.annotated.png"]
    assert "2 of 4 image(s) could not be read" in captured.err


def test_output_names_never_collide(tmp_path):
    from pathlib import Path

    queries = [Path("x/a.png"), Path("x/a.jpg"), Path("y/a.png"), Path("x/b.png")]
    assert output_names(queries) == [
        "a.png.annotated.png",
        "a.jpg.annotated.png",
        "a.png.2.annotated.png",
        "b.annotated.png",
    ]


def test_default_config_outside_the_checkout(tiny_model_dir, images, tmp_path, capsys, caplog, monkeypatch):
    """Without an adapter record, the default config is the checkout's config.yaml, wherever the
    command runs; where there is none (an installed package), the error says to pass --config."""
    import adfm.inference.detect

    reference, queries = images
    monkeypatch.chdir(tmp_path)
    assert adfm.inference.detect.CHECKOUT_CONFIG == REPO / "config.yaml"
    command = ["detect", "--model", str(tiny_model_dir), "--reference", str(reference), str(queries[0])]
    assert main(command) == 0
    assert lines(capsys)[0]["image"] == str(queries[0])
    monkeypatch.setattr(adfm.inference.detect, "CHECKOUT_CONFIG", tmp_path / "nowhere" / "config.yaml")
    assert main(command) == 2
    assert "pass --config" in errors(caplog)[0]


def test_annotate_draws_boxes_in_original_pixels(tmp_path):
    query = tmp_path / "q.png"
    Image.new("RGB", (100, 80), (0, 0, 0)).save(query)
    annotate(query, [[10, 10, 50, 40]], "yes", tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as image:
        assert image.getpixel((10, 30)) == (255, 40, 40)  # left edge of the box
        assert image.getpixel((30, 25)) == (0, 0, 0)  # inside stays untouched


def test_missing_image_is_a_clear_error(tiny_model_dir, tmp_path):
    from adfm.inference.detect import detect

    with pytest.raises(InputError, match="nowhere.png: image not found"):
        detect(tiny_model_dir, None, tmp_path / "nowhere.png", [], tmp_path, [REPO / "config.yaml"], "multi_stage")


def test_missing_adapter_is_reported_before_the_model_loads(tiny_model_dir, images, tmp_path):
    from adfm.inference.detect import detect

    reference, queries = images
    with pytest.raises(InputError, match="nope: not a LoRA adapter folder"):
        detect(tiny_model_dir, tmp_path / "nope", reference, queries, tmp_path)

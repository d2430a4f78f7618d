"""Shared fixtures for the model tests: the tiny demo models and a hand-written miniature split.

Import the fixtures into a test module (`from model_fixtures import tiny_model_dir, split_csv`).
Each tiny model (Qwen2.5-VL, InternVL, LLaVA-NeXT) is built once per test session, whichever
modules use it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

MIN_PIXELS = 3136
MAX_PIXELS = 12544  # 112 x 112: two small images per prompt keep the tiny model fast

PROMPT = (
    "The first image is a normal reference image. The second image is the query image. "
    "Is there any defect in the object? Output the thinking process in <think> </think>, the rethinking in "
    "<rethink> </rethink> and the final answer (yes or no) in <answer> </answer> tags."
)

MODEL_SETTINGS = {"dtype": "float32", "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}

_built: dict[str, Path] = {}


def build_demo_model(base: Path, source: str) -> Path:
    """The demo model `source` (demo:<name>) built into base/<name>, once per session."""
    from adfm.model.load import fetch_model

    if source not in _built:
        _built[source] = fetch_model(source, None, base / source.removeprefix("demo:"))
    return _built[source]


def build_tiny_model(base: Path) -> Path:
    return build_demo_model(base, "demo:tiny-qwen2.5-vl")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_internvl_dir(tmp_path_factory) -> Path:
    return build_demo_model(tmp_path_factory.getbasetemp(), "demo:tiny-internvl")


@pytest.fixture(scope="session")
def tiny_llava_next_dir(tmp_path_factory) -> Path:
    return build_demo_model(tmp_path_factory.getbasetemp(), "demo:tiny-llava-next")


def _image(path: Path, rng: np.random.Generator, box: list[int] | None, size=(128, 96)) -> None:
    width, height = size
    pixels = rng.normal(120, 12, size=(height, width, 3)).clip(0, 255).astype(np.uint8)
    if box is not None:
        x1, y1, x2, y2 = box
        pixels[y1:y2, x1:x2] = 250
    Image.fromarray(pixels).save(path)


def write_split(root: Path, *, n_train: int = 4, n_test: int = 6, datasets=("toyset",)) -> Path:
    """A split CSV with its images: per dataset, n_train train and n_test test rows, half anomalous."""
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for dataset in datasets:
        reference = images / f"{dataset}_reference.png"
        _image(reference, rng, None)
        for role, count in (("train", n_train), ("test", n_test)):
            for i in range(count):
                label = i % 2
                box = [20 + 4 * i, 10 + 3 * i, 50 + 4 * i, 40 + 3 * i] if label else None
                path = images / f"{dataset}_{role}_{i}.png"
                _image(path, rng, box)
                rows.append(
                    {
                        "dataset": dataset,
                        "category": "widget",
                        "role": role,
                        "image_path": str(path),
                        "label": label,
                        "defect_type": "spot" if label else "good",
                        "boxes": json.dumps([box] if box else []),
                        "width": 128,
                        "height": 96,
                        "reference_path": str(reference),
                    }
                )
    split = root / "split.csv"
    pd.DataFrame(rows).to_csv(split, index=False)
    return split


@pytest.fixture
def split_csv(tmp_path) -> Path:
    return write_split(tmp_path / "data")


def train_settings(**grpo) -> dict:
    """Small, fast GRPO settings for the tiny model on CPU (2 prompts x 2 generations x 12 tokens)."""
    return {
        "prompt": PROMPT,
        "reasoning": "multi_stage",
        "answer_format": "yes_no",
        "model": dict(MODEL_SETTINGS),
        "rewards": ["cls", "loc"],
        "reward_weights": [1.0, 1.0],
        "reward_options": {},
        "grpo": {
            "num_generations": 2,
            "temperature": 1.0,
            "learning_rate": 1e-3,
            "beta": 0.04,
            "num_train_epochs": 1,
            "max_steps": 2,
            "max_completion_length": 12,
            "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 1,
            "warmup_ratio": 0.001,
            "bf16": False,
            "seed": 0,
            "logging_steps": 1,
            "save_steps": 100,
            "gradient_checkpointing": False,
            "use_vllm": False,
            # TRL's sampling and optimiser, not config.yaml's (the release's)
            "top_k": 0,
            "top_p": 1.0,
            "lr_scheduler_type": "linear",
            "weight_decay": 0.0,
            "adam_beta2": 0.999,
            **grpo,
        },
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    }


def predict_settings(**overrides) -> dict:
    return {"prompt": PROMPT, "model": dict(MODEL_SETTINGS), "batch_size": 4, "max_new_tokens": 12, **overrides}

"""Synthetic industrial images for the demo datasets: textured parts with drawn defects.

Each category has its own texture so categories differ; defects are bright or dark blobs and thin
scratches, drawn together with their exact masks. Everything is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFECT_KINDS = ("blob", "scratch")


@dataclass(frozen=True)
class DemoSpec:
    """Sizes of a generated miniature dataset."""

    categories: tuple[str, ...]
    image_size: int = 112
    train_good: int = 10
    test_good: int = 6
    test_defective_per_type: int = 4
    seed: int = 0
    # (MMAD source, archive): the demo datasets whose images a demo MMAD asks about (adfm.data.datasets.mmad)
    sources: tuple[tuple[str, str], ...] = ()


def texture(rng: np.random.Generator, category_index: int, size: int) -> np.ndarray:
    """A grey part on a darker background, with a category-specific stripe period and tone."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    period = 6 + 4 * category_index
    tone = 110 + 25 * (category_index % 4)
    stripes = 12 * np.sin(2 * np.pi * (x + (category_index % 2) * y) / period)
    noise = rng.normal(0, 6, (size, size))
    image = np.clip(tone + stripes + noise, 0, 255).astype(np.uint8)
    part = np.zeros((size, size), np.uint8)
    margin = size // 10
    cv2.rectangle(part, (margin, margin), (size - margin, size - margin), 255, -1)
    image = np.where(part > 0, image, (image * 0.4).astype(np.uint8))
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


def draw_defect(image: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    """Draw one defect of `kind` into `image` (in place); return its 0/255 mask."""
    size = image.shape[0]
    mask = np.zeros(image.shape[:2], np.uint8)
    low, high = size // 5, size - size // 5
    if kind == "blob":
        centre = (int(rng.integers(low, high)), int(rng.integers(low, high)))
        axes = (int(rng.integers(size // 16, size // 7)), int(rng.integers(size // 16, size // 7)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    elif kind == "scratch":
        start = (int(rng.integers(low, high)), int(rng.integers(low, high)))
        end = (
            int(np.clip(start[0] + rng.integers(-size // 3, size // 3), low, high)),
            int(np.clip(start[1] + rng.integers(-size // 3, size // 3), low, high)),
        )
        cv2.line(mask, start, end, 255, max(2, size // 40))
    else:
        raise ValueError(f"unknown defect kind {kind!r}")
    colour = 245 if rng.random() < 0.5 else 15
    image[mask > 0] = colour
    return mask


def png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return encoded.tobytes()


def jpeg_bytes(image: np.ndarray, quality: int = 95) -> bytes:
    """JPEG through cv2 (libjpeg: deterministic for the same pixels and quality)."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()


def gray(image: np.ndarray) -> np.ndarray:
    """A single-channel copy of a BGR image (DAGM is grayscale)."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def write_file(path: Path, data: bytes | str, newline: str = "\n") -> None:
    """Write bytes, or text with the given line ending (VisA's CSVs are CRLF), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.replace("\n", newline).encode()
    path.write_bytes(data)

"""Drawing helpers shared by the figures (matplotlib, imported only when a figure is drawn)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from adfm.boxes import scale_boxes
from adfm.io import atomic_path

GT_COLOR, PRED_COLOR = "#1a9850", "#d73027"


@dataclass(frozen=True)
class Outputs:
    """The files of a figure, as the rule names them."""

    png: Path
    pdf: Path
    csv: Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def printable(text: str, width: int = 64, limit: int = 700) -> str:
    """Response text safe for any font (unprintable characters as ·), wrapped and shortened."""
    text = "".join(c if c.isprintable() and ord(c) < 0x2500 else "·" for c in str(text).replace("\n", " "))
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=True, replace_whitespace=False)) or "(empty)"


def draw_boxes(ax, boxes, color: str, label: str | None = None) -> None:
    from matplotlib.patches import Rectangle

    for i, (x1, y1, x2, y2) in enumerate(boxes):
        ax.add_patch(
            Rectangle(
                (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2, label=label if i == 0 else None
            )
        )


def draw_record_boxes(ax, record: dict, size, labels=(None, None)) -> None:
    """A record's ground-truth (green) and predicted (red) boxes, from the model's frame (none
    recorded: the image's) to the image as displayed."""
    frame = record.get("frame") or size
    for key, color, label in (("gt_boxes", GT_COLOR, labels[0]), ("boxes", PRED_COLOR, labels[1])):
        draw_boxes(ax, scale_boxes(record.get(key) or [], frame, size), color, label)


def show_image(ax, path: str, title: str | None = None):
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        ax.imshow(image)
        size = image.size
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return size


def save(fig, outputs: Outputs) -> None:
    """The figure as PNG and PDF, both written atomically."""
    for path in (outputs.png, outputs.pdf):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=150, bbox_inches="tight")
    pyplot().close(fig)

"""`adfm detect`: a user's own images through a (trained) model.

    adfm detect --model resources/models/qwen2.5-vl-7b-instruct --adapter resources/adapters/adfm \
        --reference normal.png part1.png part2.png --out-dir annotated/

For each query image: prints the answer and the boxes (in the query's own pixels) and writes the
query with the boxes drawn to `<out-dir>/<name>.annotated.png`. The prompt and the image budget
come from the config (config.yaml by default), so a detection sees what training saw.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PIL import Image, ImageDraw

from adfm import boxes as box_ops
from adfm.io import InputError, atomic_path
from adfm.protocol import parse_response, prompt_answer_format, prompt_template

log = logging.getLogger(__name__)


def annotate(image_path: Path, boxes: list[list[float]], answer: str | None, out: Path) -> None:
    """The query with its predicted boxes (original pixels) and the answer drawn on it."""
    with Image.open(image_path) as source:
        image = source.convert("RGB")
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 200))
    for box in boxes:
        draw.rectangle(box, outline=(255, 40, 40), width=width)
    draw.text((4, 4), f"anomalous: {answer or 'no answer'}", fill=(255, 255, 0))
    with atomic_path(out) as tmp:
        image.save(tmp, format="PNG")


def detect(model_dir: Path, adapter: Path | None, reference: Path, queries: list[Path], out_dir: Path,
           config_paths: list[Path], reasoning: str) -> list[dict]:
    from adfm.config import load_config
    from adfm.models import load_model_and_processor
    from adfm.predict import generate_batch, greedy_config
    from adfm.protocol import build_prompt

    for path in [reference, *queries]:
        if not path.is_file():
            raise InputError(f"{path}: image not found")
    config = load_config(config_paths)
    try:
        prompt_text, model_cfg = prompt_template(config["prompts"], reasoning), config["model"]
        answer_format = prompt_answer_format(config["prompts"])
        max_new_tokens = config["predict"]["max_new_tokens"]
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{' + '.join(map(str, config_paths))}: no prompts/model/predict setting {error}") from None
    model, processor = load_model_and_processor(
        model_dir, dtype=model_cfg["dtype"], min_pixels=model_cfg["min_pixels"], max_pixels=model_cfg["max_pixels"],
        adapter_dir=adapter,
    )
    generation = greedy_config(model, max_new_tokens=max_new_tokens, repetition_penalty=1.0)
    responses = generate_batch(model, processor, build_prompt(prompt_text), [(str(reference), str(q)) for q in queries],
                               generation)
    results = []
    for query, response in zip(queries, responses):
        with Image.open(query) as image:
            width, height = image.size
        frame = box_ops.model_frame_size(width, height, min_pixels=model_cfg["min_pixels"],
                                         max_pixels=model_cfg["max_pixels"])
        parsed = parse_response(response, reasoning, answer_format)
        kept = [b for b in (box_ops.sanitize(b, frame) for b in parsed.boxes) if b is not None]
        original = [[round(v, 1) for v in b] for b in box_ops.from_model_frame(kept, frame, width, height)]
        annotated = out_dir / f"{query.stem}.annotated.png"
        annotate(query, original, parsed.answer, annotated)
        results.append({"image": str(query), "answer": parsed.answer, "boxes": original, "annotated": str(annotated),
                        "response": response})
    return results


def register(subparsers) -> None:
    parser = subparsers.add_parser("detect", help="run a (trained) model on your own images")
    parser.add_argument("--model", required=True, type=Path, help="model folder (resources/models/<name>)")
    parser.add_argument("--adapter", type=Path, help="LoRA adapter folder (resources/adapters/<run>)")
    parser.add_argument("--reference", required=True, type=Path, help="a normal image of the same part")
    parser.add_argument("images", nargs="+", type=Path, help="query images")
    parser.add_argument("--out-dir", type=Path, default=Path("detections"))
    parser.add_argument("--config", type=Path, nargs="+", default=[Path("config.yaml")],
                        help="config file(s), merged in order like snakemake --configfile (prompts, model settings)")
    parser.add_argument("--reasoning", default="multi_stage", choices=["multi_stage", "one_stage"])

    def main(args) -> None:
        for result in detect(args.model, args.adapter, args.reference, args.images, args.out_dir, args.config,
                             args.reasoning):
            print(json.dumps({k: result[k] for k in ("image", "answer", "boxes", "annotated")}))

    parser.set_defaults(func=main)

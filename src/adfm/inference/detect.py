"""`adfm detect`: a user's own images through a (trained) model.

    adfm detect --adapter resources/adapters/adfm --reference normal.png part1.png part2.png \
        --out-dir annotated/

For each query image: prints the answer and the boxes (in the query's own pixels) and writes the
query with the boxes drawn to `<out-dir>/<name>.annotated.png` (`<name>.<ext>.annotated.png` when
two queries share a name, e.g. a.png and a.jpg). An image that cannot be read is reported on its
own line (`"error"`), the others still answer, and the exit status is 1.

A detection sees what training saw: an adapter trained by `adfm train` carries training.json, whose
base model, prompt, reasoning mode, answer format and image budget are used (the base model folder
is found from it when --model is left out; another --model or --reasoning is an error). Without
such an adapter they come from the config (the checkout's config.yaml unless --config is given).
The model loads in its own dtype (its config.json's), as it was saved.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections import Counter
from pathlib import Path

from PIL import Image, ImageDraw

from adfm import boxes as box_ops
from adfm.config import load_config
from adfm.inference.generate import generate_batch, greedy_config
from adfm.io import InputError, atomic_path
from adfm.model.families import response_frame
from adfm.model.load import check_adapter, load_model
from adfm.model.training_record import read_training_record, resolve_base_model
from adfm.protocol import REASONING_MODES, build_prompt, parse_response, prompt_answer_format, prompt_template
from adfm.settings import SettingsError
from adfm.settings.model import ModelSettings

log = logging.getLogger(__name__)

# the config beside the package in a checkout (src/adfm/../../config.yaml)
CHECKOUT_CONFIG = Path(__file__).resolve().parents[3] / "config.yaml"


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


def output_names(queries: list[Path]) -> list[str]:
    """`<stem>.annotated.png` per query; queries sharing a stem keep their extension in the name, and
    a name still shared (the same file name in two folders) gets a number."""
    stems = Counter(q.stem for q in queries)
    names = [f"{q.stem}.annotated.png" if stems[q.stem] == 1 else f"{q.name}.annotated.png" for q in queries]
    seen: Counter = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else name.replace(".annotated.png", f".{seen[name]}.annotated.png"))
    return unique


def image_problem(path: Path) -> str | None:
    """Why an image cannot be used (decoded completely, so a truncated file is caught), or None."""
    if not path.exists():
        return "image not found"
    if not path.is_file():
        return "not a file"
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return f"cannot read image ({error})"
    return None


def recorded_model(record: dict) -> ModelSettings:
    """The model settings training saw (records before model families: Qwen2.5-VL's traits)."""
    try:
        return ModelSettings.from_dict(record["model"], "training.json model")
    except SettingsError as error:
        raise InputError(f"adapter training record: {error}") from None


def detection_settings(config_paths: list[Path] | None, record: dict | None, reasoning: str | None) -> dict:
    """Prompt, reasoning, answer format, image budget and decoding: the adapter's record first, then
    the config."""
    if record is not None:
        if reasoning is not None and reasoning != record["reasoning"]:
            raise InputError(
                f"--reasoning {reasoning}: the adapter was trained with {record['reasoning']} "
                "(its answers would be misread); leave --reasoning out"
            )
        settings = {
            "prompt": record["prompt"],
            "reasoning": record["reasoning"],
            "answer_format": record["answer_format"],
            "model": recorded_model(record),
            "max_new_tokens": int(record["max_completion_length"]),
            "batch_size": 8,
        }
        if config_paths is None:
            return settings
    reasoning = reasoning or (record or {}).get("reasoning", "multi_stage")
    if config_paths is None:
        if not CHECKOUT_CONFIG.is_file():
            raise InputError(
                "no --config given and no config.yaml beside this package (not a checkout): pass "
                "--config <your config.yaml>"
            )
        config_paths = [CHECKOUT_CONFIG]
    config = load_config(config_paths)
    try:
        from_config = {
            "prompt": prompt_template(config["prompts"], reasoning),
            "reasoning": reasoning,
            "answer_format": prompt_answer_format(config["prompts"]),
            "model": ModelSettings.from_config(config),
            "max_new_tokens": int(config["predict"]["max_new_tokens"]),
            "batch_size": int(config["predict"]["batch_size"]),
        }
    except (KeyError, TypeError, ValueError, SettingsError) as error:
        raise InputError(f"{' + '.join(map(str, config_paths))}: no prompts/model/predict setting {error}") from None
    if record is None:
        return from_config
    # with a recorded adapter, the config gives decoding only: the rest must be what training saw
    return {**settings, "max_new_tokens": from_config["max_new_tokens"], "batch_size": from_config["batch_size"]}


def resolve_model(model_dir: Path | None, adapter: Path | None) -> tuple[Path, dict | None]:
    """The model folder and the adapter's training record (None without one)."""
    if adapter is None:
        if model_dir is None:
            raise InputError("give --model (and --adapter for a trained model)")
        return model_dir, None
    check_adapter(adapter)
    record = read_training_record(adapter)
    return resolve_base_model(adapter, record, model_dir), record


def respond(model_dir: Path, adapter: Path | None, settings: dict, reference: Path, queries: list[Path]) -> list[str]:
    """The model's greedy response to each query beside the reference."""
    # dtype auto: the model as it was saved
    model, processor = load_model(model_dir, dataclasses.replace(settings["model"], dtype="auto"), adapter_dir=adapter)
    generation = greedy_config(model, max_new_tokens=settings["max_new_tokens"], repetition_penalty=1.0)
    prompt = build_prompt(settings["prompt"])
    responses = []
    for start in range(0, len(queries), settings["batch_size"]):
        batch = queries[start : start + settings["batch_size"]]
        responses += generate_batch(model, processor, prompt, [(str(reference), str(q)) for q in batch], generation)
    return responses


def detection(query: Path, response: str, settings: dict, annotated: Path) -> dict:
    """A query's answer and boxes (in its own pixels), drawn into `annotated`."""
    with Image.open(query) as image:
        width, height = image.size
    frame = response_frame(settings["model"], width, height)
    parsed = parse_response(response, settings["reasoning"], settings["answer_format"])
    kept = [b for b in (box_ops.sanitize(b, frame) for b in parsed.boxes) if b is not None]
    original = [[round(v, 1) for v in b] for b in box_ops.from_model_frame(kept, frame, width, height)]
    annotate(query, original, parsed.answer, annotated)
    return {
        "image": str(query),
        "answer": parsed.answer,
        "boxes": original,
        "annotated": str(annotated),
        "response": response,
    }


def detect(
    model_dir: Path | None,
    adapter: Path | None,
    reference: Path,
    queries: list[Path],
    out_dir: Path,
    config_paths: list[Path] | None = None,
    reasoning: str | None = None,
) -> list[dict]:
    """One result per query, in order: image, answer, boxes, annotated, response; or image, error."""
    if reasoning is not None and reasoning not in REASONING_MODES:
        raise InputError(f"--reasoning {reasoning}: expected one of {', '.join(REASONING_MODES)}")
    problem = image_problem(reference)
    if problem:
        raise InputError(f"{reference}: {problem}")
    # everything checked before the model loads (minutes for a 7B)
    model_dir, record = resolve_model(model_dir, adapter)
    settings = detection_settings(config_paths, record, reasoning)
    problems = {q: image_problem(q) for q in queries}
    for query, problem in problems.items():
        if problem:
            log.error("%s: %s", query, problem)
    readable = [q for q in queries if not problems[q]]
    responses = (
        dict(zip(readable, respond(model_dir, adapter, settings, reference, readable), strict=False))
        if readable
        else {}
    )
    names = dict(zip(queries, output_names(queries), strict=False))
    return [
        {"image": str(query), "error": problems[query]}
        if problems[query]
        else detection(query, responses[query], settings, out_dir / names[query])
        for query in queries
    ]


def run_detect(args) -> None:
    """One JSON line per query; exit status 1 when an image could not be read."""
    failed = 0
    for result in detect(
        args.model, args.adapter, args.reference, args.images, args.out_dir, args.config, args.reasoning
    ):
        keys = ("image", "error") if "error" in result else ("image", "answer", "boxes", "annotated")
        print(json.dumps({k: result[k] for k in keys}), flush=True)
        failed += "error" in result
    if failed:
        print(f"{failed} of {len(args.images)} image(s) could not be read", file=sys.stderr)
        raise SystemExit(1)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="run a (trained) model on your own images",
        description="Ask a model (with a trained LoRA adapter, if given) whether each query image shows a defect "
        "compared with a normal reference image of the same part; prints one JSON line per image "
        "(answer, boxes) and writes an annotated copy into --out-dir. --model must be the model the "
        "adapter was trained on (read from the adapter's training.json when left out), and --reasoning the mode "
        "it was trained with (read from there too). An unreadable image is reported and the others "
        "still answer; the exit status is then 1.",
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="model folder; with an adapter from `adfm train`, its base model by default (and checked against it)",
    )
    parser.add_argument("--adapter", type=Path, help="LoRA adapter folder (resources/adapters/<run>)")
    parser.add_argument("--reference", required=True, type=Path, help="a normal image of the same part")
    parser.add_argument("images", nargs="+", type=Path, help="query images")
    parser.add_argument(
        "--out-dir", type=Path, default=Path("detections"), help="where the annotated images go (default: %(default)s)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        action="extend",
        nargs="+",
        help="config file(s), merged in order like snakemake --configfile (prompts, image budget, "
        "decoding); repeat --config or end the list with -- before the images; default: "
        "the adapter's training.json, else the checkout's config.yaml",
    )
    parser.add_argument(
        "--reasoning",
        choices=REASONING_MODES,
        help="the prompt's reasoning mode; default: the adapter's (from its training.json), else multi_stage",
    )
    parser.set_defaults(func=run_detect)

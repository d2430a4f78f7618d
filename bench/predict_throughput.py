"""Throughput of batched prediction against a batch-1 loop, same model, same images, same machine.

    .venv/bin/python bench/predict_throughput.py [--images 32] [--batch-size 16] [--max-new-tokens 64]

Builds the tiny demo Qwen2.5-VL (adfm.model.demo) in a temporary folder, writes `--images` pairs of
112 x 112 images (a normal reference and a query with a bright square), and runs the Hugging Face
backend as `adfm predict` runs it (adfm.inference.generate.HFBackend: the prompt of the demo, two
images per prompt, left padding, greedy decoding) once image by image and once in batches of `--batch-size`. Prints
images per second of both and their ratio; the issue asks for at least 3x. With --fixed-length every
response is forced to --max-new-tokens tokens (min_new_tokens), so an early end-of-text in the
batch-1 loop cannot flatter it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from adfm.inference.generate import HFBackend, greedy_config
from adfm.model.load import fetch_model, load_model
from adfm.settings.model import ModelSettings

PROMPT = (
    "You are an industrial quality inspector. The first image shows a normal, defect-free sample. The second image "
    "is the query. First, inside <think></think>, list the suspicious regions as JSON boxes. Then, inside "
    "<rethink></rethink>, examine each region. Finally, inside <answer></answer>, answer yes or no."
)


def write_pairs(root: Path, count: int, size: int = 112) -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    reference = root / "reference.png"
    Image.fromarray(rng.normal(120, 12, (size, size, 3)).clip(0, 255).astype(np.uint8)).save(reference)
    pairs = []
    for i in range(count):
        pixels = rng.normal(120, 12, (size, size, 3)).clip(0, 255).astype(np.uint8)
        x, y = rng.integers(0, size - 24, 2)
        pixels[y : y + 16 + i % 8, x : x + 16] = 250
        query = root / f"query_{i:03d}.png"
        Image.fromarray(pixels).save(query)
        pairs.append((str(reference), str(query)))
    return pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--fixed-length", action="store_true", help="force every response to max-new-tokens")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = fetch_model("demo:tiny-qwen2.5-vl", None, tmp / "tiny-qwen2.5-vl")
        pairs = write_pairs(tmp, args.images)
        model, processor = load_model(model_dir, ModelSettings(dtype="float32", min_pixels=3136, max_pixels=12544))
        config = greedy_config(model, max_new_tokens=args.max_new_tokens, repetition_penalty=1.0)
        if args.fixed_length:
            config.min_new_tokens = args.max_new_tokens

        def prompt_of(pair):
            return [("image", pair[0]), ("image", pair[1]), ("text", PROMPT)]

        def run(batch_size: int, jobs) -> list[str]:
            responses = []
            HFBackend(model, processor, config, batch_size=batch_size).answer(
                jobs, prompt_of, lambda answers: responses.extend(texts[0] for _, texts in answers)
            )
            return responses

        run(2, pairs[:2])  # warm-up (allocations, kernels)

        def timed(batch_size: int) -> tuple[float, list[str]]:
            start = time.perf_counter()
            responses = run(batch_size, pairs)
            return len(pairs) / (time.perf_counter() - start), responses

        single, single_responses = timed(1)
        batched, batched_responses = timed(args.batch_size)
    same = sum(a == b for a, b in zip(single_responses, batched_responses, strict=False))
    ratio = batched / single
    print(
        f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads: {torch.get_num_threads()}, "
        f"{args.images} images, {args.max_new_tokens} max new tokens{' (fixed)' if args.fixed_length else ''}"
    )
    print(f"batch 1:  {single:7.2f} images/s")
    print(f"batch {args.batch_size}: {batched:7.2f} images/s")
    print(
        f"speed-up: {ratio:.2f}x ({'meets' if ratio >= 3 else 'BELOW'} the 3x target); "
        f"identical responses: {same}/{len(pairs)}"
    )
    return 0 if ratio >= 3 else 1


if __name__ == "__main__":
    sys.exit(main())

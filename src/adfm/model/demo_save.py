"""What every tiny demo model's builder shares (adfm.model.demo, demo_internvl, demo_llava_next):
seeded random weights, the generation config, and saving model and processor in the Hugging Face
format, so that the same code loads them as the real checkpoints."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def save_tiny_model(
    out_dir: str | os.PathLike, *, name: str, model_class, config, processor, generation, seed: int
) -> Path:
    """`model_class(config)` with weights drawn from `seed` (the caller's RNG untouched), its
    `generation` config and `processor`, saved to `out_dir`."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log.info("building tiny %s (seed %d) into %s", name, seed, out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config).to(torch.float32)
    model.generation_config = generation
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    parameters = sum(p.numel() for p in model.parameters())
    log.info("tiny %s: %d parameters, %d tokens", name, parameters, len(processor.tokenizer))
    return out

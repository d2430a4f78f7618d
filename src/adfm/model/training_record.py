"""training.json, the record `adfm train` leaves in the adapter folder: the base model (folder and a
fingerprint of its weights), reasoning mode, answer format, prompt and image budget the adapter was
trained with, and the run's resumes. Inference on an adapter (`adfm detect`) reads it to see what
training saw and to check that the adapter goes on the model it was trained on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from adfm.io import InputError, sha256_file
from adfm.model.checkpoints import weights_fingerprint
from adfm.settings.model import TrainSettings

log = logging.getLogger(__name__)

TRAINING_RECORD = "training.json"


def training_record(model_dir: Path, settings: TrainSettings, args, resumes: list[dict], global_step: int) -> dict:
    """training.json: what inference needs to see what training saw, and how the run went."""
    config = model_dir / "config.json"
    return {
        # the folder as given (relative to the workflow's folder) and as resolved then; the weights'
        # fingerprint tells `adfm detect` whether another folder holds the same model
        "base_model": str(model_dir),
        "base_model_resolved": str(model_dir.resolve()),
        "base_model_weights": weights_fingerprint(model_dir),
        "base_model_config_sha256": sha256_file(config) if config.is_file() else None,
        "reasoning": settings.reasoning,
        "answer_format": settings.answer_format,
        "prompt": settings.prompt,
        "model": settings.model.to_dict(),
        "max_completion_length": args.max_completion_length,
        "rewards": list(settings.rewards),
        "seed": args.seed,
        "world_size": args.world_size,
        "global_step": global_step,
        "resumes": resumes,
    }


def read_training_record(adapter: Path) -> dict | None:
    """The adapter's training.json (written by `adfm train`), or None for an adapter from elsewhere."""
    path = adapter / TRAINING_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot read ({error})") from None


def resolve_base_model(adapter: Path, record: dict | None, model_dir: Path | None) -> Path:
    """The model folder the adapter goes on: --model, checked against what training recorded, or the
    recorded base model itself."""
    if record is None:
        base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if model_dir is None:
            if not base or not (Path(base) / "config.json").is_file():
                raise InputError(
                    f"{adapter}: no training.json and its base model {base!r} is not a folder here; pass --model"
                )
            return Path(base)
        if base and Path(base).resolve() != model_dir.resolve():
            log.warning("%s was trained on %s, not %s: unchecked (no training.json)", adapter, base, model_dir)
        return model_dir
    candidates = (
        [model_dir] if model_dir is not None else [Path(record["base_model"]), Path(record["base_model_resolved"])]
    )
    found = next((c for c in candidates if (c / "config.json").is_file()), None)
    if found is None:
        if model_dir is not None:
            raise InputError(f"{model_dir}: not a model folder (no config.json)")
        raise InputError(f"{adapter}: its base model {record['base_model']} is not here; pass --model <folder>")
    if weights_fingerprint(found) != record["base_model_weights"]:
        raise InputError(
            f"{adapter} was trained on {record['base_model']}, not on {found} (other weights): "
            f"pass --model {record['base_model']}, or leave --model out"
        )
    return found

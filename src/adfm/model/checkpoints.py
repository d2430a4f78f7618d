"""Checkpoints of a GRPO run: which run they belong to, which one to resume from, and the record
of every resume (see adfm.model.train for what a resumed run restores)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from adfm.io import sha256_file
from adfm.settings.model import TrainSettings

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIX = ".ckpt"
RESUME_STATE = "resume_state_{rank}.pt"
RUN_STAMP = "run.json"
# prefix of the Trainer's checkpoint folders (transformers.trainer_utils.PREFIX_CHECKPOINT_DIR)
CHECKPOINT_PREFIX = "checkpoint"

# GRPO settings that may change between an interrupted run and its restart without invalidating checkpoints
RESUMABLE_CHANGES = {"max_steps", "num_train_epochs", "save_steps", "logging_steps", "save_total_limit"}


def checkpoint_dir(out_dir: Path) -> Path:
    """Where the checkpoints of the adapter `out_dir` go while it trains."""
    return out_dir.parent / (out_dir.name + CHECKPOINT_SUFFIX)


def weights_fingerprint(model_dir: Path) -> str:
    """A fingerprint of a model folder's weights that reads a few MB, not the whole 15 GB: each
    *.safetensors file's name and size with 64 blocks of 64 KiB spread evenly over it. A fine-tuned
    or merged model differs from its base in most of its bytes, so in some of these blocks."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.glob("*.safetensors")):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as handle:
            for block in range(64):
                handle.seek(size * block // 64)
                digest.update(handle.read(1 << 16))
    return digest.hexdigest()


def run_fingerprint(split_csv: Path, model_dir: Path, settings: TrainSettings) -> str:
    """What a checkpoint must agree with to be resumed."""
    stable = settings.to_dict()
    stable.pop("report_to")  # where the metrics go live changes nothing trained
    grpo = {k: v for k, v in stable.pop("grpo").items() if k not in RESUMABLE_CHANGES}
    config = model_dir / "config.json"
    # weights by name, size and modification time (hashing 15 GB would take minutes): a rebuilt
    # warm-start model in the same folder invalidates the checkpoints trained on the old one
    weights = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model_dir.glob("*.safetensors"))
    payload = {
        "split": sha256_file(split_csv),
        "model": [str(model_dir.resolve()), sha256_file(config) if config.is_file() else None, weights],
        "settings": stable,
        "grpo": grpo,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def resume_state_world_size(path: Path) -> int:
    import torch

    # memory-mapped: a state holding buffered generations can be large
    return int(torch.load(path, weights_only=False, mmap=True)["world_size"])


def complete_checkpoint(checkpoint: Path) -> bool:
    """Whether a checkpoint was written to the end: the Trainer writes trainer_state.json last on the
    main process, and every process writes its resume state after its RNG states."""
    state = checkpoint / RESUME_STATE.format(rank=0)
    if not (checkpoint / "trainer_state.json").is_file() or not state.is_file():
        return False
    world_size = resume_state_world_size(state)
    return all((checkpoint / RESUME_STATE.format(rank=rank)).is_file() for rank in range(world_size))


def checkpoint_step(checkpoint: str) -> int:
    return int(checkpoint.rsplit("-", 1)[-1])


def last_complete_checkpoint(ckpt_dir: Path, *, discard: bool) -> str | None:
    """The newest complete checkpoint; a newer one cut short by the interruption is skipped (and
    deleted when `discard`: the main process, before the others look)."""
    found = sorted(
        (int(p.name.rsplit("-", 1)[1]), p)
        for p in ckpt_dir.glob(f"{CHECKPOINT_PREFIX}-*")
        if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()
    )
    for _, checkpoint in reversed(found):
        if complete_checkpoint(checkpoint):
            return str(checkpoint)
        log.warning(
            "%s: incomplete checkpoint (interrupted while saving)%s", checkpoint, "; discarding" if discard else ""
        )
        if discard:
            shutil.rmtree(checkpoint)
    return None


def prepare_checkpoint_dir(ckpt_dir: Path, fingerprint: str, world_size: int = 1, vllm: bool = False) -> str | None:
    """Make the checkpoint folder; return the checkpoint to resume from, if one matches this run.

    The folder's run.json keeps the run's fingerprint and its resumes so far: the step, and whether
    the resumed run is known to equal an uninterrupted one. Not when the checkpoint was written by
    another number of processes (the data and the RNG states are split per process), nor with vLLM
    generation (its sampler's random state lives in the vLLM engine, which no checkpoint holds), nor
    yet with several processes: there (2 CPU processes, gloo) the completions and rewards match but
    the loss differs in its last bits from the first resumed step, for a reason not yet found."""
    stamp = ckpt_dir / RUN_STAMP
    if ckpt_dir.is_dir():
        previous = json.loads(stamp.read_text()).get("fingerprint") if stamp.is_file() else None
        if previous != fingerprint:
            log.warning("%s: checkpoints from a different run (split, model or settings changed); discarding", ckpt_dir)
            shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    record = json.loads(stamp.read_text()) if stamp.is_file() else {"fingerprint": fingerprint, "resumes": []}
    resume = last_complete_checkpoint(ckpt_dir, discard=True)
    if resume:
        exact = (
            not vllm and world_size == 1 and resume_state_world_size(Path(resume) / RESUME_STATE.format(rank=0)) == 1
        )
        record.setdefault("resumes", []).append({"from_step": checkpoint_step(resume), "exact": exact})
    stamp.write_text(json.dumps(record) + "\n")
    return resume


def find_resume(args, ckpt_dir: Path, fingerprint: str) -> tuple[str | None, list[dict]]:
    """The checkpoint this process resumes from (or None) and the run's resumes so far (run.json).

    The main process discards stale checkpoints before the others look for one to resume from."""
    with args.main_process_first(local=False, desc="checkpoint folder"):
        if args.process_index == 0:
            resume = prepare_checkpoint_dir(ckpt_dir, fingerprint, args.world_size, bool(args.use_vllm))
        else:
            resume = last_complete_checkpoint(ckpt_dir, discard=False)
    stamp = ckpt_dir / RUN_STAMP
    resumes = json.loads(stamp.read_text()).get("resumes", []) if stamp.is_file() else []
    if resume:
        log.info("resuming from %s", resume)
        if not resumes[-1]["exact"]:
            log.warning(
                "%s: resumed with several processes, another number of processes or vLLM generation: the "
                "adapter may differ from an uninterrupted run's (recorded in training.json)",
                resume,
            )
    return resume, resumes

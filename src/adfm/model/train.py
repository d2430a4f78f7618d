"""GRPO + LoRA fine-tuning (paper section 3) with TRL's GRPOTrainer and PEFT.

    adfm train --split SPLIT.csv --model MODEL_DIR --settings JSON --out ADAPTER_DIR

Trains on the rows of the split with role == "train": each prompt shows the normal reference image,
then the query image, then the prompt template; the ground-truth label and boxes (converted to the
frame the model sees) reach the reward functions as dataset columns. LoRA adapters go on the
language model only (a regular expression on the module path); the vision tower stays frozen.

Outputs, in ADAPTER_DIR (written to a temporary folder and renamed into place at the end):
- adapter_config.json, adapter_model.safetensors: the LoRA adapter (PeftModel.from_pretrained);
- train_log.csv: one row per logging step (loss, reward, reward_std, frac_reward_zero_std, kl,
  completions/mean_length, rewards/<fn>/mean, ..., world_size: the number of processes);
- completions/completions_<step>.parquet: TRL's log_completions output (prompt, completion, each
  reward and the advantage of every completion), the raw material of Figures 4 and 5;
- training.json: the base model (folder and a fingerprint of its weights), reasoning mode, answer
  format, prompt and image budget the adapter was trained with, and the run's resumes.

Checkpoints go to ADAPTER_DIR + ".ckpt/" (checkpoint-<step>/ every `save_steps` steps, plus a
progressively rewritten train_log.csv). A restarted job resumes from the last checkpoint there,
provided the split, the model and the training settings (other than the run length and
logging/saving cadence) are unchanged; otherwise the stale checkpoints are discarded with a warning.
The checkpoint folder is removed once the adapter is in place.

In one process, a resumed run is identical to an uninterrupted one (tests/reliability/test_interrupted_jobs.py):
each checkpoint holds, per process, the Trainer's RNG states (python, numpy, torch CPU and CUDA:
sampling, dropout) and ours (resume_state_<rank>.pt): the r_random reward's generator, TRL's
micro-step counter and, when the checkpoint falls inside a block of reused generations
(steps_per_generation / num_iterations), the buffered generations themselves; the data order of
each epoch is re-derived from the seed. Only a checkpoint with all of them is resumed from. Every
resume is recorded: in train_log.csv (column resumed_from: the step the process that logged the row
started from) and in training.json (resumes: step and `exact`, whether the run is known to equal an
uninterrupted one: in one process without vLLM, see prepare_checkpoint_dir).

Several processes (`accelerate launch --num_processes N -m adfm train ...`, see adfm.config.launcher):
data parallel, each process samples and scores its own prompts of every step, on its GPU, or on the
CPU with the gloo backend where no GPU is visible (workflow/accelerate/multi_cpu.yaml). The main
process alone writes the checkpoint stamp, train_log.csv and the adapter.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from adfm.data import split_table
from adfm.io import InputError, atomic_path, settings_json

log = logging.getLogger(__name__)

# LoRA on every linear layer of the language model (attention and MLP), none of the vision tower:
# PEFT full-matches this against module paths such as `model.language_model.layers.0.mlp.up_proj`
# (the vision tower's MLPs, `model.visual.blocks.0.mlp.up_proj`, have the same leaf names).
DEFAULT_LORA_TARGET = (
    r".*language_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
)

# GRPOConfig values we set unless the settings say otherwise. The paper optimises the standard GRPO
# objective (per-sequence normalised loss, rewards scaled by the group's std), not TRL's default
# "dapo" loss; completions of every logging step are kept (log_completions) for Figures 4 and 5.
GRPO_DEFAULTS = {
    "loss_type": "grpo",
    "scale_rewards": "group",
    "log_completions": True,
    "num_completions_to_print": 2,
    "save_total_limit": 2,
    "report_to": "none",
    # every LoRA weight takes part in every forward pass: spare DDP its search for unused parameters
    "ddp_find_unused_parameters": False,
}

# Settings keys whose names differ from GRPOConfig's: transformers 5 folds warmup_ratio into
# warmup_steps (a float in [0, 1) is a ratio of the total steps) and renamed gradient_checkpointing
# (the name the paper's release and most recipes use).
RENAMED = {"warmup_ratio": "warmup_steps", "gradient_checkpointing": "activation_checkpointing"}

# Keys that may change between an interrupted run and its restart without invalidating checkpoints.
RESUMABLE_CHANGES = {"max_steps", "num_train_epochs", "save_steps", "logging_steps", "save_total_limit"}

LOG_FIRST_COLUMNS = [
    "step",
    "epoch",
    "loss",
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "kl",
    "completions/mean_length",
]

CHECKPOINT_SUFFIX = ".ckpt"
RESUME_STATE = "resume_state_{rank}.pt"
TRAINING_RECORD = "training.json"


# ----------------------------------------------------------------------------------------- dataset


def build_dataset(rows: pd.DataFrame, template: str, *, min_pixels: int, max_pixels: int):
    """The GRPO training set: conversational prompt, [reference, query] images, label, model-frame boxes.

    Images are stored as paths and decoded (as RGB) only when a batch needs them.
    """
    import datasets

    from adfm.boxes import to_model_frame
    from adfm.protocol import build_prompt

    prompt = build_prompt(template)
    boxes, frames = [], []
    for row in rows.itertuples(index=False):
        scaled, frame = to_model_frame(
            row.boxes, int(row.width), int(row.height), min_pixels=min_pixels, max_pixels=max_pixels
        )
        boxes.append([[float(v) for v in box] for box in scaled])
        frames.append([int(frame[0]), int(frame[1])])
    columns = {
        "prompt": [prompt] * len(rows),
        "images": [[str(r), str(q)] for r, q in zip(rows["reference_path"], rows["image_path"])],
        "label": [int(v) for v in rows["label"]],
        "boxes": boxes,
        "frame": frames,
        "image_path": [str(p) for p in rows["image_path"]],
        "dataset": [str(d) for d in rows["dataset"]],
        "category": [str(c) for c in rows["category"]],
    }
    data = datasets.Dataset.from_dict(columns)
    return data.cast(
        datasets.Features(
            {
                **data.features,
                "images": datasets.List(datasets.Image(mode="RGB")),
                "label": datasets.Value("int64"),
                "boxes": datasets.List(datasets.List(datasets.Value("float64"))),
                "frame": datasets.List(datasets.Value("int64")),
            }
        )
    )


# ----------------------------------------------------------------------------------------- configs


def check_vllm(grpo: dict) -> None:
    """use_vllm needs vllm installed and a GPU: say so before any model is loaded."""
    if not grpo.get("use_vllm"):
        return
    import importlib.util

    import torch

    if importlib.util.find_spec("vllm") is None:
        raise InputError(
            "train.grpo.use_vllm is true but vllm is not installed: install it on the GPU machine "
            "(pip install vllm, a version TRL supports) or set use_vllm: false to generate with transformers"
        )
    if not torch.cuda.is_available():
        raise InputError("train.grpo.use_vllm is true but no GPU is visible: vLLM generates on GPUs only")


def grpo_config(grpo: dict, *, output_dir: str | os.PathLike, reward_weights: list[float] | None):
    """GRPOConfig from the `grpo` settings: GRPOConfig's own field names (plus `warmup_ratio`)."""
    import torch
    from trl import GRPOConfig

    check_vllm(grpo)

    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    values = dict(GRPO_DEFAULTS)
    for key, value in grpo.items():
        name = RENAMED.get(key, key)
        if name not in fields:
            raise InputError(f"train settings: grpo.{key} is not a GRPOConfig option")
        values[name] = value
    if not torch.cuda.is_available():
        values.update(bf16=False, fp16=False, use_cpu=True)
    return GRPOConfig(
        output_dir=str(output_dir),
        reward_weights=list(reward_weights) if reward_weights is not None else None,
        save_strategy="steps",
        logging_strategy="steps",
        remove_unused_columns=False,
        **values,
    )


def lora_config(lora: dict):
    from peft import LoraConfig

    return LoraConfig(
        r=int(lora.get("r", 64)),
        lora_alpha=int(lora.get("alpha", 128)),
        lora_dropout=float(lora.get("dropout", 0.05)),
        target_modules=lora.get("target_modules") or DEFAULT_LORA_TARGET,
        bias="none",
        task_type="CAUSAL_LM",
    )


def check_trainable(model) -> list[str]:
    """Names of trainable parameters; the vision tower must have none (the paper freezes it)."""
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise InputError("LoRA target_modules matched no module: nothing to train")
    visual = [name for name in trainable if "visual" in name]
    if visual:
        raise InputError(f"LoRA target_modules reach the vision tower (e.g. {visual[0]}); it must stay frozen")
    return trainable


# ------------------------------------------------------------------------------------------- logs


def log_rows(log_history: list[dict], world_size: int, resumes: list[int] = ()) -> pd.DataFrame:
    """One row per logging step of trainer.state.log_history (the end-of-training summary excluded),
    with the number of processes that trained (the metrics are already averaged over them) and the
    checkpoint step the logging process had resumed from (empty before any resume)."""
    entries = [e for e in log_history if "step" in e and ("loss" in e or "reward" in e)]
    frame = pd.DataFrame(entries)
    if frame.empty:
        return pd.DataFrame(columns=[*LOG_FIRST_COLUMNS, "world_size", "resumed_from"])
    frame = frame.drop_duplicates(subset="step", keep="last")
    first = [c for c in LOG_FIRST_COLUMNS if c in frame.columns]
    resumed_from = [max((r for r in resumes if r < step), default=None) for step in frame["step"]]
    return frame[first + [c for c in frame.columns if c not in first]].assign(
        world_size=world_size, resumed_from=pd.array(resumed_from, dtype="Int64"))


def _progress_callback(log_csv: Path, resumes: list[int]):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Logs each step's headline metrics and keeps the checkpoint folder's train_log.csv current.

        Every process logs its start and end (each line names its rank when there are several);
        the step lines and the log file come from the main process only, the metrics being averaged
        over all processes."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()
            self.first_step = state.global_step
            log.info("GRPO training: step %d of %d, world size %d", state.global_step, state.max_steps,
                     args.world_size)

        def on_train_end(self, args, state, control, **kwargs):
            log.info("GRPO training done: step %d of %d in %.1f s", state.global_step, state.max_steps,
                     time.monotonic() - self.started)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs or not state.is_world_process_zero:
                return
            done = state.global_step - self.first_step
            per_step = (time.monotonic() - self.started) / max(done, 1)
            log.info(
                "step %d/%d: loss %.4g, reward %.3f (std %.3f, zero-std groups %.0f%%), %.1f s/step",
                state.global_step,
                state.max_steps,
                logs.get("loss", float("nan")),
                logs.get("reward", float("nan")),
                logs.get("reward_std", float("nan")),
                100 * logs.get("frac_reward_zero_std", float("nan")),
                per_step,
            )
            log_rows(state.log_history, args.world_size, resumes).to_csv(log_csv, index=False)

    return Progress()


# ------------------------------------------------------------------------------------------ train


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def run_fingerprint(split_csv: Path, model_dir: Path, settings: dict) -> str:
    """What a checkpoint must agree with to be resumed."""
    grpo = {k: v for k, v in settings.get("grpo", {}).items() if k not in RESUMABLE_CHANGES}
    stable = {k: v for k, v in settings.items() if k != "grpo"}
    config = model_dir / "config.json"
    # weights by name, size and modification time (hashing 15 GB would take minutes): a rebuilt
    # warm-start model in the same folder invalidates the checkpoints trained on the old one
    weights = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model_dir.glob("*.safetensors"))
    payload = {
        "split": _sha256_file(split_csv),
        "model": [str(model_dir.resolve()), _sha256_file(config) if config.is_file() else None, weights],
        "settings": stable,
        "grpo": grpo,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def complete_checkpoint(checkpoint: Path) -> bool:
    """Whether a checkpoint was written to the end: the Trainer writes trainer_state.json last on the
    main process, and every process writes its resume state after its RNG states."""
    state = checkpoint / RESUME_STATE.format(rank=0)
    if not (checkpoint / "trainer_state.json").is_file() or not state.is_file():
        return False
    world_size = resume_state_world_size(state)
    return all((checkpoint / RESUME_STATE.format(rank=rank)).is_file() for rank in range(world_size))


def resume_state_world_size(path: Path) -> int:
    import torch

    # memory-mapped: a state holding buffered generations can be large
    return int(torch.load(path, weights_only=False, mmap=True)["world_size"])


def last_complete_checkpoint(ckpt_dir: Path, *, discard: bool) -> str | None:
    """The newest complete checkpoint; a newer one cut short by the interruption is skipped (and
    deleted when `discard`: the main process, before the others look)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    found = sorted((int(p.name.rsplit("-", 1)[1]), p) for p in ckpt_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                   if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit())
    for _, checkpoint in reversed(found):
        if complete_checkpoint(checkpoint):
            return str(checkpoint)
        log.warning("%s: incomplete checkpoint (interrupted while saving)%s", checkpoint,
                    "; discarding" if discard else "")
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
    stamp = ckpt_dir / "run.json"
    if ckpt_dir.is_dir():
        previous = json.loads(stamp.read_text()).get("fingerprint") if stamp.is_file() else None
        if previous != fingerprint:
            log.warning("%s: checkpoints from a different run (split, model or settings changed); discarding", ckpt_dir)
            shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    record = json.loads(stamp.read_text()) if stamp.is_file() else {"fingerprint": fingerprint, "resumes": []}
    resume = last_complete_checkpoint(ckpt_dir, discard=True)
    if resume:
        exact = not vllm and world_size == 1 and resume_state_world_size(Path(resume) / RESUME_STATE.format(rank=0)) == 1
        record.setdefault("resumes", []).append({"from_step": checkpoint_step(resume), "exact": exact})
    stamp.write_text(json.dumps(record) + "\n")
    return resume


def checkpoint_step(checkpoint: str) -> int:
    return int(checkpoint.rsplit("-", 1)[-1])


def resumable_trainer(**kwargs):
    """A GRPOTrainer whose resume from a checkpoint continues exactly as the uninterrupted run.

    What the Trainer alone does not restore, found in transformers 5.23 / TRL 1.16:
    - TRL's RepeatSampler draws each epoch's order from one generator seeded once, and nothing
      rewinds it: a run resumed in epoch k replays epoch 0's order. `set_epoch` (which the Trainer
      calls at each epoch) re-derives epoch k's order here.
    - GRPOTrainer's micro-step counter (`_step`) restarts at 0 and its buffer of generations
      (`_buffered_inputs`, reused for steps_per_generation x num_iterations micro-steps) is empty:
      both are saved with each checkpoint (the buffer only when the checkpoint falls inside a block).
    - Reward functions with their own numpy generator (r_random): its state is saved per process.
    The states go into resume_state_<rank>.pt beside the Trainer's rng_state*.pth, and are restored
    where the Trainer restores its RNG states (after skipping the trained batches).
    """
    import numpy as np
    import torch
    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    class EpochRepeatSampler(RepeatSampler):
        def set_epoch(self, epoch: int) -> None:
            if self.shuffle:
                self.generator.manual_seed(self.seed)
                for _ in range(epoch):  # the permutations of the epochs before, as drawn uninterrupted
                    torch.randperm(self.num_samples, generator=self.generator)

    class ResumableGRPOTrainer(GRPOTrainer):
        def _get_train_sampler(self, dataset=None):
            sampler = super()._get_train_sampler(dataset)
            return EpochRepeatSampler(
                data_source=sampler.data_source, mini_repeat_count=sampler.mini_repeat_count,
                batch_size=sampler.batch_size, repeat_count=sampler.repeat_count, shuffle=sampler.shuffle,
                seed=sampler.seed,
            )

        def _generators(self) -> dict[str, np.random.Generator]:
            return {f.__name__: f.generator for f in self.reward_funcs if isinstance(getattr(f, "generator", None),
                                                                                   np.random.Generator)}

        def _save_rng_state(self, output_dir: str) -> None:
            super()._save_rng_state(output_dir)
            mid_block = self._step % (self.args.steps_per_generation * self.num_iterations) != 0
            state = {
                "world_size": self.args.world_size,
                "step": self._step,
                "buffered_inputs": self._buffered_inputs if mid_block else None,
                "generators": {name: g.bit_generator.state for name, g in self._generators().items()},
            }
            torch.save(state, Path(output_dir) / RESUME_STATE.format(rank=self.args.process_index))

        def _load_rng_state(self, checkpoint: str | None) -> None:
            super()._load_rng_state(checkpoint)
            if checkpoint is None:
                return
            path = Path(checkpoint) / RESUME_STATE.format(rank=self.args.process_index)
            # our own file in our own checkpoint: buffered generations are tensors, lists and dicts
            state = torch.load(path, weights_only=False, map_location=self.args.device) if path.is_file() else None
            if state is None or state["world_size"] != self.args.world_size:
                log.warning("%s: written by another number of processes; the resumed run will differ from an "
                            "uninterrupted one (recorded in training.json)", checkpoint)
                return
            self._step = state["step"]
            self._buffered_inputs = state["buffered_inputs"]
            for name, generator in self._generators().items():
                generator.bit_generator.state = state["generators"][name]

    return ResumableGRPOTrainer(**kwargs)


def training_record(model_dir: Path, settings: dict, args, resumes: list[dict], global_step: int) -> dict:
    """training.json: what inference needs to see what training saw, and how the run went."""
    options = settings.get("reward_options", {})
    config = model_dir / "config.json"
    return {
        # the folder as given (relative to the workflow's folder) and as resolved then; the weights'
        # fingerprint tells `adfm detect` whether another folder holds the same model
        "base_model": str(model_dir),
        "base_model_resolved": str(model_dir.resolve()),
        "base_model_weights": weights_fingerprint(model_dir),
        "base_model_config_sha256": _sha256_file(config) if config.is_file() else None,
        "reasoning": settings.get("reasoning", options.get("reasoning", "multi_stage")),
        "answer_format": settings.get("answer_format", options.get("answer_format", "yes_no")),
        "prompt": settings["prompt"],
        "model": settings.get("model", {}),
        "max_completion_length": args.max_completion_length,
        "rewards": list(settings.get("rewards", [])),
        "seed": args.seed,
        "world_size": args.world_size,
        "global_step": global_step,
        "resumes": resumes,
    }


def train(
    split_csv: str | os.PathLike,
    model_dir: str | os.PathLike,
    settings: dict,
    out_dir: str | os.PathLike,
    *,
    callbacks: list | None = None,
) -> dict:
    """Run GRPO + LoRA; write the adapter, train_log.csv and completions/ to `out_dir`.

    Returns a summary: the checkpoint resumed from (or None), the steps at start and end, max steps.
    """
    from adfm.model.load import load_model_and_processor
    from adfm.rewards import make_reward_funcs

    split_csv, model_dir, out_dir = Path(split_csv), Path(model_dir), Path(out_dir)
    ckpt_dir = out_dir.parent / (out_dir.name + CHECKPOINT_SUFFIX)
    model_settings = settings.get("model", {})
    min_pixels, max_pixels = int(model_settings["min_pixels"]), int(model_settings["max_pixels"])
    if "prompt" not in settings:
        raise InputError("train settings: no prompt template")

    rows = split_table.read(split_csv, "train")
    if rows.empty:
        raise InputError(f"{split_csv}: no rows with role == 'train'")
    log.info(
        "training set: %d images (%d anomalous) from %s",
        len(rows),
        int(rows["label"].astype(int).sum()),
        ", ".join(sorted(rows["dataset"].unique())),
    )
    train_set = build_dataset(rows, settings["prompt"], min_pixels=min_pixels, max_pixels=max_pixels)

    reward_names = list(settings.get("rewards", ["cls", "loc"]))
    reward_funcs = make_reward_funcs(reward_names, settings.get("reward_options", {}))
    reward_weights = settings.get("reward_weights")
    if reward_weights is not None and len(reward_weights) != len(reward_names):
        raise InputError(f"train settings: {len(reward_weights)} reward_weights for {len(reward_names)} rewards")

    args = grpo_config(settings.get("grpo", {}), output_dir=ckpt_dir, reward_weights=reward_weights)
    # where the paper is silent these follow the release (config.yaml train.grpo): say which ran
    log.info(
        "GRPO: %d generations per prompt at temperature %g, top_k %d, top_p %g; lr %g (%s schedule), "
        "weight decay %g, adam beta2 %g, KL beta %g",
        args.num_generations, args.temperature, args.top_k, args.top_p, args.learning_rate,
        getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type), args.weight_decay, args.adam_beta2, args.beta,
    )
    # the main process discards stale checkpoints before the others look for one to resume from
    with args.main_process_first(local=False, desc="checkpoint folder"):
        if args.process_index == 0:
            resume = prepare_checkpoint_dir(ckpt_dir, run_fingerprint(split_csv, model_dir, settings), args.world_size,
                                            bool(args.use_vllm))
        else:
            resume = last_complete_checkpoint(ckpt_dir, discard=False)
    stamp = ckpt_dir / "run.json"
    resumes = json.loads(stamp.read_text()).get("resumes", []) if stamp.is_file() else []
    model, processor = load_model_and_processor(
        model_dir,
        dtype=model_settings.get("dtype", "auto"),
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        for_training=True,
    )
    trainer = resumable_trainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=train_set,
        processing_class=processor,
        peft_config=lora_config(settings.get("lora", {})),
        callbacks=[_progress_callback(ckpt_dir / "train_log.csv", [r["from_step"] for r in resumes]),
                   *(callbacks or [])],
    )
    trainable = check_trainable(trainer.model)
    log.info(
        "LoRA: %d trainable tensors (%d parameters) in the language model; vision tower frozen",
        len(trainable),
        sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    )
    if resume:
        log.info("resuming from %s", resume)
        if not resumes[-1]["exact"]:
            log.warning("%s: resumed with several processes, another number of processes or vLLM generation: the "
                        "adapter may differ from an uninterrupted run's (recorded in training.json)", resume)
    start_step = checkpoint_step(resume) if resume else 0
    trainer.train(resume_from_checkpoint=resume)

    if trainer.is_world_process_zero():
        with atomic_path(out_dir) as tmp:
            trainer.model.save_pretrained(str(tmp))
            log_rows(trainer.state.log_history, args.world_size, [r["from_step"] for r in resumes]).to_csv(
                tmp / "train_log.csv", index=False)
            record = training_record(model_dir, settings, args, resumes, int(trainer.state.global_step))
            (tmp / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
            completions = ckpt_dir / "completions"
            if completions.is_dir():
                shutil.copytree(completions, tmp / "completions")
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        log.info("adapter written to %s", out_dir)
    return {
        "resumed_from": resume,
        "start_step": start_step,
        "global_step": int(trainer.state.global_step),
        "max_steps": int(trainer.state.max_steps),
    }


def _train_main(args: argparse.Namespace) -> None:
    train(args.split, args.model, args.settings, args.out)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="GRPO + LoRA fine-tuning on the train rows of a split (TRL GRPOTrainer)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--split", required=True, help="split CSV (rows with role == train are used)")
    parser.add_argument("--model", required=True, help="base model folder (from `adfm fetch-model`)")
    parser.add_argument(
        "--settings",
        required=True,
        type=settings_json,
        help="JSON object: prompt, model {dtype, min_pixels, max_pixels}, rewards, reward_weights, "
        "reward_options, grpo {GRPOConfig options, warmup_ratio}, lora {r, alpha, dropout, target_modules}",
    )
    parser.add_argument(
        "--out", required=True, help=f"adapter folder to create (checkpoints in OUT{CHECKPOINT_SUFFIX}/)"
    )
    parser.set_defaults(func=_train_main)

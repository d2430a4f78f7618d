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
- tensorboard/: TensorBoard's event files, with `report_to: tensorboard` (written live to
  ADAPTER_DIR.ckpt/tensorboard while it trains: `tensorboard --logdir resources/adapters`);
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
uninterrupted one: in one process without vLLM, see adfm.model.checkpoints.prepare_checkpoint_dir).

Several processes (`accelerate launch --num_processes N -m adfm train ...`, see adfm.launch.launcher):
data parallel, each process samples and scores its own prompts of every step, on its GPU, or on the
CPU with the gloo backend where no GPU is visible (workflow/accelerate/multi_cpu.yaml). The main
process alone writes the checkpoint stamp, train_log.csv and the adapter.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

from adfm.data import split_table
from adfm.io import InputError, atomic_path
from adfm.model.checkpoints import CHECKPOINT_SUFFIX, checkpoint_dir, checkpoint_step, find_resume, run_fingerprint
from adfm.model.grpo import build_dataset, check_trainable, grpo_config, log_grpo_config, lora_config, resumable_trainer
from adfm.model.load import load_model
from adfm.model.train_log import log_rows, progress_callback
from adfm.model.training_record import TRAINING_RECORD, training_record
from adfm.rewards import make_reward_funcs
from adfm.settings.model import TrainSettings

log = logging.getLogger(__name__)


def training_set(split_csv: Path, settings: TrainSettings):
    """The split's training rows as the GRPO training set."""
    rows = split_table.read(split_csv, "train")
    if rows.empty:
        raise InputError(f"{split_csv}: no rows with role == 'train'")
    log.info(
        "training set: %d images (%d anomalous) from %s",
        len(rows),
        int(rows["label"].astype(int).sum()),
        ", ".join(sorted(rows["dataset"].unique())),
    )
    return build_dataset(rows, settings.prompt, model=settings.model)


def reward_functions(settings: TrainSettings) -> list:
    weights = settings.reward_weights
    if weights is not None and len(weights) != len(settings.rewards):
        raise InputError(f"train settings: {len(weights)} reward_weights for {len(settings.rewards)} rewards")
    return make_reward_funcs(settings.rewards, settings.reward_options)


def log_trainable(model) -> None:
    trainable = check_trainable(model)
    log.info(
        "LoRA: %d trainable tensors (%d parameters) in the language model; vision tower frozen",
        len(trainable),
        sum(p.numel() for p in model.parameters() if p.requires_grad),
    )


# folders that TensorBoard and W&B write into under the checkpoints while training, kept in the adapter
LIVE_LOG_DIRS = ("tensorboard", "wandb")


def live_monitoring(report_to: str, ckpt_dir: Path) -> None:
    """Point TensorBoard's / W&B's writer into the checkpoint folder, which a restarted job keeps: a
    resumed run's curves continue in the same place. W&B's key is read by wandb from WANDB_API_KEY
    (or its login file), never from our config."""
    if report_to == "tensorboard":
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(ckpt_dir / "tensorboard")
    elif report_to == "wandb":
        os.environ["WANDB_DIR"] = str(ckpt_dir)
        os.environ.setdefault("WANDB_PROJECT", "adfm-repro")


def write_adapter(trainer, out_dir: Path, ckpt_dir: Path, record: dict, resumes: list[int]) -> None:
    """The adapter folder (adapter, train_log.csv, training.json, completions/); then the checkpoints go."""
    with atomic_path(out_dir) as tmp:
        trainer.model.save_pretrained(str(tmp))
        log_rows(trainer.state.log_history, trainer.args.world_size, resumes).to_csv(tmp / "train_log.csv", index=False)
        (tmp / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        for kept in ("completions", *LIVE_LOG_DIRS):
            if (ckpt_dir / kept).is_dir():
                shutil.copytree(ckpt_dir / kept, tmp / kept)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    log.info("adapter written to %s", out_dir)


def train(
    split_csv: str | os.PathLike,
    model_dir: str | os.PathLike,
    settings: TrainSettings,
    out_dir: str | os.PathLike,
    *,
    callbacks: list | None = None,
) -> dict:
    """Run GRPO + LoRA; write the adapter, train_log.csv and completions/ to `out_dir`.

    Returns a summary: the checkpoint resumed from (or None), the steps at start and end, max steps.
    """
    split_csv, model_dir, out_dir = Path(split_csv), Path(model_dir), Path(out_dir)
    ckpt_dir = checkpoint_dir(out_dir)
    train_set = training_set(split_csv, settings)
    reward_funcs = reward_functions(settings)
    live_monitoring(settings.report_to, ckpt_dir)
    args = grpo_config(
        settings.grpo,
        output_dir=ckpt_dir,
        reward_weights=settings.reward_weights,
        report_to=settings.report_to,
        run_name=out_dir.name,
    )
    log_grpo_config(args)
    resume, resumes = find_resume(args, ckpt_dir, run_fingerprint(split_csv, model_dir, settings))
    resumed_steps = [r["from_step"] for r in resumes]
    model, processor = load_model(model_dir, settings.model, for_training=True)
    trainer = resumable_trainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=train_set,
        processing_class=processor,
        peft_config=lora_config(settings.lora),
        callbacks=[progress_callback(ckpt_dir / "train_log.csv", resumed_steps), *(callbacks or [])],
    )
    log_trainable(trainer.model)
    start_step = checkpoint_step(resume) if resume else 0
    trainer.train(resume_from_checkpoint=resume)
    if trainer.is_world_process_zero():
        record = training_record(model_dir, settings, args, resumes, int(trainer.state.global_step))
        write_adapter(trainer, out_dir, ckpt_dir, record, resumed_steps)
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
    parser.add_argument("--settings", required=True, type=TrainSettings.argument, help=TrainSettings.describe())
    parser.add_argument(
        "--out", required=True, help=f"adapter folder to create (checkpoints in OUT{CHECKPOINT_SUFFIX}/)"
    )
    parser.set_defaults(func=_train_main)

"""The pieces of a GRPO run (paper section 3): training set, GRPOConfig, LoRA config, trainer.

Heavy libraries (datasets, torch, trl, peft) are imported where they are needed: `adfm --help` and
the light stages import this package's modules without them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from adfm.io import InputError
from adfm.model.checkpoints import RESUME_STATE
from adfm.model.families import boxes_in_response_frame
from adfm.protocol import build_prompt
from adfm.settings.model import GrpoSettings, LoraSettings, ModelSettings

log = logging.getLogger(__name__)

# GRPOConfig values we set whatever the settings say. The paper optimises the standard GRPO objective
# (per-sequence normalised loss, rewards scaled by the group's std), not TRL's default "dapo" loss;
# completions of every logging step are kept (log_completions) for Figures 4 and 5.
GRPO_DEFAULTS = {
    "loss_type": "grpo",
    "scale_rewards": "group",
    "log_completions": True,
    "num_completions_to_print": 2,
    "save_total_limit": 2,
    # every LoRA weight takes part in every forward pass: spare DDP its search for unused parameters
    "ddp_find_unused_parameters": False,
}


def build_dataset(rows: pd.DataFrame, template: str, *, model: ModelSettings):
    """The GRPO training set: conversational prompt, [reference, query] images, label, boxes in the
    model's response frame (adfm.model.families) and that frame.

    Images are stored as paths and decoded (as RGB) only when a batch needs them.
    """
    import datasets

    prompt = build_prompt(template)
    boxes, frames = [], []
    for row in rows.itertuples(index=False):
        scaled, frame = boxes_in_response_frame(model, row.boxes, int(row.width), int(row.height))
        boxes.append([[float(v) for v in box] for box in scaled])
        frames.append([int(frame[0]), int(frame[1])])
    columns = {
        "prompt": [prompt] * len(rows),
        "images": [[str(r), str(q)] for r, q in zip(rows["reference_path"], rows["image_path"], strict=False)],
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


def check_vllm(grpo: GrpoSettings) -> None:
    """use_vllm needs vllm installed and a GPU: say so before any model is loaded."""
    if not grpo.use_vllm:
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


def grpo_config(
    grpo: GrpoSettings,
    *,
    output_dir: str | os.PathLike,
    reward_weights: list[float] | None,
    report_to: str = "none",
    run_name: str | None = None,
):
    """GRPOConfig from the `grpo` settings (under GRPOConfig's names: GrpoSettings.TRL_NAMES); metrics
    go live to `report_to` (TRL's own option) under the name `run_name`."""
    import torch
    from trl import GRPOConfig

    check_vllm(grpo)
    values = {**GRPO_DEFAULTS, **grpo.trl_options()}
    if not torch.cuda.is_available():
        values.update(bf16=False, fp16=False, use_cpu=True)
    return GRPOConfig(
        output_dir=str(output_dir),
        reward_weights=list(reward_weights) if reward_weights is not None else None,
        save_strategy="steps",
        logging_strategy="steps",
        remove_unused_columns=False,
        report_to=report_to,
        run_name=run_name,
        **values,
    )


def log_grpo_config(args) -> None:
    # where the paper is silent these follow the release (config.yaml train.grpo): say which ran
    log.info(
        "GRPO: %d generations per prompt at temperature %g, top_k %d, top_p %g; lr %g (%s schedule), "
        "weight decay %g, adam beta2 %g, KL beta %g",
        args.num_generations,
        args.temperature,
        args.top_k,
        args.top_p,
        args.learning_rate,
        getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
        args.weight_decay,
        args.adam_beta2,
        args.beta,
    )


def lora_config(lora: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=int(lora.alpha),
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
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
                data_source=sampler.data_source,
                mini_repeat_count=sampler.mini_repeat_count,
                batch_size=sampler.batch_size,
                repeat_count=sampler.repeat_count,
                shuffle=sampler.shuffle,
                seed=sampler.seed,
            )

        def _save_rng_state(self, output_dir: str) -> None:
            super()._save_rng_state(output_dir)
            save_resume_state(self, Path(output_dir))

        def _load_rng_state(self, checkpoint: str | None) -> None:
            super()._load_rng_state(checkpoint)
            if checkpoint is not None:
                load_resume_state(self, Path(checkpoint))

    return ResumableGRPOTrainer(**kwargs)


def _generators(trainer) -> dict:
    """The reward functions' own numpy generators (r_random's), by function name."""
    return {
        f.__name__: f.generator
        for f in trainer.reward_funcs
        if isinstance(getattr(f, "generator", None), np.random.Generator)
    }


def save_resume_state(trainer, checkpoint: Path) -> None:
    """This process's resume state: micro-step counter, buffered generations (only inside a block of
    reused generations), reward generators."""
    import torch

    mid_block = trainer._step % (trainer.args.steps_per_generation * trainer.num_iterations) != 0
    state = {
        "world_size": trainer.args.world_size,
        "step": trainer._step,
        "buffered_inputs": trainer._buffered_inputs if mid_block else None,
        "generators": {name: g.bit_generator.state for name, g in _generators(trainer).items()},
    }
    torch.save(state, checkpoint / RESUME_STATE.format(rank=trainer.args.process_index))


def load_resume_state(trainer, checkpoint: Path) -> None:
    import torch

    path = checkpoint / RESUME_STATE.format(rank=trainer.args.process_index)
    # our own file in our own checkpoint: buffered generations are tensors, lists and dicts
    state = torch.load(path, weights_only=False, map_location=trainer.args.device) if path.is_file() else None
    if state is None or state["world_size"] != trainer.args.world_size:
        log.warning(
            "%s: written by another number of processes; the resumed run will differ from an "
            "uninterrupted one (recorded in training.json)",
            checkpoint,
        )
        return
    trainer._step = state["step"]
    trainer._buffered_inputs = state["buffered_inputs"]
    for name, generator in _generators(trainer).items():
        generator.bit_generator.state = state["generators"][name]

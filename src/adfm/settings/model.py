"""Settings of the model stages (workflow/rules/models.smk) and the model options every stage shares.

Each default equals config.yaml's value (the paper's, else the release's, else ours: config.yaml
says which), so that a stage run by hand without a key does what the workflow does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from adfm import vlms
from adfm.protocol import REASONING_MODES, prompt_answer_format, prompt_template
from adfm.rewards import REWARD_OPTIONS
from adfm.settings import Settings, SettingsError, option

Reasoning = Literal[REASONING_MODES]  # type: ignore[valid-type]


@dataclass(frozen=True)
class FamilySettings(Settings):
    """What differs between families of Hugging Face VLMs (config `model_families`), so that no code
    branches on a model's name: how its image budget reaches the processor, in which frame its
    responses write boxes, and its generation defaults (adfm.model.families applies them)."""

    STAGE = "model family"

    image_budget: Literal["pixels", "tiles", "native"] = option(
        "pixels",
        "pixels: every image resized to between min_pixels and max_pixels (Qwen2-VL processors); tiles: cut "
        "into at most max_tiles tiles (InternVL); native: the processor's own budget (LLaVA-NeXT's anyres grid)",
    )
    resize_factor: int = option(28, "pixels: resized sides are multiples of this (Qwen2.5-VL: patch 14 x merge 2)")
    boxes: Literal["resized", "relative", "original"] = option(
        "resized",
        "frame of the boxes a response writes: resized (pixels of the image as the processor resized it, "
        "image_budget pixels only), relative (0..box_scale across each side), original (the image's own pixels)",
    )
    box_scale: float = option(1000.0, "relative: the coordinate of the image's far edge (InternVL: 1000)")
    repetition_penalty: float | None = option(None, "generate()'s repetition penalty; null: the stage's")
    eos_tokens: list[str] = option(
        help="tokens that also end a response (a chat template's end of turn the generation config lacks)", factory=list
    )

    def __post_init__(self):
        if self.boxes == "resized" and self.image_budget != "pixels":
            raise SettingsError(f"{self.STAGE}: boxes 'resized' needs image_budget 'pixels' (the resize is its)")


@dataclass(frozen=True)
class ModelSettings(Settings):
    """How a model is loaded and how its processor sizes images (config `model`, or the run's entry
    of `models`)."""

    STAGE = "model"

    dtype: str = option("bfloat16", "torch dtype of the weights (config model.dtype)")
    min_pixels: int = option(3136, "image_budget pixels: smallest image area the processor keeps, in pixels")
    max_pixels: int = option(262144, "image_budget pixels: largest image area the processor keeps, in pixels")
    max_tiles: int | None = option(None, "image_budget tiles: most tiles per image; null: the processor's own")
    family: FamilySettings = option(help="the model family's traits (config model_families)", factory=FamilySettings)

    @classmethod
    def from_config(cls, config: dict, run: str | None = None) -> ModelSettings:
        """The model `run` answers with (config `models.<runs.<run>.model>`), else the base model."""
        entry = vlms.entry_of(config, run)
        budget = {key: entry[key] for key in ("min_pixels", "max_pixels", "max_tiles") if key in entry}
        family = FamilySettings.from_dict(vlms.family_of(config, entry), f"model_families.{entry['family']}")
        return cls(dtype=entry["dtype"], family=family, **budget)


@dataclass(frozen=True)
class LoraSettings(Settings):
    """The LoRA adapter (config `train.lora`): GRPO's, and the warm start's with method lora."""

    STAGE = "lora"

    r: int = option(64, "rank (paper section 4.1)")
    alpha: int | float = option(128, "scaling alpha (paper section 4.1)")
    dropout: float = option(0.05, "dropout (ours: neither the paper nor the release gives one)")
    # PEFT full-matches the expression against module paths such as `model.language_model.layers.0.mlp.up_proj`;
    # the vision tower's MLPs (`model.visual.blocks.0.mlp.up_proj`) have the same leaf names
    target_modules: str = option(
        r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
        "regular expression on module paths: every linear layer of the language model, none of the vision tower",
    )


@dataclass(frozen=True)
class GrpoSettings(Settings):
    """GRPO's options (config `train.grpo`), by the names config.yaml and the paper's release use."""

    STAGE = "grpo"
    # settings names that differ from GRPOConfig's: transformers 5 folds warmup_ratio into warmup_steps
    # (a float in [0, 1) is a ratio of the total steps) and renamed gradient_checkpointing (the name
    # the paper's release and most recipes use)
    TRL_NAMES: ClassVar[dict[str, str]] = {
        "warmup_ratio": "warmup_steps",
        "gradient_checkpointing": "activation_checkpointing",
    }

    num_generations: int = option(6, "responses sampled per prompt (paper section 4.1)")
    temperature: float = option(0.9, "sampling temperature (release)")
    learning_rate: float = option(1.0e-5, "learning rate (release)")
    beta: float = option(0.04, "KL coefficient (release: ms-swift's default)")
    num_train_epochs: int | float = option(15, "epochs (paper section 4.1)")
    max_steps: int = option(-1, "> 0 caps the number of steps; -1 trains for the epochs")
    max_completion_length: int = option(512, "max new tokens per sampled response (release)")
    per_device_train_batch_size: int = option(30, "completions per device and step, a multiple of num_generations")
    gradient_accumulation_steps: int = option(10, "steps accumulated per update (release)")
    warmup_ratio: float = option(0.001, "learning-rate warm-up fraction (release)")
    top_k: int = option(50, "sampling top-k (release; TRL's 0 = off)")
    top_p: float = option(0.9, "sampling top-p (release; TRL's 1.0 = off)")
    lr_scheduler_type: str = option("cosine", "learning-rate schedule (release; TRL's linear)")
    weight_decay: float = option(0.1, "AdamW weight decay (release; TRL's 0.0)")
    adam_beta2: float = option(0.95, "AdamW beta2 (release; TRL's 0.999)")
    bf16: bool = option(True, "bf16 mixed precision on a GPU (release)")
    gradient_checkpointing: bool = option(True, "trade compute for memory (release)")
    logging_steps: int = option(1, "steps between log rows")
    save_steps: int = option(100, "steps between checkpoints (a restarted job resumes from the last)")
    use_vllm: bool = option(False, "generate with vLLM (must be installed, GPUs only)")
    vllm_mode: Literal["colocate", "server"] = option("colocate", "vLLM inside each process, or a `trl vllm-serve`")
    seed: int = option(0, "seed of sampling, dropout and data order (config seed)")
    steps_per_generation: int | None = option(
        None, "micro-steps that reuse one batch of generations (not in config; null: TRL's default)"
    )

    def to_dict(self) -> dict:
        # a null option is TRL's default and left out: a new option of this kind changes no run's params
        return {key: value for key, value in super().to_dict().items() if value is not None}

    def trl_options(self) -> dict:
        """The settings under GRPOConfig's field names."""
        return {self.TRL_NAMES.get(key, key): value for key, value in self.to_dict().items()}


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Settings of `adfm train` (one run of config `runs`)."""

    STAGE = "adfm train --settings"

    prompt: str = option(help="prompt template (config prompts.<answer_format>.<reasoning>)")
    # reasoning, answer_format and model are recorded with the adapter (training.json), so that
    # `adfm detect` reads the response as trained
    reasoning: Reasoning = option("multi_stage", "response format the rewards parse (config runs.<run>.reasoning)")
    answer_format: Literal["letter", "yes_no"] = option("letter", "answer words (config prompts.answer_format)")
    model: ModelSettings = option(help="model loading and image budget (config model)", factory=ModelSettings)
    rewards: list[str] = option(
        help="reward functions, summed (config runs.<run>.rewards)", factory=lambda: ["cls", "loc", "format"]
    )
    reward_weights: list[float] | None = option(None, "weight of each reward; null: all 1")
    reward_options: dict[str, Any] = option(
        help="options the rewards read (config rewards; adfm.rewards)", factory=dict
    )
    grpo: GrpoSettings = option(help="GRPO options (config train.grpo)", factory=GrpoSettings)
    lora: LoraSettings = option(help="LoRA adapter (config train.lora)", factory=LoraSettings)
    report_to: Literal["none", "tensorboard", "wandb"] = option(
        "none",
        "where TRL reports the metrics live (config train.report_to): none, tensorboard (event files in "
        "<adapter>.ckpt/tensorboard while it trains, kept in <adapter>/tensorboard) or wandb (Weights & Biases, "
        "key from WANDB_API_KEY)",
    )

    @classmethod
    def from_config(cls, config: dict, run: str) -> TrainSettings:
        """Of the reward options, only those the run's rewards read (adfm.rewards.REWARD_OPTIONS), so
        that another value of an option retrains only the runs using it."""
        spec = config["runs"][run]
        answer_format = prompt_answer_format(config["prompts"])
        options = {
            **config["rewards"],
            "answer_format": answer_format,
            "reasoning": spec["reasoning"],
            "random_seed": config["seed"],
        }
        used = {key for reward in spec["rewards"] for key in REWARD_OPTIONS[reward]}
        return cls(
            prompt=prompt_template(config["prompts"], spec["reasoning"]),
            reasoning=spec["reasoning"],
            answer_format=answer_format,
            model=ModelSettings.from_config(config),
            rewards=list(spec["rewards"]),
            reward_weights=spec.get("reward_weights") or [1.0] * len(spec["rewards"]),
            reward_options={key: value for key, value in options.items() if key in used},
            grpo=GrpoSettings.from_dict({**config["train"]["grpo"], "seed": config["seed"]}, "train.grpo"),
            lora=LoraSettings.from_dict(config["train"]["lora"], "train.lora"),
            report_to=config["train"]["report_to"],
        )


@dataclass(frozen=True)
class WarmStartOptions(Settings):
    """The warm start's own options (config `train.warm_start`)."""

    STAGE = "warm_start"

    method: Literal["lora", "full"] = option(
        "lora", "lora: an adapter merged at the end; full: every language-model weight"
    )
    max_steps: int = option(200, "optimiser steps")
    batch_size: int = option(8, "responses per step and process")
    learning_rate: float = option(1.0e-4, "AdamW learning rate (linear decay to 0)")
    decision_weight: float = option(10.0, "loss weight of the answer and of the box list's opening")
    warmup_ratio: float = option(0.0, "learning-rate warm-up fraction")
    weight_decay: float = option(0.0, "AdamW weight decay")
    max_grad_norm: float = option(1.0, "gradient clipping (0: none)")
    logging_steps: int = option(10, "steps between log lines")
    bf16: bool = option(True, "bf16 autocast on GPUs (config train.grpo.bf16 unless set here)")
    lora: LoraSettings = option(
        help="LoRA of method lora (config train.lora, overridden key by key)", factory=LoraSettings
    )


@dataclass(frozen=True)
class WarmStartSettings(Settings):
    """Settings of `adfm warm-start` (a protocol's training split and a reasoning mode)."""

    STAGE = "adfm warm-start --settings"

    prompt: str = option(help="prompt template (config prompts.<answer_format>.<reasoning>)")
    reasoning: Reasoning = option("multi_stage", "response format of the targets")
    answer_format: Literal["letter", "yes_no"] = option("letter", "answer words (config prompts.answer_format)")
    model: ModelSettings = option(help="model loading and image budget (config model)", factory=ModelSettings)
    seed: int = option(0, "seed of the batch order and of torch (config seed)")
    warm_start: WarmStartOptions = option(
        help="the warm start's options (config train.warm_start)", factory=WarmStartOptions
    )

    @classmethod
    def from_config(cls, config: dict, protocol: str, reasoning: str) -> WarmStartSettings:
        spec = {key: value for key, value in config["train"]["warm_start"].items() if key != "enabled"}
        spec["lora"] = {**config["train"]["lora"], **spec.get("lora", {})}
        spec.setdefault("bf16", config["train"]["grpo"].get("bf16", True))
        return cls(
            prompt=prompt_template(config["prompts"], reasoning),
            reasoning=reasoning,
            answer_format=prompt_answer_format(config["prompts"]),
            model=ModelSettings.from_config(config),
            seed=config["seed"],
            warm_start=WarmStartOptions.from_dict(spec, "train.warm_start"),
        )

"""GRPO + LoRA training with TRL on the tiny model: LoRA placement, outputs, resumption."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest
from model_fixtures import MAX_PIXELS, MIN_PIXELS, PROMPT, split_csv, tiny_model_dir, train_settings  # noqa: F401 (fixtures)
from transformers import TrainerCallback

from adfm.data import split_table
from adfm.io import InputError
from adfm.model.checkpoints import CHECKPOINT_SUFFIX, RESUME_STATE, prepare_checkpoint_dir
from adfm.model.families import boxes_in_response_frame
from adfm.model.grpo import build_dataset, check_trainable, grpo_config, lora_config
from adfm.model.load import load_model
from adfm.model.train import register, train
from adfm.model.train_log import log_rows
from adfm.settings import SettingsError
from adfm.settings.model import GrpoSettings, LoraSettings, ModelSettings, TrainSettings


def _peft(tiny_model_dir, lora: dict):
    from peft import get_peft_model

    model, _ = load_model(
        tiny_model_dir, ModelSettings(dtype="float32", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS), for_training=True
    )
    return get_peft_model(model, lora_config(LoraSettings.from_dict(lora)))


def test_lora_reaches_the_language_model_only(tiny_model_dir):
    model = _peft(tiny_model_dir, {"r": 4, "alpha": 8, "dropout": 0.0})
    trainable = check_trainable(model)
    assert trainable and all("lora" in name for name in trainable)
    assert not [name for name in trainable if "visual" in name]
    # every linear layer of every language-model block: q, k, v, o, gate, up, down (A and B each)
    assert len(trainable) == 2 * 7 * 2
    assert any("mlp.gate_proj.lora_A" in name for name in trainable)


def test_leaf_names_would_reach_the_vision_tower(tiny_model_dir):
    # Why the target is a regular expression: MLP leaf names also exist in the vision tower.
    model = _peft(tiny_model_dir, {"r": 4, "alpha": 8, "target_modules": r".*\.(gate_proj|up_proj|down_proj)"})
    with pytest.raises(InputError, match="vision tower"):
        check_trainable(model)


def test_dataset_rows(split_csv):
    rows = split_table.read(split_csv, "train")
    data = build_dataset(rows, PROMPT, model=ModelSettings(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS))
    assert len(data) == 4 and set(rows["role"]) == {"train"}
    example = data[1]
    assert [block["type"] for block in example["prompt"][0]["content"]] == ["image", "image", "text"]
    assert example["prompt"][0]["content"][2]["text"] == PROMPT
    reference, query = example["images"]
    assert reference.mode == query.mode == "RGB" and query.size == (128, 96)
    assert example["label"] == 1
    expected, frame = boxes_in_response_frame(
        ModelSettings(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
        json.loads(pd.read_csv(split_csv)["boxes"][1]),
        128,
        96,
    )
    assert example["boxes"] == expected and example["frame"] == list(frame)
    assert data[0]["boxes"] == [] and data[0]["label"] == 0


def test_grpo_config_mapping(tmp_path):
    grpo = train_settings()["grpo"]
    args = grpo_config(GrpoSettings.from_dict({**grpo, "bf16": True}), output_dir=tmp_path, reward_weights=[1.0, 0.5])
    assert args.warmup_steps == grpo["warmup_ratio"]  # a ratio, as a float below 1
    assert (args.num_generations, args.beta, args.learning_rate) == (2, 0.04, 1e-3)
    assert args.reward_weights == [1.0, 0.5]
    assert args.loss_type == "grpo" and args.log_completions
    assert args.use_cpu and not args.bf16  # no GPU here
    with pytest.raises(SettingsError, match="warmup_fraction"):
        GrpoSettings.from_dict({"warmup_fraction": 0.1})


def fake_checkpoint(ckpt, step: int, *, world_size: int = 1, complete: bool = True):
    """A checkpoint folder as the Trainer leaves it: trainer_state.json last, after every process's
    resume state; `complete=False`: killed while saving, before trainer_state.json."""
    import torch

    folder = ckpt / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for rank in range(world_size):
        torch.save({"world_size": world_size}, folder / RESUME_STATE.format(rank=rank))
    if complete:
        (folder / "trainer_state.json").write_text("{}")
    return folder


def test_checkpoints_of_another_run_are_discarded(tmp_path):
    ckpt = tmp_path / "adapter.ckpt"
    assert prepare_checkpoint_dir(ckpt, "run-a") is None
    fake_checkpoint(ckpt, 3)
    assert prepare_checkpoint_dir(ckpt, "run-a").endswith("checkpoint-3")
    assert prepare_checkpoint_dir(ckpt, "run-b") is None
    assert not (ckpt / "checkpoint-3").exists()


def test_a_checkpoint_cut_short_is_skipped_and_resumes_are_recorded(tmp_path):
    ckpt = tmp_path / "adapter.ckpt"
    prepare_checkpoint_dir(ckpt, "run")
    fake_checkpoint(ckpt, 2)
    fake_checkpoint(ckpt, 4, complete=False)
    assert prepare_checkpoint_dir(ckpt, "run").endswith("checkpoint-2")
    assert not (ckpt / "checkpoint-4").exists()
    # a second interruption, after a checkpoint written by two processes, resumed by one
    fake_checkpoint(ckpt, 6, world_size=2)
    assert prepare_checkpoint_dir(ckpt, "run").endswith("checkpoint-6")
    resumes = json.loads((ckpt / "run.json").read_text())["resumes"]
    assert resumes == [{"from_step": 2, "exact": True}, {"from_step": 6, "exact": False}]
    # one process's resume state missing: incomplete
    (ckpt / "checkpoint-6" / RESUME_STATE.format(rank=1)).unlink()
    assert prepare_checkpoint_dir(ckpt, "run").endswith("checkpoint-2")


def test_train_log_says_from_which_step_each_row_was_resumed():
    history = [{"step": s, "loss": 0.1, "reward": 1.0} for s in range(1, 6)]
    rows = log_rows(history, 1, [2, 4])
    assert rows["resumed_from"].tolist() == [pd.NA, pd.NA, 2, 2, 4]
    assert log_rows(history, 1)["resumed_from"].isna().all()


def test_two_grpo_steps_write_adapter_and_log(tiny_model_dir, split_csv, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    out = tmp_path / "adapter"
    info = train(split_csv, tiny_model_dir, TrainSettings.from_dict(train_settings(max_steps=2)), out)
    assert info == {"resumed_from": None, "start_step": 0, "global_step": 2, "max_steps": 2}
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (tmp_path / ("adapter" + CHECKPOINT_SUFFIX)).exists()  # checkpoints only serve a restart

    log = pd.read_csv(out / "train_log.csv")
    assert log["step"].tolist() == [1, 2]
    for column in (
        "loss",
        "reward",
        "reward_std",
        "frac_reward_zero_std",
        "kl",
        "completions/mean_length",
        "rewards/cls/mean",
        "rewards/loc/mean",
    ):
        assert column in log.columns, column
    assert list(log.columns[:3]) == ["step", "epoch", "loss"]

    completions = sorted((out / "completions").glob("*.parquet"))
    assert len(completions) == 2
    table = pd.read_parquet(completions[0])
    assert {"prompt", "completion", "cls", "loc", "advantage"} <= set(table.columns)
    assert len(table) == 4  # 2 prompts x 2 generations
    # sampled at the configured temperature, not with the checkpoint's near-greedy top_k=1 defaults
    completions = table["completion"].astype(str).tolist()  # groups of num_generations, consecutive
    assert completions[0] != completions[1] and completions[2] != completions[3]

    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 4
    base = AutoModelForImageTextToText.from_pretrained(str(tiny_model_dir))
    loaded = PeftModel.from_pretrained(base, str(out))
    lora_names = [name for name, _ in loaded.named_parameters() if "lora_" in name]
    assert lora_names and not [name for name in lora_names if "visual" in name]


class _KillAfterSave(TrainerCallback):
    """Simulates a job killed right after the checkpoint of `step` was written."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed after checkpoint {self.step}")


class _CountSteps(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_restarted_training_resumes_from_the_last_checkpoint(tiny_model_dir, split_csv, tmp_path):
    out = tmp_path / "adapter"
    with pytest.raises(KeyboardInterrupt):
        train(
            split_csv,
            tiny_model_dir,
            TrainSettings.from_dict(train_settings(max_steps=2, save_steps=1)),
            out,
            callbacks=[_KillAfterSave(2)],
        )
    ckpt = tmp_path / ("adapter" + CHECKPOINT_SUFFIX)
    assert (ckpt / "checkpoint-2").is_dir() and not out.exists()

    counter = _CountSteps()
    info = train(
        split_csv,
        tiny_model_dir,
        TrainSettings.from_dict(train_settings(max_steps=4, save_steps=1)),
        out,
        callbacks=[counter],
    )
    assert info["resumed_from"].endswith("checkpoint-2")
    assert (info["start_step"], info["global_step"], info["max_steps"]) == (2, 4, 4)
    assert counter.steps == [3, 4]  # steps 1-2 were not redone
    assert pd.read_csv(out / "train_log.csv")["step"].tolist() == [1, 2, 3, 4]
    assert (out / "adapter_model.safetensors").is_file()


def test_train_subcommand():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["train", "--split", "s.csv", "--model", "m", "--settings", json.dumps(train_settings()), "--out", "a"]
    )
    assert (args.split, args.model, args.out) == ("s.csv", "m", "a")
    assert args.settings.grpo.num_generations == 2
    assert callable(args.func)


def test_vllm_without_vllm_installed_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(InputError, match="vllm is not installed"):
        grpo_config(GrpoSettings(use_vllm=True), output_dir=tmp_path, reward_weights=None)
    # off (the default): no check, no error
    assert not grpo_config(GrpoSettings(use_vllm=False), output_dir=tmp_path, reward_weights=None).use_vllm


def test_launcher_plain_or_accelerate():
    from adfm.launch import launcher

    config = {"train": {"launcher": {"num_processes": 1}}}
    assert launcher(config) == "python -m adfm"
    config["train"]["launcher"] = {"num_processes": 4, "config_file": "workflow/accelerate/multi_gpu.yaml"}
    assert launcher(config, "/repo") == (
        "accelerate launch --config_file /repo/workflow/accelerate/multi_gpu.yaml --num_processes 4 -m adfm"
    )


def test_accelerate_config_is_multi_gpu():
    import yaml
    from conftest import REPO

    spec = yaml.safe_load((REPO / "workflow/accelerate/multi_gpu.yaml").read_text())
    assert spec["distributed_type"] == "MULTI_GPU" and not spec["use_cpu"]


def test_grpo_config_receives_the_release_sampling_and_optimiser(tmp_path):
    # config.yaml's train.grpo: the release's (ms-swift) values where the paper is silent, not TRL's defaults
    from conftest import REPO

    from adfm.config import load_config

    grpo = load_config([REPO / "config.yaml"])["train"]["grpo"]
    args = grpo_config(GrpoSettings.from_dict(grpo), output_dir=tmp_path, reward_weights=None)
    assert (args.top_k, args.top_p) == (50, 0.9)
    assert args.lr_scheduler_type == "cosine"
    assert (args.weight_decay, args.adam_beta2) == (0.1, 0.95)
    # TRL's values stay one setting away
    trl = grpo_config(
        GrpoSettings.from_dict({**grpo, "top_k": 0, "top_p": 1.0, "lr_scheduler_type": "linear", "weight_decay": 0.0}),
        output_dir=tmp_path,
        reward_weights=None,
    )
    assert (trl.top_k, trl.top_p, trl.weight_decay) == (0, 1.0, 0.0) and trl.lr_scheduler_type == "linear"


def test_report_to_tensorboard_writes_events_tensorboard_reads(tiny_model_dir, split_csv, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    out = tmp_path / "adapter"
    settings = TrainSettings.from_dict({**train_settings(max_steps=2), "report_to": "tensorboard"})
    train(split_csv, tiny_model_dir, settings, out)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/reward", "train/frac_reward_zero_std", "train/kl", "train/completions/mean_length"} <= scalars
    assert [event.step for event in events.Scalars("train/reward")] == [1, 2]
    logged = pd.read_csv(out / "train_log.csv")["reward"].tolist()
    assert [event.value for event in events.Scalars("train/reward")] == pytest.approx(logged, rel=1e-6)


def test_where_metrics_go_changes_no_checkpoint_fingerprint(split_csv, tiny_model_dir):
    from adfm.model.checkpoints import run_fingerprint

    plain = TrainSettings.from_dict(train_settings(max_steps=2))
    watched = TrainSettings.from_dict({**train_settings(max_steps=2), "report_to": "wandb"})
    assert run_fingerprint(split_csv, tiny_model_dir, plain) == run_fingerprint(split_csv, tiny_model_dir, watched)

"""Training jobs as two processes through the launcher: `accelerate launch` with
workflow/accelerate/multi_cpu.yaml, DDP over gloo on the CPU (one process per GPU on a GPU machine)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import model_fixtures
import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from model_fixtures import MODEL_SETTINGS, PROMPT, train_settings

from adfm.config import config_problems, load_config
from adfm.launch import launcher
from adfm.rewards import make_random

pytestmark = pytest.mark.slow  # runs Snakemake or real training processes

# the shared fixtures (the tiny model, built once per session; a miniature split)
tiny_model_dir = model_fixtures.tiny_model_dir
split_csv = model_fixtures.split_csv

PROCESSES = 2
MAX_STEPS = 2
RANDOM_SEED = 7
CPU_LAUNCHER = {
    "train": {"launcher": {"num_processes": PROCESSES, "config_file": "workflow/accelerate/multi_cpu.yaml"}}
}


def run_launched(stage: str, split, model, settings: dict, out, cwd) -> str:
    """Run `adfm <stage>` through the workflow's launcher command; return its log (stderr and stdout)."""
    command = (
        f"{launcher(CPU_LAUNCHER, REPO)} {stage} --split {split} --model {model} "
        f"--settings {shlex.quote(json.dumps(settings))} --out {out}"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    }
    # `accelerate` from this interpreter's environment; one thread per process on a 2-core machine
    env.update(
        PATH=os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")]),
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
    )
    done = subprocess.run(
        command, check=False, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    log = done.stderr + done.stdout
    assert done.returncode == 0, log[-5000:]
    return log


def test_launcher_command_runs_two_processes():
    command = launcher(CPU_LAUNCHER, "/repo")
    assert command == (
        f"accelerate launch --config_file /repo/workflow/accelerate/multi_cpu.yaml --num_processes {PROCESSES} -m adfm"
    )


def test_cpu_accelerate_config_starts_torchrun_on_the_cpu():
    import yaml

    spec = yaml.safe_load((REPO / "workflow/accelerate/multi_cpu.yaml").read_text())
    # accelerate's MULTI_CPU would take its one-process launcher: MULTI_GPU is what starts torchrun
    assert spec["distributed_type"] == "MULTI_GPU" and spec["use_cpu"]
    assert spec["main_process_port"] == 0


@pytest.mark.parametrize(
    ("processes", "gpus", "valid"),
    [
        (2, 2, True),  # one process per GPU
        (2, 0, True),  # two processes on the CPU
        (1, 4, True),  # one process: gpu says what the job holds
        (2, 1, False),
        (2, 4, False),
    ],
)
def test_processes_and_gpus_must_agree(processes, gpus, valid):
    config = load_config([REPO / "config.yaml"])
    config["train"]["launcher"]["num_processes"] = processes
    config["resources"]["train"]["gpu"] = gpus
    problems = [p for p in config_problems(config) if "num_processes" in p]
    if valid:
        assert problems == []
    else:
        assert len(problems) == 1
        assert "train.launcher.num_processes" in problems[0] and "resources.train.gpu" in problems[0]


def test_random_reward_is_seeded_per_rank(monkeypatch):
    completions = [[{"role": "assistant", "content": "<answer>yes</answer>"}]] * 4
    options = {"random_seed": RANDOM_SEED, "random_std": 1.0}
    expected = {rank: np.random.default_rng(RANDOM_SEED + rank).normal(0.0, 1.0, 4).tolist() for rank in (0, 1)}
    monkeypatch.delenv("RANK", raising=False)
    assert make_random(options)(completions) == expected[0]  # one process: the seed itself, as before
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        assert make_random(options)(completions) == expected[rank]
    assert expected[0] != expected[1]


def test_two_processes_train_one_adapter(tiny_model_dir, split_csv, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    settings = train_settings(max_steps=MAX_STEPS)
    settings.update(rewards=["cls", "random"], reward_options={"random_seed": RANDOM_SEED, "random_std": 1.0})
    out = tmp_path / "adapter"
    log = run_launched("train", split_csv, tiny_model_dir, settings, out, tmp_path)

    for rank in range(PROCESSES):
        tag = f"[rank {rank}/{PROCESSES}] adfm.model.train_log: GRPO training"
        assert f"{tag}: step 0 of {MAX_STEPS}, world size {PROCESSES}" in log
        assert f"{tag} done: step {MAX_STEPS} of {MAX_STEPS}" in log
    # one adapter, written once: nothing else next to it (checkpoints removed, no second folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "data"]
    assert log.count("adapter written to") == 1

    train_log = pd.read_csv(out / "train_log.csv")
    assert train_log["step"].tolist() == list(range(1, MAX_STEPS + 1))
    assert set(train_log["world_size"]) == {PROCESSES}

    # each step's completions, gathered from both processes in rank order: per_device_train_batch_size each
    per_device = settings["grpo"]["per_device_train_batch_size"]
    first = pd.read_parquet(out / "completions" / "completions_00001.parquet")
    assert len(first) == PROCESSES * per_device
    noise = first["random"].to_numpy()
    for rank in range(PROCESSES):
        expected = np.random.default_rng(RANDOM_SEED + rank).normal(0.0, 1.0, per_device)
        np.testing.assert_allclose(noise[rank * per_device : (rank + 1) * per_device], expected, rtol=1e-6)
    assert not np.allclose(noise[:per_device], noise[per_device:])

    base = AutoModelForImageTextToText.from_pretrained(str(tiny_model_dir))
    loaded = PeftModel.from_pretrained(base, str(out))
    assert [name for name, _ in loaded.named_parameters() if "lora_" in name]


def test_two_process_warm_start_writes_one_model(tiny_model_dir, split_csv, tmp_path):
    settings = {
        "prompt": PROMPT,
        "reasoning": "multi_stage",
        "answer_format": "yes_no",
        "model": dict(MODEL_SETTINGS),
        "seed": 0,
        "warm_start": {
            "method": "lora",
            "max_steps": MAX_STEPS,
            "batch_size": 2,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "bf16": False,
            "lora": {"r": 2, "alpha": 4, "dropout": 0.0},
        },
    }
    out = tmp_path / "warm"
    log = run_launched("warm-start", split_csv, tiny_model_dir, settings, out, tmp_path)

    for rank in range(PROCESSES):
        assert f"[rank {rank}/{PROCESSES}] adfm.model.warm_start: warm start step {MAX_STEPS}/{MAX_STEPS}" in log
    assert f"world size {PROCESSES}" in log
    assert log.count("warm-started model written to") == 1
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert pd.read_csv(out / "warm_start_log.csv")["step"].tolist() == list(range(1, MAX_STEPS + 1))

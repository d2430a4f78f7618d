"""How a workflow job starts its stage: the command (`python -m adfm`, or accelerate's launcher for
several training processes) and the GPU pool prefix that gives the job cards of its own."""

from __future__ import annotations

import shlex
from pathlib import Path


def launcher(config: dict, basedir: str | Path = ".") -> str:
    """The command that runs an `adfm` training stage: `python -m adfm`, or accelerate's launcher
    with train.launcher.num_processes processes when > 1 (one per GPU, or all on the CPU with
    workflow/accelerate/multi_cpu.yaml)."""
    spec = config["train"].get("launcher", {})
    processes = int(spec.get("num_processes", 1))
    if processes <= 1:
        return "python -m adfm"
    config_file = Path(spec.get("config_file", "workflow/accelerate/multi_gpu.yaml"))
    if not config_file.is_absolute():
        config_file = Path(basedir) / config_file
    return f"accelerate launch --config_file {shlex.quote(str(config_file))} --num_processes {processes} -m adfm"


def gpu_devices(config: dict) -> str | None:
    """resources.gpu_devices as the pool's --devices value; None when empty (the pool looks itself)."""
    return ",".join(str(device) for device in config["resources"]["gpu_devices"]) or None


def gpu_job_prefix(config: dict, gpus: int) -> str:
    """Shell prefix of a rule that may run on GPUs: the job takes `gpus` cards of its own from the
    local pool (or those SLURM gave it) before its command starts; see adfm.gpu_pool."""
    spec = config["resources"]
    words = [f"python -m adfm.gpu_pool --gpus {int(gpus)}"]
    if devices := gpu_devices(config):
        words.append(f"--devices {devices}")
    if spec.get("gpu_lock_dir"):
        words.append(f"--lock-dir {shlex.quote(spec['gpu_lock_dir'])}")
    return " ".join(words) + " --"

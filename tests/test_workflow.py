"""The workflow itself: the paper config plans every stage without any data, and lints clean."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from adfm.config import load_config

pytestmark = pytest.mark.slow  # runs Snakemake or real training processes


def run_snakemake(workdir: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra_env}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )


def test_paper_config_plans_download_to_table_without_data(tmp_path):
    result = run_snakemake(
        tmp_path, "-n", "--cores", "all", "--configfile", str(REPO / "config.yaml"), "--quiet", "rules"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rules = ["download", "index", "boxes", "split", "fetch_model", "train", "predict_adfm", "score_adfm", "table"]
    for rule in rules:
        assert f"\n{rule} " in result.stdout, rule
    assert not any(tmp_path.iterdir()) or {p.name for p in tmp_path.iterdir()} <= {".snakemake"}


def test_paper_dry_run_shows_what_each_training_job_requests(tmp_path):
    config = load_config([REPO / "config.yaml"])
    wanted = config["resources"]["train"]
    result = run_snakemake(tmp_path, "-n", "--cores", "all", "--configfile", str(REPO / "config.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    requested = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout):
        if block.startswith("rule train:"):
            run = re.search(r"wildcards: run=(\S+)", block).group(1)
            requested[run] = re.search(r"resources: (.*)", block).group(1)
    assert set(requested) == {name for name, spec in config["runs"].items() if spec["trained"]}
    for run, resources in requested.items():
        for key in ("gpu", "mem_mb", "runtime"):
            assert f"{key}={wanted[key]}" in resources, (run, resources)
        assert f"slurm_partition={wanted['slurm_partition']}" in resources


def test_paper_dry_run_gives_each_open_source_model_its_entrys_resources(tmp_path):
    """Tables 1-3's InternVL3 and LLaVA-NeXT rows: fetch, predict and MMAD jobs for each, with the GPUs
    and memory of their models: entries (four pretend cards, so no job is capped to fewer)."""
    config = load_config([REPO / "config.yaml"])
    result = run_snakemake(
        tmp_path, "-n", "-p", "--cores", "all", "--configfile", str(REPO / "config.yaml"), ADFM_GPU_DEVICES="0,1,2,3"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout)
    for run in ("llava_next_34b", "llava_next_34b_cross", "internvl3_8b", "internvl3_38b_cross"):
        entry = config["models"][config["runs"][run]["model"]]
        block = next(b for b in blocks if b.startswith(f"rule predict_{run}:"))
        assert f"--model resources/models/{config['runs'][run]['model']} " in block, block
        for key, value in entry["resources"].items():
            assert f"{key}={value}" in re.search(r"resources: (.*)", block).group(1), (run, key)
        assert f"adfm.gpu_pool --gpus {entry['resources']['gpu']} -- python -m adfm predict " in block
    mmad = next(b for b in blocks if b.startswith("rule predict_mmad:") and "model=internvl3_38b\n" in b)
    assert "gpu=2" in mmad and "mem_mb=128000" in mmad
    fetched = {
        re.search(r"wildcards: vlm=(\S+)", b).group(1) for b in blocks if re.match(r"(local)?rule fetch_model:", b)
    }
    assert fetched == {config["model"]["name"], *config["models"]}


@pytest.mark.parametrize(
    "devices, profile, cap", [("0", [], 1), ("0,1", ["--profile", "workflow/profiles/local-gpu"], 2)]
)
def test_paper_plan_runs_at_most_one_gpu_job_per_card(tmp_path, devices, profile, cap):
    profile = [word if word.startswith("-") else str(REPO / word) for word in profile]
    result = run_snakemake(
        tmp_path,
        "-n",
        "-p",
        "--cores",
        "all",
        *profile,
        "--configfile",
        str(REPO / "config.yaml"),
        ADFM_GPU_DEVICES=devices,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"workflow specific profile {REPO / 'profiles/default'}" in result.stderr
    assert f"GPU pool: {devices}; at most {cap} GPU job(s) at once" in result.stderr
    # every job of a GPU family takes its cards from the pool before its command starts
    config = load_config([REPO / "config.yaml"])
    commands = [line for line in result.stdout.splitlines() if " -m adfm " in line]
    for stage, family in [("train", "train"), ("predict", "predict"), ("predict-mmad", "predict")]:
        wrapped = f"python -m adfm.gpu_pool --gpus {config['resources'][family]['gpu']} -- "
        assert any(f"{wrapped}python -m adfm {stage} " in line for line in commands), stage
    assert not any(" -m adfm train " in line and "adfm.gpu_pool" not in line for line in commands)


@pytest.mark.parametrize("configs", [["config.yaml"], ["config.yaml", "workflow/configs/demo.yaml"]])
def test_lint_is_clean(configs):
    result = run_snakemake(REPO, "--lint", "--configfile", *[str(REPO / c) for c in configs])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr

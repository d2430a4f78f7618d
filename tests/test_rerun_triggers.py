"""No rerun for nothing (issue 17, items 5 to 7): the rule params do not depend on the key order of
the config, the recorded input paths do not depend on where the checkout lies, and a run's training
settings hold only the reward options its rewards read."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEMO_CONFIGS, REPO, copy_demo_inputs

from adfm import config as adfm_config
from adfm import targets
from adfm.config import CLIP_BACKENDS
from adfm.rewards import REWARD_OPTIONS
from adfm.settings.evaluation import FigureSettings, TableSettings
from adfm.settings.inference import ApiSettings, ClipSettings, MmadSettings, PredictSettings
from adfm.settings.model import TrainSettings, WarmStartSettings

pytestmark = pytest.mark.slow  # runs Snakemake or real training processes

OTHER_ORDER = ["workflow/configs/demo.yaml"]  # the Snakefile header's demo command: config.yaml merged under it
# cheap jobs with code inputs (index), an input into workflow/ (provenance) and the whole config as params
NARROW = ["resources/manifests/mvtec_ad.csv", "results/provenance.yaml"]


def reversed_keys(value):
    """The same config with every mapping's keys in the opposite order."""
    if isinstance(value, dict):
        return {key: reversed_keys(value[key]) for key in reversed(list(value))}
    return [reversed_keys(item) for item in value] if isinstance(value, list) else value


def every_param(config: dict) -> list[str]:
    """Every settings string the workflow's rules get from config (adfm.config), named in sorted order."""
    runs = sorted(config["runs"])
    params = [TrainSettings.from_config(config, run).to_json() for run in runs if config["runs"][run]["trained"]]
    params += [PredictSettings.from_config(config, run).to_json() for run in runs]
    params += [MmadSettings.from_config(config, run).to_json() for run in runs]
    params += [
        WarmStartSettings.from_config(config, protocol, reasoning).to_json()
        for protocol in sorted(config["protocols"])
        for reasoning in ("multi_stage", "one_stage")
    ]
    params += [TableSettings.from_config(config, table, {}).to_json() for table in sorted(config["tables"])]
    params += [
        ClipSettings.from_config(config, name).to_json() for name in sorted(targets.baselines(config, *CLIP_BACKENDS))
    ]
    params += [ApiSettings.from_config(config, name).to_json() for name in sorted(targets.baselines(config, "api"))]
    figures = sorted(config["figures"])
    params += [
        PredictSettings.for_figure(config, figure).to_json()
        for figure in figures
        if config["figures"][figure]["kind"] != "cases"
    ]
    params += [FigureSettings.from_config(config, figure).to_json() for figure in figures]
    return [*params, adfm_config.settings_json(targets.mmad_filter_layouts(config)), adfm_config.settings_json(config)]


@pytest.mark.parametrize("configs", [["config.yaml"], DEMO_CONFIGS])
def test_same_values_in_another_key_order_give_the_same_params(configs):
    config = adfm_config.load_config([REPO / name for name in configs])
    other = reversed_keys(config)
    assert list(other["train"]["grpo"]) != list(config["train"]["grpo"]) and other == config
    assert every_param(other) == every_param(config)
    archives = [adfm_config.sorted_keys(c.get("demo_archives", {})) for c in (config, other)]
    assert repr(archives[0]) == repr(archives[1])  # a mapping param is recorded as its repr


def test_a_reward_option_changes_only_the_training_of_runs_whose_rewards_read_it():
    config = adfm_config.load_config([REPO / "config.yaml"])
    changed = copy.deepcopy(config)
    changed["rewards"]["alpha"] = 0.5
    retrained = {
        run
        for run in config["runs"]
        if config["runs"][run]["trained"]
        and TrainSettings.from_config(changed, run) != TrainSettings.from_config(config, run)
    }
    assert retrained == {
        run for run, spec in config["runs"].items() if spec["trained"] and {"loc", "count"} & set(spec["rewards"])
    }
    assert "adfm" in retrained and "cls_random" not in retrained
    options = TrainSettings.from_config(config, "cls_random").reward_options
    assert set(options) == {key for reward in ("cls", "random", "format") for key in REWARD_OPTIONS[reward]}


def checkout(path):
    """A copy of the checkout's workflow at `path`."""
    path.mkdir(parents=True)
    return copy_demo_inputs(path)


def snakemake_run(cwd, configs, *args, checkout_dir=None):
    """A snakemake call from `cwd` (the checkout copy unless `checkout_dir` says) with these config
    files, targets first (--configfile takes every word after it)."""
    command = [sys.executable, "-m", "snakemake", *args, "--cores", "1", "--configfile", *configs]
    # the workflow's own helpers come from the copy under test, as in conftest.snakemake_command
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(Path(checkout_dir or cwd) / "src"),
    }
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_dry_runs_plan_the_same_commands_in_either_order_and_record_no_absolute_path(tmp_path):
    workdir = checkout(tmp_path / "checkout")
    plans = [snakemake_run(workdir, configs, "-n", "-p") for configs in (DEMO_CONFIGS, OTHER_ORDER)]
    commands = [sorted(line for line in plan.splitlines() if "python -m adfm" in line) for plan in plans]
    assert len(commands[0]) > 50 and commands[0] == commands[1]
    inputs = [line for line in plans[0].splitlines() if line.strip().startswith("input:")]
    assert any("src/adfm/model/train.py" in line for line in inputs)
    assert not [line for line in inputs if str(tmp_path) in line]
    # from another folder (-s <checkout>/Snakefile) the code inputs lead back to the checkout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plan = snakemake_run(
        elsewhere,
        [str(workdir / name) for name in DEMO_CONFIGS],
        "-n",
        "-s",
        str(workdir / "Snakefile"),
        *NARROW,
        checkout_dir=workdir,
    )
    assert "../checkout/src/adfm/data/index.py" in plan


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A checkout whose NARROW targets were built with the README's config order."""
    workdir = checkout(tmp_path_factory.mktemp("rerun") / "checkout")
    snakemake_run(workdir, DEMO_CONFIGS, *NARROW)
    return workdir


def test_the_configs_in_the_other_order_plan_nothing(finished):
    assert "Nothing to be done" in snakemake_run(finished, OTHER_ORDER, "-n", *NARROW)


def test_a_moved_checkout_plans_nothing(finished, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(finished, moved, symlinks=True)
    assert "Nothing to be done" in snakemake_run(moved, DEMO_CONFIGS, "-n", *NARROW)

"""Where the model comes from: a folder already on disk is linked, not fetched; a fetch that cannot
reach the Hub ends in one line saying what to do; downloads and the fetch run where Snakemake runs."""

import os
import subprocess
import sys

import pytest
from conftest import REPO

from adfm.config import SCHEMA, config_problems, load_config
from adfm.io import InputError
from adfm.model.load import fetch_model


def adfm_command(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **extra_env}
    return subprocess.run([sys.executable, "-m", "adfm", *args], check=False, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("prefix", ["", "file:"])
def test_a_model_folder_on_disk_is_linked_into_place(tmp_path, prefix):
    folder = tmp_path / "Qwen2.5-VL-7B-Instruct"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    out = tmp_path / "resources/models/qwen2.5-vl-7b-instruct"
    assert fetch_model(f"{prefix}{folder}", "main", out) == out
    assert out.is_symlink() and out.resolve() == folder.resolve()
    assert (out / "config.json").is_file()


def test_a_folder_that_is_no_model_is_named(tmp_path):
    with pytest.raises(InputError, match=f"{tmp_path} is not a Hugging Face model folder \\(no config.json\\)"):
        fetch_model(str(tmp_path), "main", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "source, ok",
    [
        ("/data/Qwen2.5-VL-7B-Instruct", True),
        ("./models/qwen", True),
        ("../qwen", True),
        ("~/qwen", True),
        ("file:/data/qwen", True),
        ("hf://Qwen/Qwen2.5-VL-7B-Instruct", True),
        ("demo:tiny-qwen2.5-vl", True),
        ("Qwen/Qwen2.5-VL-7B-Instruct", False),
        ("https://example.org/m", False),
    ],
)
def test_schema_accepts_a_local_model_folder(source, ok):
    config = load_config([REPO / "config.yaml"])
    config["model"]["source"] = source
    problems = [p for p in config_problems(config, SCHEMA) if p.startswith("model.source")]
    assert (not problems) == ok, problems


def test_a_fetch_without_network_ends_in_one_line(tmp_path):
    # a closed port stands for a machine without network (no retries, no traceback)
    result = adfm_command(
        "fetch-model",
        "--source",
        "hf://Qwen/Qwen2.5-VL-7B-Instruct",
        "--revision",
        "main",
        "--out",
        str(tmp_path / "model"),
        HF_ENDPOINT="http://127.0.0.1:9",
        HF_HUB_ETAG_TIMEOUT="5",
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if " INFO " not in line]
    assert len(errors) == 1, result.stderr
    assert "model source hf://Qwen/Qwen2.5-VL-7B-Instruct: cannot download from the Hugging Face Hub" in errors[0]
    assert (
        "hf download Qwen/Qwen2.5-VL-7B-Instruct --local-dir <folder>`) and set model.source to that folder"
        in errors[0]
    )
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_downloads_and_the_model_fetch_are_local_rules(tmp_path):
    """Under the SLURM executor these run on the node Snakemake runs on (the login node, with network)."""
    probe = (
        "from pathlib import Path\n"
        "from snakemake.api import SnakemakeApi\n"
        "from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings\n"
        "with SnakemakeApi(OutputSettings()) as api:\n"
        f"    workflow = api.workflow(snakefile=Path({str(REPO / 'Snakefile')!r}),\n"
        "        resource_settings=ResourceSettings(),\n"
        f"        config_settings=ConfigSettings(configfiles=[Path({str(REPO / 'config.yaml')!r})]),\n"
        "        workdir=Path('.'))\n"
        "    rules = workflow._workflow.rules\n"  # the parsed workflow: the public API has no rule listing
        "    print(sorted(rule.name for rule in rules if rule.name in workflow._workflow._localrules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], check=False, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "['download', 'fetch_model']"

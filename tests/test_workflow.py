"""The workflow itself: the paper config plans every stage without any data, and lints clean."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args],
                          cwd=workdir, env=env, capture_output=True, text=True)


def test_paper_config_plans_download_to_table_without_data(tmp_path):
    result = run_snakemake(tmp_path, "-n", "--cores", "all", "--configfile", str(REPO / "config.yaml"),
                           "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    for rule in ["download", "index", "boxes", "split", "fetch_model", "train", "predict", "score", "table"]:
        assert f"\n{rule} " in result.stdout, rule
    assert not any(tmp_path.iterdir()) or {p.name for p in tmp_path.iterdir()} <= {".snakemake"}


@pytest.mark.parametrize("configs", [["config.yaml"], ["config.yaml", "workflow/configs/demo.yaml"]])
def test_lint_is_clean(configs):
    result = run_snakemake(REPO, "--lint", "--configfile", *[str(REPO / c) for c in configs])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr

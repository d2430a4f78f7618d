"""Shared test helpers; `demo_run` runs the whole demo DAG once per test session."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    # PYTHONPATH: the workflow's own config helpers come from the copy under test, not from the
    # editable install (which a concurrent edit of src/ would change under a running session)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(Path(workdir).resolve() / "src")}
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config.yaml",
               "workflow/configs/demo.yaml", *args]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def planned_jobs(workdir: Path) -> dict[str, int]:
    """Job counts per rule of a dry run (empty when there is nothing to do)."""
    output = snakemake(workdir, "-n", "--quiet", "rules").stdout
    jobs = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) == 2 and words[1].isdigit() and words[0] != "total":
            jobs[words[0]] = int(words[1])
    return jobs


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, workdir / name)
    for name in ("workflow", "src", "envs"):
        shutil.copytree(REPO / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
    snakemake(workdir)
    return workdir

"""Shared test helpers; `demo_run` runs the whole demo DAG once per test session.

The demo run also calls a fake OpenAI-compatible chat server on 127.0.0.1 for two of the API
baselines (GPT-4o's multi-domain and cross-dataset rows), with a key in the environment, so the
API path runs inside the DAG and every output can be searched for the key (tests/reliability).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from fake_chat import FakeChat  # noqa: E402  (tests/ is on sys.path from here on)

DEMO_CONFIGS = ["config.yaml", "workflow/configs/demo.yaml"]
DEMO_INPUTS = ["Snakefile", "config.yaml", "workflow", "src", "envs"]  # copied from the checkout by demo_run
FAKE_API_KEY = "sk-adfm-demo-5eCr3t-0c8d9f1a2b3c"
FAKE_API_CONFIG = "fake_api.yaml"  # written into the demo's folder: the fake server's address
# written into the demo's folder: training and prediction jobs take one of two pretend GPUs each
# from the GPU pool (tests/test_gpu_pool.py reads what they recorded)
GPU_POOL_CONFIG = "gpu_pool.yaml"
PRETEND_GPUS = ["0", "1"]
# per workdir: the config files and environment every snakemake call on it gets
RUN_SETUP: dict[Path, tuple[list[str], dict[str, str]]] = {}


# kind of reliability case -> how many ran; printed at the end of the test run (tests/reliability)
CASE_COUNTS: dict[str, int] = {}


def count_cases(kind: str, number: int = 1) -> None:
    CASE_COUNTS[kind] = CASE_COUNTS.get(kind, 0) + number


def pytest_terminal_summary(terminalreporter):
    if CASE_COUNTS:
        terminalreporter.section("reliability cases that passed")
        for kind, number in CASE_COUNTS.items():
            terminalreporter.write_line(f"{number:>8}  {kind}")


def run_setup(workdir: Path) -> tuple[list[str], dict[str, str]]:
    return RUN_SETUP.get(Path(workdir), (DEMO_CONFIGS, {}))


def run_config(workdir: Path) -> dict:
    """The merged config the snakemake calls on `workdir` get."""
    from adfm.config import load_config

    return load_config([Path(workdir) / name for name in run_setup(workdir)[0]])


def snakemake_command(workdir: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a snakemake call on `workdir` (run it from there)."""
    # PYTHONPATH: the workflow's own config helpers come from the copy under test, not from the
    # editable install (which a concurrent edit of src/ would change under a running session)
    configs, extra_env = run_setup(workdir)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(Path(workdir).resolve() / "src"),
        **extra_env,
    }
    return [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", *configs, *args], env


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command, env = snakemake_command(workdir, *args)
    result = subprocess.run(command, check=False, cwd=workdir, env=env, capture_output=True, text=True)
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
def fake_api():
    # the first request fails with an error body echoing the Authorization header (as some gateways
    # do): the retry's log line must not carry the key either
    server = FakeChat(failures=[500])
    yield server
    server.close()


def copy_demo_inputs(workdir: Path) -> Path:
    """`workdir` with the checkout's files that the demo DAG reads (DEMO_INPUTS) copied into it."""
    for name in DEMO_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, workdir / name)
    return workdir


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, fake_api):
    workdir = copy_demo_inputs(tmp_path_factory.mktemp("demo"))
    # GPT-4o's rows run against the fake server; the other API models' key variable stays unset,
    # so their rows show the paper's value, "not run: no API key"
    unset = {"key_env": "ADFM_DEMO_UNSET_KEY"}
    (workdir / FAKE_API_CONFIG).write_text(
        yaml.safe_dump(
            {
                "api": {"enabled": True, "base_url": fake_api.url, "key_env": "ADFM_DEMO_API_KEY", "backoff_s": 0.01},
                "baselines": {name: unset for name in ("gpt-4o-mini", "gpt-4.1", "gpt-4o-mini_cross", "gpt-4.1_cross")},
            }
        )
    )
    one_gpu = {"gpu": 1}
    (workdir / GPU_POOL_CONFIG).write_text(
        yaml.safe_dump(
            {
                "resources": {
                    "gpu_devices": PRETEND_GPUS,
                    "gpu_lock_dir": str(workdir / "gpu-locks"),
                    "train": one_gpu,
                    "predict": one_gpu,
                }
            }
        )
    )
    RUN_SETUP[workdir] = ([*DEMO_CONFIGS, FAKE_API_CONFIG, GPU_POOL_CONFIG], {"ADFM_DEMO_API_KEY": FAKE_API_KEY})
    snakemake(workdir)
    return workdir


def pytest_collection_modifyitems(items):
    # the whole demo DAG runs once per session for these; `pytest -m "not slow"` is the quick loop
    for item in items:
        if "demo_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)

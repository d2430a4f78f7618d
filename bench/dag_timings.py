"""Wall time of the whole demo DAG (in a fresh temporary copy) and of a dry run of the paper config.

    .venv/bin/python bench/dag_timings.py [--keep]

Prints both times and the demo's job count; the demo timing includes building every output from
nothing (archives, tiny model, training, prediction, tables, figures), as `make demo` does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stdout + result.stderr


def copy_workflow(target: Path) -> None:
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, target / name)
    for name in ("workflow", "src", "envs"):
        shutil.copytree(REPO / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the demo's temporary folder")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="adfm-bench-"))
    try:
        copy_workflow(workdir)
        dry, _ = snakemake(workdir, "-n", "--cores", "all", "--configfile", "config.yaml")
        print(f"paper config dry run: {dry:.1f} s")
        demo, log = snakemake(workdir, "--cores", "all", "--configfile", "config.yaml", "workflow/configs/demo.yaml")
        steps = next((line for line in reversed(log.splitlines()) if "steps (100%) done" in line), "?")
        print(f"demo DAG from nothing: {demo:.1f} s ({steps.strip()}) on {os.cpu_count()} cores")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

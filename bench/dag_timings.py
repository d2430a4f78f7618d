"""Wall time of the whole demo DAG (in a fresh temporary copy) and of a dry run of the paper config.

    .venv/bin/python bench/dag_timings.py [--keep] [--log SNAKEMAKE_LOG]

Prints both times, the demo's job count and the job-seconds per rule (from each job's start and
finish lines in Snakemake's log: where the DAG's time goes); the demo timing includes building
every output from nothing (archives, tiny model, training, prediction, tables, figures), as
`make demo` does. `--log` only prints the job-seconds of a log Snakemake wrote before
(e.g. .snakemake/log/*.snakemake.log of a `make demo`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stdout + result.stderr


_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_START = re.compile(r"^(?:local)?rule (\w+):$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_FINISH = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def rule_job_seconds(log: str) -> dict[str, tuple[int, float]]:
    """{rule: (jobs, job-seconds)} from a Snakemake log: each job from its `rule X:` block's time stamp
    to its `Finished jobid` line's (one-second resolution), summed per rule, largest first."""
    stamp, pending, started = None, None, {}
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for line in log.splitlines():
        if match := _STAMP.match(line):
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        elif (match := _START.match(line)) and stamp is not None:
            pending = stamp
        elif (match := _JOBID.match(line)) and pending is not None:
            started[match.group(1)], pending = pending, None
        elif (match := _FINISH.match(line)) and match.group(1) in started:
            total = totals[match.group(2)]
            total[0] += 1
            total[1] += (stamp - started.pop(match.group(1))).total_seconds()
    return {rule: (int(n), s) for rule, (n, s) in sorted(totals.items(), key=lambda item: -item[1][1])}


def print_job_seconds(log: str) -> None:
    per_rule = rule_job_seconds(log)
    print(f"job-seconds per rule ({sum(s for _, s in per_rule.values()):.0f} in all):")
    for rule, (jobs, seconds) in per_rule.items():
        print(f"  {rule:<24} {seconds:6.0f} s  {jobs:3d} job(s)")


def copy_workflow(target: Path) -> None:
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, target / name)
    for name in ("workflow", "src", "envs"):
        shutil.copytree(REPO / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the demo's temporary folder")
    parser.add_argument("--log", type=Path, help="only print the job-seconds per rule of this Snakemake log")
    args = parser.parse_args()
    if args.log:
        print_job_seconds(args.log.read_text())
        return
    workdir = Path(tempfile.mkdtemp(prefix="adfm-bench-"))
    try:
        copy_workflow(workdir)
        dry, _ = snakemake(workdir, "-n", "--cores", "all", "--configfile", "config.yaml")
        print(f"paper config dry run: {dry:.1f} s")
        demo, log = snakemake(workdir, "--cores", "all", "--configfile", "config.yaml", "workflow/configs/demo.yaml")
        steps = next((line for line in reversed(log.splitlines()) if "steps (100%) done" in line), "?")
        print(f"demo DAG from nothing: {demo:.1f} s ({steps.strip()}) on {os.cpu_count()} cores")
        print_job_seconds(log)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

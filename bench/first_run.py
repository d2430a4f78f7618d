"""A new user's first run: clone the repository into a temporary folder, then time `make setup`,
`make demo` and `make test` there, one after the other, as the README's first lines say to.

    python3 bench/first_run.py [--source REPO_OR_URL] [--ref REF] [--python PYTHON] [--keep]

`--source` defaults to this checkout (its committed HEAD: uncommitted edits are not cloned). Prints
`make demo`'s wall time with its set-up (the first `make demo` of a fresh clone builds .venv, so
set-up + demo DAG is what a new user waits), `make test`'s, each against the issue's limits (6 and
10 minutes), and the demo's job-seconds per rule (bench/dag_timings.py's `rule_job_seconds`). uv's
cache (and pip's, which only fetches uv) is left as it is; `UV_CACHE_DIR` set to an empty folder
(on the clone's file system, where uv hard-links from it) and `PIP_NO_CACHE_DIR=1` time a machine
that never installed the packages.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dag_timings import REPO, print_job_seconds  # bench/ is no package: imported from its folder

LIMITS_S = {"make demo": 6 * 60, "make test": 10 * 60}


def timed(command: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    """Seconds `command` took and its output; exits with the output's tail when it fails."""
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed after {elapsed:.0f} s in {cwd}:\n{result.stdout[-3000:]}")
    return elapsed, result.stdout


def clone(source: str, target: Path, ref: str | None = None) -> Path:
    """A fresh clone of `source` (a path or URL) at `ref` (default: its HEAD) in `target`."""
    timed(["git", "clone", "--quiet", str(source), str(target)], target.parent)
    if ref:
        timed(["git", "checkout", "--quiet", ref], target)
    return target


def demo_log(checkout: Path) -> str:
    """Snakemake's log of the demo run: the newest of .snakemake/log/ (`make test`'s runs are elsewhere)."""
    logs = sorted((checkout / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda path: path.stat().st_mtime)
    if not logs:
        sys.exit(f"no Snakemake log under {checkout / '.snakemake/log'}: did `make demo` run Snakemake?")
    return logs[-1].read_text()


def verdict(name: str, seconds: float) -> str:
    limit = LIMITS_S[name]
    return f"{name:<10} {seconds:6.0f} s  (limit {limit} s: {'ok' if seconds <= limit else 'OVER'})"


def first_run(checkout: Path, python: str) -> dict[str, float]:
    """Wall seconds of each step in a fresh clone; prints them and the demo's job-seconds per rule."""
    make = ["make", f"PYTHON={python}"]
    times = {}
    times["make setup"], _ = timed([*make, "setup"], checkout)
    times["demo DAG"], _ = timed([*make, "demo"], checkout)
    times["make demo"] = times["make setup"] + times["demo DAG"]
    log = demo_log(checkout)  # before `make test`, whose Snakemake runs could add their own
    times["make test"], _ = timed([*make, "test"], checkout)
    print(f"fresh clone on {os.cpu_count()} cores:")
    parts = f"set-up {times['make setup']:.0f} s + DAG {times['demo DAG']:.0f} s"
    print(f"  {verdict('make demo', times['make demo'])}: {parts}")
    print(f"  {verdict('make test', times['make test'])}")
    print_job_seconds(log)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(REPO), help="repository to clone (default: this checkout)")
    parser.add_argument("--ref", help="commit or branch to check out (default: the source's HEAD)")
    parser.add_argument("--python", default="python3", help="interpreter `make setup` builds .venv with")
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="adfm-first-run-"))
    try:
        first_run(clone(args.source, folder / "adfm-repro", args.ref), args.python)
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

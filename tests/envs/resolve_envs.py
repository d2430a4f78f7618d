"""Resolve each conda environment's pip section with pip's resolver, as a dry run.

    python tests/envs/resolve_envs.py [envs/NAME.yaml ...]     (default: every envs/*.yaml)

Only the `pip:` list is checked. The conda part (`python=3.11`, `pip`) cannot be solved where conda
is absent (this check exists for such machines): it is read only for the Python version that pip
resolves for. Nothing is installed: `--dry-run --ignore-installed` lets pip pick every package as it
would in a fresh environment, whatever the running interpreter already holds.

pip runs with the caller's pip configuration on purpose: on machines whose wheels lie on local disk
(find-links, file:// indexes) that is the only way to see them. A configured constraints file (such
as /etc/xdg/pip's cap on torch and torchvision) applies too, so a pin above such a cap fails here
although it would resolve on a machine without the cap; pip's message then names the constraint.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


class EnvFileError(Exception):
    """An env file without the parts this check reads."""


def read_env(path: Path) -> tuple[list[str], str | None]:
    """The env's pip requirements and the Python version (X.Y) its conda part asks for, if any."""
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or not isinstance(spec.get("dependencies"), list):
        raise EnvFileError("no `dependencies:` list")
    pip, python = [], None
    for entry in spec["dependencies"]:
        if isinstance(entry, dict) and "pip" in entry:
            pip.extend(str(item) for item in entry["pip"] or [])
        elif isinstance(entry, str):
            match = re.fullmatch(r"python\s*=+\s*(\d+\.\d+)(\.\*|\.\d+)?", entry.strip())
            if match:
                python = match.group(1)
    if not pip:
        raise EnvFileError("no `pip:` list under `dependencies:`")
    return pip, python


def pip_error(done: subprocess.CompletedProcess) -> str:
    """pip's errors, with the explanation of a conflict, without its progress lines."""
    # a file:// index without the package: noise on every machine with such an index configured
    errors = [line for line in done.stderr.splitlines() if not re.match(r"WARNING: Location '.*' is ignored", line)]
    out = done.stdout.splitlines()
    conflict = next((i for i, line in enumerate(out) if line.startswith("The conflict is caused by")), len(out))
    lines = [line for line in errors + out[conflict:] if line.strip()]
    return "\n".join(lines) or f"pip exited with {done.returncode}"


def resolve(path: Path) -> tuple[bool, str]:
    """(resolved, pip's error or a one-line summary) for one env file."""
    try:
        requirements, python = read_env(path)
    except (OSError, EnvFileError, yaml.YAMLError) as error:
        return False, f"cannot read it: {error}"
    with tempfile.TemporaryDirectory(prefix="adfm-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        # not --quiet: pip prints which requirements conflict (the part a reader needs) only on stdout
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--report",
            str(report),
            "--requirement",
            str(Path(tmp) / "requirements.txt"),
        ]
        (Path(tmp) / "requirements.txt").write_text("\n".join(requirements) + "\n")
        running = f"{sys.version_info.major}.{sys.version_info.minor}"
        if python and python != running:
            # pip picks wheels for another Python only when told the version, and then only wheels
            # (it cannot build an sdist for an interpreter it is not running on), and only into a target
            command += ["--python-version", python, "--only-binary=:all:", "--target", str(Path(tmp) / "target")]
        done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=tmp)
        if done.returncode != 0:
            return False, "pip could not resolve its pip section:\n" + pip_error(done)
        installs = json.loads(report.read_text()).get("install", [])
    return True, f"{len(requirements)} pins -> {len(installs)} packages for Python {python or running}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("envs", nargs="*", type=Path, help="env files (default: envs/*.yaml)")
    args = parser.parse_args(argv)
    envs = args.envs or sorted((REPO / "envs").glob("*.yaml"))
    if not envs:
        print("no env files found", file=sys.stderr)
        return 2
    failures = []
    for env in envs:
        env = env.resolve()
        name = env.relative_to(REPO) if env.is_relative_to(REPO) else env
        start = time.monotonic()
        ok, message = resolve(env)
        print(
            f"{'ok  ' if ok else 'FAIL'} {name} ({time.monotonic() - start:.0f} s)" + (f": {message}" if ok else ""),
            flush=True,
        )
        if not ok:
            first, *rest = message.splitlines()
            failures.append("\n".join([f"{name}: {first}", *("    " + line for line in rest)]))
    if failures:
        print("\n" + "\n\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Provenance of a run for the report: the merged config, the commit and the package versions."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import yaml

from adfm.io import write_text_atomic

PACKAGES = ("torch", "torchvision", "transformers", "trl", "peft", "accelerate", "snakemake", "open-clip-torch")


def git_commit(folder: Path) -> str:
    """The checkout's commit, with "-dirty" when tracked files differ from it; "unknown" outside git."""
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def write_provenance(config: dict, commit: str, out: Path) -> None:
    record = {"commit": commit, "python": platform.python_version(), "packages": versions(), "config": config}
    write_text_atomic(out, yaml.safe_dump(record, sort_keys=False, allow_unicode=True))


def register(subparsers) -> None:
    parser = subparsers.add_parser("provenance", help="record the config, commit and versions of a run")
    parser.add_argument("--config", required=True, help="the merged config, as JSON")
    parser.add_argument("--commit", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.set_defaults(func=lambda a: write_provenance(json.loads(a.config), a.commit, a.out))

"""Provenance of a run for the report: the merged config, the commit and the package versions, the
data each dataset was built from (the download stage's source records: URL or linked folder, sha256,
when), and the table of settings that change results with where each value comes from.

Each such key's source lives in the config schema (workflow/schemas/config.schema.yaml) as a
`source:` beside its description: "paper §N" (the AD-FM paper), "release" (the authors' public
repository hanawall/AD-FM: ms-swift plugin, train_mmad.sh, prompt.txt), "MMAD" (MMAD's evaluation
code) or "ours" (a choice of this reproduction, with its reason in the description).
"""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd
import yaml

from adfm.io import settings_json, write_csv_atomic, write_text_atomic

PACKAGES = ("torch", "torchvision", "transformers", "trl", "peft", "accelerate", "snakemake", "open-clip-torch")


def git_commit(folder: Path) -> str:
    """The checkout's commit, with "-dirty" when tracked files differ from it; "unknown" outside git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
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


SOURCE_KINDS = ("paper", "release", "MMAD", "ours")


def _resolve(node: dict, schema: dict) -> dict:
    ref = node.get("$ref", "")
    return schema["$defs"][ref.rsplit("/", 1)[-1]] if ref.startswith("#/$defs/") else node


def _sourced(node: dict, value, key: str, schema: dict):
    """(key, value, source, description) of every key under `key` whose schema gives its source."""
    if "source" not in node:
        node = _resolve(node, schema)
    if "source" in node:
        yield key, value, node["source"], " ".join(str(node.get("description", "")).split())
        return
    if not isinstance(value, dict):
        return
    properties = node.get("properties", {})
    others = node.get("additionalProperties")
    for name, item in value.items():
        child = properties.get(name, others if isinstance(others, dict) else None)
        if child is not None:
            yield from _sourced(child, item, f"{key}.{name}" if key else name, schema)


def settings_sources(config: dict, schema: dict) -> pd.DataFrame:
    """The run's value of every setting whose schema entry says where it comes from."""
    rows = [
        {
            "setting": key,
            "value": value if isinstance(value, str) else json.dumps(value),
            "source": source,
            "why": description,
        }
        for key, value, source, description in _sourced(schema, config, "", schema)
    ]
    return pd.DataFrame(rows, columns=["setting", "value", "source", "why"])


def data_sources(config: dict, records: list[Path]) -> dict[str, dict]:
    """dataset -> its source record as the download wrote it; datasets without one are marked."""
    found = {}
    for path in records:
        record = yaml.safe_load(Path(path).read_text())
        found[record["dataset"]] = record
    return {
        name: found.get(
            name,
            {"url": spec.get("url"), "downloaded": None, "note": "not downloaded (a manual download not yet made)"},
        )
        for name, spec in config["datasets"].items()
    }


def write_provenance(
    config: dict,
    commit: str,
    schema_path: Path,
    out: Path,
    settings_csv: Path,
    settings_html: Path,
    sources: list[Path] = (),
) -> None:
    record = {
        "commit": commit,
        "python": platform.python_version(),
        "packages": versions(),
        "data": data_sources(config, sources),
        "config": config,
    }
    write_text_atomic(out, yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
    table = settings_sources(config, yaml.safe_load(Path(schema_path).read_text()))
    write_csv_atomic(table, settings_csv)
    write_text_atomic(settings_html, table.to_html(index=False))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "provenance",
        help="record the config, commit and versions of a run",
        description="Write the provenance record of a run (commit, Python and package versions, the data each "
        "dataset came from, the merged config) and the table of the settings that change results, "
        "with where each value comes from (paper, release, MMAD or ours).",
    )
    parser.add_argument("--config", required=True, type=settings_json, help="the merged config, as JSON")
    parser.add_argument("--commit", required=True, help="the checkout's git commit (-dirty when edited)")
    parser.add_argument(
        "--sources",
        nargs="*",
        type=Path,
        default=[],
        help="the download stage's source records (YAML), one per downloaded dataset",
    )
    parser.add_argument("--schema", required=True, type=Path, help="the config schema, with each setting's source")
    parser.add_argument("--out", required=True, type=Path, help="provenance record (YAML)")
    parser.add_argument(
        "--settings-csv",
        required=True,
        type=Path,
        help="table of the settings that change results and their sources (CSV)",
    )
    parser.add_argument("--settings-html", required=True, type=Path, help="the same table as HTML, for the report")
    parser.set_defaults(
        func=lambda a: write_provenance(a.config, a.commit, a.schema, a.out, a.settings_csv, a.settings_html, a.sources)
    )

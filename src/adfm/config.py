"""Config helpers used by the workflow: cross-reference checks and the settings each stage gets.

The JSON schema checks each key's type; what it cannot express (a run naming a protocol that does
not exist, a table row naming an unknown run) is checked here, with a message naming the key.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from adfm.io import InputError


def merge(base: dict, override: dict) -> dict:
    """Snakemake's merge of config files: nested mappings merge, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(paths: list[Path]) -> dict:
    """The config files merged in order, as `snakemake --configfile a.yaml b.yaml` sees them."""
    config: dict = {}
    for path in paths:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise InputError(f"{path}: cannot read config ({error})") from None
        if not isinstance(loaded, dict):
            raise InputError(f"{path}: a config file must be a mapping of keys")
        config = merge(config, loaded)
    return config


SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def schema_problems(config: dict, schema_path: Path = SCHEMA) -> list[str]:
    """Schema violations, each as "<dotted key>: <what is wrong>"."""
    from jsonschema import Draft202012Validator

    schema = yaml.safe_load(Path(schema_path).read_text())
    problems = []
    for error in sorted(Draft202012Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.path))):
        where = ".".join(map(str, error.path)) or "(top level)"
        problems.append(f"{where}: {error.message}")
    return problems


def config_problems(config: dict, schema_path: Path = SCHEMA) -> list[str]:
    """Everything wrong with a config: schema first, then (if the shape is right) references."""
    return schema_problems(config, schema_path) or check_references(config)


def check_references(config: dict) -> list[str]:
    """Problems in the references between config sections (empty when consistent)."""
    problems = []
    datasets, protocols, runs = config["datasets"], config["protocols"], config["runs"]
    for name, protocol in protocols.items():
        needed = {"holdout": ["datasets"], "transfer": ["train", "test"]}[protocol["kind"]]
        for key in needed:
            if key not in protocol:
                problems.append(f"protocols.{name}.{key}: required for kind {protocol['kind']}")
            for dataset in protocol.get(key, []):
                if dataset not in datasets:
                    problems.append(f"protocols.{name}.{key}: unknown dataset {dataset!r}")
    for name, run in runs.items():
        if run["protocol"] not in protocols:
            problems.append(f"runs.{name}.protocol: unknown protocol {run['protocol']!r}")
        weights = run.get("reward_weights")
        if weights is not None and len(weights) != len(run.get("rewards", [])):
            problems.append(f"runs.{name}.reward_weights: {len(weights)} weights for {len(run.get('rewards', []))} rewards")
    for name, table in config["tables"].items():
        if not resources.files("adfm").joinpath("paper", table["paper"]).is_file():
            problems.append(f"tables.{name}.paper: no paper table {table['paper']!r}")
            continue
        with resources.files("adfm").joinpath("paper", table["paper"]).open() as handle:
            header = pd.read_csv(handle, nrows=0).columns
        for key in table["keys"]:
            if key not in header:
                problems.append(f"tables.{name}.keys: {key!r} is not a column of {table['paper']}")
        for column in table["columns"]:
            if column not in header:
                problems.append(f"tables.{name}.columns: {column!r} is not a column of {table['paper']}")
        for row in table["rows"]:
            if row["run"] not in runs:
                problems.append(f"tables.{name}.rows: unknown run {row['run']!r}")
    grpo = config["train"]["grpo"]
    if grpo["per_device_train_batch_size"] % grpo["num_generations"]:
        problems.append("train.grpo.per_device_train_batch_size: must be a multiple of num_generations")
    return problems


def model_settings(config: dict) -> dict:
    model = config["model"]
    return {key: model[key] for key in ("dtype", "min_pixels", "max_pixels")}


def train_settings(config: dict, run: str) -> str:
    """JSON settings of `adfm train` for one run."""
    spec = config["runs"][run]
    return json.dumps({
        "prompt": config["prompts"][spec["reasoning"]],
        "model": model_settings(config),
        "rewards": spec["rewards"],
        "reward_weights": spec.get("reward_weights") or [1.0] * len(spec["rewards"]),
        "reward_options": {**config["rewards"], "reasoning": spec["reasoning"], "random_seed": config["seed"]},
        "grpo": {**config["train"]["grpo"], "seed": config["seed"]},
        "lora": config["train"]["lora"],
    })


def predict_settings(config: dict, run: str) -> str:
    """JSON settings of `adfm predict` for one run."""
    spec = config["runs"][run]
    return json.dumps({
        "prompt": config["prompts"][spec["reasoning"]],
        "reasoning": spec["reasoning"],
        "model": model_settings(config),
        **config["predict"],
    })


def evaluated_datasets(config: dict, table: str) -> list[str]:
    """The configured datasets a table's columns need (unconfigured columns stay 'not run')."""
    return [d for d in config["tables"][table]["columns"].values() if d in config["datasets"]]


def datasets_tested_by(config: dict, run: str) -> list[str]:
    """Datasets a run's protocol tests on."""
    protocol = config["protocols"][config["runs"][run]["protocol"]]
    return protocol["datasets"] if protocol["kind"] == "holdout" else protocol["test"]


def protocol_datasets(config: dict, protocol: str) -> list[str]:
    spec = config["protocols"][protocol]
    return spec["datasets"] if spec["kind"] == "holdout" else [*spec["train"], *spec["test"]]

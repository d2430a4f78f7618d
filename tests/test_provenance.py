"""The provenance record and the table of settings with their sources."""

import pandas as pd
import yaml
from conftest import REPO

from adfm.config import SCHEMA, load_config
from adfm.evaluation.provenance import SOURCE_KINDS, settings_sources, write_provenance

SCHEMA_BY_HAND = {
    "$defs": {
        "lora": {
            "type": "object",
            "properties": {
                "r": {"type": "integer", "source": "paper §4.1", "description": "LoRA rank."},
                "dropout": {"type": "number", "source": "ours", "description": "Dropout\n  of LoRA."},
            },
        }
    },
    "properties": {
        "seed": {"type": "integer", "source": "ours", "description": "Seed."},
        "api": {"properties": {"base_url": {"type": "string"}}},  # no source: not listed
        "train": {"properties": {"lora": {"$ref": "#/$defs/lora"}}},
        "runs": {"additionalProperties": {"properties": {"rewards": {"source": "paper §4.5"}}}},
    },
}


def test_settings_are_listed_with_their_value_and_source():
    config = {
        "seed": 3,
        "api": {"base_url": "x"},
        "train": {"lora": {"r": 64, "dropout": 0.05}},
        "runs": {"adfm": {"rewards": ["cls", "loc"], "trained": True}},
    }
    table = settings_sources(config, SCHEMA_BY_HAND)
    assert table.to_dict("records") == [
        {"setting": "seed", "value": "3", "source": "ours", "why": "Seed."},
        {"setting": "train.lora.r", "value": "64", "source": "paper §4.1", "why": "LoRA rank."},
        {"setting": "train.lora.dropout", "value": "0.05", "source": "ours", "why": "Dropout of LoRA."},
        {"setting": "runs.adfm.rewards", "value": '["cls", "loc"]', "source": "paper §4.5", "why": ""},
    ]


def test_every_source_in_the_schema_names_its_kind():
    def sources(node):
        if isinstance(node, dict):
            if isinstance(node.get("source"), str):
                yield node["source"]
            for value in node.values():
                yield from sources(value)
        elif isinstance(node, list):
            for value in node:
                yield from sources(value)

    found = list(sources(yaml.safe_load(SCHEMA.read_text())))
    assert found, "no setting of the schema says where it comes from"
    assert all(source.split()[0].rstrip(":,") in SOURCE_KINDS for source in found), found


def test_provenance_writes_the_record_and_the_settings_table(tmp_path):
    config = load_config([REPO / "config.yaml"])
    write_provenance(config, "abc", SCHEMA, tmp_path / "p.yaml", tmp_path / "s.csv", tmp_path / "s.html")
    assert yaml.safe_load((tmp_path / "p.yaml").read_text())["commit"] == "abc"
    table = pd.read_csv(tmp_path / "s.csv")
    assert list(table.columns) == ["setting", "value", "source", "why"]
    assert "<table" in (tmp_path / "s.html").read_text()

"""The `adfm` command's help: every stage has a description and every option a help text; config
files: YAML errors name the file, and a number YAML reads as text gets the fix."""

import argparse

import pytest
import yaml

from adfm.cli import STAGE_MODULES, build_parser
from adfm.config import SCHEMA, load_config, schema_problems
from adfm.io import InputError


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser(None)._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_stage_is_registered():
    assert set(subcommands()) == set(STAGE_MODULES)


@pytest.mark.parametrize("name", sorted(STAGE_MODULES))
def test_every_subcommand_has_a_description_and_documented_options(name):
    parser = subcommands()[name]
    assert parser.description and len(parser.description.split()) >= 5, f"adfm {name} --help has no description"
    undocumented = [
        action.option_strings[0] if action.option_strings else action.dest
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert undocumented == [], f"adfm {name}: options without a help text: {undocumented}"


def test_yaml_error_names_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  grpo: [1,\n")
    with pytest.raises(InputError, match=f"(?s){path}: not valid YAML .*line 3"):
        load_config([path])


def test_a_number_yaml_reads_as_text_names_the_fix():
    config = load_config([SCHEMA.parents[2] / "config.yaml"])
    config["train"]["grpo"]["learning_rate"] = yaml.safe_load("x: 1e-5")["x"]
    assert config["train"]["grpo"]["learning_rate"] == "1e-5"  # PyYAML (YAML 1.1) reads it as text
    assert (
        "train.grpo.learning_rate: '1e-5' is not of type 'number' (YAML reads 1e-5 as text: write 1.0e-5, "
        "with a dot and a signed exponent)"
    ) in schema_problems(config)


def test_check_config_names_the_file_of_a_yaml_error_and_the_fix_of_a_number(tmp_path, capsys):
    from adfm.cli import check_config, main

    config = SCHEMA.parents[2] / "config.yaml"
    broken, text_number = tmp_path / "broken.yaml", tmp_path / "lr.yaml"
    broken.write_text("seed: [1,\n")
    text_number.write_text("train:\n  grpo:\n    learning_rate: 1e-5\n")
    with pytest.raises(InputError, match=f"(?s){broken}: not valid YAML .*line 2"):
        check_config([config, broken])
    with pytest.raises(InputError, match=r"learning_rate: '1e-5' is not of type 'number'.*write 1\.0e-5"):
        check_config([config, text_number])
    assert main(["check-config", str(config), str(broken)]) == 2
    assert main(["check-config", str(config)]) == 0 and "config ok" in capsys.readouterr().out

"""The `adfm` command: one subcommand per stage of the data flow (Snakemake rules call these)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from adfm.io import InputError, setup_logging

# Each module registers its own subcommand(s); imported lazily so `adfm index` never loads torch.
STAGE_MODULES = {
    "make-demo-archive": "adfm.data.demo_archive",
    "download": "adfm.data.download",
    "index": "adfm.data.index",
    "boxes": "adfm.data.masks",
    "split": "adfm.data.split",
    "mmad-questions": "adfm.data.mmad_questions",
    "fetch-model": "adfm.model.load",
    "warm-start": "adfm.model.warm_start",
    "train": "adfm.model.train",
    "predict": "adfm.inference.hf",
    "predict-api": "adfm.inference.api",
    "predict-clip": "adfm.inference.clip",
    "predict-mmad": "adfm.inference.mmad",
    "score-mmad": "adfm.evaluation.mmad_score",
    "score": "adfm.evaluation.score",
    "figure": "adfm.evaluation.figures",
    "training-curves": "adfm.evaluation.training_curves",
    "table": "adfm.evaluation.tables",
    "detect": "adfm.inference.detect",
    "provenance": "adfm.evaluation.provenance",
    "summary": "adfm.evaluation.summary",
    "check-config": "adfm.cli",
}


def check_config(paths: list[Path]) -> None:
    """Load config files as `snakemake --configfile` merges them and list every problem, each naming
    its file or key. (Snakemake's own message for a YAML error names neither file nor line.)"""
    # here, not at the top: adfm.config needs jsonschema, which the rules' conda environments lack
    from adfm.config import config_problems, load_config

    problems = config_problems(load_config(paths))
    if problems:
        raise InputError("invalid config:\n  " + "\n  ".join(problems))
    print(f"config ok: {' + '.join(map(str, paths))}")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="check config files before a run, naming the file of a YAML error",
        description="Merge the config files in order, as `snakemake --configfile` does, and list every problem: a "
        "YAML error with its file and line, then each bad key with what is wrong and, for a number "
        "YAML reads as text (1e-5), how to write it.",
    )
    parser.add_argument(
        "configs", nargs="+", type=Path, help="config files in the order snakemake gets them, config.yaml first"
    )
    parser.set_defaults(func=lambda a: check_config(a.configs))


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adfm", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(STAGE_MODULES) + "}")
    modules = [STAGE_MODULES[command]] if command in STAGE_MODULES else list(dict.fromkeys(STAGE_MODULES.values()))
    for module in modules:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((word for word in argv if not word.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    setup_logging(args.verbose)
    try:
        args.func(args)
    except InputError as error:
        logging.getLogger("adfm").error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

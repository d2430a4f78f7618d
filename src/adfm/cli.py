"""The `adfm` command: one subcommand per stage of the data flow (Snakemake rules call these)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from adfm.io import InputError, setup_logging

# Each module registers its own subcommand(s); imported lazily so `adfm index` never loads torch.
STAGE_MODULES = {
    "make-demo-archive": "adfm.demo_data",
    "download": "adfm.download",
    "index": "adfm.index",
    "boxes": "adfm.boxes",
    "split": "adfm.split",
    "mmad-questions": "adfm.split",
    "fetch-model": "adfm.models",
    "warm-start": "adfm.warm_start",
    "train": "adfm.train",
    "predict": "adfm.predict",
    "predict-api": "adfm.api_backend",
    "predict-clip": "adfm.clip_baselines",
    "predict-mmad": "adfm.mmad_eval",
    "score-mmad": "adfm.mmad_eval",
    "score": "adfm.score",
    "figure": "adfm.figures",
    "table": "adfm.tables",
    "detect": "adfm.detect",
    "provenance": "adfm.provenance",
}


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

"""What the workflow tells the user on the console besides Snakemake's own output.

- Before anything runs (also in a dry run): the manual datasets (`url: null`) not yet in
  resources/datasets/, with each one's `manual:` note and the tables and figures it blocks, so a
  first paper run does not end with a download failure as its only hint.
- After a failed run (Snakemake's `onerror`): the last lines of each failed job's log, rather than
  the whole of a training log (Snakemake's `show-failed-logs` prints every line).
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

from adfm import config as adfm_config
from adfm import targets

TAIL_LINES = 40


def missing_manual_datasets(config: dict, dataset_dir: str) -> list[str]:
    """Datasets to be downloaded by hand (`url: null`) whose folder (`dataset_dir`, a pattern with
    {dataset}: the download rule's output) is absent."""
    return [
        name
        for name, spec in config["datasets"].items()
        if not spec.get("url") and not Path(dataset_dir.format(dataset=name)).exists()
    ]


def blocked_targets(config: dict, missing: list[str]) -> dict[str, list[str]]:
    """dataset -> the tables and figures that cannot be made without it.

    A protocol's split needs every dataset of the protocol, and everything a run or baseline makes
    (warm start, adapter, predictions, MMAD answers) needs its protocol's split; MMAD's questions
    also need the split of `mmad.split_filter`. A table or figure is blocked by the missing datasets
    of every model it shows.
    """
    needs: dict[str, set[str]] = {}  # model -> the missing datasets it needs

    def protocol_missing(protocol: str | None) -> set[str]:
        if not protocol:
            return set()
        return set(adfm_config.protocol_datasets(config, protocol)) & set(missing)

    mmad = config.get("mmad", {})
    mmad_missing = protocol_missing(mmad.get("split_filter")) | ({"mmad"} & set(missing))
    for name, spec in adfm_config.evaluated_models(config).items():
        needs[name] = protocol_missing(spec["protocol"])
    blocked: dict[str, list[str]] = {name: [] for name in missing}

    def block(target: str, datasets: set[str]) -> None:
        for dataset in sorted(datasets, key=missing.index):
            blocked[dataset].append(target)

    for table in config["tables"]:
        table_needs = targets.table_needs(config, table)
        datasets: set[str] = set()
        for model, dataset in table_needs["metrics"]:
            datasets |= needs[model] | ({dataset} & set(missing))
        for model in table_needs["mmad_metrics"]:
            datasets |= mmad_missing | (needs[model] if targets.mmad_filtered(config, model) else set())
        block(table, datasets)
    for figure, spec in config.get("figures", {}).items():
        block(figure, needs[spec["run"]] | ({spec.get("dataset")} & set(missing)))
    return blocked


def manual_data_message(config: dict, dataset_dir: str) -> str | None:
    """The parse-time note on manual datasets still missing (None when there are none)."""
    missing = missing_manual_datasets(config, dataset_dir)
    if not missing:
        return None
    blocked = blocked_targets(config, missing)
    lines = [
        (
            f"Manual downloads missing: {', '.join(missing)} (url: null). Their download jobs fail with the "
            "note below; every job that needs none of them still runs (keep-going, on in the default profile)."
        )
    ]
    for name in missing:
        targets = ", ".join(blocked[name]) or "no table or figure"
        note = " ".join(config["datasets"][name].get("manual", "").split())
        lines.append(
            f"  {name}: blocks {targets}. {note} Then set datasets.{name}.url to the archive or extracted folder."
        )
    return "\n".join(lines)


# Snakemake's failure block: "Error in rule <name>:" ... "    log: a.log, b.log (check log file(s) for error details)"
_ERROR = re.compile(r"^Error in rule (\S+):$")
_LOG = re.compile(r"^\s+log: (.*) \(check log file\(s\) for error details\)$")


def failed_job_logs(snakemake_log: str) -> list[tuple[str, list[str]]]:
    """(rule, log files) of every failed job in the text of a Snakemake log, in order of failure."""
    failed, rule = [], None
    for line in snakemake_log.splitlines():
        if match := _ERROR.match(line):
            rule = match.group(1)
        elif rule and (match := _LOG.match(line)):
            failed.append((rule, match.group(1).split(", ")))
            rule = None
        elif rule and not line.startswith((" ", "\t")):
            rule = None  # the failure block ended without a log
    return failed


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    with open(path, errors="replace") as handle:
        return [line.rstrip("\n") for line in deque(handle, maxlen=lines)]


def failed_logs_message(snakemake_logs: list[str], lines: int = TAIL_LINES) -> str | None:
    """The last `lines` lines of each failed job's log, found in Snakemake's own log(s)."""
    parts = []
    for snakemake_log in snakemake_logs:
        try:
            text = Path(snakemake_log).read_text(errors="replace")
        except OSError:
            continue
        for rule, paths in failed_job_logs(text):
            for path in paths:
                if not Path(path).is_file():
                    parts.append(f"==> {path} (rule {rule}): no log written <==")
                    continue
                content = tail(Path(path), lines)
                parts.append(f"==> last {len(content)} lines of {path} (rule {rule}) <==")
                parts.extend(content)
    return "\n".join(parts) if parts else None

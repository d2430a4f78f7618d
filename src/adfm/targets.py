"""What the workflow makes for a config, as names: which model is evaluated on which dataset for which
table, which models nothing asks for, which split MMAD's leakage filter reads.

Names only (models, datasets, protocols): the file path of each is spelt once, in
workflow/rules/common.smk, which applies its patterns to these names.
"""

from __future__ import annotations

import os
from pathlib import Path

from adfm import vlms
from adfm.config import CLIP_BACKENDS, eval_rows, evaluated_models, protocol_datasets
from adfm.settings.inference import API_OPTIONS


def baselines(config: dict, *backends: str) -> list[str]:
    """The baselines of these backends (of every backend when none is named)."""
    return [name for name, spec in config.get("baselines", {}).items() if not backends or spec["backend"] in backends]


def backend(config: dict, name: str) -> str:
    """How a model answers: "hf" for a run (a Hugging Face VLM), else its baseline's backend."""
    return "hf" if name in config["runs"] else config["baselines"][name]["backend"]


def trained(config: dict, name: str) -> bool:
    """Whether a model is a run with a LoRA adapter of its own."""
    return name in config["runs"] and config["runs"][name]["trained"]


def warm_started(config: dict, name: str) -> bool:
    """Whether a run answers (and trains) with the warm-started model of its protocol and reasoning
    (train.warm_start.enabled) rather than the fetched one: by default the trained runs, whose
    adapters sit on it; `runs.<run>.warm_started` says otherwise (the demo's Figure 5 samples an
    untrained run on it: the tiny fetched model never writes the response format)."""
    if name not in config["runs"] or not config["train"].get("warm_start", {}).get("enabled", False):
        return False
    return config["runs"][name].get("warm_started", trained(config, name))


def trained_rows(config: dict, table: str) -> dict[str, str]:
    """{run: legend label} of a table's rows whose model GRPO trained, each run once, in row order;
    the label is the run's name and the row's paper keys ("cls_random: r_cls + r_random, multi-stage")."""
    rows = {}
    for row in config["tables"][table]["rows"]:
        if "run" in row and trained(config, row["run"]) and row["run"] not in rows:
            rows[row["run"]] = f"{row['run']}: {', '.join(map(str, row['match'].values()))}"
    return rows


def datasets_tested_by(config: dict, name: str) -> list[str]:
    """Datasets a run's (or a baseline's) protocol tests on."""
    protocol = config["protocols"][evaluated_models(config)[name]["protocol"]]
    return protocol["datasets"] if protocol["kind"] == "holdout" else protocol["test"]


def table_needs(config: dict, table: str, environ=None) -> dict[str, list]:
    """What a table reads, per row that can run here (an API model without its key, say, cannot):
    `metrics`, the (model, dataset) pairs of its columns, and `mmad_metrics`, the models whose
    answers to MMAD's questions it shows (a question-type table, or a row asked with MMAD's prompt)."""
    spec = config["tables"][table]
    wanted = set(spec["columns"].values())
    needs: dict[str, list] = {"metrics": [], "mmad_metrics": []}
    for row in table_rows(config, table, environ):
        if row.get("skip"):
            continue
        if spec.get("select", "dataset") == "question_type" or row.get("prompt") == "mmad":
            needs["mmad_metrics"].append(row["run"])
        else:
            needs["metrics"] += [(row["run"], d) for d in datasets_tested_by(config, row["run"]) if d in wanted]
    return {kind: list(dict.fromkeys(found)) for kind, found in needs.items()}


def unused_models(config: dict) -> list[str]:
    """Runs and baselines that no table row or figure uses: the default target never runs them."""
    used = {row["run"] for table in config["tables"].values() for row in table["rows"] if "run" in row}
    used |= {figure["run"] for figure in config.get("figures", {}).values()}
    return [name for name in evaluated_models(config) if name not in used]


def unused_note(config: dict) -> str | None:
    """The parse-time note naming each run or baseline that `snakemake` (the default target) never runs."""
    unused = unused_models(config)
    if not unused:
        return None
    kinds = ["run" if name in config["runs"] else "baseline" for name in unused]
    named = ", ".join(f"{kind} {name!r}" for kind, name in zip(kinds, unused, strict=True))
    return (
        f"Note: no table row or figure uses {named}, so `snakemake` never runs it: add a "
        "tables.<table>.rows entry for it (a row the paper lacks is added), or ask for its outputs "
        "by path (results/metrics/<run>/<dataset>.csv)."
    )


def mmad_filter_protocol(config: dict) -> str | None:
    """The protocol whose split MMAD's question table marks leakage against (`mmad.split_filter`)."""
    return config["mmad"].get("split_filter")


def mmad_filter_layouts(config: dict) -> dict[str, str]:
    """The layout of each dataset of the leakage filter's split (none when the filter is off)."""
    protocol = mmad_filter_protocol(config)
    if not protocol:
        return {}
    return {d: config["datasets"][d]["layout"] for d in protocol_datasets(config, protocol) if d in config["datasets"]}


def _looks_like_file(value: str) -> bool:
    return "/" in value or "\\" in value or Path(value).suffix in (".bin", ".pt", ".pth", ".safetensors")


def unavailable_reason(config: dict, name: str, environ=None) -> str | None:
    """Why a table row's model cannot run with this config and environment (None when it can).

    An API model needs api.enabled and its key in the environment; a CLIP baseline needs its weight
    files (and AnomalyCLIP's prompt file) where the config says. The table shows the paper's value
    and this reason instead of a number.
    """
    environ = os.environ if environ is None else environ
    spec = config.get("baselines", {}).get(name)
    if spec is None:
        return None
    if spec["backend"] == "api":
        api = {**config.get("api", {}), **{k: spec[k] for k in API_OPTIONS if k in spec}}
        if not api.get("enabled", False):
            return "not run: API backend disabled (api.enabled: false)"
        if not environ.get(api["key_env"], "").strip():
            return f"not run: no API key (environment variable {api['key_env']} not set)"
        return None
    files = [spec["clip"].get("pretrained")]
    if spec["backend"] == "anomalyclip":
        files.append(spec.get("prompts"))
    for path in files:
        if path and _looks_like_file(path) and not Path(path).is_file():
            return f"not run: {path} not found (CLIP baseline weights, see README)"
    return None


def table_rows(config: dict, table: str, environ=None) -> list[dict]:
    """A table's rows, each with `skip` (the reason) when its model cannot run here or the config
    says why no run fills it (`not_run`), and, for its notes, the split rows (`eval_rows`) and the
    prompt mode (`reasoning`; none for a CLIP scorer) of its run."""
    rows = []
    for row in config["tables"][table]["rows"]:
        if "not_run" in row:
            rows.append(
                {key: value for key, value in row.items() if key != "not_run"} | {"skip": f"not run: {row['not_run']}"}
            )
            continue
        model = evaluated_models(config)[row["run"]]
        reasoning = None if model.get("backend") in CLIP_BACKENDS else model.get("reasoning", "multi_stage")
        described = {"eval_rows": eval_rows(config, row["run"]), "reasoning": reasoning}
        reason = unavailable_reason(config, row["run"], environ)
        rows.append({**row, **described, **({"skip": reason} if reason else {})})
    return rows


def demo_note(config: dict) -> str | None:
    """The warning every table carries when its numbers come from the demo (a `demo:` model source:
    tiny randomly initialised models, trained and scored on generated miniature datasets)."""
    used = [row["run"] for spec in config["tables"].values() for row in spec["rows"] if "run" in row]
    sources = vlms.demo_sources(config, used)
    if not sources:
        return None
    return (
        f"Demo numbers: tiny randomly initialised models ({', '.join(sources)}) on generated miniature "
        "datasets. They show that every stage runs; they say nothing about the real models or AD-FM."
    )


def mmad_filtered(config: dict, name: str) -> bool:
    """Whether a model is held to MMAD's leakage filter: the runs are, an API baseline is not (the
    paper's numbers for it are MMAD's, over MMAD's whole question set)."""
    return name in config["runs"]

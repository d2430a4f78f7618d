"""The Hugging Face vision-language models of a config, by folder name: the base model (config
`model`, the one runs train from) and the catalogue of others evaluated as they are (config
`models`, e.g. InternVL3 and LLaVA-NeXT for Tables 1-3), each of a family (config `model_families`:
what its processor and responses need, adfm.model.families).

A run answers with the model its `model` key names, else the base model. Names only: the folder
pattern is workflow/rules/common.smk's MODEL_DIR.
"""

from __future__ import annotations


def entries(config: dict) -> dict[str, dict]:
    """Every model folder name -> its config entry (the base model's `name` is its folder)."""
    base = config["model"]
    return {base["name"]: base, **config.get("models", {})}


def folder_of(config: dict, run: str | None) -> str:
    """The folder name of the model a run answers with (None: the base model)."""
    spec = config["runs"].get(run, {}) if run is not None else {}
    return spec.get("model") or config["model"]["name"]


def entry_of(config: dict, run: str | None) -> dict:
    """The config entry of the model a run answers with."""
    return entries(config)[folder_of(config, run)]


def family_of(config: dict, entry: dict) -> dict:
    """A model entry's family traits (config `model_families.<family>`)."""
    return config["model_families"][entry["family"]]


def prediction_resources(config: dict, run: str) -> dict:
    """The resources a run's model entry sets for its prediction jobs (a 34B model needs several
    GPUs and more memory than resources.predict gives the 7B); none for the base model."""
    if run not in config["runs"]:
        return {}
    return dict(entry_of(config, run).get("resources", {}))


def demo_sources(config: dict, used: list[str]) -> list[str]:
    """The `demo:` sources (tiny randomly initialised models) among the models these runs use."""
    sources = [entry_of(config, run)["source"] for run in used if run in config["runs"]]
    return list(dict.fromkeys(s for s in [config["model"]["source"], *sources] if s.startswith("demo:")))


def problems(config: dict) -> list[str]:
    """References between runs, the catalogue and the families (empty when consistent)."""
    found, known = [], entries(config)
    if config["model"]["name"] in config.get("models", {}):
        found.append(f"models.{config['model']['name']}: the name of the base model (model.name)")
    for name, entry in known.items():
        where = "model" if entry is config["model"] else f"models.{name}"
        if entry["family"] not in config.get("model_families", {}):
            found.append(f"{where}.family: unknown family {entry['family']!r}")
    for name, run in config["runs"].items():
        chosen = run.get("model")
        if chosen is None:
            continue
        if chosen not in config.get("models", {}):
            found.append(f"runs.{name}.model: unknown model {chosen!r} (models: {', '.join(config.get('models', {}))})")
        elif run["trained"] or run.get("warm_started"):
            found.append(f"runs.{name}.model: trained and warm-started runs start from the base model (model)")
    return found

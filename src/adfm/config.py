"""The config: loading (merged as `snakemake --configfile` merges), the schema, and the checks the
schema cannot express, each message naming its key (a run naming a protocol that does not exist, a
table row naming an unknown run); also the launch command and GPU prefix of the jobs.

What the workflow makes for a config (which model on which dataset) is adfm.targets.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml
from jsonschema import Draft202012Validator

from adfm.evaluation.tables import row_problems
from adfm.io import InputError
from adfm.protocol import prompt_answer_format, prompt_template


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
            with open(path, encoding="utf-8") as handle:  # from a stream, YAML errors name the file
                loaded = yaml.safe_load(handle)
        except OSError as error:
            raise InputError(f"{path}: cannot read config ({error.strerror})") from None
        except yaml.YAMLError as error:
            raise InputError(f"{path}: not valid YAML ({error})") from None
        if not isinstance(loaded, dict):
            raise InputError(f"{path}: a config file must be a mapping of keys")
        config = merge(config, loaded)
    return config


SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def schema_problems(config: dict, schema_path: Path = SCHEMA) -> list[str]:
    """Schema violations, each as "<dotted key>: <what is wrong>"."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    problems = []
    for error in sorted(Draft202012Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.path))):
        where = ".".join(map(str, error.path)) or "(top level)"
        problems.append(f"{where}: {error.message}{_number_hint(error)}")
    return problems


def _number_hint(error) -> str:
    """The fix for a number YAML read as a string: PyYAML (YAML 1.1) takes `1e-5` for text."""
    expected = error.validator_value if error.validator == "type" else None
    if not isinstance(error.instance, str) or "number" not in (expected if isinstance(expected, list) else [expected]):
        return ""
    try:
        mantissa, exponent = f"{float(error.instance):e}".split("e")
    except ValueError:
        return ""
    mantissa = mantissa.rstrip("0") + ("0" if mantissa.rstrip("0").endswith(".") else "")
    return (f" (YAML reads {error.instance} as text: write {mantissa}e{int(exponent):+d}, with a dot and a signed "
            "exponent)")


def config_problems(config: dict, schema_path: Path = SCHEMA) -> list[str]:
    """Everything wrong with a config: schema first, then (if the shape is right) references."""
    return schema_problems(config, schema_path) or check_references(config)


def check_references(config: dict) -> list[str]:
    """Problems in the references between config sections (empty when consistent)."""
    return [
        *_protocol_problems(config),
        *_run_problems(config),
        *_table_problems(config),
        *evaluation_problems(config),
        *_training_problems(config),
    ]


def _protocol_problems(config: dict) -> list[str]:
    problems = []
    for name, protocol in config["protocols"].items():
        needed = {"holdout": ["datasets"], "transfer": ["train", "test"]}[protocol["kind"]]
        for key in needed:
            if key not in protocol:
                problems.append(f"protocols.{name}.{key}: required for kind {protocol['kind']}")
            problems += [f"protocols.{name}.{key}: unknown dataset {dataset!r}"
                         for dataset in protocol.get(key, []) if dataset not in config["datasets"]]
    return problems


def _run_problems(config: dict) -> list[str]:
    problems = []
    for name, run in config["runs"].items():
        if run["protocol"] not in config["protocols"]:
            problems.append(f"runs.{name}.protocol: unknown protocol {run['protocol']!r}")
        weights, rewards = run.get("reward_weights"), run.get("rewards", [])
        if weights is not None and len(weights) != len(rewards):
            problems.append(f"runs.{name}.reward_weights: {len(weights)} weights for {len(rewards)} rewards")
    return problems


def _table_problems(config: dict) -> list[str]:
    """Each table against its paper CSV's columns, the configured datasets and the models."""
    problems = []
    for name, table in config["tables"].items():
        paper = resources.files("adfm").joinpath("paper", table["paper"])
        if not paper.is_file():
            problems.append(f"tables.{name}.paper: no paper table {table['paper']!r}")
            continue
        with paper.open() as handle:
            header = pd.read_csv(handle, nrows=0).columns
        problems += [f"tables.{name}.keys: {key!r} is not a column of {table['paper']}"
                     for key in table["keys"] if key not in header]
        for column, dataset in table["columns"].items():
            if column not in header:
                problems.append(f"tables.{name}.columns: {column!r} is not a column of {table['paper']}")
            # a typo would leave the column "not run" without a word
            if table.get("select", "dataset") == "dataset" and dataset not in config["datasets"]:
                problems.append(f"tables.{name}.columns.{column}: unknown dataset {dataset!r}")
        problems += [f"tables.{name}.rows: unknown run {row['run']!r}"
                     for row in table["rows"] if row["run"] not in evaluated_models(config)]
        if all(key in header for key in table["keys"]):
            # the table job would fail on these only after every run it needs had trained
            problems += [f"tables.{name}.{problem}" for problem in row_problems(table)]
    return problems


def _training_problems(config: dict) -> list[str]:
    problems = []
    grpo = config["train"]["grpo"]
    if grpo["per_device_train_batch_size"] % grpo["num_generations"]:
        problems.append("train.grpo.per_device_train_batch_size: must be a multiple of num_generations")
    processes = config["train"].get("launcher", {}).get("num_processes", 1)
    gpus = config["resources"]["train"]["gpu"]
    # gpu 0: the processes share the CPU (workflow/accelerate/multi_cpu.yaml)
    if processes > 1 and gpus > 0 and gpus != processes:
        problems.append(f"train.launcher.num_processes: {processes} processes but resources.train.gpu {gpus}: "
                        "they must be equal (one process per GPU), or resources.train.gpu 0 to run on the CPU")
    return problems


def settings_json(settings) -> str:
    """Settings as a rule param: JSON with sorted keys. Snakemake reruns a job whose params changed,
    and the same config loaded in another key order (config files given in another order, or the
    Snakefile's `configfile:` merged under a `--configfile`) must not change them."""
    return json.dumps(settings, sort_keys=True)


def sorted_keys(value):
    """A mapping (and every mapping in it) with its keys sorted: a rule param that is a mapping is
    recorded as its repr, which, like JSON, must not depend on the config's key order."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    return [sorted_keys(item) for item in value] if isinstance(value, list) else value


def model_settings(config: dict) -> dict:
    model = config["model"]
    return {key: model[key] for key in ("dtype", "min_pixels", "max_pixels")}


def train_settings(config: dict, run: str) -> str:
    """JSON settings of `adfm train` for one run: of the reward options, only those its rewards read
    (adfm.rewards.REWARD_OPTIONS), so that another value of an option retrains only the runs using it."""
    from adfm.rewards import REWARD_OPTIONS

    spec = config["runs"][run]
    options = {**config["rewards"], "answer_format": prompt_answer_format(config["prompts"]),
               "reasoning": spec["reasoning"], "random_seed": config["seed"]}
    used = {key for reward in spec["rewards"] for key in REWARD_OPTIONS[reward]}
    return settings_json({
        "prompt": prompt_template(config["prompts"], spec["reasoning"]),
        # recorded with the adapter (training.json), so that `adfm detect` reads the response as trained
        "reasoning": spec["reasoning"],
        "answer_format": prompt_answer_format(config["prompts"]),
        "model": model_settings(config),
        "rewards": spec["rewards"],
        "reward_weights": spec.get("reward_weights") or [1.0] * len(spec["rewards"]),
        "reward_options": {key: value for key, value in options.items() if key in used},
        "grpo": {**config["train"]["grpo"], "seed": config["seed"]},
        "lora": config["train"]["lora"],
    })


def warm_start_settings(config: dict, protocol: str, reasoning: str) -> str:
    """JSON settings of `adfm warm-start` for a protocol's training split and a reasoning mode."""
    spec = {key: value for key, value in config["train"]["warm_start"].items() if key != "enabled"}
    spec["lora"] = {**config["train"]["lora"], **spec.get("lora", {})}
    spec.setdefault("bf16", config["train"]["grpo"].get("bf16", True))
    return settings_json({
        "prompt": prompt_template(config["prompts"], reasoning),
        "reasoning": reasoning,
        "answer_format": prompt_answer_format(config["prompts"]),
        "model": model_settings(config),
        "seed": config["seed"],
        "warm_start": spec,
    })


def predict_settings(config: dict, run: str) -> str:
    """JSON settings of `adfm predict` for one run."""
    spec = config["runs"][run]
    return settings_json({
        "prompt": prompt_template(config["prompts"], spec["reasoning"]),
        "reasoning": spec["reasoning"],
        "answer_format": prompt_answer_format(config["prompts"]),
        "model": model_settings(config),
        "role": eval_rows(config, run),
        **config["predict"],
    })


def eval_rows(config: dict, name: str) -> str:
    """The split rows a run or baseline is evaluated on (`adfm predict`'s role): "test", the held-out
    rows, or "all", every row of a tested dataset (under the holdout protocol, its whole test split)."""
    return evaluated_models(config)[name].get("eval_rows", "test")


def protocol_datasets(config: dict, protocol: str) -> list[str]:
    spec = config["protocols"][protocol]
    return spec["datasets"] if spec["kind"] == "holdout" else [*spec["train"], *spec["test"]]


# ---- evaluation: baselines, MMAD, tables and figures

CLIP_BACKENDS = ("winclip", "anomalyclip")
CLIP_OPTIONS = {"winclip": ("scales", "shots", "image_size", "batch_size"),
                "anomalyclip": ("prompts", "prompt_length", "deep_prompt_depth", "deep_prompt_length", "image_size",
                                "batch_size")}
API_OPTIONS = ("base_url", "key_env", "concurrency", "max_retries", "backoff_s", "timeout_s", "max_image_side",
               "max_tokens")
SCORE_METRICS = ("accuracy_youden", "balanced_accuracy_youden")  # metrics only continuous-score predictions have


def evaluated_models(config: dict) -> dict:
    """Every evaluated model by name: the runs (Hugging Face VLM) and the baselines."""
    return {**config.get("baselines", {}), **config["runs"]}


def _looks_like_file(value: str) -> bool:
    return "/" in value or "\\" in value or Path(value).suffix in (".bin", ".pt", ".pth", ".safetensors")


def unavailable_reason(config: dict, name: str, environ=None) -> str | None:
    """Why a table row's model cannot run with this config and environment (None when it can).

    An API model needs api.enabled and its key in the environment; a CLIP baseline needs its weight
    files (and AnomalyCLIP's prompt file) where the config says. The table shows the paper's value
    and this reason instead of a number.
    """
    import os

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


def evaluation_problems(config: dict) -> list[str]:
    """Reference problems of baselines, api, mmad, figures and the evaluation side of tables."""
    return [
        *_baseline_problems(config),
        *[f"runs.{name}.eval_rows: 'all' would score a trained run on its own training images"
          for name, run in config["runs"].items() if run["trained"] and run.get("eval_rows") == "all"],
        *[problem for name in config["tables"] for problem in _table_model_problems(config, name)],
        *_mmad_problems(config),
        *[problem for name in config.get("figures", {}) for problem in _figure_problems(config, name)],
    ]


def _baseline_problems(config: dict) -> list[str]:
    problems = []
    for name, spec in config.get("baselines", {}).items():
        if name in config["runs"]:
            problems.append(f"baselines.{name}: the name is also a run")
        if spec["protocol"] not in config["protocols"]:
            problems.append(f"baselines.{name}.protocol: unknown protocol {spec['protocol']!r}")
        if spec["backend"] == "api" and "api" not in config:
            problems.append(f"baselines.{name}: an API baseline needs the api section")
        if spec["backend"] in CLIP_BACKENDS:
            if "clip" not in spec:
                problems.append(f"baselines.{name}.clip: required for backend {spec['backend']}")
            allowed = set(CLIP_OPTIONS[spec["backend"]]) | {"backend", "protocol", "clip"}
            problems += [f"baselines.{name}.{key}: not an option of backend {spec['backend']}"
                         for key in sorted(set(spec) - allowed)]
    return problems


def _table_model_problems(config: dict, name: str) -> list[str]:
    """A table's rows against what their models can answer: MMAD's questions, continuous scores."""
    table, problems = config["tables"][name], []
    select = table.get("select", "dataset")
    for row in table["rows"]:
        model = evaluated_models(config).get(row["run"])
        if model is None:
            continue
        clip = model.get("backend") in CLIP_BACKENDS
        if row.get("metric") in SCORE_METRICS and not clip:
            problems.append(f"tables.{name}.rows: metric {row['metric']!r} needs a CLIP baseline, "
                            f"not {row['run']!r}")
        if select == "question_type":
            if "mmad" not in config:
                problems.append(f"tables.{name}: select question_type needs the mmad section")
            if row.get("prompt") == "reasoning":
                problems.append(f"tables.{name}.rows: MMAD's question types are asked with MMAD's prompt, "
                                f"not prompt 'reasoning' ({row['run']!r})")
        if row.get("prompt") == "mmad" and select == "dataset":
            if "mmad" not in config:
                problems.append(f"tables.{name}.rows: prompt mmad needs the mmad section")
            if clip:
                problems.append(f"tables.{name}.rows: {row['run']!r} cannot answer MMAD's questions")
            missing = [c for c in table["columns"] if c not in table.get("mmad_sources", {})]
            if missing:
                problems.append(f"tables.{name}.mmad_sources: prompt mmad rows need the MMAD source dataset "
                                f"of column(s) {missing}")
        if select == "question_type" and clip:
            problems.append(f"tables.{name}.rows: {row['run']!r} cannot answer MMAD's questions")
    return problems


def _mmad_problems(config: dict) -> list[str]:
    if "mmad" not in config:
        return []
    mmad, problems = config["mmad"], []
    if mmad["dataset"] not in config["datasets"]:
        problems.append(f"mmad.dataset: unknown dataset {mmad['dataset']!r}")
    if mmad.get("split_filter") not in (None, *config["protocols"]):
        problems.append(f"mmad.split_filter: unknown protocol {mmad['split_filter']!r}")
    return problems


def _figure_problems(config: dict, name: str) -> list[str]:
    """A figure's run and dataset: a Hugging Face run whose protocol has the dataset (with training
    images, for the figures that sample training images)."""
    figure, runs = config["figures"][name], config["runs"]
    if figure["run"] not in runs:
        return [f"figures.{name}.run: unknown run {figure['run']!r} (figures use Hugging Face runs)"]
    protocol = config["protocols"].get(runs[figure["run"]]["protocol"])
    if protocol is None:
        return []
    if figure["dataset"] not in protocol_datasets(config, runs[figure["run"]]["protocol"]):
        return [f"figures.{name}.dataset: {figure['dataset']!r} is not in the protocol of run {figure['run']!r}"]
    if ((name == "fig4" or figure.get("rows") == "train") and protocol["kind"] == "transfer"
            and figure["dataset"] not in protocol["train"]):
        return [f"figures.{name}.dataset: {figure['dataset']!r} has no training images in the protocol "
                f"of run {figure['run']!r}"]
    return []


def table_rows(config: dict, table: str, environ=None) -> list[dict]:
    """A table's rows, each with `skip` (the reason) when its model cannot run here, and, for its
    notes, the split rows (`eval_rows`) and the prompt mode (`reasoning`; none for a CLIP scorer)
    of its run."""
    rows = []
    for row in config["tables"][table]["rows"]:
        model = evaluated_models(config)[row["run"]]
        reasoning = None if model.get("backend") in CLIP_BACKENDS else model.get("reasoning", "multi_stage")
        described = {"eval_rows": eval_rows(config, row["run"]), "reasoning": reasoning}
        reason = unavailable_reason(config, row["run"], environ)
        rows.append({**row, **described, **({"skip": reason} if reason else {})})
    return rows


def demo_note(config: dict) -> str | None:
    """The warning every table carries when its numbers come from the demo (model.source `demo:`:
    a tiny randomly initialised model, trained and scored on generated miniature datasets)."""
    source = config["model"]["source"]
    if not source.startswith("demo:"):
        return None
    return (f"Demo numbers: a tiny randomly initialised model ({source}) on generated miniature datasets. "
            "They show that every stage runs; they say nothing about Qwen2.5-VL or AD-FM.")


def table_spec(config: dict, table: str, environ=None) -> str:
    """JSON spec of `adfm table`: the table's config entry with the skip reasons of this environment
    and, for the demo, its warning."""
    spec = {**config["tables"][table], "rows": table_rows(config, table, environ)}
    demo = demo_note(config)
    return settings_json({**spec, "demo": demo} if demo else spec)


def clip_settings(config: dict, name: str) -> str:
    """JSON settings of `adfm predict-clip` for a CLIP baseline."""
    spec = config["baselines"][name]
    options = {k: spec[k] for k in CLIP_OPTIONS[spec["backend"]] if k in spec and spec[k] is not None}
    return settings_json({"method": spec["backend"], "clip": spec["clip"], "seed": config["seed"],
                       "role": eval_rows(config, name), **options})


def api_settings(config: dict, name: str) -> str:
    """JSON settings of `adfm predict-api` (the key itself is never part of them: only its variable's name)."""
    spec = config["baselines"][name]
    api = {k: v for k, v in config["api"].items() if k != "enabled"}
    api.update({k: spec[k] for k in API_OPTIONS if k in spec})
    reasoning = spec.get("reasoning", "multi_stage")
    return settings_json({"prompt": prompt_template(config["prompts"], reasoning), "reasoning": reasoning,
                       "answer_format": prompt_answer_format(config["prompts"]), "role": eval_rows(config, name),
                       "api": {**api, "model": spec["model"]}})


def mmad_filtered(config: dict, name: str) -> bool:
    """Whether a model is held to MMAD's leakage filter: the runs are, an API baseline is not (the
    paper's numbers for it are MMAD's, over MMAD's whole question set)."""
    return name in config["runs"]


def mmad_settings(config: dict, name: str) -> str:
    """JSON settings of `adfm predict-mmad` for a run (Hugging Face) or an API baseline.

    A trained run is decoded as `mmad.decoding.trained` says, every other model as
    `mmad.decoding.untrained`; `filter` says `mmad_filtered`."""
    mmad = config["mmad"]
    run = config["runs"].get(name)
    decoding = mmad["decoding"]["trained" if run is not None and run["trained"] else "untrained"]
    model = {**model_settings(config), "min_pixels": mmad["min_pixels"], "max_pixels": mmad["max_pixels"]}
    settings = {"model": model, "templates": mmad["templates"], "generation": mmad["generation"],
                "instruction": decoding["instruction"], "max_new_tokens": decoding["max_new_tokens"],
                "parse": decoding["parse"], "filter": mmad_filtered(config, name),
                "batch_size": mmad.get("batch_size") or config["predict"]["batch_size"]}
    if decoding["instruction"] == "reasoning":
        reasoning = evaluated_models(config)[name].get("reasoning", "multi_stage")
        settings["reasoning_instruction"] = mmad["reasoning_instructions"][reasoning]
    if mmad.get("max_images"):
        settings["max_images"] = mmad["max_images"]
    spec = config.get("baselines", {}).get(name)
    if spec is not None and spec["backend"] == "api":
        settings["api"] = json.loads(api_settings(config, name))["api"]
    return settings_json(settings)


def sample_settings(config: dict, figure: str) -> str:
    """JSON settings of `adfm predict` sampling the responses of Figure 4 or 5 (training images)."""
    spec = config["figures"][figure]
    run = config["runs"][spec["run"]]
    settings = {
        "prompt": prompt_template(config["prompts"], run["reasoning"]), "reasoning": run["reasoning"],
        "answer_format": prompt_answer_format(config["prompts"]), "model": model_settings(config),
        "batch_size": config["predict"]["batch_size"], "max_new_tokens": config["train"]["grpo"]["max_completion_length"],
        "num_samples": spec["num_generations"], "temperature": spec["temperature"], "seed": config["seed"],
        # truncated as GRPO samples (train.grpo's top_k / top_p, when set)
        **{key: config["train"]["grpo"][key] for key in ("top_k", "top_p") if key in config["train"]["grpo"]},
        # Figure 4 shows "the same training sample"; Figure 5 draws from figures.fig5.rows
        "role": "train" if figure == "fig4" else spec["rows"],
    }
    if figure == "fig4":
        settings.update({"label": 1, "max_images": 1} if not spec.get("image") else {"image": spec["image"]})
    else:
        settings["max_images"] = spec["images"]
    return settings_json(settings)


def figure_settings(config: dict, figure: str) -> str:
    """JSON settings of `adfm figure`."""
    spec = config["figures"][figure]
    run = config["runs"][spec["run"]]
    settings = {"title": spec.get("title") or spec["run"],
                "rewards": {**config["rewards"], "answer_format": prompt_answer_format(config["prompts"]),
                            "reasoning": run["reasoning"], "random_seed": config["seed"]}}
    if spec.get("paper"):
        settings["paper"] = spec["paper"]
    if spec.get("rows"):
        settings["rows"] = spec["rows"]
    return settings_json(settings)

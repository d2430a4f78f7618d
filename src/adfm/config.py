"""The config: loading (merged as `snakemake --configfile` merges), the schema, and the checks the
schema cannot express, each naming its key (a run naming an unknown protocol; the models' own:
adfm.vlms). What the workflow makes for a config is adfm.targets; how its jobs launch, adfm.launch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import yaml

from adfm import paper, vlms
from adfm.io import InputError
from adfm.settings.inference import CLIP_METHOD_OPTIONS, CLIP_METHODS


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
    # deferred: the stages read config helpers in conda envs without jsonschema; only the workflow
    # and `adfm check-config` validate
    from jsonschema import Draft202012Validator

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
    return (
        f" (YAML reads {error.instance} as text: write {mantissa}e{int(exponent):+d}, with a dot and a signed exponent)"
    )


def config_problems(config: dict, schema_path: Path = SCHEMA) -> list[str]:
    """Everything wrong with a config: schema first, then (if the shape is right) references."""
    return schema_problems(config, schema_path) or check_references(config)


def check_references(config: dict) -> list[str]:
    """Problems in the references between config sections (empty when consistent)."""
    return [
        *_protocol_problems(config),
        *_run_problems(config),
        *vlms.problems(config),
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
            problems += [
                f"protocols.{name}.{key}: unknown dataset {dataset!r}"
                for dataset in protocol.get(key, [])
                if dataset not in config["datasets"]
            ]
    return problems


def _run_problems(config: dict) -> list[str]:
    problems = []
    for name, run in config["runs"].items():
        if run["protocol"] not in config["protocols"]:
            problems.append(f"runs.{name}.protocol: unknown protocol {run['protocol']!r}")
        if run.get("warm_started") and not config["train"].get("warm_start", {}).get("enabled", False):
            problems.append(f"runs.{name}.warm_started: needs train.warm_start.enabled")
        weights, rewards = run.get("reward_weights"), run.get("rewards", [])
        if weights is not None and len(weights) != len(rewards):
            problems.append(f"runs.{name}.reward_weights: {len(weights)} weights for {len(rewards)} rewards")
    return problems


def _table_problems(config: dict) -> list[str]:
    """Each table against its paper CSV's columns, the configured datasets and the models."""
    problems = []
    for name, table in config["tables"].items():
        if not paper.exists(table["paper"]):
            problems.append(f"tables.{name}.paper: no paper table {table['paper']!r}")
            continue
        header = paper.read(table["paper"]).columns
        problems += [
            f"tables.{name}.keys: {key!r} is not a column of {table['paper']}"
            for key in table["keys"]
            if key not in header
        ]
        for column, dataset in table["columns"].items():
            if column not in header:
                problems.append(f"tables.{name}.columns: {column!r} is not a column of {table['paper']}")
            # a typo would leave the column "not run" without a word
            if table.get("select", "dataset") == "dataset" and dataset not in config["datasets"]:
                problems.append(f"tables.{name}.columns.{column}: unknown dataset {dataset!r}")
        problems += [
            f"tables.{name}.rows: unknown run {row['run']!r}"
            for row in table["rows"]
            if "run" in row and row["run"] not in evaluated_models(config)
        ]
        if all(key in header for key in table["keys"]):
            # the table job would fail on these only after every run it needs had trained
            problems += [f"tables.{name}.{problem}" for problem in paper.row_problems(table)]
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
        problems.append(
            f"train.launcher.num_processes: {processes} processes but resources.train.gpu {gpus}: "
            "they must be equal (one process per GPU), or resources.train.gpu 0 to run on the CPU"
        )
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


def eval_rows(config: dict, name: str) -> str:
    """The split rows a run or baseline is evaluated on (`adfm predict`'s role): "test", the held-out
    rows, or "all", every row of a tested dataset (under the holdout protocol, its whole test split)."""
    return evaluated_models(config)[name].get("eval_rows", "test")


def protocol_datasets(config: dict, protocol: str) -> list[str]:
    spec = config["protocols"][protocol]
    return spec["datasets"] if spec["kind"] == "holdout" else [*spec["train"], *spec["test"]]


# ---- evaluation: baselines, MMAD, tables and figures

CLIP_BACKENDS = CLIP_METHODS
# the keys a CLIP baseline's config entry may carry besides backend, protocol and clip
CLIP_OPTIONS = {
    method: (*(f.name for f in dataclasses.fields(options)), "batch_size")
    for method, options in CLIP_METHOD_OPTIONS.items()
}
SCORE_METRICS = ("accuracy_youden", "balanced_accuracy_youden")  # metrics only continuous-score predictions have


def evaluated_models(config: dict) -> dict:
    """Every evaluated model by name: the runs (Hugging Face VLM) and the baselines."""
    return {**config.get("baselines", {}), **config["runs"]}


def evaluation_problems(config: dict) -> list[str]:
    """Reference problems of baselines, api, mmad, figures and the evaluation side of tables."""
    return [
        *_baseline_problems(config),
        *[
            f"runs.{name}.eval_rows: 'all' would score a trained run on its own training images"
            for name, run in config["runs"].items()
            if run["trained"] and run.get("eval_rows") == "all"
        ],
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
            problems += [
                f"baselines.{name}.{key}: not an option of backend {spec['backend']}"
                for key in sorted(set(spec) - allowed)
            ]
    return problems


def _table_model_problems(config: dict, name: str) -> list[str]:
    """A table's rows against what their models can answer: MMAD's questions, continuous scores."""
    table, problems = config["tables"][name], []
    select = table.get("select", "dataset")
    for row in table["rows"]:
        model = evaluated_models(config).get(row.get("run"))
        if model is None:
            continue
        clip = model.get("backend") in CLIP_BACKENDS
        if row.get("metric") in SCORE_METRICS and not clip:
            problems.append(f"tables.{name}.rows: metric {row['metric']!r} needs a CLIP baseline, not {row['run']!r}")
        asks_mmad = select == "question_type" or row.get("prompt") == "mmad"
        if asks_mmad and "mmad" not in config:
            problems.append(f"tables.{name}.rows: {row['run']!r} is asked MMAD's questions: needs the mmad section")
        if asks_mmad and clip:
            problems.append(f"tables.{name}.rows: {row['run']!r} cannot answer MMAD's questions")
        if select == "question_type" and row.get("prompt") == "reasoning":
            problems.append(
                f"tables.{name}.rows: MMAD's question types are asked with MMAD's prompt, "
                f"not prompt 'reasoning' ({row['run']!r})"
            )
        missing = [c for c in table["columns"] if c not in table.get("mmad_sources", {})]
        if row.get("prompt") == "mmad" and select == "dataset" and missing:
            problems.append(
                f"tables.{name}.mmad_sources: prompt mmad rows need the MMAD source dataset of column(s) {missing}"
            )
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
    samples_training = figure["kind"] == "reward_schemes" or figure.get("rows") == "train"
    if samples_training and protocol["kind"] == "transfer" and figure["dataset"] not in protocol["train"]:
        where = f"the protocol of run {figure['run']!r}"
        return [f"figures.{name}.dataset: {figure['dataset']!r} has no training images in {where}"]
    return []

"""Config helpers used by the workflow: cross-reference checks and the settings each stage gets.

The JSON schema checks each key's type; what it cannot express (a run naming a protocol that does
not exist, a table row naming an unknown run) is checked here, with a message naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shlex
from pathlib import Path

import yaml

from adfm import paper
from adfm.io import InputError
from adfm.protocol import prompt_answer_format, prompt_template
from adfm.settings.inference import API_OPTIONS, CLIP_METHOD_OPTIONS, CLIP_METHODS


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
    from jsonschema import Draft202012Validator

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
        if not paper.exists(table["paper"]):
            problems.append(f"tables.{name}.paper: no paper table {table['paper']!r}")
            continue
        header = paper.read(table["paper"]).columns
        for key in table["keys"]:
            if key not in header:
                problems.append(f"tables.{name}.keys: {key!r} is not a column of {table['paper']}")
        for column, dataset in table["columns"].items():
            if column not in header:
                problems.append(f"tables.{name}.columns: {column!r} is not a column of {table['paper']}")
            # a typo would leave the column "not run" without a word
            if table.get("select", "dataset") == "dataset" and dataset not in datasets:
                problems.append(f"tables.{name}.columns.{column}: unknown dataset {dataset!r}")
        for row in table["rows"]:
            if row["run"] not in runs and row["run"] not in config.get("baselines", {}):
                problems.append(f"tables.{name}.rows: unknown run {row['run']!r}")
        if not any(key not in header for key in table["keys"]):
            # the table job would fail on these only after every run it needs had trained
            problems += [f"tables.{name}.{problem}" for problem in paper.row_problems(table)]
    problems += evaluation_problems(config)
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


def warm_start_enabled(config: dict) -> bool:
    return bool(config["train"].get("warm_start", {}).get("enabled", False))


def warm_start_dir(config: dict, protocol: str, reasoning: str) -> str:
    """The warm-started model folder of a protocol's training split and a reasoning mode."""
    return f"resources/warm_start/{protocol}/{reasoning}"


def base_model_dir(config: dict, run: str) -> str:
    """The model a run's LoRA adapter sits on: the warm-started model when warm start is on, else the
    fetched model (the base model of an untrained run)."""
    spec = config["runs"].get(run)
    if spec is not None and spec["trained"] and warm_start_enabled(config):
        return warm_start_dir(config, spec["protocol"], spec["reasoning"])
    return f"resources/models/{config['model']['name']}"


def launcher(config: dict, basedir: str | Path = ".") -> str:
    """The command that runs an `adfm` training stage: `python -m adfm`, or accelerate's launcher
    with train.launcher.num_processes processes when > 1 (one per GPU, or all on the CPU with
    workflow/accelerate/multi_cpu.yaml)."""
    spec = config["train"].get("launcher", {})
    processes = int(spec.get("num_processes", 1))
    if processes <= 1:
        return "python -m adfm"
    config_file = Path(spec.get("config_file", "workflow/accelerate/multi_gpu.yaml"))
    if not config_file.is_absolute():
        config_file = Path(basedir) / config_file
    return f"accelerate launch --config_file {shlex.quote(str(config_file))} --num_processes {processes} -m adfm"


def gpu_devices(config: dict) -> str | None:
    """resources.gpu_devices as the pool's --devices value; None when empty (the pool looks itself)."""
    return ",".join(str(device) for device in config["resources"]["gpu_devices"]) or None


def gpu_job_prefix(config: dict, gpus: int) -> str:
    """Shell prefix of a rule that may run on GPUs: the job takes `gpus` cards of its own from the
    local pool (or those SLURM gave it) before its command starts; see adfm.gpu_pool."""
    spec = config["resources"]
    words = [f"python -m adfm.gpu_pool --gpus {int(gpus)}"]
    if devices := gpu_devices(config):
        words.append(f"--devices {devices}")
    if spec.get("gpu_lock_dir"):
        words.append(f"--lock-dir {shlex.quote(spec['gpu_lock_dir'])}")
    return " ".join(words) + " --"


def evaluated_datasets(config: dict, table: str) -> list[str]:
    """The datasets a table's columns need (each a configured dataset: check_references)."""
    return list(config["tables"][table]["columns"].values())


def datasets_tested_by(config: dict, run: str) -> list[str]:
    """Datasets a run's (or a baseline's) protocol tests on."""
    protocol = config["protocols"][evaluated_models(config)[run]["protocol"]]
    return protocol["datasets"] if protocol["kind"] == "holdout" else protocol["test"]


def eval_rows(config: dict, name: str) -> str:
    """The split rows a run or baseline is evaluated on (`adfm predict`'s role): "test", the held-out
    rows, or "all", every row of a tested dataset (under the holdout protocol, its whole test split)."""
    return evaluated_models(config)[name].get("eval_rows", "test")


def protocol_datasets(config: dict, protocol: str) -> list[str]:
    spec = config["protocols"][protocol]
    return spec["datasets"] if spec["kind"] == "holdout" else [*spec["train"], *spec["test"]]


# ---- evaluation: baselines, MMAD, tables and figures (adfm.inference, adfm.evaluation)

CLIP_BACKENDS = CLIP_METHODS
# the keys a CLIP baseline's config entry may carry besides backend, protocol and clip
CLIP_OPTIONS = {method: (*(f.name for f in dataclasses.fields(options)), "batch_size")
                for method, options in CLIP_METHOD_OPTIONS.items()}
SCORE_METRICS = ("accuracy_youden", "balanced_accuracy_youden")  # metrics only continuous-score predictions have


def evaluated_models(config: dict) -> dict:
    """Every evaluated model by name: the runs (Hugging Face VLM) and the baselines."""
    return {**config.get("baselines", {}), **config["runs"]}


def baselines(config: dict, *backends: str) -> list[str]:
    return [name for name, spec in config.get("baselines", {}).items() if not backends or spec["backend"] in backends]


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
    problems = []
    runs, protocols = config["runs"], config["protocols"]
    for name, spec in config.get("baselines", {}).items():
        if name in runs:
            problems.append(f"baselines.{name}: the name is also a run")
        if spec["protocol"] not in protocols:
            problems.append(f"baselines.{name}.protocol: unknown protocol {spec['protocol']!r}")
        if spec["backend"] == "api" and "api" not in config:
            problems.append(f"baselines.{name}: an API baseline needs the api section")
        if spec["backend"] in CLIP_BACKENDS and "clip" not in spec:
            problems.append(f"baselines.{name}.clip: required for backend {spec['backend']}")
        if spec["backend"] in CLIP_BACKENDS:
            allowed = set(CLIP_OPTIONS[spec["backend"]]) | {"backend", "protocol", "clip"}
            for key in sorted(set(spec) - allowed):
                problems.append(f"baselines.{name}.{key}: not an option of backend {spec['backend']}")
    for name, run in runs.items():
        if run["trained"] and run.get("eval_rows") == "all":
            problems.append(f"runs.{name}.eval_rows: 'all' would score a trained run on its own training images")
    models = evaluated_models(config)
    for name, table in config["tables"].items():
        select = table.get("select", "dataset")
        for row in table["rows"]:
            model = models.get(row["run"])
            if model is None:
                continue
            if row.get("metric") in SCORE_METRICS and config.get("baselines", {}).get(row["run"], {}).get(
                    "backend") not in CLIP_BACKENDS:
                problems.append(f"tables.{name}.rows: metric {row['metric']!r} needs a CLIP baseline, "
                                f"not {row['run']!r}")
            if select == "question_type" and "mmad" not in config:
                problems.append(f"tables.{name}: select question_type needs the mmad section")
            if row.get("prompt") == "reasoning" and select == "question_type":
                problems.append(f"tables.{name}.rows: MMAD's question types are asked with MMAD's prompt, "
                                f"not prompt 'reasoning' ({row['run']!r})")
            if row.get("prompt") == "mmad" and select == "dataset":
                if "mmad" not in config:
                    problems.append(f"tables.{name}.rows: prompt mmad needs the mmad section")
                if model.get("backend") in CLIP_BACKENDS:
                    problems.append(f"tables.{name}.rows: {row['run']!r} cannot answer MMAD's questions")
                missing = [c for c in table["columns"] if c not in table.get("mmad_sources", {})]
                if missing:
                    problems.append(f"tables.{name}.mmad_sources: prompt mmad rows need the MMAD source dataset "
                                    f"of column(s) {missing}")
            if select == "question_type" and config.get("baselines", {}).get(row["run"], {}).get(
                    "backend") in CLIP_BACKENDS:
                problems.append(f"tables.{name}.rows: {row['run']!r} cannot answer MMAD's questions")
    if "mmad" in config and config["mmad"]["dataset"] not in config["datasets"]:
        problems.append(f"mmad.dataset: unknown dataset {config['mmad']['dataset']!r}")
    if "mmad" in config and config["mmad"].get("split_filter") not in (None, *protocols):
        problems.append(f"mmad.split_filter: unknown protocol {config['mmad']['split_filter']!r}")
    for name, figure in config.get("figures", {}).items():
        if figure["run"] not in runs:
            problems.append(f"figures.{name}.run: unknown run {figure['run']!r} (figures use Hugging Face runs)")
            continue
        protocol = protocols.get(runs[figure["run"]]["protocol"])
        if protocol is None:
            continue
        where = protocol_datasets(config, runs[figure["run"]]["protocol"])
        if figure["dataset"] not in where:
            problems.append(f"figures.{name}.dataset: {figure['dataset']!r} is not in the protocol of run "
                            f"{figure['run']!r}")
        elif ((figure["kind"] == "reward_schemes" or figure.get("rows") == "train")
              and protocol["kind"] == "transfer" and figure["dataset"] not in protocol["train"]):
            problems.append(f"figures.{name}.dataset: {figure['dataset']!r} has no training images in the protocol "
                            f"of run {figure['run']!r}")
    return problems


def table_rows(config: dict, table: str, environ=None) -> list[dict]:
    """A table's rows, each with `skip` (the reason) when its model cannot run here, and, for its
    notes, the split rows (`eval_rows`) and the prompt mode (`reasoning`; none for a CLIP scorer)
    of its run."""
    rows = []
    for row in config["tables"][table]["rows"]:
        model = evaluated_models(config)[row["run"]]
        described = {"eval_rows": eval_rows(config, row["run"]),
                     "reasoning": None if model.get("backend") in CLIP_BACKENDS else model.get("reasoning", "multi_stage")}
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


def unused_models(config: dict) -> list[str]:
    """Runs and baselines that no table row or figure uses: the default target never runs them."""
    used = {row["run"] for table in config["tables"].values() for row in table["rows"]}
    used |= {figure["run"] for figure in config.get("figures", {}).values()}
    return [name for name in evaluated_models(config) if name not in used]


def unused_note(config: dict) -> str | None:
    """The parse-time note naming each run or baseline that `snakemake` (the default target) never runs."""
    unused = unused_models(config)
    if not unused:
        return None
    kinds = ["run" if name in config["runs"] else "baseline" for name in unused]
    named = ", ".join(f"{kind} {name!r}" for kind, name in zip(kinds, unused))
    return (f"Note: no table row or figure uses {named}, so `snakemake` never runs it: add a "
            "tables.<table>.rows entry for it (a row the paper lacks is added), or ask for its outputs "
            "by path (results/metrics/<run>/<dataset>.csv).")


def table_inputs(config: dict, table: str, environ=None) -> dict[str, list[str]]:
    """The metrics files a table needs, per row that can run: its run's metrics on the table's columns
    (`metrics`), or its answers to MMAD's questions (`mmad_metrics`: a question-type table, or a row
    asked with MMAD's prompt)."""
    spec = config["tables"][table]
    paths: dict[str, list[str]] = {"metrics": [], "mmad_metrics": []}
    for row in table_rows(config, table, environ):
        if row.get("skip"):
            continue
        if spec.get("select", "dataset") == "question_type" or row.get("prompt") == "mmad":
            paths["mmad_metrics"].append(f"results/mmad/metrics/{row['run']}.csv")
            continue
        wanted = set(evaluated_datasets(config, table))
        paths["metrics"] += [f"results/metrics/{row['run']}/{d}.csv" for d in datasets_tested_by(config, row["run"])
                             if d in wanted]
    return {kind: list(dict.fromkeys(found)) for kind, found in paths.items()}


def mmad_split_filter(config: dict) -> dict:
    """The split the MMAD question table marks leakage against (`mmad.split_filter`), as the inputs
    of the `mmad_questions` rule: {} when the filter is off, else {"split": path}."""
    protocol = config["mmad"].get("split_filter")
    return {"split": f"resources/splits/{protocol}.csv"} if protocol else {}


def mmad_question_args(config: dict) -> str:
    """`adfm mmad-questions` options of the leakage filter: the split's datasets and their layouts."""
    protocol = config["mmad"].get("split_filter")
    if not protocol:
        return ""
    layouts = {d: config["datasets"][d]["layout"] for d in protocol_datasets(config, protocol) if d in config["datasets"]}
    return f"--split resources/splits/{protocol}.csv --layouts {shlex.quote(settings_json(layouts))}"


def mmad_filtered(config: dict, name: str) -> bool:
    """Whether a model is held to MMAD's leakage filter: the runs are, an API baseline is not (the
    paper's numbers for it are MMAD's, over MMAD's whole question set)."""
    return name in config["runs"]


    return settings_json(settings)

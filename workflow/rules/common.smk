import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from adfm import config as adfm_config
from adfm import console, launch, targets, vlms
from adfm.data.fetch import local_path
from adfm.evaluation.provenance import git_commit
from adfm.gpu_pool import pool_devices
from adfm.protocol import REASONING_MODES
from adfm.settings import data as data_settings
from adfm.settings import evaluation as evaluation_settings
from adfm.settings import inference as inference_settings
from adfm.settings import model as model_settings

# Paths into the checkout relative to the working directory ("." when run from the checkout's root):
# Snakemake records each job's input paths, and absolute ones would rerun every job of a moved or
# remounted checkout. Run from elsewhere (`-s <checkout>/Snakefile`), they lead back to the checkout.
CHECKOUT = Path(os.path.relpath(Path(workflow.basedir).resolve(), Path.cwd().resolve()))

# One message listing every problem, each naming its key; then Snakemake's own validation, which
# also fills in the schema's defaults.
SCHEMA = CHECKOUT / "workflow/schemas/config.schema.yaml"
_problems = adfm_config.config_problems(config, SCHEMA)
if _problems:
    raise WorkflowError("invalid config:\n  " + "\n  ".join(_problems))
validate(config, "../schemas/config.schema.yaml")
# A run or baseline that no table or figure uses is never run by the default target: say so (once,
# from the main process: cluster jobs re-read the Snakefile too).
_unused = targets.unused_note(config) if workflow.is_main_process else None
if _unused:
    print(_unused, file=sys.stderr)

# Stage modules as inputs: editing one reruns the jobs that use it and what follows, nothing before.
CODE = CHECKOUT / "src" / "adfm"
GIT_COMMIT = git_commit(Path(workflow.basedir))

# Jobs run `python -m adfm` from this checkout, also inside the --use-conda environments (which hold
# only the pinned third-party packages), so an edit to src/adfm needs no reinstall anywhere. Set,
# not prepended: a PYTHONPATH from the caller's shell must not shadow the checkout's package.
os.environ.update(PYTHONPATH=str(CODE.parent.resolve()))


# Every path that more than one rule or input function names, spelt once; adfm.targets answers
# with names (models, datasets, protocols) and the functions below put them into these patterns.
DATASET_DIR = "resources/datasets/{dataset}"
SOURCE_RECORD = "resources/sources/{dataset}.yaml"
MODEL_DIR = "resources/models/{vlm}"
WARM_START = "resources/warm_start/{protocol}/{reasoning}"
MANIFEST = "resources/manifests/{dataset}.csv"
BOXES = "resources/boxes/{dataset}.csv"
SPLIT = "resources/splits/{protocol}.csv"
MMAD_QUESTIONS = "resources/splits/mmad_questions.csv"
ADAPTER = "resources/adapters/{run}"
PREDICTIONS = "results/predictions/{model}/{dataset}.jsonl"
METRICS = "results/metrics/{model}/{dataset}.csv"
MMAD_PREDICTIONS = "results/mmad/predictions/{model}.jsonl"
MMAD_METRICS = "results/mmad/metrics/{model}.csv"
SAMPLES = "results/samples/{figure}.jsonl"
TABLE = "results/{table}.csv"
FIGURE = "results/{figure}.png"
TRAINING_CURVES = "results/training/{table}.png"
SUMMARY = "results/summary.png"
PROVENANCE = "results/provenance.yaml"


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    run="|".join(config["runs"]),
    # a run or a baseline: every model a table can show
    model="|".join(adfm_config.evaluated_models(config)),
    protocol="|".join(config["protocols"]),
    reasoning="|".join(REASONING_MODES),
    # a model folder: the base model or an entry of models
    vlm="|".join(map(re.escape, vlms.entries(config))),


def code(*modules):
    return sorted(str(path) for module in modules for path in CODE.glob(module))


def res(family, key):
    return config["resources"][family][key]


def family_resources(family, **overrides):
    """Resources of a rule family from config (SLURM partition and account for the slurm profile)."""
    spec = config["resources"][family]
    return {
        "mem_mb": spec["mem_mb"],
        "runtime": spec["runtime"],
        "gpu": spec["gpu"],
        "slurm_partition": spec["slurm_partition"],
        "slurm_account": config["resources"]["slurm_account"],
        **overrides,
    }


# How each kind of model predicts a test split: its `adfm` subcommand, conda environment and resource
# family, and the modules whose edits rerun its predictions. Each model's `predict_<model>` rule
# (evaluate.smk) takes its own.
BACKENDS = {
    "hf": {
        "stage": "predict",
        "env": "train",
        "family": "predict",
        "code": code(
            "inference/hf.py",
            "inference/records.py",
            "inference/generate.py",
            "inference/backend.py",
            "model/load.py",
            "protocol.py",
            "boxes.py",
            "settings/inference.py",
        ),
    },
    "clip": {
        "stage": "predict-clip",
        "env": "clip",
        "family": "predict",
        "code": code(
            "inference/clip.py",
            "inference/clip_model.py",
            "inference/winclip.py",
            "inference/anomalyclip.py",
            "inference/records.py",
            "inference/clip_configs/*.json",
        ),
    },
    # the key stays in the environment variable named in the settings; it is never on a command line
    "api": {
        "stage": "predict-api",
        "env": "data",
        "family": "default",
        "code": code("inference/api.py", "inference/backend.py", "inference/records.py", "protocol.py", "boxes.py"),
    },
}


def backend_of(name):
    """The BACKENDS entry of a model: WinCLIP and AnomalyCLIP share one subcommand."""
    kind = targets.backend(config, name)
    return BACKENDS["clip" if kind in adfm_config.CLIP_BACKENDS else kind]


def model_inputs(name):
    """The model folder a Hugging Face run answers with (the warm-started model of its protocol and
    reasoning when train.warm_start.enabled, else the fetched model) and its adapter when trained;
    nothing for a baseline."""
    if name not in config["runs"]:
        return {}
    run = config["runs"][name]
    if targets.warm_started(config, name):
        model = WARM_START.format(protocol=run["protocol"], reasoning=run["reasoning"])
    else:
        model = MODEL_DIR.format(vlm=vlms.folder_of(config, name))
    return {"model": model, **({"adapter": ADAPTER.format(run=name)} if run["trained"] else {})}


def revision_arg(entry):
    """`--revision` of a model entry that pins one; none: the Hub's default branch."""
    return f"--revision {shlex.quote(entry['revision'])}" if entry.get("revision") else ""


def adapter_arg(wildcards, input):
    """`--adapter` of a job whose inputs hold one (model_inputs)."""
    return f"--adapter {input.adapter}" if "adapter" in input.keys() else ""


def model_args(wildcards, input):
    """`--model` and `--adapter` of a Hugging Face run's job; nothing for a baseline."""
    return f"--model {input.model} {adapter_arg(wildcards, input)}".rstrip() if "model" in input.keys() else ""


# `python -m adfm`, or `accelerate launch ... -m adfm` with train.launcher.num_processes > 1
LAUNCHER = launch.launcher(config, CHECKOUT)


def gpu_job(wildcards, resources):
    """`params.gpu_job`, put before the commands that may use GPUs. It gives the job cards of its
    own from the local pool, or those SLURM gave it."""
    return launch.gpu_job_prefix(config, resources.gpu)


def dataset_inputs(wildcards):
    """Local archive (and checksum file) of a dataset, so rules that make them run first.

    Only paths that exist or that a job here makes (the demo archives): Snakemake keeps an existing
    dataset folder whose download has a missing input, so a url changed to a path that does not
    exist would go unnoticed. Left out, the download reruns (its url param changed) and says so."""
    spec = config["datasets"][wildcards.dataset]
    made = {made for archive in config.get("demo_archives", {}) for made in (archive, f"{archive}.sha256")}
    inputs = {}
    path = local_path(spec["url"]) if spec["url"] else None
    if path is not None and (path.exists() or str(path) in made):
        inputs["archive"] = str(path)
    if spec.get("checksum_file") and (Path(spec["checksum_file"]).exists() or spec["checksum_file"] in made):
        inputs["checksum"] = spec["checksum_file"]
    return inputs


def source_args(wildcards):
    """--url for a dataset to fetch, or --manual with the instructions for one still to download."""
    spec = config["datasets"][wildcards.dataset]
    if spec["url"]:
        return f"--url {shlex.quote(spec['url'])}"
    return f"--manual {shlex.quote(spec.get('manual', ''))}"


def checksum_arg(wildcards):
    spec = config["datasets"][wildcards.dataset]
    if spec.get("checksum_file"):
        return f"--checksum-file {spec['checksum_file']}"
    return f"--sha256 {spec['sha256']}" if spec.get("sha256") else ""


def protocol_inputs(wildcards):
    datasets = adfm_config.protocol_datasets(config, wildcards.protocol)
    return {"manifests": expand(MANIFEST, dataset=datasets), "boxes": expand(BOXES, dataset=datasets)}


def mmad_split_filter(wildcards):
    """The split MMAD's question table marks leakage against (`mmad.split_filter`): {} when off."""
    protocol = targets.mmad_filter_protocol(config)
    return {"split": SPLIT.format(protocol=protocol)} if protocol else {}


def mmad_question_args(wildcards, input):
    """`adfm mmad-questions` options of the leakage filter: the split and its datasets' layouts."""
    if "split" not in input.keys():
        return ""
    layouts = adfm_config.settings_json(targets.mmad_filter_layouts(config))
    return f"--split {input.split} --layouts {shlex.quote(layouts)}"


def split_of(name):
    """The split of a run's or a baseline's protocol."""
    return SPLIT.format(protocol=adfm_config.evaluated_models(config)[name]["protocol"])


def predict_inputs(name):
    """The split a model is tested on, the model (and adapter) of a Hugging Face run, the code of its backend."""
    return {"split": split_of(name), **model_inputs(name), "code": backend_of(name)["code"]}


def prediction_settings(name):
    """The `--settings` of the model's backend."""
    kind = targets.backend(config, name)
    if kind == "hf":
        return inference_settings.PredictSettings.from_config(config, name).to_json()
    if kind == "api":
        return inference_settings.ApiSettings.from_config(config, name).to_json()
    return inference_settings.ClipSettings.from_config(config, name).to_json()


def model_files(pattern, name):
    """A model's files of a per-dataset pattern (PREDICTIONS, METRICS), one per dataset its protocol
    tests, in the order of `--dataset`: its prediction and scoring jobs write them all."""
    return [pattern.format(model=name, dataset=dataset) for dataset in targets.datasets_tested_by(config, name)]


def job_name(stage, name):
    """A model's job name for a stage, `predict_gpt_4_1` for gpt-4.1 (names of rules are words)."""
    word = re.sub(r"\W", "_", name)
    return f"{stage}_{word}"


def table_metrics(wildcards):
    """Metrics (`metrics`, `mmad_metrics`) of the table's rows that can run here (an API model
    without its key, say, cannot)."""
    needs = targets.table_needs(config, wildcards.table)
    return {
        "metrics": [METRICS.format(model=model, dataset=dataset) for model, dataset in needs["metrics"]],
        "mmad_metrics": [MMAD_METRICS.format(model=model) for model in needs["mmad_metrics"]],
    }


def get_final_output():
    """Every table, the provenance record and every figure: what `snakemake` makes by default."""
    return [
        *expand(TABLE, table=config["tables"]),
        PROVENANCE,
        *figure_targets(),
        *expand(TRAINING_CURVES, table=[t for t in config["tables"] if targets.trained_rows(config, t)]),
        SUMMARY,
    ]


# ---- evaluation: MMAD (baselines.smk), figures (figures.smk)


def prediction_resources(name, family=None):
    """A model's prediction resources: those of a resource family (by default its backend's), under
    its model entry's (a 34B model needs several GPUs); a chat model behind an API neither waits for
    nor holds a GPU."""
    family = family or backend_of(name)["family"]
    resources = {
        "threads": res(family, "threads"),
        **family_resources(family),
        **vlms.prediction_resources(config, name),
    }
    return {**resources, "gpu": 0} if targets.backend(config, name) == "api" else resources


def mmad_resource(key):
    """One resource of a model's MMAD job, the predict family's (a rule's resources are per key)."""
    return lambda wildcards: prediction_resources(wildcards.model, "predict")[key]


def figure_targets():
    return expand(FIGURE, figure=config.get("figures", {}))


def sample_inputs(wildcards):
    run = config["figures"][wildcards.figure]["run"]
    return {"split": split_of(run), **model_inputs(run), "code": BACKENDS["hf"]["code"]}


def figure_inputs(wildcards):
    spec = config["figures"][wildcards.figure]
    if spec["kind"] == "cases":
        predictions = PREDICTIONS.format(model=spec["run"], dataset=spec["dataset"])
    else:
        predictions = SAMPLES.format(figure=wildcards.figure)
    code_used = code(
        "evaluation/figures.py",
        "evaluation/figure_*.py",
        "evaluation/drawing.py",
        "settings/evaluation.py",
        "rewards.py",
        "reward_terms.py",
        "boxes.py",
        "protocol.py",
        "paper/*",
    )
    return {"predictions": predictions, "code": code_used}


def cap_local_gpu_jobs():
    """Locally, no more GPU jobs at once than the pool has cards (a user's --resources gpu=N wins).
    The pool alone keeps jobs off each other's cards; the cap keeps waiting jobs from holding
    Snakemake's job slots. Cluster runs (--jobs, SLURM) are left to the scheduler."""
    local = workflow.is_main_process and workflow.resource_settings.nodes is None
    if not local or "gpu" in workflow.global_resources:
        return
    devices = pool_devices(launch.gpu_devices(config), dict(os.environ))
    cap = max(len(devices), 1)
    workflow.register_resource("gpu", cap)
    found = ",".join(devices) or "none found"
    print(f"GPU pool: {found}; at most {cap} GPU job(s) at once", file=sys.stderr)


cap_local_gpu_jobs()


def note_manual_datasets():
    """Say up front, also in a dry run, which manual datasets are missing and what they block (once,
    from the main process: cluster jobs re-read the Snakefile too)."""
    message = console.manual_data_message(config, DATASET_DIR) if workflow.is_main_process else None
    if message:
        print(message, file=sys.stderr)


note_manual_datasets()


onerror:
    # The tail of each failed job's log, not the whole of it (show-failed-logs prints every line of
    # a training log); `log` is the list of this run's Snakemake logs, which name the failed jobs' logs.
    message = console.failed_logs_message(log)
    if message:
        print(message, file=sys.stderr)

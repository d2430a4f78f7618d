import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from adfm import config as adfm_config
from adfm import console
from adfm.data.download import local_path
from adfm.evaluation.provenance import git_commit
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
_unused = adfm_config.unused_note(config) if workflow.is_main_process else None
if _unused:
    print(_unused, file=sys.stderr)

# Stage modules as inputs: editing one reruns the jobs that use it and what follows, nothing before.
CODE = CHECKOUT / "src" / "adfm"
MODEL_DIR = f"resources/models/{config['model']['name']}"
GIT_COMMIT = git_commit(Path(workflow.basedir))

# Jobs run `python -m adfm` from this checkout, also inside the --use-conda environments (which hold
# only the pinned third-party packages), so an edit to src/adfm needs no reinstall anywhere. Set,
# not prepended: a PYTHONPATH from the caller's shell must not shadow the checkout's package.
os.environ.update(PYTHONPATH=str(CODE.parent.resolve()))


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    run="|".join(config["runs"]),
    protocol="|".join(config["protocols"]),
    reasoning="multi_stage|one_stage",


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


def trained_runs():
    return [name for name, run in config["runs"].items() if run["trained"]]


def run_model(run):
    """The model folder a run's adapter sits on: the warm-started model of its protocol and reasoning
    when train.warm_start.enabled, else the fetched model (always, for an untrained run)."""
    return adfm_config.base_model_dir(config, run)


# `python -m adfm`, or `accelerate launch ... -m adfm` with train.launcher.num_processes > 1
LAUNCHER = adfm_config.launcher(config, CHECKOUT)
def gpu_job(wildcards, resources):
    """`params.gpu_job`, put before the commands that may use GPUs. It gives the job cards of its
    own from the local pool, or those SLURM gave it."""
    return adfm_config.gpu_job_prefix(config, resources.gpu)


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
    return {
        "manifests": expand("resources/manifests/{dataset}.csv", dataset=datasets),
        "boxes": expand("resources/boxes/{dataset}.csv", dataset=datasets),
    }


def predict_inputs(wildcards):
    run = config["runs"][wildcards.run]
    inputs = {
        "split": f"resources/splits/{run['protocol']}.csv",
        "model": run_model(wildcards.run),
        "code": code("inference/hf.py", "inference/records.py", "inference/generate.py", "model/load.py", "protocol.py",
                     "boxes.py"),
    }
    if run["trained"]:
        inputs["adapter"] = f"resources/adapters/{wildcards.run}"
    return inputs


def table_metrics(wildcards):
    """Metrics (`metrics`, `mmad_metrics`) of the table's rows that can run here (an API model
    without its key, say, cannot)."""
    return adfm_config.table_inputs(config, wildcards.table)


def get_final_output():
    return [*expand("results/{table}.csv", table=config["tables"]), "results/provenance.yaml"]


# ---- evaluation: baselines (baselines.smk), MMAD, figures (figures.smk)


def baseline_split(wildcards):
    return f"resources/splits/{config['baselines'][wildcards.baseline]['protocol']}.csv"


def mmad_model_inputs(wildcards):
    """The model (and adapter) a Hugging Face run answers MMAD with; nothing for an API baseline."""
    if wildcards.name in config.get("baselines", {}):
        return {}
    inputs = {"model": run_model(wildcards.name)}
    if config["runs"][wildcards.name]["trained"]:
        inputs["adapter"] = f"resources/adapters/{wildcards.name}"
    return inputs


def mmad_gpus(wildcards):
    """A chat model behind an API needs no GPU: its MMAD job neither waits for nor holds one."""
    return 0 if wildcards.name in config.get("baselines", {}) else res("predict", "gpu")


def mmad_model_args(wildcards, input):
    args = f"--model {input.model}" if "model" in input.keys() else ""
    return args + (f" --adapter {input.adapter}" if "adapter" in input.keys() else "")


def figure_targets():
    return expand("results/{figure}.png", figure=config.get("figures", {}))


def sample_inputs(wildcards):
    run = config["figures"][wildcards.figure]["run"]
    inputs = {
        "split": f"resources/splits/{config['runs'][run]['protocol']}.csv",
        "model": run_model(run),
        "code": code("inference/hf.py", "inference/records.py", "inference/generate.py", "model/load.py", "protocol.py",
                     "boxes.py"),
    }
    if config["runs"][run]["trained"]:
        inputs["adapter"] = f"resources/adapters/{run}"
    return inputs


def figure_inputs(wildcards):
    spec = config["figures"][wildcards.figure]
    if spec["kind"] == "cases":
        predictions = f"results/predictions/{spec['run']}/{spec['dataset']}.jsonl"
    else:
        predictions = f"results/samples/{wildcards.figure}.jsonl"
    code_used = code("evaluation/figures.py", "evaluation/figure_*.py", "evaluation/drawing.py",
                     "settings/evaluation.py", "rewards.py", "boxes.py", "protocol.py", "paper/*")
    return {"predictions": predictions, "code": code_used}


def cap_local_gpu_jobs():
    """Locally, no more GPU jobs at once than the pool has cards (a user's --resources gpu=N wins).
    The pool alone keeps jobs off each other's cards; the cap keeps waiting jobs from holding
    Snakemake's job slots. Cluster runs (--jobs, SLURM) are left to the scheduler."""
    local = workflow.is_main_process and workflow.resource_settings.nodes is None
    if not local or "gpu" in workflow.global_resources:
        return
    from adfm.gpu_pool import pool_devices

    devices = pool_devices(adfm_config.gpu_devices(config), dict(os.environ))
    cap = max(len(devices), 1)
    workflow.register_resource("gpu", cap)
    found = ",".join(devices) or "none found"
    print(f"GPU pool: {found}; at most {cap} GPU job(s) at once", file=sys.stderr)


cap_local_gpu_jobs()


def note_manual_datasets():
    """Say up front, also in a dry run, which manual datasets are missing and what they block (once,
    from the main process: cluster jobs re-read the Snakefile too)."""
    message = console.manual_data_message(config) if workflow.is_main_process else None
    if message:
        print(message, file=sys.stderr)


note_manual_datasets()


onerror:
    # The tail of each failed job's log, not the whole of it (show-failed-logs prints every line of
    # a training log); `log` is the list of this run's Snakemake logs, which name the failed jobs' logs.
    message = console.failed_logs_message(log)
    if message:
        print(message, file=sys.stderr)

"""The demo DAG through SLURM with the slurm profile (`make test-cluster`; README, "Cluster test").

One run of the demo up to results/table4.csv with `--profile workflow/profiles/slurm`, in a copy
of the checkout, with an overlay config sending training and prediction to the `gpu` partition with
one GPU each and every other job to `cpu`. While it runs, a training job is cancelled with scancel
part-way through; the profile's `retries: 1` must resubmit it. Then, from SLURM's own records
(`scontrol show job`: the cluster keeps finished jobs for MinJobAge), the executor plugin's logs and
Snakemake's output: every job but those of the workflow's local rules went through sbatch, each
with its rule family's partition, memory, time limit, CPUs and GPUs; each GPU job ran on the GPU
SLURM gave it; and table4.csv is identical to a local run's.
"""

import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import DEMO_CONFIGS, REPO, RUN_SETUP, copy_demo_inputs, run_config, snakemake, snakemake_command

from adfm.gpu_pool import log_records

TARGET = "results/table4.csv"
CLUSTER_CONFIG = "slurm_test.yaml"  # written into the run's folder
OVERLAY = {
    "resources": {
        "default": {"slurm_partition": "cpu"},
        "train": {"gpu": 1, "slurm_partition": "gpu"},
        "predict": {"gpu": 1, "slurm_partition": "gpu"},
    }
}
# rule -> its resource family (`family_resources(...)` in workflow/rules/*.smk); other rules: default
GPU_RULES = {"train": "train", "warm_start": "train"}


def gpu_family(rule: str) -> str | None:
    """The resource family of a GPU rule: GPU_RULES, and each run's `predict_<run>` (evaluate.smk)."""
    return GPU_RULES.get(rule) or ("predict" if rule.startswith("predict_") and rule != "predict_mmad" else None)


SLURM_OPTIONS = [
    "--profile",
    "workflow/profiles/slurm",
    "--slurm-no-account",  # a one-node cluster has no accounts
    "--slurm-status-command",
    "squeue",  # no accounting database for sacct to ask
    "--slurm-init-seconds-before-status-checks",
    "5",  # the default waits 40 s before the first look
    "--seconds-between-status-checks",
    "5",
    "--slurm-keep-successful-logs",  # read by the tests below
]
CANCEL_AT_STEP = 5  # a training job is cancelled once its log shows this GRPO step
CANCEL_FALLBACK_S = 20  # or this long after it started running, should its log not show steps
RUN_TIMEOUT_S = 30 * 60
STEP = re.compile(r"adfm\.train: step (\d+)/(\d+)")


@dataclass
class SlurmRun:
    workdir: Path
    output: str  # Snakemake's stdout and stderr
    jobs: dict[str, dict]  # SLURM job id -> `scontrol show job` fields, for every job of the run
    gpu_index: dict[str, str]  # SLURM job id -> GPU index SLURM allocated, seen while it ran
    cancelled: str  # SLURM job id of the training job cancelled part-way
    cancelled_step: int | None  # the GRPO step its log showed when it was cancelled
    wall_s: float
    local: Path  # a copy for the local run, made with the run's (the checkout may change)


def slurm_ready() -> None:
    """Fail with what to do when there is no cluster to submit to (never skip: CI must run this)."""
    if shutil.which("sinfo") is None:
        pytest.fail(
            "SLURM is not installed here (no sinfo): run `make test-cluster`, which starts a one-node "
            "cluster with workflow/cluster/slurm-single-node.sh (root, Debian), or run on a SLURM login node"
        )
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%R"], check=False, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("SLURM is not reachable: `sinfo` did not answer within 60 s")
    if result.returncode != 0:
        pytest.fail(
            f"SLURM is not reachable: `sinfo` failed ({result.stderr.strip()}); start a cluster with "
            "`workflow/cluster/slurm-single-node.sh start` (root) or run `make test-cluster`"
        )
    missing = {"cpu", "gpu"} - set(result.stdout.split())
    if missing:
        pytest.fail(
            f"the cluster has no partition {', '.join(sorted(missing))}: this test sends GPU jobs to `gpu` "
            "and the others to `cpu`, as workflow/cluster/slurm-single-node.sh sets up"
        )
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail("the SLURM executor plugin is not installed: pip install -e '.[cluster]' (make test-cluster does)")


def slurm_jobs(workdir: Path) -> dict[str, dict]:
    """`scontrol -d show job` of the jobs submitted from `workdir` (the plugin sets it as their -D)."""
    result = subprocess.run(
        ["scontrol", "-d", "-o", "show", "job"], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    jobs = {}
    for line in result.stdout.splitlines():
        fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
        if fields.get("WorkDir") == str(workdir):
            jobs[fields["JobId"]] = fields
    return jobs


def allocated_gpu(fields: dict) -> str | None:
    """The GPU index a running job holds (`GRES=gpu:1(IDX:0)`; SLURM drops it when the job ends)."""
    found = re.search(r"gpu(?::[^:(]+)?:\d+\(IDX:([\d,-]+)\)", fields.get("GRES", ""))
    return found.group(1) if found else None


def training_step(workdir: Path, comment: str) -> int | None:
    log = workdir / "logs/train" / f"{comment.removeprefix('rule_train_wildcards_')}.log"
    steps = STEP.findall(log.read_text(errors="replace")) if log.is_file() else []
    return int(steps[-1][0]) if steps else None


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory) -> SlurmRun:
    slurm_ready()
    workdir = copy_demo_inputs(tmp_path_factory.mktemp("slurm")).resolve()
    local = copy_demo_inputs(tmp_path_factory.mktemp("local"))
    (workdir / CLUSTER_CONFIG).write_text(yaml.safe_dump(OVERLAY))
    RUN_SETUP[workdir] = ([*DEMO_CONFIGS, CLUSTER_CONFIG], {})
    command, env = snakemake_command(workdir, *SLURM_OPTIONS, TARGET)
    gpu_index, running_since = {}, {}
    cancelled = cancelled_step = None
    started = time.monotonic()
    with open(workdir / "snakemake.log", "w") as log:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            while process.poll() is None:
                assert time.monotonic() - started < RUN_TIMEOUT_S, f"the SLURM run took over {RUN_TIMEOUT_S} s"
                for job_id, fields in sorted(slurm_jobs(workdir).items(), key=lambda item: int(item[0])):
                    if fields["JobState"] != "RUNNING":
                        continue
                    running_since.setdefault(job_id, time.monotonic())
                    if (index := allocated_gpu(fields)) is not None:
                        gpu_index.setdefault(job_id, index)
                    comment = fields.get("Comment", "")
                    if cancelled is None and comment.startswith("rule_train_wildcards_"):
                        step = training_step(workdir, comment)
                        if (step is not None and step >= CANCEL_AT_STEP) or time.monotonic() - running_since[
                            job_id
                        ] > CANCEL_FALLBACK_S:
                            subprocess.run(["scancel", job_id], check=True, timeout=60)
                            cancelled, cancelled_step = job_id, step
                time.sleep(1)
        finally:
            if process.poll() is None:  # Snakemake cancels its SLURM jobs on SIGTERM
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=120)
    wall_s = time.monotonic() - started
    output = (workdir / "snakemake.log").read_text()
    assert process.returncode == 0, output[-8000:]
    assert cancelled is not None, "no training job was seen running, so none was cancelled"
    return SlurmRun(workdir, output, slurm_jobs(workdir), gpu_index, cancelled, cancelled_step, wall_s, local)


def main_output(output: str) -> str:
    """Snakemake's own lines, without the failed jobs' logs it shows (show-failed-logs), in which the
    job's inner Snakemake prints a job block of its own."""
    return re.sub(r"^Logfile .*?:\n={80}\n.*?^={80}$", "", output, flags=re.MULTILINE | re.DOTALL)


def job_stats(output: str) -> dict[str, int]:
    """Jobs per rule from Snakemake's first "Job stats" table (the plan), with "total"."""
    table = output.split("Job stats:", 1)[1]
    stats = {}
    for line in table.splitlines()[3:]:
        words = line.split()
        if len(words) != 2 or not words[1].isdigit():
            break
        stats[words[0]] = int(words[1])
    return stats


def submissions(output: str) -> list[tuple[str, str]]:
    """(Snakemake job id, SLURM job id) of every sbatch, in order."""
    return re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", output)


def job_blocks(output: str) -> dict[str, dict]:
    """Snakemake job id -> its rule, whether it ran in Snakemake's own process ("localrule") and the
    fields Snakemake printed for it (log, wildcards, ...)."""
    blocks = {}
    for block in re.finditer(r"^(local)?rule (\w+):\n((?:    .*\n)+)", main_output(output), re.MULTILINE):
        fields = dict(re.findall(r"^    (\w+): (.*)$", block.group(3), re.MULTILINE))
        blocks[fields["jobid"]] = {"rule": block.group(2), "local": bool(block.group(1)), **fields}
    return blocks


def declared_local_rules(workdir: Path) -> set[str]:
    """The rules the workflow keeps out of the cluster (`localrules:`, e.g. downloads, which need the
    login node's network)."""
    files = [workdir / "Snakefile", *sorted((workdir / "workflow/rules").glob("*.smk"))]
    # `localrules: a, b` on one line, or (as snakefmt writes it) one indented name per line below it
    text = "\n".join(path.read_text() for path in files)
    blocks = re.findall(r"^localrules:(.*(?:\n[ \t]+\S.*)*)", text, re.MULTILINE)
    return {name.strip() for block in blocks for name in re.split(r"[,\s]+", block) if name.strip()}


def rule_of(fields: dict) -> str:
    return re.match(r"rule_(.+?)(?:_wildcards_.*)?$", fields["Comment"]).group(1)


def minutes(time_limit: str) -> int:
    days, _, clock = time_limit.rpartition("-")
    hours, mins, secs = (int(part) for part in clock.split(":"))
    return (int(days or 0) * 24 + hours) * 60 + mins + (secs > 0)


def megabytes(memory: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([KMGT]?)", memory).groups()
    return float(number) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[unit]


def test_the_profile_leaves_conda_off():
    # conda is the user's choice (`--sdm conda`): a profile that sets it cannot be run without conda
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1
    assert not {"use-conda", "sdm", "software-deployment-method"} & set(profile), profile


def test_every_job_went_through_sbatch(slurm_run):
    stats = job_stats(slurm_run.output)
    submitted = submissions(slurm_run.output)
    blocks = job_blocks(slurm_run.output)
    local_rules = declared_local_rules(slurm_run.workdir)
    local = {jobid for jobid, block in blocks.items() if block["local"]}
    name = re.search(r"SLURM run ID: (\S+)", slurm_run.output).group(1)
    print(
        f"\n{stats['total']} jobs planned: {stats['total'] - len(local)} through sbatch "
        f"({len(submitted)} submissions, one a resubmission; run {name}), {len(local)} as local rules "
        f"({', '.join(sorted(local_rules)) or 'none'}); SLURM run {slurm_run.wall_s:.0f} s"
    )
    # only the workflow's local rules ran outside SLURM, and all of their jobs did
    assert len(blocks) == stats["total"]
    assert local == {jobid for jobid, block in blocks.items() if block["rule"] in local_rules}
    # every other job submitted once, the cancelled training job twice (retries: 1), and nothing else
    assert {jobid for jobid, _ in submitted} == set(blocks) - local
    assert len(submitted) == stats["total"] - len(local) + 1
    # SLURM's view: exactly the job ids Snakemake reported, all named after this run
    assert {slurm_id for _, slurm_id in submitted} == set(slurm_run.jobs)
    assert {fields["JobName"] for fields in slurm_run.jobs.values()} == {name}
    per_rule = Counter(rule_of(fields) for fields in slurm_run.jobs.values())
    assert per_rule == Counter(
        {**{rule: n for rule, n in stats.items() if rule not in {"total", *local_rules}}, "train": stats["train"] + 1}
    )
    # the plugin's log of each job, under .snakemake/slurm_logs/rule_<rule>/<wildcards>/<id>.log
    logs = {path.stem: path for path in (slurm_run.workdir / ".snakemake/slurm_logs").glob("rule_*/**/*.log")}
    assert set(logs) == set(slurm_run.jobs)
    for slurm_id, fields in slurm_run.jobs.items():
        assert logs[slurm_id].parts[-3 if "_wildcards_" in fields["Comment"] else -2] == f"rule_{rule_of(fields)}"
        if slurm_id != slurm_run.cancelled:
            assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", (slurm_id, fields["Comment"])


def test_each_job_got_its_rule_familys_resources(slurm_run):
    resources = run_config(slurm_run.workdir)["resources"]
    for slurm_id, fields in slurm_run.jobs.items():
        rule = rule_of(fields)
        spec = resources[gpu_family(rule) or "default"]
        where = (slurm_id, fields["Comment"])
        assert fields["Partition"] == spec["slurm_partition"] == ("gpu" if gpu_family(rule) else "cpu"), where
        assert megabytes(fields["MinMemoryNode"]) == spec["mem_mb"], where
        assert minutes(fields["TimeLimit"]) == spec["runtime"], where
        assert int(fields["CPUs/Task"]) == spec["threads"], where
        gpus = re.search(r"gres:gpu:(\d+)", fields.get("TresPerJob", ""))
        assert (int(gpus.group(1)) if gpus else 0) == spec["gpu"] == (1 if gpu_family(rule) else 0), where


def test_gpu_jobs_ran_on_the_gpu_slurm_gave_them(slurm_run):
    blocks = job_blocks(slurm_run.output)
    final = dict(submissions(slurm_run.output))  # Snakemake job id -> its last SLURM job id
    held = []
    for jobid, block in blocks.items():
        if not gpu_family(block["rule"]):
            continue
        slurm_id = final[jobid]
        assert slurm_id in slurm_run.gpu_index, f"GPU job {slurm_id} ({block['rule']}) was never seen running"
        log = (slurm_run.workdir / block["log"]).read_text(errors="replace")
        lines = [(r["event"], r["devices"], r["source"], r["pid"], r["exit"], r["at"]) for r in log_records(log)]
        assert [line[0] for line in lines] == ["acquired", "released"], (block["log"], lines)
        (_, acquired, source, pid, _, start), (_, released, source_2, pid_2, code, end) = lines
        # SLURM chose the card (SLURM_JOB_ID set, CUDA_VISIBLE_DEVICES from SLURM), not the local pool
        assert source == source_2 == "scheduler", block["log"]
        assert acquired == released == slurm_run.gpu_index[slurm_id], (block["log"], slurm_run.gpu_index[slurm_id])
        assert pid == pid_2 and code == "0", block["log"]
        held.append((start, end, block["log"]))
    assert len(held) == sum(1 for block in blocks.values() if gpu_family(block["rule"])) > 0
    # one GPU on the node: SLURM never gave it to two jobs at once
    held.sort()
    for (_, end, log), (start, _, next_log) in itertools.pairwise(held):
        assert end <= start, f"{log} and {next_log} held the GPU at the same time"


def test_cancelled_training_job_was_resubmitted(slurm_run):
    cancelled = slurm_run.jobs[slurm_run.cancelled]
    assert cancelled["JobState"] == "CANCELLED" and rule_of(cancelled) == "train"
    again = [
        slurm_id
        for slurm_id, fields in slurm_run.jobs.items()
        if fields["Comment"] == cancelled["Comment"] and slurm_id != slurm_run.cancelled
    ]
    assert len(again) == 1 and int(again[0]) > int(slurm_run.cancelled)
    assert slurm_run.jobs[again[0]]["JobState"] == "COMPLETED"
    # Snakemake's retry of the same job: its two submissions are the two SLURM jobs
    submitted = submissions(slurm_run.output)
    jobid = next(jobid for jobid, slurm_id in submitted if slurm_id == slurm_run.cancelled)
    assert [slurm_id for other, slurm_id in submitted if other == jobid] == [slurm_run.cancelled, again[0]]
    print(
        f"\n{cancelled['Comment']}: SLURM job {slurm_run.cancelled} cancelled at GRPO step "
        f"{slurm_run.cancelled_step}, resubmitted as {again[0]}"
    )


def test_table4_is_identical_to_a_local_runs(slurm_run):
    # the plain demo config (no GPUs, no partitions): what SLURM changes is where jobs run, not what
    # they compute
    started = time.monotonic()
    snakemake(slurm_run.local, "--workflow-profile", "workflow/profiles/default", TARGET)
    print(f"\nlocal run {time.monotonic() - started:.0f} s")
    assert (slurm_run.workdir / TARGET).read_text() == (slurm_run.local / TARGET).read_text()

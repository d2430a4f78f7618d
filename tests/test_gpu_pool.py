"""The GPU pool: each job gets cards of its own, given back when it ends, also when it is killed."""

import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from adfm import gpu_pool, targets
from adfm.gpu_pool import Grant, PoolError, acquire, log_records, pool_devices, try_acquire

WRAPPER = [sys.executable, "-m", "adfm.gpu_pool"]


def release(grant: Grant) -> None:
    for fd in grant.lock_fds:
        os.close(fd)


def test_pool_comes_from_the_option_then_the_environment_then_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(gpu_pool, "detect_devices", lambda: ["0", "1", "2", "3"])
    assert pool_devices("4,5", {"ADFM_GPU_DEVICES": "6", "CUDA_VISIBLE_DEVICES": "7"}) == ["4", "5"]
    assert pool_devices(None, {"ADFM_GPU_DEVICES": "6, 7", "CUDA_VISIBLE_DEVICES": "1"}) == ["6", "7"]
    assert pool_devices(None, {"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert pool_devices(None, {"CUDA_VISIBLE_DEVICES": ""}) == []  # the user hid every GPU
    assert pool_devices(None, {}) == ["0", "1", "2", "3"]


def test_jobs_running_together_get_different_devices(tmp_path):
    first = try_acquire(["0", "1"], 1, tmp_path)
    second = try_acquire(["0", "1"], 1, tmp_path)
    assert (first.devices, second.devices) == (("0",), ("1",))
    assert try_acquire(["0", "1"], 1, tmp_path) is None  # both cards busy
    release(first)
    third = try_acquire(["0", "1"], 1, tmp_path)
    assert third.devices == ("0",)
    release(second)
    release(third)


def test_a_job_of_two_gpus_takes_both_or_nothing(tmp_path):
    one = try_acquire(["0", "1"], 1, tmp_path)
    assert try_acquire(["0", "1"], 2, tmp_path) is None
    release(one)
    both = try_acquire(["0", "1"], 2, tmp_path)
    assert both.devices == ("0", "1") and both.source == "pool"
    release(both)


def test_scheduler_gpus_are_used_as_given_and_take_nothing_from_the_pool(tmp_path):
    environ = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "3"}
    grant = acquire(1, devices="0,1", lock_dir=tmp_path / "locks", environ=environ)
    assert grant == Grant(("3",), "scheduler")
    assert not (tmp_path / "locks").exists()


def test_a_job_without_gpus_sees_none(tmp_path):
    assert acquire(0, devices="0", lock_dir=tmp_path, environ={"SLURM_JOB_ID": "1"}) == Grant((), "none")
    shown = subprocess.run(
        [
            *WRAPPER,
            "--gpus",
            "0",
            "--",
            sys.executable,
            "-c",
            "import os; print(repr(os.environ['CUDA_VISIBLE_DEVICES']))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == "''"


@pytest.mark.parametrize(
    "devices, message", [("0", re.escape("asks for 2 GPUs but the pool has 1 (devices 0)")), (None, "no GPU was found")]
)
def test_a_job_the_pool_cannot_serve_is_a_clear_error(tmp_path, monkeypatch, devices, message):
    monkeypatch.setattr(gpu_pool, "detect_devices", list)
    with pytest.raises(PoolError, match=message):
        acquire(2, devices=devices, lock_dir=tmp_path, environ={})
    result = subprocess.run([*WRAPPER, "--gpus", "2", "--devices", "0", "--", "true"], capture_output=True, text=True)
    assert result.returncode == 2 and "adfm gpu_pool: error: the job asks for 2 GPUs" in result.stderr


def test_the_command_runs_on_its_devices_and_its_exit_code_is_passed_on(tmp_path):
    result = subprocess.run(
        [
            *WRAPPER,
            "--gpus",
            "1",
            "--devices",
            "5,6",
            "--lock-dir",
            str(tmp_path),
            "--",
            sys.executable,
            "-c",
            "import os, sys; print(os.environ['CUDA_VISIBLE_DEVICES']); sys.exit(3)",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 3
    assert result.stdout.strip() == "5"
    acquired, released = result.stderr.strip().splitlines()
    assert acquired.startswith("adfm gpu_pool: acquired CUDA_VISIBLE_DEVICES=5 source=pool pid=")
    assert (
        released.startswith("adfm gpu_pool: released CUDA_VISIBLE_DEVICES=5 source=pool pid=")
        and " exit=3 " in released
    )
    assert [(r["event"], r["devices"], r["exit"]) for r in log_records(result.stderr)] == [
        ("acquired", "5", None),
        ("released", "5", "3"),
    ]


def start_job(tmp_path, device: str, *extra: str) -> subprocess.Popen:
    """A wrapped job holding `device` until killed (its own session, as Snakemake starts jobs)."""
    job = subprocess.Popen(
        [*WRAPPER, "--gpus", "1", "--devices", device, "--lock-dir", str(tmp_path), *extra, "--", "sleep", "300"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert job.stderr.readline().startswith(f"adfm gpu_pool: acquired CUDA_VISIBLE_DEVICES={device} ")
    return job


def wait_until_free(device: str, lock_dir, timeout: float = 10.0) -> Grant:
    deadline = time.monotonic() + timeout
    while (grant := try_acquire([device], 1, lock_dir)) is None:
        assert time.monotonic() < deadline, f"device {device} still held {timeout} s after its job was killed"
        time.sleep(0.05)
    return grant


def test_a_sigkilled_job_gives_its_device_back(tmp_path):
    job = start_job(tmp_path, "0")
    assert try_acquire(["0"], 1, tmp_path) is None
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    release(wait_until_free("0", tmp_path))


def test_the_device_stays_held_while_the_command_outlives_a_killed_wrapper(tmp_path):
    job = start_job(tmp_path, "0")
    children = Path(f"/proc/{job.pid}/task/{job.pid}/children")
    while not children.read_text().strip():  # the command has started
        time.sleep(0.01)
    os.kill(job.pid, signal.SIGKILL)  # the wrapper only: `sleep` still runs on the card
    job.wait()
    time.sleep(0.2)
    assert try_acquire(["0"], 1, tmp_path) is None
    os.killpg(job.pid, signal.SIGKILL)
    release(wait_until_free("0", tmp_path))


def test_sigterm_reaches_the_command_and_frees_the_device(tmp_path):
    job = start_job(tmp_path, "0")
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=10) == 128 + signal.SIGTERM
    assert "released CUDA_VISIBLE_DEVICES=0" in job.stderr.read()
    release(wait_until_free("0", tmp_path, timeout=1))


def test_a_job_waits_for_a_busy_device(tmp_path):
    holder = start_job(tmp_path, "0")
    waiter = subprocess.Popen(
        [
            *WRAPPER,
            "--gpus",
            "1",
            "--devices",
            "0",
            "--lock-dir",
            str(tmp_path),
            "--poll-seconds",
            "0.05",
            "--",
            "true",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiter.stderr.readline().startswith("adfm gpu_pool: waiting for 1 free GPU(s) of 0")
    assert waiter.poll() is None
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    assert waiter.wait(timeout=10) == 0
    assert "acquired CUDA_VISIBLE_DEVICES=0" in waiter.stderr.read()


GPU_JOB_LOGS = ["train", "warm_start", "predict", "predict_mmad", "sample_responses"]


def pool_records(workdir) -> dict[str, dict]:
    """Per job log of a GPU rule: the devices it held, from when to when, and how it ended."""
    records = {}
    for folder in GPU_JOB_LOGS:
        for log in sorted((workdir / "logs" / folder).rglob("*.log")):
            lines = {record["event"]: record for record in log_records(log.read_text())}
            if lines:
                assert set(lines) == {"acquired", "released"}, f"{log}: {sorted(lines)}"
                acquired, released = lines["acquired"], lines["released"]
                records[str(log.relative_to(workdir))] = {
                    "devices": acquired["devices"],
                    "source": acquired["source"],
                    "exit": released["exit"],
                    "start": datetime.fromisoformat(acquired["at"]),
                    "end": datetime.fromisoformat(released["at"]),
                }
    return records


def test_demo_gpu_jobs_never_share_a_pretend_gpu(demo_run):
    from conftest import PRETEND_GPUS, run_config

    records = pool_records(demo_run)
    config = run_config(demo_run)
    pooled = {log: r for log, r in records.items() if r["source"] == "pool"}
    # every training, warm-start and prediction job of a Hugging Face model or CLIP went through the pool
    for folder in ("train", "warm_start"):
        assert any(log.startswith(f"logs/{folder}/") for log in pooled), sorted(records)
    # one prediction job per model, for all its datasets: a run, a trained run, a CLIP baseline
    assert {"logs/predict/zero_shot.log", "logs/predict/adfm.log", "logs/predict/winclip.log"} <= set(pooled)
    assert all(r["exit"] == "0" and r["devices"] in PRETEND_GPUS for r in pooled.values()), pooled
    assert {r["devices"] for r in pooled.values()} == set(PRETEND_GPUS)
    # a chat model behind an API (its test-split and MMAD jobs alike) holds no GPU
    api_models = set(targets.baselines(config, "api"))
    unpooled = [log for log, r in records.items() if r["source"] == "none"]
    assert unpooled and all(Path(log).parts[2].removesuffix(".log") in api_models for log in unpooled), unpooled

    jobs = sorted(pooled.items(), key=lambda item: item[1]["start"])
    together = []
    for i, (log, job) in enumerate(jobs):
        for other_log, other in jobs[i + 1 :]:
            if other["start"] < job["end"]:
                assert other["devices"] != job["devices"], f"{log} and {other_log} held GPU {job['devices']} at once"
                together.append((log, other_log))
    assert together, "no two GPU jobs ran at the same time: the pool was never put to the test"
    # nothing is held once the run is over
    release(try_acquire(PRETEND_GPUS, len(PRETEND_GPUS), demo_run / "gpu-locks"))


def test_processes_the_command_leaves_running_are_ended_before_the_device_is_free(tmp_path):
    # as torchrun's workers outlive a killed `accelerate launch`: a process in a session of its own
    orphan_pid = tmp_path / "orphan.pid"
    command = (
        "import os, signal, subprocess, sys; "
        "p = subprocess.Popen(['sleep', '300'], start_new_session=True); "
        f"open({str(orphan_pid)!r}, 'w').write(str(p.pid)); os.kill(os.getpid(), signal.SIGKILL)"
    )
    result = subprocess.run(
        [*WRAPPER, "--gpus", "1", "--devices", "0", "--lock-dir", str(tmp_path), "--", sys.executable, "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 128 + signal.SIGKILL
    assert "stopping 1 process(es) the command left running" in result.stderr
    assert not Path(f"/proc/{orphan_pid.read_text()}").exists()
    release(wait_until_free("0", tmp_path, timeout=1))

"""Jobs killed with SIGKILL part-way (as a cluster scheduler or an out-of-memory killer does),
then rerun: prediction recomputes nothing already written and ends with the same records as an
uninterrupted run; training resumes from its last checkpoint and ends with the rewards and the
adapter of an uninterrupted run, bit for bit (one process)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import count_cases
from model_fixtures import predict_settings, tiny_model_dir, train_settings, write_split  # noqa: F401

from adfm.io import read_jsonl

pytestmark = pytest.mark.slow  # runs Snakemake or real training processes

TIMEOUT = 240


def adfm(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "adfm", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def kill_when(process: subprocess.Popen, ready) -> None:
    """SIGKILL `process` as soon as `ready()` holds (fails if it ends first)."""
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        assert process.poll() is None, "the job ended before it could be interrupted:\n" + process.stdout.read()
        assert time.monotonic() < deadline, "timed out waiting to interrupt the job"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output[-3000:]
    return output


def test_killed_prediction_resumes_without_recomputing(tiny_model_dir, tmp_path):
    split = write_split(tmp_path / "data", n_train=1, n_test=16)
    settings = json.dumps(predict_settings(batch_size=1, max_new_tokens=16))
    common = [
        "predict",
        "--split",
        str(split),
        "--dataset",
        "toyset",
        "--model",
        str(tiny_model_dir),
        "--run-name",
        "tiny",
        "--settings",
        settings,
    ]
    reference = tmp_path / "uninterrupted.jsonl"
    finish(adfm(*common, "--out", str(reference)))

    out = tmp_path / "killed.jsonl"
    partial = Path(str(out) + ".partial")
    kill_when(adfm(*common, "--out", str(out)), lambda: partial.exists() and partial.read_text().count("\n") >= 4)
    assert not out.exists()  # no half-written output where the final file belongs
    written_before = read_jsonl(partial)  # a line torn by the kill is dropped, as the resumed job does
    assert 4 <= len(written_before) < 16

    log = finish(adfm(*common, "--out", str(out)))
    final = read_jsonl(out)
    assert sorted(map(json.dumps, final)) == sorted(map(json.dumps, read_jsonl(reference)))
    # the rerun generated only for the images missing from the partial file
    assert f"{len(written_before)} images already predicted, {16 - len(written_before)} to go" in log, log[-2000:]
    count_cases("jobs killed (SIGKILL) and rerun: prediction resumed, nothing recomputed")


def test_killed_training_resumes_to_the_uninterrupted_adapter(tiny_model_dir, tmp_path):
    """Killed after checkpoint 5 of 8 and rerun, training ends with the rewards and the adapter of an
    uninterrupted run, bit for bit. The settings put the checkpoint where every state matters: 4
    prompts, 1 per step (2 generations each), give 4 steps per epoch, so the rerun starts in the
    second epoch without having drawn the first one's order (data order); steps_per_generation 2
    makes step 6 reuse the generations of step 5 (TRL's buffer); r_random draws noise from its own
    generator; sampling at temperature 1 and LoRA dropout use torch's RNG."""
    from safetensors.torch import load_file

    split = write_split(tmp_path / "data", n_train=4, n_test=1)
    settings = train_settings(max_steps=8, save_steps=5, steps_per_generation=2, per_device_train_batch_size=2)
    settings.update(
        rewards=["cls", "loc", "random"],
        reward_weights=[1.0, 1.0, 1.0],
        reward_options={"random_seed": 5, "random_std": 0.5},
    )
    settings["lora"]["dropout"] = 0.1

    def command(out: Path) -> list[str]:
        return [
            "train",
            "--split",
            str(split),
            "--model",
            str(tiny_model_dir),
            "--settings",
            json.dumps(settings),
            "--out",
            str(out),
        ]

    reference = tmp_path / "uninterrupted"
    finish(adfm(*command(reference)))

    out = tmp_path / "adapter"
    checkpoints = Path(str(out) + ".ckpt")
    kill_when(adfm(*command(out)), lambda: (checkpoints / "checkpoint-5" / "trainer_state.json").exists())
    assert not out.exists()

    log = finish(adfm(*command(out)))
    assert "resuming from" in log and "checkpoint-5" in log, log[-2000:]
    resumed, uninterrupted = pd.read_csv(out / "train_log.csv"), pd.read_csv(reference / "train_log.csv")
    assert resumed["step"].tolist() == uninterrupted["step"].tolist() == list(range(1, 9))
    rewards = [c for c in uninterrupted.columns if c.startswith("rewards/")] + ["reward", "loss"]
    assert "rewards/random/mean" in rewards
    # rewards are logged on the steps that generate (every second one); the noise is drawn, not constant
    assert resumed["rewards/random/std"].notna().tolist() == [True, False] * 4
    assert resumed["rewards/random/std"].dropna().gt(0).all()
    pd.testing.assert_frame_equal(resumed[rewards], uninterrupted[rewards], check_exact=True)
    weights, expected = load_file(out / "adapter_model.safetensors"), load_file(reference / "adapter_model.safetensors")
    assert weights.keys() == expected.keys()
    assert all(weights[name].equal(expected[name]) for name in expected)

    # the resume is on record: in the log (rows after it) and beside the adapter
    assert resumed["resumed_from"].isna().tolist() == [True] * 5 + [False] * 3
    assert resumed["resumed_from"].dropna().tolist() == [5, 5, 5]
    assert uninterrupted["resumed_from"].isna().all()
    record = json.loads((out / "training.json").read_text())
    assert record["resumes"] == [{"from_step": 5, "exact": True}]
    assert json.loads((reference / "training.json").read_text())["resumes"] == []
    assert not checkpoints.exists()
    count_cases("jobs killed (SIGKILL) and rerun: training resumed to the uninterrupted adapter")

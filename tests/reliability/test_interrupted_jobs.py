"""Jobs killed with SIGKILL part-way (as a cluster scheduler or an out-of-memory killer does),
then rerun: prediction recomputes nothing already written and ends with the same records as an
uninterrupted run; training resumes from its last checkpoint and ends at the same total steps."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from conftest import count_cases
from model_fixtures import predict_settings, tiny_model_dir, train_settings, write_split  # noqa: F401

from adfm.io import read_jsonl

TIMEOUT = 240


def adfm(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "adfm", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


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


def test_killed_prediction_resumes_without_recomputing(tiny_model_dir, tmp_path):  # noqa: F811
    split = write_split(tmp_path / "data", n_train=1, n_test=16)
    settings = json.dumps(predict_settings(batch_size=1, max_new_tokens=16))
    common = ["predict", "--split", str(split), "--dataset", "toyset", "--model", str(tiny_model_dir),
              "--run-name", "tiny", "--settings", settings]
    reference = tmp_path / "uninterrupted.jsonl"
    finish(adfm(*common, "--out", str(reference)))

    out = tmp_path / "killed.jsonl"
    partial = Path(str(out) + ".partial")
    kill_when(adfm(*common, "--out", str(out)),
              lambda: partial.exists() and partial.read_text().count("\n") >= 4)
    assert not out.exists()  # no half-written output where the final file belongs
    written_before = read_jsonl(partial)  # a line torn by the kill is dropped, as the resumed job does
    assert 4 <= len(written_before) < 16

    log = finish(adfm(*common, "--out", str(out)))
    final = read_jsonl(out)
    assert sorted(map(json.dumps, final)) == sorted(map(json.dumps, read_jsonl(reference)))
    # the rerun generated only for the images missing from the partial file
    assert f"{len(written_before)} images already predicted, {16 - len(written_before)} to go" in log, log[-2000:]
    count_cases("jobs killed (SIGKILL) and rerun: prediction resumed, nothing recomputed")


def test_killed_training_resumes_to_the_same_total_steps(tiny_model_dir, tmp_path):  # noqa: F811
    split = write_split(tmp_path / "data", n_train=8, n_test=1)
    settings = json.dumps(train_settings(max_steps=6, save_steps=2))
    out = tmp_path / "adapter"
    command = ["train", "--split", str(split), "--model", str(tiny_model_dir), "--settings", settings, "--out", str(out)]
    checkpoints = Path(str(out) + ".ckpt")
    kill_when(adfm(*command), lambda: (checkpoints / "checkpoint-2" / "trainer_state.json").exists())
    assert not out.exists()

    log = finish(adfm(*command))
    assert "checkpoint-" in log and "resum" in log.lower(), log[-2000:]
    steps = pd.read_csv(out / "train_log.csv")["step"].tolist()
    assert steps == [1, 2, 3, 4, 5, 6]
    assert (out / "adapter_model.safetensors").is_file()
    assert not checkpoints.exists()
    count_cases("jobs killed (SIGKILL) and rerun: training resumed from its checkpoint")

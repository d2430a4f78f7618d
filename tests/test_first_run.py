"""bench/first_run.py's pieces, on a stand-in repository whose make targets take no time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import first_run  # bench/ is no package: imported from its folder

LOG = """[Mon Nov 30 07:55:48 2026]
rule predict_adfm:
    jobid: 3
[Mon Nov 30 07:55:58 2026]
Finished jobid: 3 (Rule: predict_adfm)
"""
MAKEFILE = """setup:
\ttouch .installed
demo: setup
\tmkdir -p .snakemake/log && cp demo.log .snakemake/log/1.snakemake.log
test: setup
\ttrue
"""


@pytest.fixture
def source(tmp_path):
    repo = tmp_path / "source"
    repo.mkdir()
    (repo / "Makefile").write_text(MAKEFILE)
    (repo / "demo.log").write_text(LOG)
    (repo / "uncommitted.txt").write_text("not cloned")
    for command in (["init", "-q"], ["add", "Makefile", "demo.log"], ["commit", "-qm", "stand-in"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *command], cwd=repo, check=True)
    return repo


def test_times_a_fresh_clone_and_prints_the_demos_job_seconds(source, tmp_path, capsys):
    checkout = first_run.clone(str(source), tmp_path / "clone")
    assert sorted(p.name for p in checkout.iterdir() if p.name != ".git") == ["Makefile", "demo.log"]
    times = first_run.first_run(checkout, sys.executable)
    assert times["make demo"] == pytest.approx(times["make setup"] + times["demo DAG"])
    printed = capsys.readouterr().out
    assert "make demo" in printed and "(limit 360 s: ok)" in printed and "(limit 600 s: ok)" in printed
    assert "predict_adfm" in printed and "10 s    1 job(s)" in printed


def test_a_failing_step_stops_with_its_output(tmp_path):
    with pytest.raises(SystemExit, match="failed after .* s in .*\n.*no such target"):
        first_run.timed([sys.executable, "-c", "import sys; sys.exit('no such target')"], tmp_path)


def test_over_the_limit_is_said():
    assert first_run.verdict("make test", 601).endswith("OVER)")

"""Secrets: the demo DAG of the session (`demo_run`) calls a fake OpenAI-compatible server on
127.0.0.1 with an API key in the environment; no file the run wrote holds the key."""

from __future__ import annotations

import json

import pandas as pd
from conftest import DEMO_INPUTS, FAKE_API_CONFIG, FAKE_API_KEY, count_cases, snakemake

# what the run wrote (its inputs, copied from the checkout or written by the fixture, are not outputs)
INPUTS = {*DEMO_INPUTS, FAKE_API_CONFIG}


def written_files(workdir):
    return [path for path in workdir.rglob("*") if path.is_file() and path.relative_to(workdir).parts[0] not in INPUTS]


def test_no_output_of_a_run_with_an_api_key_holds_it(demo_run, fake_api):
    if not (demo_run / "results/report.html").exists():
        snakemake(demo_run, "--report", "results/report.html")
    # the key was in use: every request carried it, and the API rows have numbers
    assert fake_api.requests and set(fake_api.auth) == {f"Bearer {FAKE_API_KEY}"}
    table = pd.read_csv(demo_run / "results/table1.csv")
    assert table.loc[table.model == "GPT-4o", "status"].eq("ok").all()
    # the server echoed the key into its first error; the retry's log line has it redacted
    assert any(
        "HTTP 500" in log.read_text() and "Bearer ***" in log.read_text() for log in demo_run.glob("logs/**/*.log")
    )
    files = written_files(demo_run)
    kinds = {suffix: sum(p.suffix == suffix for p in files) for suffix in (".log", ".jsonl", ".csv", ".md", ".html")}
    count_cases(f"files written by a demo run with an API key, searched for it ({json.dumps(kinds)} ...)", len(files))
    assert all(kinds.values()), kinds
    key = FAKE_API_KEY.encode()
    assert [str(p.relative_to(demo_run)) for p in files if key in p.read_bytes()] == []

"""The OpenAI-compatible API backend against a fake chat server on 127.0.0.1 started by the test."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from fake_chat import RESPONSE, FakeChat
from model_fixtures import write_split

from adfm.cli import main
from adfm.inference import api as api_backend
from adfm.inference.api import ChatClient, predict_api
from adfm.io import InputError, read_jsonl
from adfm.settings.inference import ApiSettings, MmadSettings

KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def chat():
    servers = []

    def start(**kwargs):
        servers.append(FakeChat(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def split_csv(tmp_path):
    return write_split(tmp_path / "data", n_train=1, n_test=6)


def settings(url, **api) -> ApiSettings:
    return ApiSettings.from_dict(
        {
            "prompt": "Is the query defective?",
            "reasoning": "multi_stage",
            "api": {"base_url": url, "model": "fake-4o", "key_env": "FAKE_API_KEY", "backoff_s": 0.01, **api},
        }
    )


def test_records_requests_and_the_key_never_written(chat, split_csv, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    server = chat()
    caplog.set_level("DEBUG")
    out = predict_api(split_csv, "toyset", "gpt-fake", settings(server.url, max_image_side=64), tmp_path / "p.jsonl")
    records = read_jsonl(out)
    split = pd.read_csv(split_csv)
    assert sorted(r["image_path"] for r in records) == sorted(split.loc[split.role == "test", "image_path"])
    assert len(records) == 6 and {r["answer"] for r in records} == {"yes"}
    assert all(r["boxes"] == [[10.0, 20.0, 30.0, 40.0]] for r in records)
    assert all(r["frame"] == [64, 48] for r in records)  # 128 x 96 sent as 64 x 48
    path, body = server.requests[0]
    assert path == "/v1/chat/completions" and body["model"] == "fake-4o"
    content = body["messages"][0]["content"]
    assert [c["type"] for c in content] == ["image_url", "image_url", "text"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert set(server.auth) == {f"Bearer {KEY}"}
    for text in [out.read_text(), caplog.text, settings(server.url).to_json()]:
        assert KEY not in text


def test_retries_with_backoff_then_succeeds(chat, split_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    server = chat(failures=[429, 500, 503])
    sleeps = []
    client = ChatClient(server.url, "fake", "FAKE_API_KEY", max_retries=4, backoff_s=0.5, sleep=sleeps.append)
    assert client.complete([{"type": "text", "text": "hi"}], max_tokens=5, temperature=0.0) == [RESPONSE]
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(server.requests) == 4


def test_gives_up_after_retries_and_on_client_errors_without_leaking_the_key(chat, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    server = chat(failures=[500, 500, 500])
    client = ChatClient(server.url, "fake", "FAKE_API_KEY", max_retries=2, backoff_s=0, sleep=lambda s: None)
    with pytest.raises(api_backend.APIError, match="giving up after 3 attempts"):
        client.complete([{"type": "text", "text": "hi"}], max_tokens=5, temperature=0.0)
    server = chat(failures=[401])
    client = ChatClient(server.url, "fake", "FAKE_API_KEY", max_retries=5, backoff_s=0, sleep=lambda s: None)
    with pytest.raises(api_backend.APIError, match="HTTP 401") as error:
        client.complete([{"type": "text", "text": "hi"}], max_tokens=5, temperature=0.0)
    assert len(server.requests) == 1  # not retried
    assert KEY not in str(error.value) and "***" in str(error.value)  # the server echoed it; redacted


def test_concurrency_is_limited(chat, split_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    server = chat(delay=0.1)
    predict_api(split_csv, "toyset", "gpt-fake", settings(server.url, concurrency=2), tmp_path / "p.jsonl")
    assert server.max_in_flight == 2


def test_resume_skips_answered_images(chat, split_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    server = chat()
    out = predict_api(split_csv, "toyset", "gpt-fake", settings(server.url), tmp_path / "p.jsonl")
    complete = read_jsonl(out)
    partial = tmp_path / "p.jsonl.partial"
    out.rename(partial)
    partial.write_text("".join(json.dumps(r) + "\n" for r in complete[:4]) + '{"torn')
    server.requests.clear()
    predict_api(split_csv, "toyset", "gpt-fake", settings(server.url), out)
    assert len(server.requests) == 2
    assert sorted(r["image_path"] for r in read_jsonl(out)) == sorted(r["image_path"] for r in complete)


def test_missing_key_is_an_input_error_naming_the_variable(split_csv, tmp_path, monkeypatch):
    monkeypatch.delenv("FAKE_API_KEY", raising=False)
    with pytest.raises(InputError, match="FAKE_API_KEY"):
        predict_api(split_csv, "toyset", "gpt-fake", settings("http://127.0.0.1:9"), tmp_path / "p.jsonl")


def test_mmad_questions_through_the_api(chat, tmp_path, monkeypatch):
    from adfm.inference.mmad import predict_mmad

    monkeypatch.setenv("FAKE_API_KEY", KEY)
    from test_mmad_eval import write_questions

    questions = write_questions(tmp_path)
    server = chat(reply=lambda body: "The answer is B." if "defect" in json.dumps(body) else "A")
    out = predict_mmad(
        questions, "gpt-fake", MmadSettings(api=settings(server.url).api, max_new_tokens=16), tmp_path / "mmad.jsonl"
    )
    records = read_jsonl(out)
    assert len(records) == len(pd.read_csv(questions)) and {r["answer"] for r in records} <= {"A", "B"}
    content = server.requests[0][1]["messages"][0]["content"]
    assert [c["type"] for c in content].count("image_url") == 2  # template, then query
    assert server.requests[0][1]["max_tokens"] == 16


def test_several_datasets_in_one_command(chat, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    server = chat()
    split = write_split(tmp_path / "data", n_train=1, n_test=2, datasets=("alpha", "beta"))
    outs = [str(tmp_path / "pred" / f"{d}.jsonl") for d in ("beta", "alpha")]
    argv = ["predict-api", "--split", str(split), "--dataset", "beta", "alpha", "--run-name", "gpt-fake"]
    assert main([*argv, "--settings", settings(server.url).to_json(), "--out", *outs]) == 0
    assert [{r["dataset"] for r in read_jsonl(out)} for out in outs] == [{"beta"}, {"alpha"}]
    assert len(server.requests) == 4 and sorted(p.name for p in (tmp_path / "pred").iterdir()) == [
        "alpha.jsonl",
        "beta.jsonl",
    ]

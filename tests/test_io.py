"""adfm.io: atomic outputs, JSON lines, and the --settings argument every stage takes."""

import json

import pandas as pd
import pytest

from adfm.cli import main
from adfm.io import InputError, atomic_path, read_jsonl, write_csv_atomic, write_jsonl


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out" / "table.csv"
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise ValueError("killed")
    assert list((tmp_path / "out").iterdir()) == []


def test_atomic_path_replaces_a_folder_whole(tmp_path):
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "stale.bin").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.bin").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.bin"]


def test_csv_has_no_index_and_unix_line_ends(tmp_path):
    write_csv_atomic(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_bytes() == b"a,b\n1,x\n2,y\n"


def test_jsonl_round_trip_drops_only_a_torn_last_line(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", [{"a": 1}, {"a": 2}])
    assert read_jsonl(tmp_path / "p.jsonl") == [{"a": 1}, {"a": 2}]
    (tmp_path / "torn.jsonl").write_text('{"a": 1}\n{"a"')
    assert read_jsonl(tmp_path / "torn.jsonl") == [{"a": 1}]
    (tmp_path / "bad.jsonl").write_text('{"a"\n{"a": 1}\n')
    with pytest.raises(InputError, match=r"bad.jsonl: line 1 is not valid JSON"):
        read_jsonl(tmp_path / "bad.jsonl")


@pytest.mark.parametrize(
    "settings, message", [("{not json", "not valid JSON"), (json.dumps([1, 2]), "expected a mapping")]
)
def test_bad_settings_are_a_usage_error_naming_the_argument(settings, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "predict-api",
                "--split",
                "s.csv",
                "--dataset",
                "d",
                "--run-name",
                "r",
                "--settings",
                settings,
                "--out",
                "p.jsonl",
            ]
        )
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "argument --settings" in error and message in error and "Traceback" not in error

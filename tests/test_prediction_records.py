"""A prediction job of several datasets (adfm.inference.records.each_dataset) against Snakemake's
clean-up of a failed job."""

from __future__ import annotations

import pytest

from adfm.inference.records import PredictionWriter, each_dataset, key
from adfm.io import read_jsonl


def test_a_failed_job_keeps_its_finished_files_records(tmp_path):
    """Snakemake deletes every output of a job that failed or was killed: a file finished before the
    failure comes back from its partial file, nothing predicted again."""
    row = {"model": "m", "image_path": "x.png", "sample": 0}

    def predict_one(dataset, out, keep_partial):
        writer = PredictionWriter(out, keep_partial)
        if writer.pending([dataset], lambda d: [key("m", d, "x.png")]):
            assert dataset != "alpha" or not again, "predicted again"
            if dataset == "beta" and not again:
                raise RuntimeError("killed")
            with writer:
                writer.write([{**row, "dataset": dataset}])
        return writer.finish()

    pairs = [("alpha", tmp_path / "alpha.jsonl"), ("beta", tmp_path / "beta.jsonl")]
    again = False
    with pytest.raises(RuntimeError):
        each_dataset(pairs, predict_one)
    assert read_jsonl(tmp_path / "alpha.jsonl") == read_jsonl(tmp_path / "alpha.jsonl.partial")
    (tmp_path / "alpha.jsonl").unlink()  # as Snakemake does
    again = True
    each_dataset(pairs, predict_one)
    assert [read_jsonl(out)[0]["dataset"] for _, out in pairs] == ["alpha", "beta"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["alpha.jsonl", "beta.jsonl"]

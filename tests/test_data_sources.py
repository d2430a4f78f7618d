"""A dataset's source: a changed url reruns its download (and a missing one fails, naming it), and
the provenance describes the data that was used, from the download's source record."""

import subprocess

import pytest
import yaml
from conftest import DEMO_CONFIGS, RUN_SETUP, copy_demo_inputs, snakemake, snakemake_command

from adfm.evaluation.provenance import data_sources


@pytest.mark.slow
def test_changed_url_reruns_the_download_and_a_missing_source_fails_clearly(tmp_path):
    workdir = copy_demo_inputs(tmp_path)
    snakemake(workdir, "--", "resources/sources/mvtec_ad.yaml")
    record = yaml.safe_load((workdir / "resources/sources/mvtec_ad.yaml").read_text())
    assert record["url"] == "file:resources/demo/mvtec_anomaly_detection.tar.xz" and len(record["sha256"]) == 64
    missing = tmp_path / "does_not_exist"
    (workdir / "moved.yaml").write_text(
        yaml.safe_dump({"datasets": {"mvtec_ad": {"url": str(missing), "checksum_file": None}}})
    )
    RUN_SETUP[workdir] = ([*DEMO_CONFIGS, "moved.yaml"], {})
    plan = snakemake(workdir, "-n", "--", "resources/boxes/mvtec_ad.csv").stdout
    assert "rule download:" in plan and "--url " + str(missing) in plan  # before: "Nothing to be done"
    command, env = snakemake_command(workdir, "--", "resources/boxes/mvtec_ad.csv")
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    log = (workdir / "logs/download/mvtec_ad.log").read_text()
    assert f"{missing}: no such archive or folder (datasets.mvtec_ad.url is '{missing}')" in log


def test_provenance_data_comes_from_the_source_records(tmp_path):
    record = tmp_path / "visa.yaml"
    record.write_text(yaml.safe_dump({"dataset": "visa", "url": "file:v.tar", "sha256": "a" * 64}))
    config = {"datasets": {"visa": {"url": "file:elsewhere.tar"}, "goodsad": {"url": None}}}
    data = data_sources(config, [record])
    assert data["visa"]["url"] == "file:v.tar" and data["visa"]["sha256"] == "a" * 64
    assert data["goodsad"]["note"].startswith("not downloaded")

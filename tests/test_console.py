"""What a run says beyond Snakemake: manual datasets still missing and what they block (also in a
dry run), the tail of each failed job's log, and a run that keeps going past a missing dataset."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_demo_inputs, snakemake_command

from adfm import console
from adfm.config import load_config

PAPER_MANUAL = ["goodsad", "mpdd", "dtd_synthetic", "dagm"]


def test_paper_config_blocks_tables_of_each_manual_dataset(tmp_path):
    config = load_config([REPO / "config.yaml"])
    dataset_dir = str(tmp_path / "resources/datasets/{dataset}")
    assert console.missing_manual_datasets(config, dataset_dir) == PAPER_MANUAL
    blocked = console.blocked_targets(config, PAPER_MANUAL)
    # GoodsAD is in the multi-domain protocol: every table but Table 2, and the figures (their runs)
    assert blocked["goodsad"] == ["table1", "table3", "table4", "fig3", "fig4", "fig5"]
    for name in ["mpdd", "dtd_synthetic", "dagm"]:  # only the cross-dataset protocol tests on these
        assert blocked[name] == ["table2"]
    # a dataset put in place by hand is no longer missing
    (tmp_path / "resources/datasets/mpdd").mkdir(parents=True)
    assert "mpdd" not in console.missing_manual_datasets(config, dataset_dir)


@pytest.mark.slow
def test_dry_run_of_the_paper_names_manual_datasets_and_what_they_block(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-n",
            "--cores",
            "all",
            "--configfile",
            str(REPO / "config.yaml"),
        ],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Manual downloads missing: {', '.join(PAPER_MANUAL)} (url: null)" in result.stderr
    assert "  goodsad: blocks table1, table3, table4, fig3, fig4, fig5. Download the six category zips" in result.stderr
    for name in ["mpdd", "dtd_synthetic", "dagm"]:
        assert f"  {name}: blocks table2. Download " in result.stderr
        assert f"Then set datasets.{name}.url to the archive or extracted folder." in result.stderr


def test_failed_job_logs_are_read_from_snakemakes_log(tmp_path):
    text = (
        "Error in rule download:\n    message: None\n    jobid: 3\n"
        "    log: logs/download/dagm.log (check log file(s) for error details)\n"
        "Error in rule all_logs:\n    jobid: 4\n    log: logs/a.log, logs/b.log (check log file(s) for error details)\n"
        "Error in rule nolog:\n    jobid: 5\nSelect jobs to execute...\n"
        "Error in rule other:\n    log: logs/c.log (check log file(s) for error details)\n"
    )
    assert console.failed_job_logs(text) == [
        ("download", ["logs/download/dagm.log"]),
        ("all_logs", ["logs/a.log", "logs/b.log"]),
        ("other", ["logs/c.log"]),
    ]
    long_log = tmp_path / "train.log"
    long_log.write_text("".join(f"line {n}\n" for n in range(1, 3001)))
    snakemake_log = tmp_path / "run.snakemake.log"
    snakemake_log.write_text(
        f"Error in rule train:\n    log: {long_log} (check log file(s) for error details)\n"
        f"Error in rule index:\n    log: {tmp_path / 'never.log'} (check log file(s) for error "
        "details)\n"
    )
    lines = console.failed_logs_message([str(snakemake_log)]).splitlines()
    assert lines[0] == f"==> last 40 lines of {long_log} (rule train) <=="
    assert lines[1:41] == [f"line {n}" for n in range(2961, 3001)]
    assert lines[41] == f"==> {tmp_path / 'never.log'} (rule index): no log written <=="
    assert console.failed_logs_message([str(tmp_path / "missing.snakemake.log")]) is None


@pytest.mark.slow
def test_a_missing_manual_dataset_fails_only_what_needs_it(tmp_path):
    """The demo with DAGM made manual and a deliberately failing job with a 3000-line log: the other
    dataset's index and boxes are still made, the run says up front what DAGM blocks, and at the end
    shows the last 40 lines of each failed log, not the whole of it."""
    workdir = copy_demo_inputs(tmp_path)
    if not (workdir / "profiles").exists():  # the default profile, found as in the checkout
        (workdir / "profiles").symlink_to("workflow/profiles")
    (workdir / "manual_dagm.yaml").write_text(
        yaml.safe_dump({"datasets": {"dagm": {"url": None, "manual": "Fetch DAGM from the competition page."}}})
    )
    with open(workdir / "Snakefile", "a") as snakefile:
        snakefile.write(
            '\n\nrule noisy:\n    output: "noisy.txt"\n    log: "logs/noisy.log"\n'
            '    shell: "seq 1 3000 > {log}; exit 1"\n'
        )
    command, env = snakemake_command(workdir)
    command.append("manual_dagm.yaml")  # the last of the config files
    # targets before --configfile, which would take them for config files
    before_configs = command.index("--configfile")
    command[before_configs:before_configs] = [
        "resources/boxes/mvtec_ad.csv",
        "resources/manifests/dagm.csv",
        "noisy.txt",
    ]
    result = subprocess.run(command, check=False, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    err = result.stderr
    assert "Using workflow specific profile profiles/default" in err
    assert "Manual downloads missing: dagm (url: null)" in err
    assert "  dagm: blocks table2. Fetch DAGM from the competition page. Then set datasets.dagm.url" in err
    # kept going: the other dataset's stages ran although DAGM's download failed
    assert (workdir / "resources/boxes/mvtec_ad.csv").is_file()
    assert not (workdir / "resources/manifests/dagm.csv").exists()
    # the tails, after Snakemake's own report
    tails = err[err.index("Exiting because a job execution failed") :]
    assert "==> last 1 lines of logs/download/dagm.log (rule download) <==" in tails
    assert "dagm: this dataset must be downloaded by hand. Fetch DAGM from the competition page." in tails
    assert "==> last 40 lines of logs/noisy.log (rule noisy) <==\n" + "\n".join(map(str, range(2961, 3001))) in tails
    assert "\n2960\n" not in err  # show-failed-logs (the whole log) is off


def test_no_profile_turns_conda_on():
    """Conda is optional (`--sdm conda`): a profile's `use-conda: true` could not be undone on the
    command line, so users without conda could not use that profile."""
    for profile in sorted((REPO / "workflow/profiles").glob("*/config.yaml")):
        settings = yaml.safe_load(profile.read_text())
        assert not settings.get("use-conda"), profile
        assert "conda" not in str(settings.get("software-deployment-method", settings.get("sdm", ""))), profile

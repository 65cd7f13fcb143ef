"""The SLURM profile against a real one-node SLURM cluster on localhost (Debian packages).

Installs and starts munged, slurmctld and slurmd (tests/workflow/slurm/cluster.sh), runs the toy target
through workflow/profiles/slurm, checks that its jobs really went through SLURM and that the
results equal a local run's, and stops only the daemons it started. Skips, saying why, where
packages cannot be installed or a SLURM already runs here.
"""

import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, copy_workflow, snakemake, write_config

CLUSTER = ROOT / "tests/workflow/slurm/cluster.sh"


def run(*args, timeout=900):
    return subprocess.run([str(CLUSTER), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the test SLURM cluster needs root (to install packages and run slurmd)")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("no apt-get to install slurm-wlm and munge, and no SLURM installed")
    installed = run("install")
    if installed.returncode != 0:
        pytest.skip(f"cannot install the SLURM packages: {installed.stderr.strip()[-500:]}")
    if subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0:
        pytest.skip("a slurmctld already runs on this machine; not touching it")
    started = run("start", timeout=120)
    if started.returncode == 3:
        pytest.skip(started.stderr.strip())
    try:
        assert started.returncode == 0, started.stderr
        yield
    finally:
        run("stop", timeout=60)


def tiny_toy(cfg):
    cfg["results"] = "results"  # the paper grid's root (the demo's: results/demo)
    cfg["experiments"] = {"toy": {"source": "nearest_neighbor", "seeds": [0]}}
    del cfg["datasets"]["digits"]
    cfg["datasets"]["toy"]["train"]["epochs"] = 5


@pytest.mark.slow
def test_toy_target_through_slurm_equals_local_run(cluster, tmp_path):
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    for where in (on_slurm, local):
        where.mkdir()
        copy_workflow(where)
        write_config(where / "tiny.yaml", "demo.yaml", tiny_toy)

    proc = snakemake(
        [
            "results/tables/toy.md",
            "--profile",
            str(ROOT / "workflow/profiles/slurm"),
            "--configfile",
            "tiny.yaml",
        ],
        on_slurm,
        timeout=1200,
    )
    out = proc.stdout + proc.stderr
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
    # data and tables are local rules; targets, 2 trainings, 2 evaluations went to SLURM
    assert len(job_ids) == 5, out
    for job_id in job_ids:
        state = subprocess.run(
            ["squeue", "--states=all", "--noheader", "-o", "%T", "-j", job_id],
            capture_output=True,
            text=True,
        )
        assert state.stdout.strip() == "COMPLETED", (job_id, state.stdout, state.stderr)

    snakemake(["results/tables/toy.md", "--cores", "2", "--configfile", "tiny.yaml"], local)
    for name in ("toy/metrics.csv", "tables/toy.md", "tables/toy.csv"):
        assert (on_slurm / "results" / name).read_text() == (local / "results" / name).read_text()

"""The SLURM profile against a real one-node SLURM cluster on localhost (Debian packages).

Installs and starts munged, slurmctld and slurmd (tests/workflow/slurm/cluster.sh), runs the toy target
through workflow/profiles/slurm, checks that its jobs really went through SLURM and that the
results equal a local run's (the session's toy run of the same config, tests/conftest.py's
toy_run), and stops only the daemons it started. Skips, saying why, where packages cannot be
installed or a SLURM already runs here. The cluster's whole life (install, start, the run, the
jobs' states, stop) is an early run (tests/conftest.py): its jobs mostly wait on SLURM, so the
session runs it in the background.
"""

import os
import re
import shutil
import subprocess

import pytest

from conftest import ENV, ROOT, early_fixture, snakemake, toy_workflow

CLUSTER = ROOT / "tests/workflow/slurm/cluster.sh"


def run(*args, timeout=900):
    return subprocess.run(
        [str(CLUSTER), *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def start_cluster() -> str | None:
    """Install and start the test cluster; None once it runs, else why it cannot run here."""
    if os.geteuid() != 0:
        return "the test SLURM cluster needs root (to install packages and run slurmd)"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "no apt-get to install slurm-wlm and munge, and no SLURM installed"
    installed = run("install")
    if installed.returncode != 0:
        return f"cannot install the SLURM packages: {installed.stderr.strip()[-500:]}"
    if subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0:
        return "a slurmctld already runs on this machine; not touching it"
    started = run("start", timeout=120)
    if started.returncode == 3:
        return started.stderr.strip()
    if started.returncode != 0:
        run("stop", timeout=60)
        raise AssertionError(started.stderr)
    return None


def run_on_slurm(where):
    """The toy target of toy_run's config through workflow/profiles/slurm on the test cluster,
    started for it and stopped after: the folder, Snakemake's output and the SLURM state of each
    job it submitted (as squeue says before the cluster stops); or why it cannot run here."""
    reason = start_cluster()
    if reason:
        return reason
    try:
        toy_workflow(where)
        proc = snakemake(
            [
                "results/demo/tables/toy.md",
                "--profile",
                str(ROOT / "workflow/profiles/slurm"),
                "--configfile",
                "toy.yaml",
                # the profile's 10 s before the first status check (then 10 s more after each
                # check that finds no job finished) would be most of this run: its jobs take
                # seconds
                "--slurm-init-seconds-before-status-checks",
                "1",
            ],
            where,
            timeout=1200,
            background=True,
        )
        out = proc.stdout + proc.stderr
        states = {}
        for job_id in re.findall(r"submitted with SLURM jobid (\d+)", out):
            state = subprocess.run(
                ["squeue", "--states=all", "--noheader", "-o", "%T", "-j", job_id],
                capture_output=True,
                text=True,
                env=ENV,
            )
            states[job_id] = (state.stdout + state.stderr).strip()
        return where, out, states
    finally:
        run("stop", timeout=60)


slurm_run = early_fixture("slurm_run", run_on_slurm)


@pytest.mark.slow
def test_toy_target_through_slurm_equals_local_run(slurm_run, toy_run):
    if isinstance(slurm_run, str):
        pytest.skip(slurm_run)
    on_slurm, out, states = slurm_run
    # data and tables are local rules; targets, 2 trainings, 2 evaluations went to SLURM
    assert len(states) == 5, out
    for job_id, state in states.items():
        assert state == "COMPLETED", (job_id, state)
    # the same numbers as the local run of the same config
    for name in ("toy/metrics.csv", "tables/toy.md", "tables/toy.csv"):
        local = (toy_run / "results/demo" / name).read_text()
        assert (on_slurm / "results/demo" / name).read_text() == local, name

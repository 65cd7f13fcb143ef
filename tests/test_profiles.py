"""Profiles: resources per job on the paper's grid, the SLURM and workstation profiles, and the
demo's GPU-free jobs."""

import re

import yaml

from conftest import ROOT, copy_workflow, snakemake


def job_resources(dry_output: str) -> dict[str, dict[str, str]]:
    """{output path: {resource: value}} from a dry run's job listing."""
    jobs = {}
    for block in re.findall(r"rule \w+:\n((?:    .*\n)+)", dry_output):
        output = re.search(r"    output: (\S+)", block)
        res = re.search(r"    resources: (.*)", block)
        if output and res:
            jobs[output.group(1).rstrip(",")] = dict(kv.split("=", 1) for kv in res.group(1).split(", "))
    return jobs


def test_slurm_profile_dry_run_requests_gpus_for_training(tmp_path):
    copy_workflow(tmp_path)
    dry = snakemake(["-n", "--profile", str(ROOT / "workflow/profiles/slurm")], tmp_path)
    jobs = job_resources(dry.stdout)
    train = jobs["results/cifar10/one_image/lam0.5/seed0/model.pt"]
    assert train["gpu"] == "1" and train["runtime"] == "1440" and train["mem_mb"] == "32000"
    assert jobs["results/stl10/teacher_l2/lam0/seed0/model.pt"]["runtime"] == "2880"
    assert jobs["results/cifar10/vanilla/lam0/seed0/metrics.csv"]["gpu"] == "1"
    assert jobs["results/toy/vanilla/lam0/seed0/model.pt"]["gpu"] == "0"
    # the profile's fill-in defaults reach every job
    assert train["slurm_partition"] == "" and train["slurm_account"] == ""


def test_slurm_profile_settings():
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"  # works with and without accounting
    assert profile["retries"] >= 1 and profile["latency-wait"] >= 30
    assert {"slurm_partition", "slurm_account"} <= set(profile["default-resources"])


def test_workstation_profile_limits_gpu_jobs(tmp_path):
    copy_workflow(tmp_path)
    profile = yaml.safe_load((ROOT / "workflow/profiles/workstation/config.yaml").read_text())
    assert profile["resources"]["gpu"] >= 1
    dry = snakemake(["-n", "--profile", str(ROOT / "workflow/profiles/workstation")], tmp_path)
    jobs = job_resources(dry.stdout)
    assert jobs["results/cifar10/class_mean/lam0.4/seed0/model.pt"]["gpu"] == "1"


def test_demo_runs_every_job_on_the_cpu(tmp_path):
    copy_workflow(tmp_path)
    dry = snakemake(["-n", "-p", "--profile", str(ROOT / "workflow/profiles/demo")], tmp_path)
    jobs = job_resources(dry.stdout)
    assert jobs and all(r.get("gpu", "0") == "0" for r in jobs.values())
    assert "--device cuda" not in dry.stdout and "--device auto" not in dry.stdout

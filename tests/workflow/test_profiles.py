"""Profiles: resources per job on the paper's grid, the SLURM profile's defaults reaching the jobs
that declare none, the workstation profile limiting GPU jobs in a real (tiny) run, and the
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
            jobs[output.group(1).rstrip(",")] = dict(
                kv.split("=", 1) for kv in res.group(1).split(", ")
            )
    return jobs


def test_slurm_profile_dry_run_requests_gpus_for_training(tmp_path):
    copy_workflow(tmp_path)
    dry = snakemake(["-n", "--profile", str(ROOT / "workflow/profiles/slurm")], tmp_path)
    jobs = job_resources(dry.stdout)
    datasets = yaml.safe_load((ROOT / "config.yaml").read_text())["datasets"]
    limits = {d: datasets[d]["resources"]["runtime"] for d in ("cifar10", "stl10")}
    train = jobs["results/cifar10/one_image/lam0.5/seed0/model.pt"]
    assert (
        train["gpu"] == "1"
        and train["runtime"] == str(limits["cifar10"]["train"])
        and train["mem_mb"] == "32000"
    )
    assert jobs["results/stl10/teacher_l2/lam0/seed0/model.pt"]["runtime"] == str(
        limits["stl10"]["teacher"]
    )
    aa = jobs["results/stl10/class_mean/lam0.2/seed0/autoattack_l2.csv"]
    assert aa["gpu"] == "1" and aa["runtime"] == str(limits["stl10"]["autoattack"])
    assert jobs["results/cifar10/vanilla/lam0/seed0/metrics.csv"]["gpu"] == "1"
    assert jobs["results/toy/vanilla/lam0/seed0/model.pt"]["gpu"] == "0"
    # the profile's fill-in defaults reach every job
    assert train["slurm_partition"] == "" and train["slurm_account"] == ""
    # and its default memory and time limit reach the jobs that declare none (the tables)
    defaults = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())[
        "default-resources"
    ]
    table = jobs["results/tables/toy.md"]
    assert table["mem_mb"] == str(defaults["mem_mb"]) and table["runtime"] == str(
        defaults["runtime"]
    )
    assert table["slurm_partition"] == ""


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


TIMED_JOBS = """
rule all:
    input:
        expand("gpu{{i}}.txt", i=range({gpu_jobs})),
        expand("cpu{{i}}.txt", i=range(4)),


rule gpu_job:
    output:
        "gpu{{i}}.txt",
    resources:
        gpu=1,
    shell:
        "{python} -c 'import time; t = time.time(); time.sleep(2.5); print(t, time.time())' > {{output}}"


rule cpu_job:
    output:
        "cpu{{i}}.txt",
    shell:
        "{python} -c 'import time; t = time.time(); time.sleep(2.5); print(t, time.time())' > {{output}}"
"""


def most_at_once(intervals) -> int:
    return max(sum(s <= t < e for s, e in intervals) for t, _ in intervals)


def test_workstation_profile_runs_at_most_its_gpu_count_of_gpu_jobs_at_once(tmp_path):
    """A real run under the profile: GPU jobs (resources gpu=1) and CPU jobs that sleep 2.5 s,
    with cores to spare; no more GPU jobs overlap than the profile's gpu resource."""
    import sys

    gpus = yaml.safe_load((ROOT / "workflow/profiles/workstation/config.yaml").read_text())[
        "resources"
    ]["gpu"]
    gpu_jobs = 2 * gpus
    (tmp_path / "Snakefile").write_text(TIMED_JOBS.format(gpu_jobs=gpu_jobs, python=sys.executable))
    snakemake(
        ["--profile", str(ROOT / "workflow/profiles/workstation"), "--cores", str(gpu_jobs + 4)],
        tmp_path,
        timeout=300,
    )
    read = lambda name: tuple(map(float, (tmp_path / name).read_text().split()))  # noqa: E731
    gpu = [read(f"gpu{i}.txt") for i in range(gpu_jobs)]
    cpu = [read(f"cpu{i}.txt") for i in range(4)]
    assert most_at_once(gpu) == gpus  # the limit, and reached
    assert most_at_once(gpu + cpu) > gpus  # cores were not what held the GPU jobs back


def test_demo_runs_every_job_on_the_cpu(tmp_path):
    copy_workflow(tmp_path)
    dry = snakemake(["-n", "-p", "--profile", str(ROOT / "workflow/profiles/demo")], tmp_path)
    jobs = job_resources(dry.stdout)
    assert jobs and all(r.get("gpu", "0") == "0" for r in jobs.values())
    assert "--device cuda" not in dry.stdout and "--device auto" not in dry.stdout


def test_a_failed_jobs_error_reaches_the_console_without_a_profile(tmp_path):
    """A job's output goes to its log file; a step that fails with a known error writes its
    one-line error (naming the fix) on the console too, with or without --profile."""
    copy_workflow(tmp_path)
    step = tmp_path / "src/pagrob/steps/prepare_data.py"
    step.write_text(
        "from pagrob.steps import _cli\n\n\ndef main():\n"
        "    raise ValueError('the step says why it failed: marker 7f3a')\n\n\n_cli.run(main)\n"
    )
    proc = snakemake(
        ["results/demo/toy/data.pt", "--cores", "1", "--configfile", "demo.yaml"],
        tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert (
        "error in pagrob.steps.prepare_data: the step says why it failed: marker 7f3a"
        in proc.stderr
    )
    # and the log keeps it
    assert "marker 7f3a" in (tmp_path / "results/demo/toy/logs/prepare_data.log").read_text()


def test_cheap_rules_run_where_snakemake_runs(tmp_path):
    """Each cheap rule says localrule: True (the tables, the collections, the data step that may
    download); every PyTorch step that needs a GPU goes to the cluster."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    copy_workflow(tmp_path)
    with SnakemakeApi(OutputSettings(quiet=True)) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(),
            snakefile=tmp_path / "Snakefile",
            workdir=tmp_path,
        )
        local = set(wf._workflow._localrules)
    cheap = {"all", "prepare_data", "collect_metrics", "main_table", "lambda_table", "seeds_table"}
    cheap |= {"ablation_table", "masking_table", "robustness_curves", "provenance", "toy_table"}
    cheap |= {"collect_pag_scores", "pag_scores_table", "pag_vs_robustness", "pag_lambda"}
    cheap |= {"external_table", "import_external", "unknown_target", "answer", "answer_toy"}
    cheap |= {"sigma_sweep"}
    assert local == cheap

"""pagrob.grid's list of jobs is the DAG Snakemake builds: for each config the project ships, its
jobs per rule equal a dry run's of every output (the bench projects these jobs)."""

from __future__ import annotations

import pytest

from conftest import ROOT, copy_workflow, job_counts, load_grid, snakemake


@pytest.mark.parametrize(
    "configs",
    [("config.yaml",), ("demo.yaml",), ("demo.yaml", "study.yaml"), ("fmnist.yaml",)],
    ids="+".join,
)
def test_the_grid_lists_the_jobs_a_dry_run_schedules(configs, tmp_path):
    copy_workflow(tmp_path)
    dag = job_counts(snakemake(["-n", "--forceall", "--configfile", *configs], tmp_path).stdout)
    ours = load_grid(*(ROOT / c for c in configs)).job_counts()
    assert {rule: dag.get(rule, 0) for rule in ours} == ours
    # every rule that runs a PyTorch step is in the list: the rest gather CSVs into tables
    gathering = {r for r in dag if r not in ours}
    assert gathering <= {
        "all",
        "provenance",
        "answer",
        "answer_toy",
        "grad_of_table",
        "lambda_table",
        "seeds_table",
        "ablation_table",
        "main_table",
        "masking_table",
        "robustness_curves",
        "collect_metrics",
        "collect_pag_scores",
        "pag_scores_table",
        "pag_vs_robustness",
        "pag_lambda",
        "toy_table",
        "external_table",
        "sigma_sweep",
    }, gathering


def test_each_training_seed_reads_the_targets_drawn_from_it(tmp_path):
    """A drawn source's training job of seed s reads targets/<source>/seed<s>.pt, and the job
    that draws them is handed --seed s (datasets.<d>.targets.per_seed)."""
    copy_workflow(tmp_path)
    root = load_grid(ROOT / "demo.yaml").config["results"]
    model = f"{root}/digits/one_image/lam0.3/seed1/model.pt"
    out = snakemake(["-n", "-p", "--forceall", model, "--configfile", "demo.yaml"], tmp_path).stdout
    targets = f"{root}/digits/targets/one_image/seed1.pt"
    assert f"--targets {targets}" in out and "--seed 1 --device cpu" in out
    assert f"{root}/digits/targets/one_image/seed0.pt" not in out

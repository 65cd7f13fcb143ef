"""The workflow as a user runs it: lint-clean, formatted, and the toy target end to end."""

import pandas as pd
import pytest

from conftest import BIN, ROOT, copy_workflow, job_counts, snakemake, write_config


def test_lint_clean():
    proc = snakemake(["--lint"], ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_snakefmt_clean():
    import subprocess

    proc = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "workflow"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def small_toy(cfg):
    cfg["experiments"]["toy"]["seeds"] = [0, 1]


@pytest.mark.slow
def test_toy_target_end_to_end(tmp_path):
    copy_workflow(tmp_path)
    write_config(tmp_path / "small.yaml", "config.yaml", small_toy)
    opts = ["--configfile", "small.yaml", "--replace-workflow-config", "--cores", "2"]

    # builds exactly what the table needs: no figure, 2 seeds x (vanilla, PAG)
    dry = snakemake(["-n", *opts, "results/tables/toy.md"], tmp_path)
    assert job_counts(dry.stdout) == {
        "prepare_data": 1, "make_targets": 1, "train": 4, "evaluate": 4,
        "collect_metrics": 1, "toy_table": 1,
    }
    snakemake([*opts, "results/tables/toy.md"], tmp_path)
    assert not (tmp_path / "results/figures").exists()

    metrics = pd.read_csv(tmp_path / "results/toy/metrics.csv")
    assert list(metrics.columns) == ["dataset", "source", "lam", "seed", "attack", "norm", "eps", "steps", "accuracy"]
    assert len(metrics) == 8  # 4 models x (clean, PGD L2)
    assert set(metrics["source"]) == {"vanilla", "nearest_neighbor"}
    pgd = metrics[metrics["attack"] == "pgd"]
    assert (pgd["norm"] == "l2").all() and (pgd["eps"] == 15).all() and (pgd["steps"] == 10).all()
    assert (metrics[metrics["attack"] == "clean"]["accuracy"] > 95).all()

    table = (tmp_path / "results/tables/toy.md").read_text()
    assert "| Vanilla |" in table and "PAG (Nearest Neighbor)" in table
    assert "75.5" in table and "0.0" in table  # the paper's numbers beside ours
    csv = pd.read_csv(tmp_path / "results/tables/toy.csv")
    assert set(csv["metric"]) == {"clean", "l2"}

    # the figure, then nothing left to do
    snakemake([*opts, "results/figures/fig3_toy.png"], tmp_path)
    assert (tmp_path / "results/figures/fig3_toy.pdf").stat().st_size > 0
    again = snakemake(["-n", *opts], tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr
    # logs and benchmarks beside every model
    model_dir = tmp_path / "results/toy/nearest_neighbor/lam1/seed0"
    assert "epoch 100/100" in (model_dir / "train.log").read_text()
    assert (model_dir / "train.benchmark.tsv").exists()
    assert not (model_dir / "checkpoint.pt").exists()

"""Fashion-MNIST end to end through Snakemake on the real files that Debian's package
dataset-fashion-mnist installs (.ci/run installs it where apt-get works): fmnist.yaml at a tiny
size, from the data job to Table 1 beside the published rows and the answer page."""

import pandas as pd
import pytest

from conftest import copy_workflow, early_fixture, job_counts, snakemake, write_config
from pagrob import datasets

INSTALLED = datasets.find_fashion_mnist_files(datasets.SYSTEM_FASHION_MNIST) is not None


def tiny(cfg):
    fm = cfg["datasets"]["fashion_mnist"]
    fm["data"].update(download=False, train_size=200)  # Debian's files, no network tried
    fm["train"]["epochs"] = 1
    fm["teachers"]["epochs"] = 1
    fm["eval"]["max_images"] = 60
    fm["eval"]["attacks"]["linf"]["steps"] = 3
    fm["eval"]["attacks"]["l2"]["steps"] = 3
    fm["eval"]["autoattack"].update(images=10, experiments=["main"])
    fm["pictures"] = {"images": [0], "attack": {"eps": 8.0, "steps": 3}}
    fm["pag_scores"].update(images=10, attack={"eps": 4.0, "steps": 3})
    fm["autoencoder"]["epochs"] = 1
    cfg["experiments"] = {
        "main": {
            "tables": {"fashion_mnist": "table1"},
            "sources": ["vanilla", "class_mean"],
            # one seed: the answer's tests over seeds are the reduced demo's (two seeds, digits)
            "seeds": [0],
        },
    }


def run_tiny(where):
    """fmnist.yaml at tiny's size, run to the end: its folder and jobs."""
    copy_workflow(where)
    write_config(where / "tiny.yaml", "fmnist.yaml", tiny)
    proc = snakemake(["--configfile", "tiny.yaml", "--cores", "2"], where, background=True)
    return where, job_counts(proc.stdout + proc.stderr)


fmnist_run = early_fixture("fmnist_run", run_tiny, when=INSTALLED)


@pytest.mark.slow
@pytest.mark.skipif(
    not INSTALLED,
    reason=f"Fashion-MNIST's files are not in {datasets.SYSTEM_FASHION_MNIST}: "
    "apt-get install dataset-fashion-mnist (.ci/run does, where apt-get works)",
)
def test_fashion_mnist_runs_end_to_end_on_the_real_files(fmnist_run):
    where, counts = fmnist_run
    assert counts["prepare_data"] == 1 and counts["train"] == 2
    # the two teachers (the published Madry row's stand-in, L-inf; and L2) and the references
    assert counts["teacher"] == 2 + 2
    results = where / "results/fmnist"  # fmnist.yaml's own results root
    log = (results / "fashion_mnist/logs/prepare_data.log").read_text()
    assert f"Fashion-MNIST's files: {datasets.SYSTEM_FASHION_MNIST}" in log
    data = __import__("pagrob.data", fromlist=["load_prepared"]).load_prepared(
        results / "fashion_mnist/data.pt"
    )
    assert data.x_train.shape == (200, 1, 28, 28) and data.x_test.shape == (10_000, 1, 28, 28)
    table = pd.read_csv(results / "tables/table1_fashion_mnist.csv").set_index(["source", "metric"])
    # the published rows stand beside our vanilla model and our L-inf Madry teacher
    assert table.loc[("vanilla", "clean"), "paper"] == 92.18
    assert table.loc[("teacher_linf", "linf"), "paper"] == 68.06
    text = (results / "tables/table1_fashion_mnist.md").read_text()
    assert "(published)" in text and "(paper)" not in text
    assert "inspire-group/privacy-vs-robustness" in text
    assert "PGD-3 L∞ ε=0.1 (60 images) (published)" in text
    answer = (results / "tables/answer_fashion_mnist.md").read_text()
    assert answer.startswith("# The answer on fashion_mnist") or "Fashion-MNIST" in answer
    assert (results / "figures/answer_fashion_mnist.png").stat().st_size > 0

"""The workflow as a user runs it: lint-clean, formatted, and the toy target end to end."""

import re

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
    opts = ["--configfile", "small.yaml", "--cores", "2"]

    # builds exactly what the table needs: no figure, 2 seeds x (vanilla, PAG)
    dry = snakemake(["-n", *opts, "results/tables/toy.md"], tmp_path)
    assert job_counts(dry.stdout) == {
        "prepare_data": 1, "make_targets": 1, "train": 4, "evaluate": 4,
        "collect_metrics": 1, "toy_table": 1,
    }
    snakemake([*opts, "results/tables/toy.md"], tmp_path)
    assert not (tmp_path / "results/figures").exists()

    metrics = pd.read_csv(tmp_path / "results/toy/metrics.csv")
    assert list(metrics.columns) == [
        "dataset", "source", "lam", "seed", "attack", "norm", "eps", "steps", "accuracy", "classes_per_step"
    ]
    assert (metrics["classes_per_step"] == 0).all()
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
    again = snakemake(["-n", *opts, "results/tables/toy.md", "results/figures/fig3_toy.pdf"], tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr
    # logs and benchmarks beside every model
    model_dir = tmp_path / "results/toy/nearest_neighbor/lam1/seed0"
    assert "epoch 100/100" in (model_dir / "train.log").read_text()
    assert (model_dir / "train.benchmark.tsv").exists()
    assert not (model_dir / "model.checkpoint.pt").exists()


PAPER_GRID = {
    # 3 datasets; toy (6 models), CIFAR-10 main (6) + Table 4 (+2 seeds) + Fig. 5 (+3 lambdas),
    # STL-10 main (6); two robust teachers per image dataset
    "prepare_data": 3,
    "make_targets": 7,  # 3 representative sources x 2 datasets + the toy's nearest neighbours
    "teacher": 4,
    "train": 23,
    "evaluate": 27,  # every student and every teacher
    "robust_figure": 2,
    "collect_metrics": 3,
    "toy_table": 1,
    "toy_figure": 1,
    "main_table": 2,
    "pag_figure": 2,
    "lambda_table": 1,
    "seeds_table": 1,
    "ablation_table": 1,
    "ablation_figure": 1,
    "all": 1,
}


def test_paper_grid_fan_out(tmp_path):
    copy_workflow(tmp_path)
    dry = snakemake(["-n", "--cores", "4"], tmp_path)
    assert job_counts(dry.stdout) == PAPER_GRID
    # the grid in the paths: Table 3's lambdas, Table 4's seeds, Fig. 5's lambdas
    for path in (
        "results/cifar10/one_image/lam0.5/seed2/model.pt",
        "results/cifar10/class_mean/lam0.01/seed0/model.pt",
        "results/stl10/nearest_neighbor/lam0.4/seed0/model.pt",
        "results/stl10/class_mean/lam0.2/seed0/model.pt",
        "results/cifar10/vanilla/lam0/seed0/model.pt",
        "results/stl10/teacher_l2/lam0/seed0/model.pt",
    ):
        assert path in dry.stdout
    # each RIGD student is wired to its dataset's teacher of the same threat model
    jobs = re.findall(r"rule (\w+):\n    input: (.*)\n    output: (.*)\n", dry.stdout)
    for dataset in ("cifar10", "stl10"):
        for norm in ("linf", "l2"):
            teacher = f"results/{dataset}/teacher_{norm}/lam0/seed0/model.pt"
            student = [j for j in jobs if f"results/{dataset}/rigd_{norm}/lam0.4/seed0/model.pt" in j[2].split(", ")]
            assert len(student) == 1 and student[0][0] == "train"
            assert teacher in student[0][1].split(", ")
            assert [j[0] for j in jobs if teacher in j[2].split(", ")] == ["teacher"]


def test_one_table_builds_only_its_models(tmp_path):
    copy_workflow(tmp_path)
    dry = snakemake(["-n", "--cores", "4", "results/tables/table2_stl10.md"], tmp_path)
    assert job_counts(dry.stdout) == {
        "prepare_data": 1, "make_targets": 3, "teacher": 2, "train": 6, "evaluate": 8, "main_table": 1
    }
    assert "results/cifar10" not in dry.stdout
    dry = snakemake(["-n", "--cores", "4", "results/tables/table4_seeds.md"], tmp_path)
    assert job_counts(dry.stdout) == {
        "prepare_data": 1, "make_targets": 1, "train": 3, "evaluate": 3, "seeds_table": 1
    }
    # a table name the config does not give its dataset is refused
    bad = snakemake(["-n", "results/tables/table7_cifar10.md"], tmp_path, check=False)
    assert bad.returncode != 0 and "experiments.main.tables.cifar10 is 'table1'" in bad.stdout + bad.stderr


def small_demo(cfg):
    cfg["experiments"]["toy"]["seeds"] = [0]
    cfg["datasets"]["toy"]["train"]["epochs"] = 5
    digits = cfg["datasets"]["digits"]
    digits["train"]["epochs"] = 2
    digits["eval"]["attacks"]["linf"]["steps"] = 3
    digits["eval"]["attacks"]["l2"]["steps"] = 3
    digits["eval"]["max_images"] = 100
    digits["pictures"] = {"images": [0], "attack": {"eps": 3.0, "steps": 3}}
    digits["teachers"]["epochs"] = 1
    cfg["experiments"]["seeds"]["seeds"] = [0, 1]
    cfg["experiments"]["lambda_ablation"]["lams"] = [0.1, 0.3]


@pytest.mark.slow
def test_demo_end_to_end_reduced(tmp_path):
    """Every stage of the demo (toy and digits: data, targets, training, PGD, every table and
    figure) at reduced size."""
    copy_workflow(tmp_path)
    write_config(tmp_path / "small.yaml", "demo.yaml", small_demo)
    proc = snakemake(["--configfile", "small.yaml", "--cores", "2"], tmp_path)
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["train"] == 2 + 6 + 1 + 1  # toy, main, one more seed, one more lambda
    assert counts["teacher"] == 2
    results = tmp_path / "results"
    for name in ("table1_digits", "table3_lambda", "table4_seeds", "fig5_lambda_ablation", "toy"):
        for ext in ("md", "csv"):
            assert (results / "tables" / f"{name}.{ext}").stat().st_size > 0
    for name in ("fig1_digits", "fig3_toy", "fig4_digits", "fig5_lambda_ablation"):
        for ext in ("png", "pdf"):
            assert (results / "figures" / f"{name}.{ext}").stat().st_size > 0
    table1 = pd.read_csv(results / "tables/table1_digits.csv")
    assert list(dict.fromkeys(table1["source"])) == [
        "vanilla", "one_image", "class_mean", "nearest_neighbor", "rigd_linf", "rigd_l2",
        "teacher_linf", "teacher_l2",
    ]
    assert set(table1["metric"]) == {"clean", "linf", "l2"}
    assert table1["paper"].isna().all()  # the paper has no digits numbers
    seeds = pd.read_csv(results / "tables/table4_seeds.csv")
    assert (seeds["seeds"] == 2).all() and seeds["std"].notna().all()
    metrics = pd.read_csv(results / "digits/metrics.csv")
    assert len(metrics) == 3 * 10  # 8 digits students + 2 teachers, x (clean, L-inf, L2)
    assert "| One Image | 0.3 |" in (results / "tables/table1_digits.md").read_text()

"""The workflow as a user runs it: lint-clean, formatted, and the toy target end to end."""

import re

import pandas as pd
import pytest

from conftest import (
    BIN,
    EARLY,
    ROOT,
    TOY_OPTS,
    copy_run,
    copy_workflow,
    early_fixture,
    job_counts,
    snakemake,
    write_config,
)


def test_lint_clean():
    proc = snakemake(["--lint"], ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_snakefmt_clean():
    import subprocess

    proc = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "workflow"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def small_toy(cfg):
    cfg["experiments"]["toy"] = {"sources": ["nearest_neighbor"], "seeds": [0, 1]}


PAPER_TOY = ["--configfile", "small.yaml", "--cores", "2"]


def run_paper_toy(where):
    """config.yaml's toy table over 2 seeds (results/tables/toy.md) run in a copy of the
    session's finished run of demo.yaml's toy (toy_run, results/demo): the folder, the jobs the
    run ran, and the demo's files with their times before it."""
    copy_run(EARLY["toy_run"].result(), where)
    demo = {p: p.stat().st_mtime_ns for p in (where / "results/demo").rglob("*") if p.is_file()}
    write_config(where / "small.yaml", "config.yaml", small_toy)
    run = snakemake([*PAPER_TOY, "results/tables/toy.md"], where, background=True)
    return where, job_counts(run.stdout + run.stderr), demo


paper_toy = early_fixture("paper_toy", run_paper_toy)


@pytest.mark.slow
def test_toy_target_end_to_end(paper_toy):
    tmp_path, counts, _ = paper_toy
    opts = PAPER_TOY

    # builds exactly what the table needs: no figure, 2 seeds x (vanilla, PAG), one job per
    # recipe for the toy's tiny training and evaluation, one for the PAG source's two draws
    assert counts == {
        "prepare_data": 1,
        "draw_toy_targets": 1,
        "train_toy": 2,
        "evaluate_toy": 2,
        "collect_metrics": 1,
        "toy_table": 1,
    }
    assert not (tmp_path / "results/figures").exists()

    metrics = pd.read_csv(tmp_path / "results/toy/metrics.csv")
    assert list(metrics.columns) == [
        "dataset",
        "source",
        "lam",
        "seed",
        "attack",
        "norm",
        "eps",
        "steps",
        "accuracy",
        "classes_per_step",
        "images",
        "ci_low",
        "ci_high",
        "correct",
    ]
    # each accuracy with its exact 95% interval over the images, and which images it got right
    assert (metrics["ci_low"] <= metrics["accuracy"]).all() and (
        metrics["accuracy"] <= metrics["ci_high"]
    ).all()
    assert metrics["correct"].str.startswith("x").all()
    assert (metrics["images"] == 600).all()
    assert (metrics["classes_per_step"] == 0).all()
    assert len(metrics) == 8  # 4 models x (clean, PGD L2)
    assert set(metrics["source"]) == {"vanilla", "nearest_neighbor"}
    pgd = metrics[metrics["attack"] == "pgd"]
    assert (pgd["norm"] == "l2").all() and (pgd["eps"] == 15).all() and (pgd["steps"] == 10).all()
    assert (metrics[metrics["attack"] == "clean"]["accuracy"] > 95).all()

    table = (tmp_path / "results/tables/toy.md").read_text()
    assert "| Vanilla |" in table and "PAG (Nearest Neighbor)" in table
    csv = pd.read_csv(tmp_path / "results/tables/toy.csv")
    assert set(csv["metric"]) == {"clean", "l2"}
    cell = csv.set_index(["source", "metric"])
    # the paper's numbers beside ours, row by row (Section 5.1: 100 / 0.0 and 100 / 75.5)
    assert cell.loc[("vanilla", "l2"), "paper"] == 0.0
    assert cell.loc[("nearest_neighbor", "l2"), "paper"] == 75.5
    assert (cell.xs("clean", level="metric")["paper"] == 100.0).all()
    assert "| Vanilla | 0 | 2 | 100.00 ± 0.00 | 100.00 | 0.00 |" in table
    # the claim itself: the PAG model is far more robust than vanilla (over the seeds)
    pag, vanilla = cell.loc[("nearest_neighbor", "l2"), "mean"], cell.loc[("vanilla", "l2"), "mean"]
    assert pag > vanilla + 30, (pag, vanilla)

    # the figure, then nothing left to do
    snakemake([*opts, "results/figures/fig3_toy.png"], tmp_path)
    assert (tmp_path / "results/figures/fig3_toy.pdf").stat().st_size > 0
    again = snakemake(
        ["-n", *opts, "results/tables/toy.md", "results/figures/fig3_toy.pdf"], tmp_path
    )
    assert "Nothing to be done" in again.stdout + again.stderr
    # logs and benchmarks beside every model (the toy's: beside its recipe's seeds, one job)
    model_dir = tmp_path / "results/toy/nearest_neighbor/lam1/seed0"
    log = (model_dir.parent / "train.log").read_text()
    assert log.count("epoch 100/100") == 2 and "--- run 2: python -m pagrob.steps.train" in log
    # every job ran with the instruction-set pin (cpu_isa: avx2), recorded with the threads,
    # the torch build and the commit
    import json

    env = json.loads((model_dir / "model.json").read_text())["environment"]
    assert env["cpu_capability"] == "AVX2" and env["isa_pins"] == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    }
    assert env["threads"] == 1 and env["torch_build"].startswith("2.") and env["git_commit"]
    assert (model_dir.parent / "train.benchmark.tsv").exists()
    assert not (model_dir / "model.checkpoint.pt").exists()
    # the CPU it ran on, recorded with the rest
    assert env["cpu"] and env["cpu"] != "unknown"


@pytest.mark.slow
def test_cpu_isa_null_exports_no_pin(tmp_path):
    """cpu_isa: null leaves each machine its best instruction set: no pin reaches the job."""
    import json

    copy_workflow(tmp_path)

    def unpinned(cfg):
        cfg["cpu_isa"] = None
        cfg["experiments"]["toy"]["seeds"] = [0]
        cfg["datasets"]["toy"]["train"]["epochs"] = 1

    write_config(tmp_path / "unpinned.yaml", "config.yaml", unpinned)
    target = "results/toy/vanilla/lam0/seed0/model.json"
    snakemake(["--configfile", "unpinned.yaml", "--cores", "1", target], tmp_path)
    env = json.loads((tmp_path / target).read_text())["environment"]
    assert env["isa_pins"] == {} and env["cpu_capability"] != ""


PAPER_GRID = {
    # 3 datasets; toy (3 recipes x 10 seeds: vanilla, Nearest Neighbor, score-based), CIFAR-10
    # main (9 sources: the paper's 6, clustered NN, score-based and its shuffled control, x 3
    # seeds; Table 4's are among them) + Fig. 5 (+3 lambdas), STL-10 main (9 x 3); two robust
    # teachers per image dataset
    "prepare_data": 3,
    # the drawn sources (one image, nearest neighbour, clustered NN) once per training seed on
    # each image dataset, class mean once per dataset; the toy's nearest neighbours: one job
    "draw_targets": 18,
    # class mean and the two score-based sources per image dataset, the toy's score-based one
    "make_targets": 7,
    "draw_toy_targets": 1,
    # per dataset the score-based sources' denoiser and the score instrument's (seed 100)
    "denoiser": 6,
    "toy_score": 1,
    # per image dataset the two RIGD teachers and the two PAG references (seed 100); the toy's
    # adversarially trained model and its reference (results/tables/toy_pag)
    "teacher": 10,
    "train": 57,
    "train_toy": 3,  # one job per toy recipe trains its ten seeds
    "evaluate": 68,  # every student and every teacher, and the toy's adversarially trained model
    "evaluate_toy": 3,
    "autoattack": 134,  # every image-dataset model (63 students, 4 teachers) x 2 norms
    "sweep": 67,
    "masking_table": 2,
    "robustness_curves": 2,
    "pag_scores": 67,
    "pag_baselines": 2,
    "autoencoder": 2,  # the tangent-space score's, one per image dataset
    "toy_pag": 1,
    "train_class_score": 6,  # the grad_of ablation: 3 sources x 2 other class scores
    "grad_of_table": 1,
    "answer": 2,
    "answer_toy": 1,
    "collect_pag_scores": 2,
    "pag_scores_table": 2,
    "pag_vs_robustness": 2,
    "pag_lambda": 1,
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
    "provenance": 1,  # the report's provenance page (config, versions, wall time)
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
            student = [
                j
                for j in jobs
                if f"results/{dataset}/rigd_{norm}/lam0.4/seed0/model.pt" in j[2].split(", ")
            ]
            assert len(student) == 1 and student[0][0] == "train"
            assert teacher in student[0][1].split(", ")
            assert [j[0] for j in jobs if teacher in j[2].split(", ")] == ["teacher"]


def test_grad_of_ablation_fans_out_over_source_score_and_seed(tmp_path):
    """One training per source x class score x seed; the config's class score (pag.grad_of) is
    the main experiment's model, the others <source>.<grad_of>."""
    copy_workflow(tmp_path)

    def two_seeds(cfg):
        cfg["experiments"]["grad_of_ablation"]["seeds"] = [0, 1]

    write_config(tmp_path / "ablation.yaml", "config.yaml", two_seeds)
    dry = snakemake(
        [
            "-n",
            "--configfile",
            "ablation.yaml",
            "--cores",
            "4",
            "results/tables/grad_of_ablation.md",
        ],
        tmp_path,
    )
    counts = job_counts(dry.stdout)
    # 3 sources x 3 class scores x 2 seeds: the logit ones by the train rule (the main models'
    # paths), the other two scores by train_class_score
    assert counts["train"] == 3 * 2 and counts["train_class_score"] == 3 * 2 * 2
    for source in ("one_image", "class_mean", "nearest_neighbor"):
        for score in ("log_softmax", "centred"):
            for seed in (0, 1):
                lam = {"one_image": "0.5"}.get(source, "0.4")
                path = f"results/cifar10/{source}.{score}/lam{lam}/seed{seed}/model.pt"
                assert path in dry.stdout
    assert (
        "--label class_mean.centred"
        in snakemake(
            [
                "-n",
                "-p",
                "--configfile",
                "ablation.yaml",
                "--cores",
                "4",
                "results/cifar10/class_mean.centred/lam0.4/seed0/model.pt",
            ],
            tmp_path,
        ).stdout
    )


def test_one_table_builds_only_its_models(tmp_path):
    copy_workflow(tmp_path)
    dry = snakemake(["-n", "--cores", "4", "results/tables/table2_stl10.md"], tmp_path)
    # 9 sources x 3 seeds and the two teachers; class mean's and the two score-based sources'
    # targets once (from one denoiser), the drawn sources' once per seed
    assert job_counts(dry.stdout) == {
        "prepare_data": 1,
        "denoiser": 1,
        "make_targets": 3,
        "draw_targets": 9,
        "teacher": 2,
        "train": 27,
        "evaluate": 29,
        "main_table": 1,
        "autoattack": 58,
        "sweep": 29,
    }
    assert "results/cifar10" not in dry.stdout
    # Table 1 footnotes the masking checks of its own models, computed in its step: none of
    # Fig. 5's lambdas or the class-score ablation's models is trained for it
    dry = snakemake(["-n", "--cores", "4", "results/tables/table1_cifar10.md"], tmp_path)
    counts = job_counts(dry.stdout)
    assert counts["train"] == 27 and counts["teacher"] == 2 and counts["autoattack"] == 58
    assert "masking_table" not in counts and "train_class_score" not in counts
    assert (
        "--records results/cifar10/vanilla/lam0/seed0/autoattack_linf.json"
        in snakemake(
            ["-n", "-p", "--cores", "4", "results/tables/table1_cifar10.md"], tmp_path
        ).stdout
    )
    assert "class_mean/lam0.01/" not in dry.stdout
    dry = snakemake(["-n", "--cores", "4", "results/tables/table4_seeds.md"], tmp_path)
    assert job_counts(dry.stdout) == {
        "prepare_data": 1,
        "draw_targets": 3,  # One Image's image, drawn from each training seed
        "train": 3,
        "evaluate": 3,
        "seeds_table": 1,
        "autoattack": 6,
        "sweep": 3,
    }
    # a table name the config does not give its dataset is refused
    bad = snakemake(["-n", "results/tables/table7_cifar10.md"], tmp_path, check=False)
    assert (
        bad.returncode != 0
        and "experiments.main.tables.cifar10 is 'table1'" in bad.stdout + bad.stderr
    )


def test_a_wrong_target_lists_the_valid_ones(tmp_path):
    copy_workflow(tmp_path)
    # mistyped, and the paper grid's path of a demo table (demo.yaml writes under results/demo)
    for wrong in (
        "results/demo/tables/tabel1_digits.md",
        "results/demo/figures/fig4_digit.png",
        "results/tables/table1_digits.md",
    ):
        bad = snakemake(["-n", wrong, "--configfile", "demo.yaml"], tmp_path, check=False)
        out = bad.stdout + bad.stderr
        assert bad.returncode != 0 and f"{wrong}: not a table or figure of this config" in out
        for valid in (
            "results/demo/tables/table1_digits.md",
            "results/demo/figures/fig4_digits.png",
            "results/demo/tables/answer_digits.md",
        ):
            assert f"  {valid}\n" in out
    # the listed ones and their other formats are made by their own rules
    snakemake(
        [
            "-n",
            "results/demo/tables/table1_digits.html",
            "results/demo/figures/fig4_digits.pdf",
            "--configfile",
            "demo.yaml",
        ],
        tmp_path,
    )


def test_autoattack_can_spare_the_teachers(tmp_path):
    copy_workflow(tmp_path)

    def spare(cfg):
        cfg["datasets"]["stl10"]["eval"]["autoattack"]["teachers"] = False

    write_config(tmp_path / "spare.yaml", "config.yaml", spare)
    dry = snakemake(
        ["-n", "--configfile", "spare.yaml", "--cores", "4", "results/tables/table2_stl10.md"],
        tmp_path,
    )
    counts = job_counts(dry.stdout)
    assert (
        counts["autoattack"] == 54 and counts["sweep"] == 27
    )  # the 9 students x 3 seeds; the teachers still train
    assert counts["teacher"] == 2 and "teacher_linf/lam0/seed0/autoattack" not in dry.stdout


def small_demo(cfg):
    # the digits: the toy's half of the demo is the session's toy run (test_demo_toy_end_to_end)
    del cfg["experiments"]["toy"], cfg["datasets"]["toy"]
    digits = cfg["datasets"]["digits"]
    digits["train"]["epochs"] = 2
    # one norm, and four sources (the paper's and the one beyond it): AutoAttack costs ~40 s a
    # model on this CPU whatever the number of images
    del digits["eval"]["attacks"]["l2"]
    digits["eval"]["attacks"]["linf"]["steps"] = 3
    digits["eval"]["max_images"] = 100
    digits["eval"]["autoattack"]["images"] = 20
    digits["eval"]["checks"] = {"steps": 5, "restarts": 2, "curves": {"linf": [0.1, 0.5]}}
    digits["pictures"] = {"images": [0], "attack": {"eps": 3.0, "steps": 3}}
    digits["pag_scores"] = {"images": 20, "attack": {"eps": 1.5, "steps": 3}}
    digits["teachers"]["epochs"] = 1
    digits["autoencoder"]["epochs"] = 5
    cfg["experiments"]["main"]["sources"] = ["vanilla", "one_image", "clustered_nn", "rigd_linf"]
    cfg["experiments"]["main"]["seeds"] = [0, 1]
    cfg["experiments"]["seeds"]["seeds"] = [0, 1]
    # the study's lambda ablation (study.yaml) too
    cfg["experiments"]["lambda_ablation"] = {
        "dataset": "digits",
        "source": "class_mean",
        "lams": [0.1, 0.3],
        "seed": 0,
    }


@pytest.mark.slow
def test_demo_toy_end_to_end(toy_run):
    """Every stage of the demo's toy experiment (data, targets, the two recipes' training and
    evaluation, the adversarially trained reference, the PAG measures against the ground truth,
    the table, Fig. 3 and the answer): the session's run of demo.yaml's toy alone (toy_run),
    the other half of test_demo_end_to_end_reduced."""
    (log,) = (toy_run / ".snakemake/log").glob("*.snakemake.log")  # toy_run's one run
    counts = job_counts(log.read_text())
    assert counts["train_toy"] == 2  # the toy's two recipes, each a job
    # the toy's reference (demo.yaml leaves its realistic ceiling to the study)
    assert counts["teacher"] == 1 and counts["toy_pag"] == 1 and counts["answer_toy"] == 1
    results = toy_run / "results/demo"  # demo.yaml's results root
    for name in ("toy", "toy_pag", "answer_toy"):
        for ext in ("md", "csv"):
            assert (results / "tables" / f"{name}.{ext}").stat().st_size > 0
    for ext in ("png", "pdf"):
        assert (results / "figures" / f"fig3_toy.{ext}").stat().st_size > 0
    assert "# The answer on the toy data" in (results / "tables/answer_toy.md").read_text()
    toy = pd.read_csv(results / "tables/toy_pag.csv")
    assert set(toy["source"]) == {"vanilla", "nearest_neighbor", "teacher_l2"}
    assert toy["manifold_alignment"].between(0, 1).all()


def run_reduced_demo(where):
    """The demo.yaml at reduced size (small_demo) run to the end: its folder and jobs."""
    copy_workflow(where)
    write_config(where / "small.yaml", "demo.yaml", small_demo)
    proc = snakemake(["--configfile", "small.yaml", "--cores", "2"], where, background=True)
    return where, job_counts(proc.stdout + proc.stderr)


reduced_demo = early_fixture("reduced_demo", run_reduced_demo)


@pytest.mark.slow
def test_demo_end_to_end_reduced(reduced_demo):
    """Every stage of the demo on the digits (data, targets, training, PGD, AutoAttack and the
    masking checks, PAG scores, every table and figure) at reduced size; its toy experiment is
    test_demo_toy_end_to_end's."""
    check_reduced_demo(*reduced_demo)


def check_reduced_demo(tmp_path, counts):
    assert counts["train"] == 4 * 2 + 2  # main over two seeds (Table 4's), two lambdas
    # the digits teachers (seed 0) and the PAG references (seed 100) of both threat models
    assert counts["teacher"] == 2 + 2
    assert counts["autoencoder"] == 1
    # Table 1's 4 students of both seeds, L-inf only (demo.yaml spares the teachers): the whole
    # version for seed 0, its APGD stages for seed 1
    assert counts["autoattack"] == 4 * 2
    assert counts["answer"] == 1
    results = tmp_path / "results/demo"  # demo.yaml's results root
    for name in (
        "table1_digits",
        "table3_lambda",
        "table4_seeds",
        "fig5_lambda_ablation",
        "masking_digits",
        "pag_scores_digits",
        "fig5_pag_scores",
        "answer_digits",
    ):
        for ext in ("md", "csv"):
            assert (results / "tables" / f"{name}.{ext}").stat().st_size > 0
    for name in (
        "fig1_digits",
        "fig4_digits",
        "fig5_lambda_ablation",
        "robustness_curves_digits",
        "pag_vs_robustness_digits",
        "fig5_pag_scores",
    ):
        for ext in ("png", "pdf"):
            assert (results / "figures" / f"{name}.{ext}").stat().st_size > 0
    table1 = pd.read_csv(results / "tables/table1_digits.csv")
    assert list(dict.fromkeys(table1["source"])) == [
        "vanilla",
        "one_image",
        "rigd_linf",
        "clustered_nn",
        "teacher_linf",
        "teacher_l2",
    ]
    assert set(table1["metric"]) == {"clean", "linf", "apgd_linf", "aa_linf"}
    assert table1["paper"].isna().all()  # the paper has no digits numbers
    text = (results / "tables/table1_digits.md").read_text()
    assert "(paper)" not in text and " Δ |" not in text  # so those columns are left out
    assert (
        "AutoAttack L∞ ε=0.1 (20 images, seed 0)" in text
        and "| Clustered NN (beyond the paper)" in text
    )
    assert "PGD-3 L∞ ε=0.1 (100 images)" in text and "## Per seed" in text
    # one seed: the accuracy ± its exact interval's half-width; two: ± the t-interval's
    full = table1.set_index(["source", "metric"])
    assert full.loc[("vanilla", "aa_linf"), "interval"] == "images"
    assert (
        full.loc[("vanilla", "linf"), "interval"] == "seeds"
        and full.loc[("vanilla", "linf"), "seeds"] == 2
    )
    # the teacher is a reference row: its AutoAttack cell (the last column) is blank, not "nan"
    table_part = text.split("## Per seed")[0]
    (teacher,) = [line for line in table_part.splitlines() if line.startswith("| Teacher ℓ∞")]
    assert teacher.endswith("|  |") and "nan" not in text
    seeds = pd.read_csv(results / "tables/table4_seeds.csv")
    assert (seeds[seeds["metric"] != "aa_linf"]["seeds"] == 2).all()
    # the whole AutoAttack ran on seed 0's model only, and says so; its APGD stages on both
    assert set(seeds["metric"]) == {"clean", "linf", "apgd_linf", "aa_linf"}
    assert seeds.set_index("metric").loc["aa_linf", "seeds"] == 1
    assert seeds.set_index("metric").loc["apgd_linf", "seeds"] == 2
    metrics = pd.read_csv(results / "digits/metrics.csv")
    pgd = metrics[metrics["attack"].isin(["clean", "pgd"])]
    assert len(pgd) == 2 * 12  # 8 main models, 2 more lambdas, 2 teachers, x (clean, L-inf)
    assert pgd["correct"].str.len().gt(0).all() and (pgd["ci_low"] <= pgd["accuracy"]).all()
    aa = metrics[metrics["attack"] == "autoattack"]
    assert sorted(aa["source"]) == sorted(["vanilla", "one_image", "clustered_nn", "rigd_linf"])
    assert (aa["images"] == 20).all()
    checks = pd.read_csv(results / "tables/masking_digits.csv")
    assert set(checks["check"]) == {
        "robust_above_clean",
        "autoattack_gap",
        "later_stages_gain",
        "more_steps_gap",
        "square_gain",
        "monotone_in_eps",
        "large_eps_accuracy",
        "autoattack_warnings",
    }
    # every checked model, each check once (one norm): the seed-0 models all eight, the seed-1
    # ones (AutoAttack's APGD stages) all but Square's gain and what the later stages take off
    assert len(checks) == 4 * 8 + 4 * 6
    scores = pd.read_csv(results / "digits/pag_scores.csv")
    assert {"floor", "ceiling", "clustered_nn", "vanilla", "random", "teacher_l2"} <= set(
        scores["source"]
    )
    # the score instrument's denoiser (seed 100) too: demo.yaml gives the digits a score recipe
    assert set(scores["reference"]) == {
        "teacher_linf",
        "teacher_l2",
        "none",
        "autoencoder",
        "denoiser",
    }
    rigd = scores[scores["source"] == "rigd_linf"]
    assert (rigd[rigd["reference"] == "teacher_linf"]["relation"] == "same_recipe").all()
    assert (rigd[rigd["reference"] == "teacher_l2"]["relation"] == "circular").all()
    # the references are the seed-100 models, which no scored model is
    assert 100 not in set(scores[~scores["source"].isin(["ceiling"])]["seed"])
    assert set(scores[scores["source"] == "ceiling"]["seed"]) == {100}
    answer = pd.read_csv(results / "tables/answer_digits.csv")
    robust = answer[answer["question"] == "robustness"]
    assert set(robust["source"]) == {
        "one_image",
        "clustered_nn",
        "rigd_linf",
        "teacher_linf",
        "teacher_l2",
    }
    # the circular models (the RIGD student, the teachers) are the ceiling, never tested
    circular = answer[answer["source"].isin(["rigd_linf", "teacher_linf", "teacher_l2"])]
    assert (circular["role"] != "verdict").all()
    assert set(answer["verdict"]) <= {
        "more robust",
        "less robust",
        "no detectable difference",
        "more aligned",
        "less aligned",
        "ranks robustness",
        "ranks it inversely",
        "no detectable rank correlation",
        "ceiling: not tested",
        "one seed: not tested",
        "secondary",
    }
    assert (results / "figures/answer_digits.png").stat().st_size > 0
    assert "# The answer on digits" in (results / "tables/answer_digits.md").read_text()


def test_demo_leaves_the_checks_sweep_to_the_study(tmp_path):
    """demo.yaml checks its models from AutoAttack's rows and records alone (eval.checks.sweep:
    false, for its 12 minutes); study.yaml adds the strong PGD, the curves and their figure."""
    copy_workflow(tmp_path)
    demo = snakemake(["-n", "--configfile", "demo.yaml", "--cores", "2"], tmp_path)
    counts = job_counts(demo.stdout)
    # Table 1's 5 students of every seed (the whole version on seed 0, the APGD stages on 1, 2)
    assert counts["autoattack"] == 5 * 3 and counts["masking_table"] == 1
    assert "sweep" not in counts and "robustness_curves" not in counts
    study = snakemake(["-n", "--configfile", "demo.yaml", "study.yaml", "--cores", "2"], tmp_path)
    counts = job_counts(study.stdout)
    # Table 1's 9 students of every seed (RIGD's and the score-based control among them) and the
    # class-score ablation's 6 other models
    assert counts["sweep"] == 9 * 3 + 6 and counts["robustness_curves"] == 1


@pytest.mark.slow
def test_each_config_writes_under_its_own_results_root(paper_toy):
    """demo.yaml writes under results/demo, config.yaml under results: a run of one leaves the
    other's outputs untouched and up to date (nothing to rerun), even with other settings.
    paper_toy ran config.yaml's toy table (2 seeds of 100 epochs) where demo.yaml's toy
    experiment (1 seed of 20 epochs) had run to the end."""
    tmp_path, _, before = paper_toy
    assert tmp_path / "results/demo/toy/vanilla/lam0/seed0/model.pt" in before
    assert (tmp_path / "results/toy/vanilla/lam0/seed0/model.pt").is_file()
    assert {p: p.stat().st_mtime_ns for p in before} == before
    demo = ["results/demo/tables/toy.md", "results/demo/tables/toy_pag.md"]
    demo += ["results/demo/tables/answer_toy.md", "results/demo/figures/fig3_toy.png"]
    assert "Nothing to be done" in snakemake(["-n", *demo, *TOY_OPTS], tmp_path).stdout

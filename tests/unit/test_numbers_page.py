"""docs/numbers.md (pagrob.numbers_page) from made-up results roots: every section of the page
(the stamp, the answer, the tables, the time, the study both ways, Fashion-MNIST both ways), the
runs' record that the Snakefile's onsuccess appends (pagrob.run_record), and the job-time sums
(pagrob.job_time) against what bench/job_split.py printed before it used them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from conftest import ROOT, copy_workflow, snakemake
from fake_records import benchmark, model_record, page
from pagrob import job_time, numbers_page, run_record

CPU = "Fake CPU 9000 @ 3 GHz"
COMMIT = "0123456789abcdef0123456789abcdef01234567-dirty"
FINISHED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def environment(cpu=CPU, threads=1, commit=COMMIT):
    env = {"cpu_capability": "AVX2", "threads": threads, "git_commit": commit}
    if cpu is not None:
        env["cpu"] = cpu
    return env


def demo_root(tmp_path, study=False, runs=True):
    """A results root named as demo.yaml's (results/demo): three trained models (one whose record
    predates the CPU field), the autoencoder's record (no environment), benchmark files of
    every kind (and one a killed job left empty), tables and answer pages, the answer figure,
    and (runs) a run's record; with study, outputs that only study.yaml asks for."""
    root = tmp_path / "results" / "demo"
    model_record(root / "digits/vanilla/lam0/seed0", environment())
    model_record(root / "digits/class_mean/lam0.3/seed0", environment())
    model_record(root / "digits/one_image/lam0.3/seed0", environment(cpu=None))
    model_record(root / "digits/autoencoder/seed0", None)
    benchmark(root / "digits/vanilla/lam0/seed0/train.benchmark.tsv", 100.25)
    benchmark(root / "digits/one_image/lam0.3/seed0/train.benchmark.tsv", 200.5)
    benchmark(root / "digits/vanilla/lam0/seed0/evaluate.benchmark.tsv", 20.0)
    benchmark(root / "digits/vanilla/lam0/seed0/autoattack_linf.benchmark.tsv", 50.0)
    benchmark(root / "digits/vanilla/lam0/seed0/pag_scores.benchmark.tsv", 10.0)
    benchmark(root / "digits/logs/targets_one_image_seed0.benchmark.tsv", 5.0)
    benchmark(root / "logs/fig1_digits.benchmark.tsv", 4.25)
    benchmark(root / "logs/fig4_digits.benchmark.tsv", None)  # killed: counts for nothing
    page(
        root / "tables/answer_digits.md",
        "# The answer on digits\n\n![The answer on digits](../figures/answer_digits.png)\n\n"
        "| model | L∞ robust accuracy |\n|---|---|\n| One Image | +17.7 [-5.7, +41.0] · |\n",
    )
    page(
        root / "tables/answer_toy.md",
        "# The answer on the toy data\n\n![The toy](../figures/answer_toy.png)\n\n"
        "| model | L2 robust accuracy |\n|---|---|\n| Nearest Neighbor | +65.1 ↑ |\n",
    )
    page(
        root / "tables/table1_digits.md",
        "# Table 1: accuracy on digits\n\n| Method | Clean |\n|---|---|\n| Vanilla | 96.47 |\n\n"
        "## Per seed\n\n| Method | Seed | Clean |\n|---|---|---|\n| Vanilla | 0 | 97.03 |\n",
    )
    page(root / "tables/toy.md", "# Toy experiment\n\n| Method | L2 |\n|---|---|\n| PAG | 81.5 |\n")
    page(root / "tables/masking_digits.md", "# Gradient-masking checks\n\n| check | ok |\n")
    (root / "figures").mkdir(parents=True)
    (root / "figures/answer_digits.png").write_bytes(PNG)
    if runs:
        entry = run_record.record(
            wall_s=612.4,
            cores=2,
            commit=COMMIT,
            configfiles=["demo.yaml"],
            targets=["all"],
            command=["/x/.venv/bin/snakemake", "--profile", "workflow/profiles/demo"],
            finished=FINISHED,
        )
        run_record.append(root / run_record.RUNS, dict(entry, cpu=CPU))
    if study:
        page(root / "tables/grad_of_ablation.md", "# Which class score?\n\n| x | 42.42 |\n")
        page(root / "tables/fig5_lambda_ablation.md", "# Fig. 5\n\n| λ | 0.1 |\n")
        (root / "figures/robustness_curves_digits.png").write_bytes(PNG)
    return root


def fmnist_root(tmp_path):
    """A results root named as fmnist.yaml's: one model, its benchmark, its answer, Table 1,
    the class-score ablation and one more table; no runs' record."""
    root = tmp_path / "results" / "fmnist"
    model_record(root / "fashion_mnist/vanilla/lam0/seed0", environment(commit="fedcba9"))
    benchmark(root / "fashion_mnist/vanilla/lam0/seed0/train.benchmark.tsv", 300.0)
    page(
        root / "tables/answer_fashion_mnist.md",
        "# The answer on fashion_mnist\n\n![A](../figures/answer_fashion_mnist.png)\n\n"
        "| model | L∞ |\n|---|---|\n| Class Mean | +3.3 · |\n",
    )
    page(
        root / "tables/table1_fashion_mnist.md",
        "# Table 1: accuracy on fashion_mnist\n\n| Method | Clean |\n|---|---|\n| Vanilla | 77.10 |\n",
    )
    page(root / "tables/grad_of_ablation.md", "# Which class score?\n\n| x | 39.43 |\n")
    page(root / "tables/sigma_sweep.md", "# The sigma sweep\n\n| σ | 0.1 |\n")
    page(root / "tables/table3_lambda.md", "# Table 3\n\n| λ | 0.3 |\n")
    return root


def generate(tmp_path, *roots):
    out = tmp_path / "docs" / "numbers.md"
    numbers_page.main([*map(str, roots), "--out", str(out)])
    return out.read_text()


def sections(text):
    """The page's ## sections: heading -> its text."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.fixture
def both(tmp_path):
    demo, fmnist = demo_root(tmp_path), fmnist_root(tmp_path)
    return tmp_path, sections(generate(tmp_path, demo, fmnist))


def test_the_page_has_its_headings_in_order(both):
    from markdown.extensions.toc import slugify

    tmp_path, found = both
    assert list(found) == list(numbers_page.HEADINGS)
    # no other heading takes a section's anchor (other pages link to them)
    text = (tmp_path / "docs" / "numbers.md").read_text()
    others = re.findall(r"^#{3,6} (.+)$", text, flags=re.M)
    taken = {slugify(re.sub(r"[`*_]", "", h), "-") for h in others}
    assert not taken & {slugify(h, "-") for h in numbers_page.HEADINGS}


def test_the_stamp_names_cpu_threads_commit_date_and_commands(both):
    tmp_path, found = both
    stamp = found["Where these numbers come from"]
    demo, fmnist = stamp.split("### Fashion-MNIST root")
    assert f"CPU: `{CPU}` (2 model files), not recorded (1)" in demo  # the autoencoder: none
    assert "Threads per job: `1` (3 model files)" in demo
    assert f"Commit: `{COMMIT}` (3 model files); the last run: `{COMMIT}`" in demo
    assert "Run finished: 2026-01-02 03:04 UTC" in demo
    assert "`snakemake --profile workflow/profiles/demo` (config files: demo.yaml)" in demo
    assert "python -m pagrob.numbers_page" in stamp and "--out" in stamp  # how to regenerate
    # the Fashion-MNIST root has no runs' record: said so, with the command that makes it
    assert "Commit: `fedcba9` (1 model files)" in fmnist
    assert "Run finished: not recorded" in fmnist and "`make fmnist` (fmnist.yaml)" in fmnist


def test_the_answer_is_embedded_with_its_figure(both):
    tmp_path, found = both
    answer = found["The demo's answer"]
    assert "### The answer on digits" in answer  # its heading under this section
    assert "| One Image | +17.7 [-5.7, +41.0] · |" in answer
    assert "![The answer on digits](img/answer_digits.png)" in answer
    copied = tmp_path / "docs" / "img" / "answer_digits.png"
    assert copied.read_bytes() == PNG
    # the toy's answer last, its figure named by its path in the root
    assert answer.index("answer on digits") < answer.index("### The answer on the toy data")
    assert "| Nearest Neighbor | +65.1 ↑ |" in answer
    assert "results/demo/figures/answer_toy.png` (in the results root)" in answer


def test_each_table_is_under_its_file_name(both):
    _, found = both
    tables = found["The demo's tables"]
    headings = re.findall(r"^### (.+)$", tables, flags=re.M)
    assert headings == ["table1_digits.md", "masking_digits.md", "toy.md"]
    assert "#### Table 1: accuracy on digits" in tables and "##### Per seed" in tables
    assert "| Vanilla | 96.47 |" in tables and "| Vanilla | 0 | 97.03 |" in tables
    assert "| PAG | 81.5 |" in tables and "answer" not in tables


def test_the_time_gives_the_wall_time_and_the_split(both):
    _, found = both
    time = found["The demo's time"]
    assert "10 min 12 s" in time  # 612.4 s, from logs/runs.jsonl
    assert "Job time: 7 timed jobs, 390 s in all" in time  # the killed job counts for nothing
    rows = re.findall(r"^\| ([^|]+) \| (\d+) \| ([\d.]+)% \| (\d+) \|$", time, flags=re.M)
    assert rows == [
        ("training", "301", "77.1", "2"),  # 300.75 s of 390
        ("AutoAttack", "50", "12.8", "1"),
        ("PGD evaluation", "20", "5.1", "1"),
        ("PAG scores", "10", "2.6", "1"),
        ("targets", "5", "1.3", "1"),
        (job_time.OTHER, "4", "1.1", "1"),
        ("all", "390", "100", "7"),
    ]


def test_the_time_without_a_runs_record(tmp_path):
    found = sections(generate(tmp_path, demo_root(tmp_path, runs=False)))
    assert "Wall time: not recorded" in found["The demo's time"]
    assert "Run finished: not recorded" in found["Where these numbers come from"]


def test_the_study_when_absent(both):
    _, found = both
    study = found["The study"]
    assert "are not in" in study and "`make study`" in study
    assert "`tables/grad_of_ablation.md`" in study  # what it would write, from study.yaml


def test_the_study_when_present(tmp_path):
    found = sections(generate(tmp_path, demo_root(tmp_path, study=True)))
    study = found["The study"]
    assert re.findall(r"^### (.+)$", study, flags=re.M) == [
        "fig5_lambda_ablation.md",
        "grad_of_ablation.md",
    ]
    assert "| x | 42.42 |" in study and "| λ | 0.1 |" in study
    assert "results/demo/figures/robustness_curves_digits.png" in study
    assert "Not in this root (yet)" in study  # fig5_pag_scores and the rest
    # the study's tables are not the demo's
    assert "grad_of_ablation" not in found["The demo's tables"]


def test_fashion_mnist_when_present(both):
    _, found = both
    fm = found["Fashion-MNIST"]
    assert "### The answer on fashion_mnist" in fm and "| Class Mean | +3.3 · |" in fm
    assert "### table1_fashion_mnist.md" in fm and "| Vanilla | 77.10 |" in fm
    assert "### grad_of_ablation.md" in fm and "| x | 39.43 |" in fm
    assert "### sigma_sweep.md" in fm and "| σ | 0.1 |" in fm
    # its PAG scores' table, which fmnist.yaml writes, named where the root lacks it
    assert "### pag_scores_fashion_mnist.md\n\nNot in `" in fm
    assert "`table3_lambda.md`" in fm  # its other tables named
    time = fm.split("### Time")[1]
    assert "Wall time: not recorded" in time and "| training | 300 | 100.0% | 1 |" in time


@pytest.mark.parametrize("given", [True, False], ids=["missing-folder", "not-given"])
def test_fashion_mnist_when_not_run(tmp_path, given):
    roots = [demo_root(tmp_path)] + ([tmp_path / "results" / "fmnist"] if given else [])
    found = sections(generate(tmp_path, *roots))
    assert "Not run here: `make fmnist`" in found["Fashion-MNIST"]
    assert "### table1" not in found["Fashion-MNIST"]
    assert (
        "Not run here" in found["Where these numbers come from"].split("### Fashion-MNIST root")[1]
    )


def test_only_fashion_mnist(tmp_path):
    """The demo not run here: its sections say so, Fashion-MNIST's numbers are there."""
    found = sections(generate(tmp_path, tmp_path / "results/demo", fmnist_root(tmp_path)))
    for name in ("The demo's answer", "The demo's tables", "The demo's time"):
        assert "Not run here" in found[name] and "`make demo`" in found[name]
    assert "| Vanilla | 77.10 |" in found["Fashion-MNIST"]
    assert not (tmp_path / "docs/img/answer_digits.png").exists()


def test_no_root_at_all_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pagrob.numbers_page", str(tmp_path / "demo"), "--out", "x.md"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "none of the results roots exists" in proc.stderr
    assert not (tmp_path / "x.md").exists()
    with pytest.raises(SystemExit, match="cannot tell which config"):
        numbers_page.main([str(tmp_path), "--out", str(tmp_path / "x.md")])


@pytest.mark.parametrize("module", ["pagrob.numbers_page", "pagrob.job_time", "pagrob.run_record"])
def test_pure_python(module):
    """The docs' generators and the runs' record import neither PyTorch nor Snakemake."""
    code = f"import sys; sys.modules['torch'] = sys.modules['snakemake'] = None; import {module}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_demote_keeps_code_fences():
    text = "# A\n\n## B\n\n```\n# not a heading\n```\n"
    assert numbers_page.demote(text, 4) == "#### A\n\n##### B\n\n```\n# not a heading\n```"


# --- the runs' record ------------------------------------------------------------------------


def test_run_record_fields(tmp_path):
    entry = run_record.record(
        wall_s=612.44,
        cores=2,
        commit="unknown",  # common.smk's git_commit() outside a git checkout
        configfiles=[tmp_path / "demo.yaml", tmp_path / "study.yaml", "/elsewhere/x.yaml"],
        targets=["results/demo/tables/table1_digits.md"],
        command=["/home/me/.venv/bin/snakemake", "--configfile", "demo.yaml"],
        basedir=tmp_path,
        finished=FINISHED,
    )
    assert entry == {
        "finished": "2026-01-02T03:04:05+00:00",
        "wall_s": 612.4,
        "cores": 2,
        "cpu": run_record.cpu_model(),
        "commit": None,
        "configfiles": ["demo.yaml", "study.yaml", "/elsewhere/x.yaml"],
        "targets": ["results/demo/tables/table1_digits.md"],
        "command": "snakemake --configfile demo.yaml",
    }
    assert run_record.record(
        wall_s=1, cores=None, commit=COMMIT, configfiles=[], targets=["all"], command=["s"]
    )["commit"] == (COMMIT)


def test_run_record_appends_one_line_a_run(tmp_path):
    root = tmp_path / "results" / "demo"
    assert run_record.read(root) == []
    first = {"finished": "a", "wall_s": 1.0}
    run_record.append(root / run_record.RUNS, first)
    with open(root / run_record.RUNS, "a") as f:
        f.write('{"finished": "cut sh')  # a write cut short
    with open(root / run_record.RUNS, "a") as f:
        f.write("\n")
    run_record.append(root / run_record.RUNS, {"finished": "b", "wall_s": 2.0})
    lines = (root / run_record.RUNS).read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0]) == first
    assert [r["finished"] for r in run_record.read(root)] == ["a", "b"]


@pytest.mark.slow
def test_the_workflow_appends_its_record(tmp_path):
    """The Snakefile's onsuccess writes the record (--touch: no job runs, the run succeeds)."""
    copy_workflow(tmp_path)
    target = tmp_path / "results/demo/toy/data.pt"
    target.parent.mkdir(parents=True)
    target.touch()
    snakemake(
        ["results/demo/toy/data.pt", "-f", "--touch", "-c1", "--configfile", "demo.yaml"],
        cwd=tmp_path,
        timeout=300,
    )
    (entry,) = run_record.read(tmp_path / "results/demo")
    assert entry["configfiles"] == ["demo.yaml"] and entry["cores"] == 1
    assert entry["targets"] == ["results/demo/toy/data.pt"] and entry["commit"] is None
    assert entry["command"].startswith("snakemake results/demo/toy/data.pt")
    assert entry["wall_s"] >= 0 and datetime.fromisoformat(entry["finished"]).tzinfo


# --- the job-time sums, as bench/job_split.py printed them --------------------------------------

#: bench/job_split.py's output on demo_root before its sums moved to pagrob.job_time (the old
#: script run on the same files), less its first line's CPU
OLD_SPLIT = """\
7 timed jobs, 390 s of job time, on {cpu}
 77.1%      301 s     2 jobs  training
 12.8%       50 s     1 jobs  AutoAttack
  5.1%       20 s     1 jobs  PGD evaluation
  2.6%       10 s     1 jobs  PAG scores
  1.3%        5 s     1 jobs  targets
  1.1%        4 s     1 jobs  other (data, figures, checks' sweeps, ...)
"""
OLD_SPLIT_ONLY = """\
2 timed jobs, 301 s of job time, on {cpu}
100.0%      301 s     2 jobs  training
"""


def job_split(*args):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "job_split.py"), *map(str, args)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_job_time_sums(tmp_path):
    split = job_time.split(demo_root(tmp_path))
    assert split.seconds == {
        "training": 300.75,
        "AutoAttack": 50.0,
        "PGD evaluation": 20.0,
        "PAG scores": 10.0,
        "targets": 5.0,
        job_time.OTHER: 4.25,
    }
    assert split.jobs["training"] == 2 and split.job_count == 7 and split.total == 390.0


def test_job_split_prints_as_before(tmp_path):
    root = demo_root(tmp_path)
    cpu = run_record.cpu_model()
    assert job_split(root) == OLD_SPLIT.format(cpu=cpu)
    assert job_split(root, "--only", "*/train.benchmark.tsv") == OLD_SPLIT_ONLY.format(cpu=cpu)
    # a pattern matched from the right (Path.match), as bench/job_split.py matched it
    assert job_split(root, "--only", "train.benchmark.tsv") == OLD_SPLIT_ONLY.format(cpu=cpu)
    assert job_split(root, "--only", "digits/vanilla/*") != job_split(root)

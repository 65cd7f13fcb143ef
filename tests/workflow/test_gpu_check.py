"""bench/gpu_check.py, the GPU check run before the paper's grid, in its CPU form (--tiny): it runs
every job kind end to end, prints the projection table with a grid total, and writes its JSON.
The expected job kinds come from the library and the workflow (sources, strategies, the schema's
runtime kinds, the rules), not from the script, so a kind the script stops measuring fails here;
every job of the workflow's grid (pagrob.grid) must be in its projection, the score-based
sources' denoiser and targets and the sigma sweep's jobs too."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from collections import Counter

import pytest
import torch
import yaml

from conftest import ROOT, load_grid
from pagrob import pag, sources

SCRIPT = ROOT / "bench" / "gpu_check.py"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
DATASETS = ("cifar10", "stl10")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One --tiny run (with --channels-last, so the precision check runs too): (stdout, JSON)."""
    out = tmp_path_factory.mktemp("gpu_check") / "check.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--channels-last", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"gpu_check --tiny failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc.stdout, json.loads(out.read_text())


def config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def expected_kinds(dataset: str) -> list[str]:
    """Every job kind of the grid on ``dataset``, from the library's sources and the config."""
    cfg = config()
    kinds = ["data", *(f"targets:{s}" for s in sources.REPRESENTATIVES), "train:vanilla"]
    kinds += [f"train:{s}" for s in sources.REPRESENTATIVES] + ["train:rigd"]
    kinds += [f"teacher:{n}" for n in sorted(set(sources.TEACHER_SOURCES.values()))]
    kinds += [
        "evaluate",
        *(f"autoattack:{n}" for n in cfg["datasets"][dataset]["eval"]["attacks"]),
        "sweep",
    ]
    kinds += ["pag_scores", "pag_baselines", "autoencoder", "figure:fig4", "figure:fig1"]
    if cfg["experiments"]["lambda_ablation"]["dataset"] == dataset:
        kinds.append("figure:fig5")
    score = [s for s in sources.SCORE if s in cfg["experiments"]["main"]["sources"]]
    if score:  # the score-based sources: their denoiser, targets and students
        kinds += ["denoiser", *(f"targets:{s}" for s in score), *(f"train:{s}" for s in score)]
    return kinds


def test_tiny_prints_every_job_kind_and_the_grid_total(tiny):
    stdout, _ = tiny
    assert "Projection per job" in stdout
    lines = stdout.splitlines()
    for dataset in DATASETS:
        for kind in expected_kinds(dataset):
            assert any(re.match(rf"{dataset}\s+{re.escape(kind)}\s", line) for line in lines), (
                f"no table row for {dataset} {kind}"
            )
    total = re.search(r"^grid total: ([0-9.]+) GPU-hours over (\d+) GPU jobs", stdout, re.M)
    assert total and float(total.group(1)) > 0 and int(total.group(2)) > 0
    assert re.search(r"^over their runtime limit: ", stdout, re.M)
    for dataset in DATASETS:  # the strategy tables
        assert f"PAG strategies, {dataset}" in stdout
    for name in ("vanilla", *pag.STRATEGIES):
        assert sum(line.split()[:1] == [name] for line in lines) == len(DATASETS), name


def test_tiny_json_holds_every_measurement(tiny):
    _, record = tiny
    assert {"device", "tiny", "options", "wall_seconds", "datasets", "rows", "grid"} <= set(record)
    assert record["tiny"] is True and record["device"] == "cpu"
    assert set(record["datasets"]) == set(DATASETS)
    for dataset, m in record["datasets"].items():
        assert {
            "data",
            "targets",
            "train",
            "strategies",
            "precision",
            "evaluate",
            "sweep",
            "autoattack",
            "pag_scores",
            "autoencoder",
            "denoiser",
            "score_targets",
            "figure",
        } <= set(m)
        assert m["autoencoder"]["seconds_per_step"] > 0 and m["pag_scores"]["tangent_s"] > 0
        assert m["denoiser"]["seconds_per_image_epoch"] > 0
        assert set(m["score_targets"]) == set(sources.SCORE)
        assert all(t["build_s"] > 0 for t in m["score_targets"].values())
        assert set(m["targets"]) == set(sources.REPRESENTATIVES)
        assert set(m["train"]) == {
            "vanilla",
            *sources.REPRESENTATIVES,
            "teacher_linf",
            "teacher_l2",
            "rigd",
        }
        for kind, t in m["train"].items():
            assert t["seconds_per_step"] > 0, (dataset, kind)
        assert set(m["strategies"]) == {"vanilla", *pag.STRATEGIES}
        assert all(r["seconds_per_step"] > 0 for r in m["strategies"].values())
        # --channels-last: one PAG step against float32, nearly the same
        assert m["precision"]["grad_cosine"] > 0.999 and m["precision"]["ce_rel_dev"] < 1e-3
    for key in ("gpu_hours", "gpu_jobs", "cpu_hours", "over_limit", "rule_counts"):
        assert key in record["grid"]
    gpu_rows = [r for r in record["rows"] if r["device"] == "gpu"]
    assert record["grid"]["gpu_hours"] == pytest.approx(sum(r["hours"] for r in gpu_rows))


def runtime_schema(node):
    """The schema's resources.runtime properties (one per job kind), wherever they are defined."""
    if isinstance(node, dict):
        if isinstance(node.get("runtime"), dict) and "properties" in node["runtime"]:
            return node["runtime"]["properties"]
        for value in node.values():
            found = runtime_schema(value)
            if found:
                return found
    return None


def test_every_runtime_kind_of_the_schema_is_projected_beside_its_limit(tiny):
    _, record = tiny
    runtime = runtime_schema(yaml.safe_load(SCHEMA.read_text()))
    cfg = config()
    for dataset in DATASETS:
        rows = [r for r in record["rows"] if r["dataset"] == dataset]
        assert {r["runtime_kind"] for r in rows} == set(runtime), dataset
        limits = {
            **{k: v.get("default") for k, v in runtime.items()},
            **cfg["datasets"][dataset]["resources"]["runtime"],
        }
        for r in rows:
            assert r["limit_minutes"] == limits[r["runtime_kind"]], r
            assert r["over_limit"] == (r["minutes_per_job"] > r["limit_minutes"]), r


def test_training_is_projected_from_the_real_epoch(tiny):
    """per step x (real training images // the config's batch) x the config's epochs, the
    measured step scaled per image when --batch-size overrode the config's."""
    _, record = tiny
    cfg = config()
    for dataset in DATASETS:
        m, train = record["datasets"][dataset], cfg["datasets"][dataset]["train"]
        steps = m["real_train_images"] // train["batch_size"]
        row = next(
            r for r in record["rows"] if r["dataset"] == dataset and r["kind"] == "train:vanilla"
        )
        floor = (
            train["epochs"] * steps * row["measured"] * train["batch_size"] / m["batch_size"] / 60
        )
        assert floor <= row["minutes_per_job"] < floor * 1.5 + 5, (dataset, row)


def test_every_job_of_the_grid_is_projected(tiny):
    """Each job that pagrob.grid lists for a dataset (the workflow's grid) is in one row of the
    projection, but the imports (an imported model or teacher costs no training); the grid's
    list is held to Snakemake's dry run by tests/workflow/test_grid_dag.py."""
    _, record = tiny
    grid = load_grid(ROOT / "config.yaml")
    for dataset in DATASETS:
        jobs = [j for j in grid.jobs([dataset]) if j.rule != "import_external" and not j.imported]
        rows = [r for r in record["rows"] if r["dataset"] == dataset]
        assert sum(r["jobs"] for r in rows) == len(jobs), dataset
    assert record["grid"]["rule_counts"] == grid.job_counts(list(DATASETS))


def test_the_score_sources_denoiser_and_targets_are_projected(tiny):
    """The denoiser (rule denoiser: the score-based sources' and the PAG scores' instrument's)
    per image and epoch x the real training images x the recipe's epochs, beside the training
    limit; each score-based source's targets (make_targets) per image x the real training
    images, on the CPU, beside the targets limit; their students as training jobs. Each row
    counts the grid's jobs of its rule on that dataset."""
    _, record = tiny
    cfg, grid = config(), load_grid(ROOT / "config.yaml")
    for dataset in DATASETS:
        jobs = grid.jobs([dataset])
        rows = {r["kind"]: r for r in record["rows"] if r["dataset"] == dataset}
        dc, m = cfg["datasets"][dataset], record["datasets"][dataset]
        real = m["real_train_images"]
        den = rows["denoiser"]
        assert (den["rule"], den["runtime_kind"], den["device"]) == ("denoiser", "train", "gpu")
        assert den["limit_minutes"] == dc["resources"]["runtime"]["train"]
        assert den["jobs"] == sum(j.rule == "denoiser" for j in jobs) >= 1, dataset
        epochs = dc["score_based"]["denoiser"]["epochs"]
        assert den["minutes_per_job"] == pytest.approx(den["measured"] * real * epochs / 60)
        for source in sources.SCORE:
            t = rows[f"targets:{source}"]
            assert (t["rule"], t["runtime_kind"], t["device"]) == (
                "make_targets",
                "targets",
                "cpu",
            )
            assert t["limit_minutes"] == dc["resources"]["runtime"]["targets"]
            made = [j for j in jobs if j.rule == "make_targets" and j.source == source]
            assert t["jobs"] == len(made) == 1, (dataset, source)
            assert t["minutes_per_job"] == pytest.approx(t["measured"] * real / 60)
            trained = [j for j in jobs if j.rule == "train" and j.source == source]
            assert rows[f"train:{source}"]["jobs"] == len(trained) > 0, (dataset, source)


def gpu_projection():
    """bench/gpu_projection.py (bench/ is no package: its folder on the path, as the script's)."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module("gpu_projection")


def test_the_sigma_sweeps_jobs_are_projected(tiny, tmp_path):
    """config.yaml with a sigma sweep on CIFAR-10, projected from the tiny run's measurements:
    its targets (make_score_targets) and students (train_sigma), one per noise level, are rows
    of their own beside their rules' limits, and every job of the grid is in a row."""
    _, record = tiny
    sweep = {"dataset": "cifar10", "source": "score_based", "sigmas": [0.1, 0.3, 1.0], "seed": 0}
    extra = tmp_path / "sweep.yaml"
    extra.write_text(yaml.safe_dump({"experiments": {"sigma_sweep": sweep}}))
    grid = load_grid(ROOT / "config.yaml", extra)
    m = json.loads(json.dumps(record["datasets"]["cifar10"]))
    aa = m["autoattack"]  # JSON made the batch sizes' keys strings
    aa["passes"] = {int(b): p for b, p in aa["passes"].items()}
    rows = {r["kind"]: r for r in gpu_projection().project("cifar10", grid, m)}
    jobs = [j for j in grid.jobs(["cifar10"]) if j.rule != "import_external" and not j.imported]
    counts = Counter(j.rule for j in jobs)
    assert sum(r["jobs"] for r in rows.values()) == len(jobs)
    for kind, rule, runtime in (
        ("sigma_targets:score_based", "make_score_targets", "targets"),
        ("train_sigma", "train_sigma", "train"),
    ):
        r = rows[kind]
        assert (r["rule"], r["runtime_kind"], r["jobs"]) == (rule, runtime, counts[rule]), r
        assert counts[rule] == len(sweep["sigmas"])
    assert rows["sigma_targets:score_based"]["measured"] == rows["targets:score_based"]["measured"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_the_gpu_check_says_so():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2
    assert "sees no CUDA device" in proc.stderr and "--tiny" in proc.stderr

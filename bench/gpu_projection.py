"""The GPU check's projection (bench/gpu_check.py): from one dataset's measurements to the
minutes of each job of the paper's grid, beside the runtime limit the config gives its kind.

The grid is the workflow's own (pagrob.grid, built from the config validated against the
workflow's schema): ``job_kind`` names the kind of the table that times each of its jobs,
``project`` scales each kind's measured cost to the real run (the real datasets' sizes, the
config's epochs and batch sizes) and counts the grid's jobs of that kind, ``totals`` and
``print_table`` close the table with the whole grid's GPU-hours. Every call of the check into
pagrob.grid is in this module.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from pagrob import autoattack, registry, sources
from pagrob.grid import Grid
from pagrob.grid_jobs import TOY_BATCHED, Job

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
#: AutoAttack standard: APGD-T and FAB-T each attack this many target classes (n_target_classes)
AA_TARGET_CLASSES = 9
#: the job kinds of the table, their workflow rules, and the runtime limit each rule declares
RULES = {
    "data": ("prepare_data", "data"),
    "targets": ("make_targets", "targets"),
    "train": ("train", "train"),
    "teacher": ("teacher", "teacher"),
    "evaluate": ("evaluate", "evaluate"),
    "autoattack": ("autoattack", "autoattack"),
    "sweep": ("sweep", "sweep"),
    "pag_scores": ("pag_scores", "evaluate"),
    "pag_baselines": ("pag_baselines", "evaluate"),
    "autoencoder": ("autoencoder", "train"),
    "denoiser": ("denoiser", "train"),
    "sigma_targets": ("make_score_targets", "targets"),
    "train_class_score": ("train_class_score", "train"),
    "train_sigma": ("train_sigma", "train"),
    "figure:fig4": ("pag_figure", "figure"),
    "figure:fig1": ("robust_figure", "figure"),
    "figure:fig5": ("ablation_figure", "figure"),
}
#: the figure rules and the job kind each is timed as
FIGURE_KINDS = {
    "pag_figure": "figure:fig4",
    "robust_figure": "figure:fig1",
    "ablation_figure": "figure:fig5",
}


# --- The config, and the grid it defines (pagrob.grid, as the workflow builds it) ---------------


def load_config(path: Path) -> tuple[Grid, dict]:
    """config.yaml's grid and its config, the config validated against the workflow's schema
    with its defaults filled in (as the Snakefile does)."""
    from snakemake.utils import validate

    cfg = yaml.safe_load(Path(path).read_text())
    validate(cfg, str(SCHEMA), set_default=True)
    grid = Grid(cfg)
    return grid, grid.config


def used_datasets(grid: Grid) -> list[str]:
    """The datasets of the config's experiments."""
    return grid.used_datasets()


def rule_counts(grid: Grid, names: list[str]) -> dict:
    """The grid's jobs on ``names``, counted by rule."""
    return grid.job_counts(names)


def source_lam(cfg: dict, d: str, source: str) -> float:
    """The lambda the grid trains ``source`` with on ``d``."""
    return Grid(cfg).source_lam(d, source)


def job_kind(job: Job) -> str | None:
    """The kind of the table that times ``job`` (None: imports cost no GPU time)."""
    if job.rule == "prepare_data":
        return "data"
    if job.rule in ("make_targets", "draw_targets"):
        return f"targets:{job.source}"
    if job.rule == "make_score_targets":  # the sigma sweep's: a score-based source's targets
        return f"sigma_targets:{job.source}"
    if job.rule == "train":
        return "train:rigd" if job.source in registry.RIGD else f"train:{job.source}"
    if job.rule == "teacher":
        return None if job.imported else f"teacher:{job.norm}"
    if job.rule == "autoattack":
        return f"autoattack:{job.norm}"
    if job.rule in ("import_external", "toy_pag", "toy_figure", "toy_score", *TOY_BATCHED.values()):
        return None  # no GPU time: imports, and the toy's CPU jobs
    return FIGURE_KINDS.get(job.rule, job.rule)


def job_kinds(grid: Grid, d: str) -> dict[str, int]:
    """The grid's jobs on ``d`` (pagrob.grid's list), counted by the kind each is timed as."""
    kinds = Counter(job_kind(job) for job in grid.jobs([d]))
    kinds.pop(None, None)
    return dict(kinds)


def figure_models(grid: Grid, d: str) -> dict[str, int]:
    """The models each figure job of ``d`` draws."""
    in_main = d in grid.main.datasets()
    return {
        "figure:fig4": len(grid.main.first_seed_models(d)) if in_main else 0,
        "figure:fig1": len(grid.main.robust_figure_models(d)) if in_main else 0,
        "figure:fig5": len(grid.lambda_ablation.models(d)),
    }


# --- The projection ------------------------------------------------------------------------------


class Rows:
    """One dataset's rows of the table: per job kind its measured cost, the projected minutes
    per job beside the runtime limit of its kind, and the grid's jobs of that kind."""

    def __init__(self, d: str, dc: dict, kinds: dict[str, int]):
        self.d, self.kinds = d, kinds
        self.limits = dc["resources"]["runtime"]
        self.gpu = dc["resources"]["gpu"] > 0
        self.rows: list[dict] = []

    def add(self, kind, measured, unit, seconds_per_job, on_gpu=None, note=""):
        on_gpu = self.gpu if on_gpu is None else on_gpu
        rule, runtime_kind = RULES[kind.split(":")[0] if kind.split(":")[0] in RULES else kind]
        minutes = seconds_per_job / 60
        jobs = self.kinds.get(kind, 0)
        self.rows.append(
            {
                "dataset": self.d,
                "kind": kind,
                "rule": rule,
                "runtime_kind": runtime_kind,
                "measured": measured,
                "unit": unit,
                "minutes_per_job": minutes,
                "limit_minutes": self.limits[runtime_kind],
                "jobs": jobs,
                "device": "gpu" if on_gpu else "cpu",
                "hours": jobs * minutes / 60,
                "over_limit": minutes > self.limits[runtime_kind],
                "note": note,
            }
        )


def project(d: str, grid: Grid, m: dict) -> list[dict]:
    """One row per job kind: measured cost, projected minutes per job, the limit, the grid's jobs."""
    dc = grid.dataset_config(d)
    rows = Rows(d, dc, job_kinds(grid, d))
    cpu_rows(rows, m)
    training_rows(rows, dc, m)
    evaluation_rows(rows, dc, m)
    pag_rows(rows, dc, m, len(grid.pag_scores.reference_dirs(d)))
    score_rows(rows, dc, m)
    figure_rows(rows, m, figure_models(grid, d))
    return rows.rows


def cpu_rows(rows: Rows, m: dict) -> None:
    """data, targets: seconds x real training set size / synthetic size (CPU jobs)."""
    real_train, real_test = m["real_train_images"], m["real_test_images"]
    rows.add(
        "data",
        m["data"]["seconds"],
        "s (save+load)",
        m["data"]["seconds"] * (real_train + real_test) / m["data"]["images"],
        on_gpu=False,
        note="no download or archive reading",
    )
    for source, t in m["targets"].items():
        seconds = t["build_s"] + t["save_s"]
        rows.add(
            f"targets:{source}",
            seconds,
            "s (build+save)",
            seconds * real_train / m["train_images"],
            on_gpu=False,
        )


def training_rows(rows: Rows, dc: dict, m: dict) -> None:
    """Training: seconds per step x steps per real epoch x the config's epochs, plus per epoch
    the draws of a real-sized epoch and fit's overhead (the steps scaled per image to the
    config's batch size)."""
    steps_real = m["real_train_images"] // dc["train"]["batch_size"]
    batch_factor = dc["train"]["batch_size"] / m["batch_size"]

    def training(kind, key, epochs, proxy=False):
        t = m["train"][key]
        per_epoch = (
            steps_real * t["seconds_per_step"] * batch_factor
            + t["fit_overhead_per_epoch_s"]
            + t["real_epoch_draws_s"]
        )
        rows.add(
            kind,
            t["seconds_per_step"],
            "s/step",
            epochs * per_epoch,
            note=f"{epochs} x {steps_real} steps" + (f"; {key}'s PAG step" if proxy else ""),
        )

    for source in ("vanilla",) + sources.REPRESENTATIVES:
        training(f"train:{source}", source, dc["train"]["epochs"])
    training("train:rigd", "rigd", dc["train"]["epochs"])
    # stored targets (the score-based sources, the sigma sweep's, the file) and another class
    # score: a PAG step as class_mean's
    for kind in (*(f"train:{s}" for s in (*registry.SCORE, registry.FILE)), "train_sigma"):
        if rows.kinds.get(kind):
            training(kind, "class_mean", dc["train"]["epochs"], proxy=True)
    if rows.kinds.get("train_class_score"):
        training("train_class_score", "class_mean", dc["train"]["epochs"], proxy=True)
    for norm in ("linf", "l2"):
        training(f"teacher:{norm}", f"teacher_{norm}", dc["teachers"]["epochs"])


def evaluation_rows(rows: Rows, dc: dict, m: dict) -> None:
    """evaluate, AutoAttack per norm, sweep: per image x the images the job attacks (the whole
    test set where the config says 0); AutoAttack by its worst-case batch."""
    real_test = m["real_test_images"]
    aa_images = (dc["eval"]["autoattack"] or {}).get("images") or real_test
    eval_images = dc["eval"].get("max_images") or real_test
    e = m["evaluate"]
    rows.add(
        "evaluate", e["seconds"] / e["images"], "s/image", e["seconds"] / e["images"] * eval_images
    )
    aa = m["autoattack"]
    for norm in dc["eval"]["attacks"]:
        seconds_batch, note = autoattack_batch(aa, aa["norms"].get(norm))
        rows.add(
            f"autoattack:{norm}",
            seconds_batch / aa["batch_size"],
            "s/image (worst)",
            seconds_batch * aa_images / aa["batch_size"],
            note=note,
        )
    s = m["sweep"]
    per_image = s["seconds"] / s["images"] * s["config_pgd_steps"] / s["pgd_steps"]
    rows.add(
        "sweep",
        per_image,
        "s/image",
        per_image * aa_images,
        note=""
        if s["pgd_steps"] == s["config_pgd_steps"]
        else f"scaled from {s['pgd_steps']} PGD steps",
    )


def pag_rows(rows: Rows, dc: dict, m: dict, refs: int) -> None:
    """pag_scores (per image, against ``refs`` references), the autoencoder's training (per step
    x its steps per real epoch x its epochs), pag_baselines (per image: the floor and the
    ceilings)."""
    p = m["pag_scores"]
    images = (dc.get("pag_scores") or {}).get("images", 0)
    per_image = (p["targeted_s"] + refs * p["per_reference_s"] + p["tangent_s"]) / p["images"]
    rows.add("pag_scores", per_image, "s/image", per_image * images, note=f"{refs} references")
    if m["autoencoder"]:
        a = m["autoencoder"]
        steps = -(-m["real_train_images"] // a["batch_size"])
        rows.add(
            "autoencoder",
            a["seconds_per_step"],
            "s/step",
            a["epochs"] * steps * a["seconds_per_step"],
            note=f"{a['epochs']} x {steps} steps",
        )
    base = ((1 + refs) * p["targeted_s"] + 2 * refs * p["per_reference_s"]) / p["images"]
    rows.add("pag_baselines", base, "s/image", base * images, note="floor + ceilings")


def score_rows(rows: Rows, dc: dict, m: dict) -> None:
    """The score-based sources (where the config gives a denoiser recipe): the denoiser (per
    training image and epoch x the real training images x the recipe's epochs, as a training's
    epochs count; every denoiser job, the sources' and the PAG scores' instrument's, is of the
    one recipe) and each source's targets, make_targets (per image, all C classes, x the real
    training images, on the CPU); the sigma sweep's targets (make_score_targets) the same."""
    if not m.get("denoiser"):
        return
    real = m["real_train_images"]
    t = m["denoiser"]
    epochs = dc["score_based"]["denoiser"]["epochs"]
    rows.add(
        "denoiser",
        t["seconds_per_image_epoch"],
        "s/image/epoch",
        t["seconds_per_image_epoch"] * real * epochs,
        note=f"{epochs} epochs x {real} images ({t['arch']}, width {t['width']})",
    )
    for source, s in m["score_targets"].items():
        per_image = (s["build_s"] + s["save_s"]) / s["images"]
        for kind in (f"targets:{source}", f"sigma_targets:{source}"):
            if kind.startswith("targets:") or rows.kinds.get(kind):
                rows.add(
                    kind,
                    per_image,
                    "s/image (all C)",
                    per_image * real,
                    on_gpu=False,
                    note=f"{s['classes']} classes, CPU, {s['threads']} threads",
                )


def figure_rows(rows: Rows, m: dict, models: dict[str, int]) -> None:
    """figures: per model, the targeted attacks of the pictures' images and drawing their rows."""
    f = m["figure"]
    per_model = f["attack_s"] + f["draw_s"]
    for kind in ("figure:fig4", "figure:fig1", "figure:fig5"):
        n = models[kind]
        if rows.kinds.get(kind):
            rows.add(kind, per_model, "s/model", per_model * n, note=f"{n} models")


def autoattack_batch(aa: dict, worst: dict | None) -> tuple[float, str]:
    """Seconds of one worst-case AutoAttack batch at the config's batch size: the stages' model
    passes timed at that batch, plus AutoAttack's per-batch overhead from the worst-case run.
    (Model calls counted in a worst-case run with pyautoattack 0.2.0: 1,910 with an input
    gradient and 5,984 without per batch, against the 1,900 and 5,900 counted here.)"""
    grads = autoattack.STAGE_STEPS["apgd-ce"] + AA_TARGET_CLASSES * (
        autoattack.STAGE_STEPS["apgd-t"] + autoattack.STAGE_STEPS["fab-t"]
    )
    forwards = (
        AA_TARGET_CLASSES * autoattack.STAGE_STEPS["fab-t"] + autoattack.STAGE_STEPS["square"]
    )

    def bare(b):
        p = aa["passes"][b]
        return grads * p["gradient_s"] + forwards * p["forward_s"]

    if aa["version"] != "standard":
        note = f"passes of 'standard' (config asks {aa['version']})"
    else:
        note = ""
    if worst is None:
        return bare(aa["batch_size"]), (note or "bare passes only: AutoAttack not run")
    overhead = max(0.0, worst["seconds"] - bare(aa["images"]))
    note = (
        note
        or f"run {worst['seconds'] / bare(aa['images']):.2f} x its bare passes; +{overhead:.1f}s/batch"
    )
    if worst["robust"] < 100:  # an attack succeeded at eps 1e-6: some stages ran on fewer images
        note += f"; {worst['robust']:.0f}% stood: an underestimate"
    return bare(aa["batch_size"]) + overhead, note


# --- The table -----------------------------------------------------------------------------------


def totals(rows: list[dict]) -> dict:
    gpu = [r for r in rows if r["device"] == "gpu"]
    cpu = [r for r in rows if r["device"] == "cpu"]
    return {
        "gpu_hours": sum(r["hours"] for r in gpu),
        "gpu_jobs": sum(r["jobs"] for r in gpu),
        "cpu_hours": sum(r["hours"] for r in cpu),
        "cpu_jobs": sum(r["jobs"] for r in cpu),
        "over_limit": [
            f"{r['dataset']} {r['kind']} ({r['minutes_per_job']:.0f} > {r['limit_minutes']} min)"
            for r in rows
            if r["over_limit"] and r["jobs"]
        ],
    }


def print_table(rows: list[dict], totals: dict, tiny: bool) -> None:
    print(
        "\nProjection per job ("
        + (
            "TINY: not a projection of the real run"
            if tiny
            else "the real datasets' sizes, the config's epochs"
        )
        + ")"
    )
    head = f"{'dataset':8} {'job kind':26} {'measured':>12} {'unit':16} {'min/job':>9} {'limit':>6} {'jobs':>5} {'where':5} {'hours':>8}  flag / note"
    print(head)
    print("-" * len(head))
    for r in rows:
        flag = "OVER LIMIT" if r["over_limit"] else ""
        note = "; ".join(x for x in (flag, r["note"]) if x)
        print(
            f"{r['dataset']:8} {r['kind']:26} {r['measured']:12.4g} {r['unit']:16} {r['minutes_per_job']:9.1f} "
            f"{r['limit_minutes']:6d} {r['jobs']:5d} {r['device']:5} {r['hours']:8.2f}  {note}"
        )
    print("-" * len(head))
    print(
        f"grid total: {totals['gpu_hours']:.1f} GPU-hours over {totals['gpu_jobs']} GPU jobs; "
        f"{totals['cpu_hours']:.2f} CPU-hours over {totals['cpu_jobs']} CPU jobs"
    )
    over = totals["over_limit"]
    print("over their runtime limit: " + (", ".join(over) if over else "none"))

"""GPU check: every job kind of the paper's grid, on synthetic data, in one command, before the grid.

Run it on the GPU machine before launching the grid, and its CPU form anywhere (about a minute,
the same code path at tiny sizes). The GPU check is sized for at most 8 minutes on one H200-class
GPU (an estimate of about 5: no GPU was at hand when it was written; it prints its wall time and
says which options to lower when over budget):

    .venv/bin/python bench/gpu_check.py                       # the GPU check, config.yaml's numbers
    .venv/bin/python bench/gpu_check.py --amp --channels-last --out gpu_check.json
    .venv/bin/python bench/gpu_check.py --tiny                # CPU, tiny sizes (tests/workflow/test_gpu_check.py)

What runs. For each image dataset of the config's experiments (CIFAR-10: 3x32x32, STL-10:
3x96x96, 10 classes) a synthetic dataset of random 8-bit images in [0, 1] with balanced labels,
built as a ``pagrob.data.Dataset`` (no download), then, with the library's own functions and the
config's numbers (batch sizes, lambdas, attacks, epochs, the PAG strategy, ...):

- data: ``data.save_prepared`` and ``data.load_prepared`` of the whole synthetic set
  (``--train-images``, 10,000 by default: all of STL-10's 5,000, a fifth of CIFAR-10's);
- targets: ``sources.build`` of every representative source on the CPU with the job's threads
  (as make_targets does), saved, and loaded onto the device with ``sources.load_representatives``;
- training through ``train.fit`` (two epochs of ``--steps`` steps: the first warms up, the second
  is timed): vanilla, each representative source, both teachers' Madry adversarial training
  (the config's teachers' attacks), and a RIGD student of the L-inf teacher
  (``sources.TeacherGradients``);
- every exact PAG strategy (``pag.STRATEGIES``) and vanilla for one ``train.train_step`` each:
  warm-up steps, then ``--repeats`` steps timed with ``torch.cuda.synchronize`` only around the
  timed loop, under CUDA's sync debug mode 'warn' (host synchronisations counted: 0 expected),
  with ``torch.cuda.max_memory_allocated`` per strategy (its peak reset between strategies);
- with ``--amp`` / ``--channels-last`` (TrainSettings' ``amp``, ``channels_last``): all training
  runs with them, and one PAG step with and without them from the same weights and batch gives
  the deviation of the losses and parameter gradients from float32;
- evaluation: ``evaluate.evaluate`` (clean and PGD-20 per norm) and ``evaluate.sweep`` (the
  gradient-masking checks' PGD) on ``--eval-images`` test images (default: one evaluation batch
  of the config: 500 CIFAR-10, 200 STL-10 images);
- AutoAttack: ``autoattack.run`` (the resumable driver, the config's version ``standard``) per
  norm on only ``--aa-images`` (16) images, in its worst case: labels set to the model's own
  predictions and eps 1e-6, so no attack succeeds and all four stages run every iteration and
  query on every image (about 7,000 model passes a batch, whatever the batch size: a few
  hundred images would not fit the budget, and at the config's eps an untrained model's cost
  depends on how many images happen to survive);
- PAG scores (``pag_scores.targeted_examples``, ``alignment``, ``reference_agreement``) of the
  vanilla model against both teachers, and the figures' targeted attacks
  (``figures.targeted_towards_every_class``) drawn with ``figures.attack_grid``.

The projection. Each job kind's measured cost is scaled to the real run:

- training: seconds per step (the timed epoch's loop, ``fit``'s own history) x steps per epoch
  (the real training set size // the config's batch size, drop_last) x the config's epochs,
  plus per epoch the draws of a real-sized epoch (``train.EpochDraws.draw``, measured) and
  ``fit``'s per-epoch overhead (checkpoint) measured in the check;
- evaluation, sweep, PAG scores: seconds per test image x the images the job attacks (the
  whole test set where the config says 0);
- AutoAttack: images / batch x the seconds of one worst-case batch at the config's batch size:
  the bare model passes of the four stages (APGD-CE 100, APGD-T and FAB-T 9 x 100 gradients,
  FAB-T 9 x 100 and Square 5000 forwards; each pass timed at that batch) plus AutoAttack's own
  per-batch overhead (the measured worst-case run minus its bare passes at its batch). An
  upper bound: a model whose images fall in APGD-CE costs about 100 gradient passes per batch;
- targets, data: seconds x real training set size / synthetic size (CPU jobs; k-means on random
  images may take other iteration counts than on real ones);
- figures: per model, the targeted attacks of the pictures' images and drawing their rows.

With ``--batch-size`` (quick runs) the steps and batches measured at that size are scaled to the
config's sizes per image.

The whole grid: the jobs of the config's experiments as pagrob.grid lists them, the grid the
workflow runs (main sources per dataset, the seeds and the lambda ablation, the teachers), each
evaluated, AutoAttacked per norm and swept where ``eval.autoattack`` says, PAG-scored where
``pag_scores`` is set, and the figures. Each kind's projected minutes per job stand beside
``datasets.<d>.resources.runtime.<kind>`` (the schema's default where config.yaml gives none),
flagged OVER LIMIT when above it; the GPU-hours of the whole grid close the table.

``--tiny`` runs the same code on the CPU in about a minute through the options a user has
(listed by ``--help``): images 4x smaller per side, a ResNet-18 of base width 8, batch size 4,
one step per epoch, one thread, a few images, the sweep's PGD at 2% of its steps, and no
AutoAttack run (its ~7,000 model passes a batch take minutes on a CPU; the projection then
counts the bare passes). Its numbers are no projection of anything.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

_START = time.perf_counter()  # before the heavy imports: the check's wall time includes them

import torch
import yaml
from threadpoolctl import threadpool_limits

from pagrob import (
    autoattack,
    data,
    datasets,
    evaluate,
    figures,
    io,
    models,
    pag,
    pag_scores,
    registry,
    sources,
    train,
)
from pagrob.attacks import Attack, frozen_eval, predict
from pagrob.grid import Grid, Job

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
#: the real datasets' (training, test) images: CIFAR-10, and STL-10's labelled splits
REAL_SIZES = {name: d.sizes for name, d in registry.DATASETS.items() if d.sizes}
NUM_CLASSES = 10
#: the check's time budget on one GPU (seconds)
BUDGET_S = 8 * 60
#: AutoAttack standard: APGD-T and FAB-T each attack this many target classes (n_target_classes)
AA_TARGET_CLASSES = 9
#: the worst-case AutoAttack's radius: small enough that no attack succeeds, so every stage runs
#: all its iterations and queries on every image
AA_WORST_EPS = 1e-6
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
    "train_class_score": ("train_class_score", "train"),
    "figure:fig4": ("pag_figure", "figure"),
    "figure:fig1": ("robust_figure", "figure"),
    "figure:fig5": ("ablation_figure", "figure"),
}
#: --tiny's options. Width 8, not 4: PyTorch's CPU double backward of a channels-last 1x1
#: stride-2 convolution with 4 or fewer input channels (the first shortcut of a width-4 ResNet)
#: corrupts the heap (torch 2.x; seen with --channels-last)
TINY = {
    "device": "cpu",
    "shrink": 4,
    "width": 8,
    "batch_size": 4,
    "steps": 1,
    "warmup": 1,
    "repeats": 1,
    "eval_images": 4,
    "pag_images": 1,
    "aa_images": 0,
    "sweep_scale": 0.02,
    "train_images": -1,
    "threads": 1,
}


# --- The config, and the grid it defines (pagrob.grid, as the workflow builds it) ---------------


def load_config(path: Path) -> Grid:
    """config.yaml's grid, the config validated against the workflow's schema with its defaults
    filled in (as the Snakefile does)."""
    from snakemake.utils import validate

    cfg = yaml.safe_load(Path(path).read_text())
    validate(cfg, str(SCHEMA), set_default=True)
    return Grid(cfg)


#: the figure rules and the job kind each is timed as
FIGURE_KINDS = {
    "pag_figure": "figure:fig4",
    "robust_figure": "figure:fig1",
    "ablation_figure": "figure:fig5",
}


def job_kind(job: Job) -> str | None:
    """The kind of the table that times ``job`` (None: imports cost no GPU time)."""
    if job.rule == "prepare_data":
        return "data"
    if job.rule in ("make_targets", "draw_targets"):
        return f"targets:{job.source}"
    if job.rule == "train":
        return "train:rigd" if job.source in registry.RIGD else f"train:{job.source}"
    if job.rule == "teacher":
        return None if job.imported else f"teacher:{job.norm}"
    if job.rule == "autoattack":
        return f"autoattack:{job.norm}"
    if job.rule in ("import_external", "toy_pag", "toy_figure", *Grid.TOY_BATCHED.values()):
        return None  # no GPU time: imports, and the toy's CPU jobs
    return FIGURE_KINDS.get(job.rule, job.rule)


def job_kinds(grid: Grid, d: str) -> dict[str, int]:
    """The grid's jobs on ``d`` (pagrob.grid's list), counted by the kind each is timed as."""
    kinds = Counter(job_kind(job) for job in grid.jobs([d]))
    kinds.pop(None, None)
    return dict(kinds)


def figure_models(grid: Grid, d: str) -> dict[str, int]:
    """The models each figure job of ``d`` draws."""
    abl = grid.experiment("lambda_ablation")
    main = grid.experiment("main")
    in_main = bool(main and d in main["tables"])
    return {
        "figure:fig4": len(grid.first_seed_models(d)) if in_main else 0,
        "figure:fig1": len(grid.robust_figure_models(d)) if in_main else 0,
        "figure:fig5": len(grid.ablation_models()) if abl and abl["dataset"] == d else 0,
    }


# --- Timing --------------------------------------------------------------------------------------


def square_l2_fits(side: int) -> bool:
    """Whether pyautoattack's L2 Square attack can start on ``side`` px images: its initial
    perturbation adds side // 5 px squares from a centred offset, side // (side // 5) times per
    axis, and fails on a shape error where a square is cut by the border (24 or 12 px; 32, 96,
    16 and 8 px are fine: 1 px squares broadcast into an empty slice)."""
    s = side // 5
    if s == 0:
        return False
    offset = (side - 5 * s) // 2
    cut = [min(side, offset + k * s + s) - min(side, offset + k * s) for k in range(side // s)]
    return s == 1 or all(n == s for n in cut)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """(fn(), seconds), the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


@contextlib.contextmanager
def counting_syncs(device: torch.device):
    """Counts the host synchronisations inside (CUDA sync debug mode 'warn'); None on the CPU."""
    box = {"syncs": None}
    if device.type != "cuda":
        yield box
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield box
        finally:
            torch.cuda.set_sync_debug_mode("default")
    box["syncs"] = sum("synchroniz" in str(w.message) for w in caught)


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


class Log:
    def __init__(self, verbose: bool):
        self.t0, self.verbose = time.perf_counter(), verbose

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f}s] {message}", flush=True)

    def library(self, message: str) -> None:
        if self.verbose:
            self(f"  {message}")


# --- Synthetic data, models, settings ------------------------------------------------------------


def synthetic(name: str, shape, n_train: int, n_test: int, seed: int) -> data.Dataset:
    """Random 8-bit images in [0, 1] with balanced labels in random order, on the CPU like a
    prepared dataset (the steps move what they use to the device)."""
    g = torch.Generator().manual_seed(seed)

    def images(n):
        return (
            torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8).float() / 255
        )  # cpu: a prepared dataset

    def labels(n):
        return (torch.arange(n) % NUM_CLASSES)[
            torch.randperm(n, generator=g)
        ]  # cpu: a prepared dataset

    x_train = images(n_train)
    return data.Dataset(
        name=name,
        x_train=x_train,
        y_train=labels(n_train),
        x_test=images(n_test),
        y_test=labels(n_test),
        classes=[f"class {c}" for c in range(NUM_CLASSES)],
        mean=x_train.mean((0, 2, 3)),
        std=x_train.std((0, 2, 3)),
    )


def build_model(arch: str, ds: data.Dataset, width: int | None, seed: int) -> models.Classifier:
    """``arch`` as training builds it (seeded); ``width``: a narrower ResNet-18 of the same form."""
    torch.manual_seed(seed)
    if width is None:
        return models.build_model(arch, ds.input_shape, ds.num_classes, ds.mean, ds.std)
    if arch != "resnet18":
        raise ValueError(f"--width applies to resnet18, not {arch!r}")
    net = models.ResNet(
        models.BasicBlock,
        [2, 2, 2, 2],
        ds.input_shape[0],
        ds.num_classes,
        widths=(width, 2 * width, 4 * width, 8 * width),
    )
    return models.Classifier(net, ds.mean, ds.std)


def settings(
    cfg: dict, d: str, args, *, lam: float = 0.0, adversarial: dict | None = None, epochs: int = 2
) -> train.TrainSettings:
    """TrainSettings from the config, as the train and teacher steps build them."""
    fields = {f.name for f in dataclasses.fields(train.TrainSettings)}
    t = {k: v for k, v in cfg["datasets"][d]["train"].items() if k in fields}
    t.update(epochs=epochs)
    if args.batch_size:
        t["batch_size"] = args.batch_size
    # --amp / --channels-last switch them on over the config; amp stays off on the CPU (fit
    # refuses it there), so the CPU form runs a config that asks for it
    if args.amp or (t.get("amp") and args.device_type == "cuda"):
        t["amp"] = True
    elif "amp" in t:
        t["amp"] = False
    if args.channels_last:
        t["channels_last"] = True
    p = cfg["pag"]
    return train.TrainSettings(
        **t,
        lam=lam,
        grad_of=p["grad_of"],
        strategy=p["strategy"],
        pag_eps=p["eps"],
        classes_per_step=p["classes_per_step"] or None,
        seed=0,
        adversarial=adversarial,
    )


def first_rows(source, m: int):
    """The source for a training set cut to its first ``m`` images (the targets were built on
    the whole synthetic set; a check's epoch is only ``steps`` batches of it)."""
    if isinstance(source, sources.NearestNeighbors):
        return sources.NearestNeighbors(source.x_train, source.nn_index[:m])
    return source


def picture_attack(dc: dict, a: dict | None = None) -> Attack:
    """The figures' (and PAG scores') large-eps targeted L2 attack, no random start."""
    a = a or dc["pictures"]["attack"]
    return Attack("l2", a["eps"], a["steps"], a.get("step_size"), random_start=False)


def eval_attacks(dc: dict, bounds) -> list[Attack]:
    return [
        Attack(n, a["eps"], a["steps"], a.get("step_size"), a.get("random_start", True), bounds)
        for n, a in dc["eval"]["attacks"].items()
    ]


# --- One dataset ---------------------------------------------------------------------------------


def check_dataset(d: str, cfg: dict, args, device: torch.device, work: Path, log: Log) -> dict:
    dc = cfg["datasets"][d]
    m: dict = {"shape": None}
    c, h, w = datasets.SHAPES[d]
    shape = (c, h // args.shrink, w // args.shrink)
    real_train, real_test = REAL_SIZES[d]
    batch = args.batch_size or dc["train"]["batch_size"]
    targets_cfg = dc["targets"]
    # the fewest training images: nearest_neighbor's sample (+ the image) and clustered_nn's
    # clusters in every class, and one epoch of the check's steps
    fewest = max(
        max(targets_cfg["nn_sample_size"] + 1, targets_cfg["clusters"]) * NUM_CLASSES,
        args.steps * batch,
    )
    n_train = {0: real_train, -1: fewest}.get(args.train_images, min(args.train_images, real_train))
    if n_train < fewest:
        raise ValueError(f"--train-images {n_train}: {d} needs at least {fewest} (or -1 for that)")
    eval_batch = args.batch_size or dc["eval"]["batch_size"]
    n_eval = args.eval_images or eval_batch
    pictures = dc["pictures"]["images"]
    n_test = max(n_eval, args.aa_images, max(pictures) + 1)
    m.update(
        shape=list(shape),
        batch_size=batch,
        train_images=n_train,
        test_images=n_test,
        real_train_images=real_train,
        real_test_images=real_test,
    )
    log(
        f"{d}: synthetic {n_train} training and {n_test} test images of {'x'.join(map(str, shape))}"
    )
    ds = synthetic(d, shape, n_train, n_test, seed=0)

    # data: what prepare_data writes and every step reads
    path = work / f"{d}_data.pt"
    _, t_save = timed(lambda: data.save_prepared(ds, path), torch.device("cpu"))
    _, t_load = timed(lambda: data.load_prepared(path), torch.device("cpu"))
    m["data"] = {"seconds": t_save + t_load, "images": n_train + n_test}
    path.unlink()

    # targets: built on the CPU as make_targets does, loaded onto the device as train does
    m["targets"], loaded = {}, {}
    for source in sources.REPRESENTATIVES:
        with threadpool_limits(
            torch.get_num_threads()
        ):  # k-means' OpenMP threads: the job's threads
            built, t_build = timed(
                lambda: sources.build(
                    source,
                    ds,
                    seed=targets_cfg["seed"],
                    nn_sample_size=targets_cfg["nn_sample_size"],
                    class_mean_rescale=targets_cfg["class_mean_rescale"],
                    clusters=targets_cfg["clusters"],
                ),
                torch.device("cpu"),
            )
        tpath = work / f"{d}_{source}.pt"
        _, t_save = timed(lambda: io.save(built, tpath), torch.device("cpu"))
        loaded[source], t_load = timed(
            lambda: sources.load_representatives(tpath, ds, source, device), device
        )
        m["targets"][source] = {"build_s": t_build, "save_s": t_save, "load_s": t_load}
        log(
            f"{d}: targets {source}: built in {t_build:.2f}s, loaded onto {device} in {t_load:.2f}s"
        )

    # training through fit: two epochs of --steps steps on the first steps x batch images
    view = dataclasses.replace(
        ds, x_train=ds.x_train[: args.steps * batch], y_train=ds.y_train[: args.steps * batch]
    )
    arch = dc["arch"]
    m["train"] = {}

    def fit(kind, source, s):
        model = build_model(arch, ds, args.width, s.seed)
        ckpt = work / f"{d}_{kind}.checkpoint.pt"
        history, wall = timed(
            lambda: train.fit(model, view, source, s, ckpt, str(device), log=log.library), device
        )
        ckpt.unlink(missing_ok=True)
        loops = sum(h["seconds"] for h in history)
        attack = Attack(**s.adversarial, bounds=ds.bounds) if s.adversarial else None
        steps_real = real_train // dc["train"]["batch_size"]
        real_s = dataclasses.replace(s, batch_size=dc["train"]["batch_size"])
        _, t_draws = timed(
            lambda: train.EpochDraws.draw(
                real_s, 1, real_train, shape, NUM_CLASSES, steps_real, attack, device
            ),
            device,
        )
        m["train"][kind] = {
            "seconds_per_step": history[-1]["seconds"] / args.steps,
            "images_per_s": history[-1]["images_per_s"],
            "strategy": history[-1]["strategy"],
            "fit_overhead_per_epoch_s": max(0.0, wall - loops) / len(history),
            "real_epoch_draws_s": t_draws,
            "losses": {"ce": history[-1]["ce"], "pag": history[-1]["pag"]},
        }
        log(
            f"{d}: train {kind}: {m['train'][kind]['seconds_per_step']:.4f} s/step "
            f"({history[-1]['images_per_s']:.0f} img/s, strategy {history[-1]['strategy']})"
        )
        return model

    vanilla = fit("vanilla", None, settings(cfg, d, args))
    for source in sources.REPRESENTATIVES:
        fit(
            source,
            first_rows(loaded[source], len(view.x_train)),
            settings(cfg, d, args, lam=Grid(cfg).source_lam(d, source)),
        )
    teachers = {}
    for norm in ("linf", "l2"):
        a = dc["teachers"][norm]["attack"]
        adversarial = {
            "norm": norm,
            "eps": a["eps"],
            "steps": a["steps"],
            "step_size": a.get("step_size"),
            "random_start": True,
        }
        teachers[norm] = fit(
            f"teacher_{norm}", None, settings(cfg, d, args, adversarial=adversarial)
        )
    rigd = "rigd_linf"
    fit(
        "rigd",
        sources.TeacherGradients(teachers[sources.TEACHER_SOURCES[rigd]], cfg["pag"]["grad_of"]),
        settings(cfg, d, args, lam=Grid(cfg).source_lam(d, rigd)),
    )

    m["strategies"], m["precision"] = strategies(
        cfg, d, args, ds, view, loaded["class_mean"], device, log
    )

    # evaluation: clean and PGD-20 per norm, then the masking checks' sweep (the evaluate and
    # sweep steps), on the first n_eval test images (kept on the CPU, as those steps keep them)
    x, y = ds.x_test[:n_eval], ds.y_test[:n_eval]
    seed = dc["eval"].get("seed", 0)
    attacks = eval_attacks(dc, ds.bounds)
    predict(vanilla.to(device), x[:eval_batch].to(device))  # warm-up of the eval-mode kernels
    rows, t_eval = timed(
        lambda: evaluate.evaluate(vanilla, x, y, attacks, eval_batch, seed, str(device)), device
    )
    m["evaluate"] = {
        "seconds": t_eval,
        "images": n_eval,
        "accuracy": {f"{r['attack']}:{r['norm']}": r["accuracy"] for r in rows},
    }
    log(
        f"{d}: evaluate (clean + PGD-{attacks[0].steps} x {len(attacks)} norms) on {n_eval} images: {t_eval:.2f}s"
    )
    checks = dc["eval"]["checks"]
    curve = [
        dataclasses.replace(a, eps=e, step_size=None)
        for a in attacks
        for e in checks["curves"].get(a.norm, [])
    ]
    strong = [dataclasses.replace(a, steps=checks["steps"], step_size=None) for a in attacks]

    def pgd_steps(curve, strong):
        return sum(a.steps for a in curve) + checks["restarts"] * sum(a.steps for a in strong)

    def scaled(a):  # --sweep-scale: fewer steps per attack, the same attacks (quick runs)
        return dataclasses.replace(a, steps=max(1, round(a.steps * args.sweep_scale)))

    run_curve, run_strong = [scaled(a) for a in curve], [scaled(a) for a in strong]
    _, t_sweep = timed(
        lambda: evaluate.sweep(
            vanilla, x, y, run_curve, run_strong, checks["restarts"], eval_batch, seed, str(device)
        ),
        device,
    )
    m["sweep"] = {
        "seconds": t_sweep,
        "images": n_eval,
        "pgd_steps": pgd_steps(run_curve, run_strong),
        "config_pgd_steps": pgd_steps(curve, strong),
    }
    log(
        f"{d}: sweep ({m['sweep']['pgd_steps']} PGD steps per image; the config's {m['sweep']['config_pgd_steps']}) "
        f"on {n_eval} images: {t_sweep:.2f}s"
    )

    m["autoattack"] = autoattack_check(dc, args, vanilla, ds, device, work, log)
    m["autoencoder"], ae = autoencoder_check(dc, args, ds, view, device, log)
    m["pag_scores"] = pag_scores_check(dc, args, vanilla, teachers, ds, device, log, ae)
    m["figure"] = figure_check(dc, vanilla, ds, device, work, log)
    return m


def autoencoder_check(dc, args, ds, view, device, log):
    """The autoencoder job: its training (two epochs of the check's images, the second timed) at
    the config's settings. Returns the measurement and the model (for the tangent-space score)."""
    from pagrob import autoencoder as ae_lib

    cfg = dc.get("autoencoder")
    if not cfg:
        return {}, None
    torch.manual_seed(cfg["seed"])
    ae = ae_lib.build(cfg["arch"], ds.input_shape, cfg["latent"]).to(device)
    batch = args.batch_size or cfg["batch_size"]
    s = ae_lib.AutoencoderSettings(cfg["arch"], cfg["latent"], 2, batch, cfg["lr"], cfg["seed"])
    history, _ = timed(
        lambda: ae_lib.fit(ae, view.x_train.to(device), s, str(device), log.library), device
    )
    steps = -(-len(view.x_train) // batch)
    per_step = history[-1]["seconds"] / steps
    log(f"{ds.name}: autoencoder ({cfg['arch']}, latent {cfg['latent']}): {per_step:.4f} s/step")
    return {"seconds_per_step": per_step, "batch_size": batch, "epochs": cfg["epochs"]}, ae.eval()


def strategies(cfg, d, args, ds, view, source, device, log) -> tuple[dict, dict | None]:
    """One training step of vanilla and of every exact PAG strategy (class_mean targets):
    warm-up, then ``repeats`` steps timed with the device synchronised around them only, host
    synchronisations counted, peak memory per strategy. Then the amp/channels-last deviation."""
    s = settings(cfg, d, args, lam=Grid(cfg).source_lam(d, "class_mean"))
    model = build_model(cfg["datasets"][d]["arch"], ds, args.width, 0).to(device)
    if getattr(s, "channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = train.make_optimizer(model, s)
    x_train, y_train = view.x_train.to(device), view.y_train.to(device)
    draws = train.EpochDraws.draw(
        s, 1, len(x_train), x_train.shape[1:], NUM_CLASSES, 1, None, device
    )
    batch = draws.batch(0, x_train, y_train)
    out = {}
    for name in ("vanilla",) + pag.STRATEGIES:
        vanilla = name == "vanilla"
        s_name = dataclasses.replace(s, lam=0.0) if vanilla else s
        strategy = pag.DEFAULT_STRATEGY if vanilla else name

        def step():
            train.train_step(model, opt, batch, None if vanilla else source, s_name, None, strategy)

        peak_reset(device)
        baseline = torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None
        try:
            for _ in range(args.warmup):
                step()
            sync(device)
            with counting_syncs(device) as syncs:
                t0 = time.perf_counter()
                for _ in range(args.repeats):
                    step()
            sync(device)
            seconds = (time.perf_counter() - t0) / args.repeats
            peak = peak_gib(device)
            out[name] = {
                "seconds_per_step": seconds,
                "max_memory_allocated_gib": peak,
                "step_memory_gib": None if peak is None else peak - baseline,
                "host_syncs_per_step": None
                if syncs["syncs"] is None
                else syncs["syncs"] / args.repeats,
            }
        except torch.OutOfMemoryError:
            out[name] = {
                "seconds_per_step": None,
                "max_memory_allocated_gib": None,
                "step_memory_gib": None,
                "host_syncs_per_step": None,
                "error": "out of memory",
            }
            peak_reset(device)
        log(
            f"{d}: strategy {name}: "
            + (
                f"{out[name]['seconds_per_step']:.4f} s/step"
                if out[name]["seconds_per_step"]
                else "out of memory"
            )
        )

    precision = None
    if getattr(s, "amp", False) or getattr(s, "channels_last", False):
        precision = deviation(cfg, d, args, ds, model, batch, source, s, device)
        log(
            f"{d}: amp={s.amp} channels_last={s.channels_last} vs float32, one PAG step: "
            + ", ".join(f"{k} {v:.3g}" for k, v in precision.items())
        )
    return out, precision


def deviation(cfg, d, args, ds, trained, batch, source, s, device) -> dict:
    """One PAG step (the config's strategy) from the same weights and batch, in float32 and with
    the --amp / --channels-last settings: the relative deviation of CE, PAG and the gradients."""
    strategy = s.strategy if s.strategy in pag.STRATEGIES else pag.DEFAULT_STRATEGY
    state = {k: v.detach().clone() for k, v in trained.state_dict().items()}
    results = {}
    for label, variant in (
        ("float32", dataclasses.replace(s, amp=False, channels_last=False)),
        ("flags", s),
    ):
        model = build_model(cfg["datasets"][d]["arch"], ds, args.width, 0)
        model.load_state_dict(state)
        model.to(device).train()
        if variant.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(
            model.parameters(), lr=0.0
        )  # leaves the weights and the gradients as they are
        out = train.train_step(model, opt, batch, source, variant, None, strategy)
        grads = torch.cat(
            [p.grad.flatten().double() for p in model.parameters() if p.grad is not None]
        )
        results[label] = (out.ce.double(), out.pag.double(), grads)
    (ce0, pag0, g0), (ce1, pag1, g1) = results["float32"], results["flags"]
    values = torch.stack(
        [
            (ce1 - ce0).abs() / ce0.abs(),
            (pag1 - pag0).abs() / pag0.abs().clamp(min=1e-30),
            torch.linalg.vector_norm(g1 - g0) / torch.linalg.vector_norm(g0),
            torch.nn.functional.cosine_similarity(g1, g0, dim=0),
        ]
    ).tolist()  # read once
    return dict(zip(("ce_rel_dev", "pag_rel_dev", "grad_rel_l2_dev", "grad_cosine"), values))


def autoattack_check(dc, args, model, ds, device, work, log) -> dict:
    """AutoAttack through the resumable driver (``autoattack.run``, the config's version) per
    norm, in its worst case: on --aa-images images labelled with the model's own predictions,
    at eps 1e-6, so that every image stands through every stage and each stage runs all its
    iterations and queries (an untrained model's cost at the config's eps depends on how many
    of its images happen to survive). The model's bare forward and gradient passes are timed
    at that batch and at the config's AutoAttack batch size, for the projection."""
    aa = dc["eval"]["autoattack"]
    aa_batch = args.batch_size or aa["batch_size"]
    n = args.aa_images
    out = {
        "batch_size": aa_batch,
        "version": aa["version"],
        "images": n,
        "eps": AA_WORST_EPS,
        "norms": {},
    }
    model.eval()
    if n:
        xw = ds.x_test[:n]
        yw = predict(model, xw.to(device)).cpu()  # every image classified correctly
        for norm in dc["eval"]["attacks"]:
            state = work / f"aa_{ds.name}_{norm}.json"
            result, seconds = timed(
                lambda: autoattack.run(
                    model,
                    xw,
                    yw,
                    norm,
                    AA_WORST_EPS,
                    state_path=state,
                    fingerprint={"check": "worst case", "norm": norm},
                    version=aa["version"],
                    seed=aa["seed"],
                    batch_size=n,
                    device=str(device),
                    log=log.library,
                ),
                device,
            )
            state.unlink(missing_ok=True)
            out["norms"][norm] = {
                "seconds": seconds,
                "clean": result.clean,
                "robust": result.robust,
                "stages": result.stages,
                "warnings": result.warnings,
            }
            log(
                f"{ds.name}: AutoAttack {aa['version']} {norm}, worst case on {n} images: {seconds:.2f}s "
                f"(robust {result.robust:.0f}% after {', '.join(result.stages)})"
            )
    out["passes"] = {
        b: bare_passes(model, ds.x_test, b, device) for b in sorted({aa_batch, n} - {0})
    }
    return out


def bare_passes(model, x_all, b: int, device, repeats: int = 5) -> dict:
    """Seconds of one forward (no grad) and one input-gradient of the CE (params frozen) at batch ``b``."""
    n = len(x_all)
    x = x_all[torch.arange(b) % n].to(
        device
    )  # cpu: host-side row picks of the test set, moved once
    y = torch.zeros(b, dtype=torch.long, device=device)

    def forward():
        with torch.no_grad():
            model(x)

    def gradient():
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad():
            torch.autograd.grad(
                torch.nn.functional.cross_entropy(model(xg), y, reduction="sum"), xg
            )

    out = {}
    with frozen_eval(model):
        for name, fn in (("forward_s", forward), ("gradient_s", gradient)):
            fn()
            _, seconds = timed(lambda: [fn() for _ in range(repeats)], device)
            out[name] = seconds / repeats
    return out


def pag_scores_check(dc, args, model, teachers, ds, device, log, ae=None) -> dict:
    """The pag_scores step for one model against both teachers (and the autoencoder's tangent
    space, where configured), timed by part."""
    cfg = dc["pag_scores"]
    n = min(args.pag_images or cfg["images"], len(ds.x_test))
    batch = args.batch_size or cfg["batch_size"]
    x, y = ds.x_test[:n].to(device), ds.y_test[:n].to(device)
    attack = dataclasses.replace(picture_attack(dc, cfg.get("attack")), bounds=ds.bounds)
    g = torch.Generator().manual_seed(cfg["seed"])  # cpu: attack starts, as the step draws them
    (x_adv, targets), t_targeted = timed(
        lambda: pag_scores.targeted_examples(model, x, y, attack, NUM_CLASSES, batch, g), device
    )
    t_align = t_agree = 0.0
    values = {}
    for name, reference in teachers.items():
        values[f"alignment:{name}"], t = timed(
            lambda: pag_scores.alignment(model, reference, x, batch), device
        )
        t_align += t
        agree, t = timed(
            lambda: pag_scores.reference_agreement(reference, x_adv, targets, batch), device
        )
        values[f"targeted_success:{name}"] = agree["targeted_success"]
        t_agree += t
    t_tangent = 0.0
    if ae is not None:
        noise = (dc.get("autoencoder") or {}).get("noise")
        g = torch.Generator().manual_seed(
            cfg["seed"]
        )  # cpu: the noise draws, as the step draws them
        tangent, t_tangent = timed(
            lambda: pag_scores.gradient_scores(model, x, batch, None, ae, noise, 4, g), device
        )
        per_image = tangent[("tangent_fraction", "autoencoder")]
        values["tangent_fraction"] = sum(per_image) / len(per_image)
    log(
        f"{ds.name}: PAG scores on {n} images: targeted {t_targeted:.2f}s, alignment {t_align:.2f}s, "
        f"agreement {t_agree:.2f}s ({len(teachers)} references), tangent space {t_tangent:.2f}s"
    )
    return {
        "images": n,
        "targeted_s": t_targeted,
        "per_reference_s": (t_align + t_agree) / len(teachers),
        "references": len(teachers),
        "tangent_s": t_tangent,
        "values": values,
    }


def figure_check(dc, model, ds, device, work, log) -> dict:
    """Fig. 4's targeted attacks of one model on the pictures' images, and drawing their rows."""
    index = dc["pictures"]["images"]
    x = ds.x_test[index].to(device)
    attack = dataclasses.replace(picture_attack(dc), bounds=ds.bounds)
    g = torch.Generator().manual_seed(0)  # cpu: attack starts, as the figure step draws them
    grid_, t_attack = timed(
        lambda: figures.targeted_towards_every_class(model, x, NUM_CLASSES, attack, g), device
    )
    rows = [(f"test #{i}", x[k], grid_[k]) for k, i in enumerate(index)]
    png = work / f"{ds.name}_fig.png"
    _, t_draw = timed(
        lambda: figures.attack_grid(rows, ds.classes, "gpu check", png, None), torch.device("cpu")
    )
    png.unlink(missing_ok=True)
    log(
        f"{ds.name}: figure: targeted attacks of {len(index)} images {t_attack:.2f}s, drawn in {t_draw:.2f}s"
    )
    return {"images": len(index), "attack_s": t_attack, "draw_s": t_draw}


# --- The projection ------------------------------------------------------------------------------


def project(d: str, grid: Grid, m: dict, args) -> list[dict]:
    """One row per job kind: measured cost, projected minutes per job, the limit, the grid's jobs."""
    dc = grid.dataset_config(d)
    kinds = job_kinds(grid, d)
    limits = dc["resources"]["runtime"]
    gpu = dc["resources"]["gpu"] > 0
    real_train, real_test = m["real_train_images"], m["real_test_images"]
    cfg_batch = dc["train"]["batch_size"]
    steps_real = real_train // cfg_batch
    batch_factor = cfg_batch / m["batch_size"]
    aa_cfg = dc["eval"]["autoattack"] or {}
    aa_images = aa_cfg.get("images") or real_test
    eval_images = dc["eval"].get("max_images") or real_test
    rows = []

    def row(kind, measured, unit, seconds_per_job, on_gpu=gpu, note=""):
        rule, runtime_kind = RULES[kind.split(":")[0] if kind.split(":")[0] in RULES else kind]
        minutes = seconds_per_job / 60
        jobs = kinds.get(kind, 0)
        rows.append(
            {
                "dataset": d,
                "kind": kind,
                "rule": rule,
                "runtime_kind": runtime_kind,
                "measured": measured,
                "unit": unit,
                "minutes_per_job": minutes,
                "limit_minutes": limits[runtime_kind],
                "jobs": jobs,
                "device": "gpu" if on_gpu else "cpu",
                "hours": jobs * minutes / 60,
                "over_limit": minutes > limits[runtime_kind],
                "note": note,
            }
        )

    row(
        "data",
        m["data"]["seconds"],
        "s (save+load)",
        m["data"]["seconds"] * (real_train + real_test) / m["data"]["images"],
        on_gpu=False,
        note="no download or archive reading",
    )
    for source, t in m["targets"].items():
        seconds = t["build_s"] + t["save_s"]
        row(
            f"targets:{source}",
            seconds,
            "s (build+save)",
            seconds * real_train / m["train_images"],
            on_gpu=False,
        )

    def training(kind, key, epochs):
        t = m["train"][key]
        per_epoch = (
            steps_real * t["seconds_per_step"] * batch_factor
            + t["fit_overhead_per_epoch_s"]
            + t["real_epoch_draws_s"]
        )
        row(
            kind,
            t["seconds_per_step"],
            "s/step",
            epochs * per_epoch,
            note=f"{epochs} x {steps_real} steps",
        )

    for source in ("vanilla",) + sources.REPRESENTATIVES:
        training(f"train:{source}", source, dc["train"]["epochs"])
    training("train:rigd", "rigd", dc["train"]["epochs"])
    if kinds.get(f"train:{registry.FILE}"):  # stored targets: a PAG step as a representative's
        training(f"train:{registry.FILE}", "class_mean", dc["train"]["epochs"])
    if kinds.get("train_class_score"):  # another class score: a PAG step as class_mean's
        training("train_class_score", "class_mean", dc["train"]["epochs"])
    for norm in ("linf", "l2"):
        training(f"teacher:{norm}", f"teacher_{norm}", dc["teachers"]["epochs"])

    e = m["evaluate"]
    row("evaluate", e["seconds"] / e["images"], "s/image", e["seconds"] / e["images"] * eval_images)
    aa = m["autoattack"]
    for norm in dc["eval"]["attacks"]:
        seconds_batch, note = autoattack_batch(aa, aa["norms"].get(norm))
        row(
            f"autoattack:{norm}",
            seconds_batch / aa["batch_size"],
            "s/image (worst)",
            seconds_batch * aa_images / aa["batch_size"],
            note=note,
        )
    s = m["sweep"]
    per_image = s["seconds"] / s["images"] * s["config_pgd_steps"] / s["pgd_steps"]
    row(
        "sweep",
        per_image,
        "s/image",
        per_image * aa_images,
        note=""
        if s["pgd_steps"] == s["config_pgd_steps"]
        else f"scaled from {s['pgd_steps']} PGD steps",
    )
    p = m["pag_scores"]
    images = (dc.get("pag_scores") or {}).get("images", 0)
    refs = len(grid.reference_dirs(d))
    per_image = (p["targeted_s"] + refs * p["per_reference_s"] + p["tangent_s"]) / p["images"]
    row("pag_scores", per_image, "s/image", per_image * images, note=f"{refs} references")
    if m["autoencoder"]:
        a = m["autoencoder"]
        steps = -(-real_train // a["batch_size"])
        row(
            "autoencoder",
            a["seconds_per_step"],
            "s/step",
            a["epochs"] * steps * a["seconds_per_step"],
            note=f"{a['epochs']} x {steps} steps",
        )
    base = ((1 + refs) * p["targeted_s"] + 2 * refs * p["per_reference_s"]) / p["images"]
    row("pag_baselines", base, "s/image", base * images, note="floor + ceilings")
    f = m["figure"]
    per_model = f["attack_s"] + f["draw_s"]
    for kind in ("figure:fig4", "figure:fig1", "figure:fig5"):
        n = figure_models(grid, d)[kind]
        if kinds.get(kind):
            row(kind, per_model, "s/model", per_model * n, note=f"{n} models")
    return rows


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


# --- Output --------------------------------------------------------------------------------------


def print_strategies(d: str, m: dict) -> None:
    st = m["strategies"]
    base = (st.get("vanilla") or {}).get("seconds_per_step")
    print(
        f"\nPAG strategies, {d} (batch {m['batch_size']}, {'x'.join(map(str, m['shape']))}): one training step each"
    )
    print(
        f"{'strategy':12} {'s/step':>10} {'x vanilla':>10} {'max alloc GiB':>14} {'of it the step':>15} {'host syncs/step':>16}"
    )
    for name, r in st.items():
        sec = r["seconds_per_step"]
        ratio = f"{sec / base:10.2f}" if sec and base else f"{'-':>10}"
        mem = (
            f"{r['max_memory_allocated_gib']:14.2f}"
            if r["max_memory_allocated_gib"] is not None
            else f"{'-':>14}"
        )
        mem += (
            f" {r['step_memory_gib']:15.2f}" if r["step_memory_gib"] is not None else f" {'-':>15}"
        )
        syncs = (
            f"{r['host_syncs_per_step']:16g}"
            if r["host_syncs_per_step"] is not None
            else f"{'-':>16}"
        )
        shown = f"{sec:10.4f}" if sec else f"{r.get('error', '-'):>10}"
        print(f"{name:12} {shown} {ratio} {mem} {syncs}")
    if m["precision"]:
        print(
            "  deviation from float32, one PAG step: "
            + ", ".join(f"{k} {v:.3g}" for k, v in m["precision"].items())
        )


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


# --- Main ----------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config",
        default=str(ROOT / "config.yaml"),
        help="the grid's config (default: config.yaml)",
    )
    p.add_argument("--device", help="cuda (default), cuda:N, or cpu (the default with --tiny)")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="the same code on the CPU in about a minute: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in TINY.items() if v is not None),
    )
    p.add_argument(
        "--datasets",
        help="comma-separated (default: the image datasets of the config's experiments)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=10,
        help="training steps per epoch of each run (a warm-up epoch, then a timed one)",
    )
    p.add_argument("--warmup", type=int, default=2, help="strategy timing: warm-up steps")
    p.add_argument("--repeats", type=int, default=5, help="strategy timing: timed steps")
    p.add_argument(
        "--eval-images",
        type=int,
        default=0,
        help="test images for PGD-20 and the sweep (0: one evaluation batch of the config)",
    )
    p.add_argument("--pag-images", type=int, default=100, help="test images for the PAG scores")
    p.add_argument(
        "--aa-images",
        type=int,
        default=16,
        help="images of the worst-case AutoAttack run per norm (0: not run; the projection then counts the bare model passes)",
    )
    p.add_argument(
        "--sweep-scale",
        type=float,
        default=1.0,
        help="run the masking checks' PGD with its steps times this (projected back; quick runs only)",
    )
    p.add_argument(
        "--train-images",
        type=int,
        default=10_000,
        help="synthetic training images, at most the real dataset's (0: the real dataset's; -1: the fewest the targets and steps need); targets and data are projected linearly from them",
    )
    p.add_argument(
        "--shrink", type=int, default=1, help="divide the images' sides by this (quick runs only)"
    )
    p.add_argument(
        "--width",
        type=int,
        default=None,
        help="ResNet-18 base width (default: the paper's 64; quick runs only)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="every batch size (0: the config's; quick runs only)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads (0: the config's resources.threads, at most the cores)",
    )
    p.add_argument(
        "--amp", action="store_true", help="bfloat16 autocast in training (TrainSettings.amp; CUDA)"
    )
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="channels-last training (TrainSettings.channels_last)",
    )
    p.add_argument("--out", help="write every measured figure and the table as JSON here")
    p.add_argument("--verbose", action="store_true", help="show the library's own log lines")
    args = p.parse_args(argv)
    if args.tiny:
        given = {
            a.lstrip("-").split("=")[0].replace("-", "_")
            for a in (argv if argv is not None else sys.argv[1:])
            if a.startswith("--")
        }
        for key, value in TINY.items():
            if key not in given and value is not None:
                setattr(args, key, value)
    args.device = args.device or "cuda"
    args.device_type = torch.device(args.device).type
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"error: --device {args.device}, but torch {torch.__version__} sees no CUDA device "
            f"(built with CUDA {torch.version.cuda}). Run this on the GPU machine, or run "
            f"`--tiny` for the CPU form of the check.",
            file=sys.stderr,
        )
        return 2
    fields = {f.name for f in dataclasses.fields(train.TrainSettings)}
    for flag in ("amp", "channels_last"):
        if getattr(args, flag) and flag not in fields:
            print(
                f"error: --{flag.replace('_', '-')}: this library's TrainSettings has no '{flag}'",
                file=sys.stderr,
            )
            return 2
    if args.amp and device.type != "cuda":
        print(
            "error: --amp (bfloat16 autocast) is for CUDA runs; train.fit refuses it on the CPU",
            file=sys.stderr,
        )
        return 2
    grid = load_config(Path(args.config))
    cfg = grid.config
    used = grid.used_datasets()
    names = args.datasets.split(",") if args.datasets else [d for d in used if d in REAL_SIZES]
    unknown = [d for d in names if d not in REAL_SIZES]
    if unknown:
        print(f"error: --datasets {unknown}: the check knows {sorted(REAL_SIZES)}", file=sys.stderr)
        return 2
    for d in names:
        side = datasets.SHAPES[d][-1] // args.shrink
        if (
            args.aa_images
            and "l2" in cfg["datasets"][d]["eval"]["attacks"]
            and not square_l2_fits(side)
        ):
            print(
                f"error: --shrink {args.shrink} makes {d}'s images {side} px, where pyautoattack's L2 "
                "Square attack fails (its initial squares overrun the image); give --aa-images 0 "
                "with this --shrink",
                file=sys.stderr,
            )
            return 2
    if device.type != "cuda" and any(cfg["datasets"][d]["train"].get("amp") for d in names):
        print("note: the config's train.amp is left off on the CPU (train.fit refuses it there)")
    threads = args.threads or min(
        max(cfg["datasets"][d]["resources"]["threads"] for d in names), os.cpu_count() or 1
    )
    torch.set_num_threads(threads)
    log = Log(args.verbose)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu"
    )
    log(
        f"GPU check on {device} ({where}), torch {torch.__version__}, {threads} threads, config {args.config}"
        + (", TINY" if args.tiny else "")
        + (", amp" if args.amp else "")
        + (", channels-last" if args.channels_last else "")
    )

    measured, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for d in names:
            measured[d] = check_dataset(d, cfg, args, device, Path(tmp), log)
            rows += project(d, grid, measured[d], args)
    wall = time.perf_counter() - _START
    for d in names:
        print_strategies(d, measured[d])
    tot = totals(rows)
    print_table(rows, tot, args.tiny)
    print(
        f"\ncheck wall time {wall:.0f}s"
        + ("" if args.tiny or device.type != "cuda" else f" (budget {BUDGET_S}s)")
    )
    if not args.tiny and device.type == "cuda" and wall > BUDGET_S:
        print(
            f"WARNING: the check took longer than its {BUDGET_S}s budget: lower --steps, --aa-images, --eval-images"
        )
    if args.out:
        record = {
            "device": str(device),
            "device_name": where,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "tiny": args.tiny,
            "options": vars(args),
            "threads": threads,
            "wall_seconds": wall,
            "datasets": measured,
            "rows": rows,
            "grid": {**tot, "rule_counts": grid.job_counts(names)},
        }
        io.write_text(json.dumps(record, indent=1, default=str) + "\n", args.out)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

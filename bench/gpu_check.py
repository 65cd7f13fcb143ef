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
  (``figures.targeted_towards_every_class``) drawn with ``figures.attack_grid``;
- the score-based sources, where the config gives a denoiser recipe (``score_based``): the
  denoiser's training through ``denoiser.fit`` (two epochs of ``--steps`` batches at the
  recipe's architecture, width and batch size, the second timed), and its targets,
  ``denoiser.score_targets`` for all C classes of ``--score-images`` training images (the
  control's classes shuffled), on the CPU with the job's threads (make_targets asks for no
  GPU), saved.

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
- the denoiser: seconds per training image and epoch x the real training images x the recipe's
  epochs (every denoiser job of the grid: the sources' and the PAG scores' instrument's, one
  recipe); the score-based targets: seconds per image (all C classes, built and saved) x the
  real training images, on the CPU (the sigma sweep's targets, make_score_targets, the same);
- the score-based students (train:score_based, score_shuffled, the sigma sweep's train_sigma)
  and the file source train with stored targets: timed as class_mean's PAG step;
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
one step per epoch, one thread, a few images (two for the score-based targets), the sweep's
PGD at 2% of its steps, and no AutoAttack run (its ~7,000 model passes a batch take minutes on
a CPU; the projection then counts the bare passes). Its numbers are no projection of anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

_START = time.perf_counter()  # before the heavy imports: the check's wall time includes them

# the check's parts are this script's sibling modules (bench/ is no package): found when this
# file is run as a script (its folder is then sys.path[0]) and when it is loaded from a path
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from gpu_eval_jobs import square_l2_fits
from gpu_jobs import check_dataset
from gpu_projection import (
    ROOT,
    load_config,
    print_table,
    project,
    rule_counts,
    totals,
    used_datasets,
)
from gpu_strategies import print_strategies
from gpu_timing import Log

from pagrob import datasets, io, registry, train

#: the real datasets' (training, test) images: CIFAR-10, and STL-10's labelled splits
REAL_SIZES = {name: d.sizes for name, d in registry.DATASETS.items() if d.sizes}
#: the check's time budget on one GPU (seconds)
BUDGET_S = 8 * 60
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
    "score_images": 2,
    "aa_images": 0,
    "sweep_scale": 0.02,
    "train_images": -1,
    "threads": 1,
}


# --- Options -------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_what_options(p)
    add_measure_options(p)
    add_size_options(p)
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


def add_what_options(p: argparse.ArgumentParser) -> None:
    """Which config, device and datasets; --tiny."""
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


def add_measure_options(p: argparse.ArgumentParser) -> None:
    """How much of each job kind the check runs."""
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
        "--score-images",
        type=int,
        default=32,
        help="training images of the score-based sources' targets (all classes each; on the CPU)",
    )
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


def add_size_options(p: argparse.ArgumentParser) -> None:
    """The sizes (quick runs), threads, training flags, output and log."""
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


def option_error(args, device: torch.device) -> str | None:
    """Why the options cannot run on this machine and library (None: they can)."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return (
            f"error: --device {args.device}, but torch {torch.__version__} sees no CUDA device "
            f"(built with CUDA {torch.version.cuda}). Run this on the GPU machine, or run "
            f"`--tiny` for the CPU form of the check."
        )
    fields = {f.name for f in dataclasses.fields(train.TrainSettings)}
    for flag in ("amp", "channels_last"):
        if getattr(args, flag) and flag not in fields:
            return (
                f"error: --{flag.replace('_', '-')}: this library's TrainSettings has no '{flag}'"
            )
    if args.amp and device.type != "cuda":
        return "error: --amp (bfloat16 autocast) is for CUDA runs; train.fit refuses it on the CPU"
    return None


def dataset_error(names: list[str], cfg: dict, args) -> str | None:
    """Why the check cannot run on ``names`` (None: it can)."""
    unknown = [d for d in names if d not in REAL_SIZES]
    if unknown:
        return f"error: --datasets {unknown}: the check knows {sorted(REAL_SIZES)}"
    for d in names:
        side = datasets.SHAPES[d][-1] // args.shrink
        if (
            args.aa_images
            and "l2" in cfg["datasets"][d]["eval"]["attacks"]
            and not square_l2_fits(side)
        ):
            return (
                f"error: --shrink {args.shrink} makes {d}'s images {side} px, where pyautoattack's L2 "
                "Square attack fails (its initial squares overrun the image); give --aa-images 0 "
                "with this --shrink"
            )
    return None


# --- Main ----------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    error = option_error(args, device)
    if error:
        print(error, file=sys.stderr)
        return 2
    grid, cfg = load_config(Path(args.config))
    used = used_datasets(grid)
    names = args.datasets.split(",") if args.datasets else [d for d in used if d in REAL_SIZES]
    error = dataset_error(names, cfg, args)
    if error:
        print(error, file=sys.stderr)
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
    measured, rows = run_checks(names, grid, cfg, args, device, log)
    wall = time.perf_counter() - _START
    tot = report(names, measured, rows, wall, args, device)
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
            "grid": {**tot, "rule_counts": rule_counts(grid, names)},
        }
        io.write_text(json.dumps(record, indent=1, default=str) + "\n", args.out)
        log(f"wrote {args.out}")
    return 0


def run_checks(names, grid, cfg, args, device, log) -> tuple[dict, list[dict]]:
    """Every dataset's check (its measurements, by dataset) and its rows of the projection."""
    measured, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for d in names:
            measured[d] = check_dataset(d, cfg, args, device, Path(tmp), log, REAL_SIZES[d])
            rows += project(d, grid, measured[d])
    return measured, rows


def report(names, measured, rows, wall: float, args, device) -> dict:
    """Prints the strategies' tables, the projection and the wall time; returns the totals."""
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
    return tot


if __name__ == "__main__":
    sys.exit(main())

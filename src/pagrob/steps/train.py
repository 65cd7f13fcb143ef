"""Train one classifier (vanilla, or CE + lam * PAG with one gradient source) and save it.

Resumable: the checkpoint written after every epoch (``--checkpoint``, default
``<out>.checkpoint.pt`` beside ``--out``) is picked up when the same command runs again, and removed
once the final model is saved.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from pagrob import data, io, models, sources, target_files
from pagrob.pag import AUTO
from pagrob.steps import _cli
from pagrob.train import AUTO_NOTE, TooLong, TrainSettings, fit

#: ``--device auto`` without CUDA: the most hours of CPU training a job starts without being told
#: to (``device: cpu``), e.g. not config.yaml's 100-epoch ResNet-18s
CPU_HOURS_LIMIT = 3.0


def add_training_options(p) -> None:
    """What every training step (students and teachers) takes besides its settings."""
    p.add_argument("--data", required=True, help="prepared dataset file")
    p.add_argument("--arch", choices=models.ARCHITECTURES, help="the model's architecture")
    p.add_argument("--out", required=True, help="the final model file")
    p.add_argument(
        "--checkpoint", help="resume file (default: <name of --out>.checkpoint.pt beside it)"
    )
    p.add_argument(
        "--cpu-hours-limit",
        type=float,
        default=CPU_HOURS_LIMIT,
        help="with --device auto on a machine without CUDA: refuse a training whose first steps "
        "project more hours than this on the CPU (--device cpu never refuses)",
    )


def parser():
    p = _cli.parser(__doc__)
    add_training_options(p)
    _cli.add_settings(p, TrainSettings)
    p.add_argument("--source", required=True, choices=sources.SOURCES)
    p.add_argument(
        "--label",
        help="the model's source in its file and every table (default: --source); the workflow "
        "names a model of another class score than pag.grad_of <source>.<grad_of>",
    )
    p.add_argument(
        "--targets", help="representative and file sources: the file built by make_targets"
    )
    p.add_argument("--teacher", help="rigd_* sources: the robust teacher's model file")
    return p


def main() -> None:
    args = parser().parse_args()
    if not args.arch:
        raise ValueError("--arch is needed: the architecture to train")
    settings = _cli.read_settings(args, TrainSettings)
    if (args.source == "vanilla") != (settings.lam == 0):
        raise ValueError(
            f"source {args.source!r} with lam {settings.lam}: vanilla needs lam 0, PAG sources "
            "lam > 0"
        )
    stored = sources.REPRESENTATIVES + sources.SCORE + (sources.FILE,)
    if args.source in stored and not args.targets:
        raise ValueError(
            f"source {args.source!r} needs --targets (built by pagrob.steps.make_targets)"
        )
    device = _cli.setup(args, [args.out])

    ds = data.load_prepared(args.data)
    ds.x_train, ds.y_train = (
        ds.x_train.to(device),
        ds.y_train.to(device),
    )  # once, shared by the sources
    source = None
    if args.source in sources.REPRESENTATIVES + sources.SCORE:
        source = sources.load_representatives(args.targets, ds, args.source, device)
    elif args.source == sources.FILE:
        source = target_files.load(args.targets, ds, device)
        _cli.log(
            f"file targets via {args.targets}: {target_files.shape_text(source.gradients.shape)} on "
            f"{source.gradients.device} (x {source.scale:g} to pixel space), digest checked"
        )
    elif args.source in sources.TEACHER_SOURCES:
        if not args.teacher:
            raise ValueError(f"source {args.source!r} needs --teacher (a robust model file)")
        teacher, meta = models.load_model(args.teacher, device)
        if meta.get("dataset") != ds.name:
            raise ValueError(
                f"teacher {args.teacher} was trained on {meta.get('dataset')!r}, not {ds.name!r}"
            )
        source = sources.TeacherGradients(teacher, settings.grad_of)
    train_and_save(args, ds, settings, source, device, source=args.label or args.source)


def train_and_save(args, ds, settings: TrainSettings, target_source, device: str, **meta) -> None:
    out = Path(args.out)
    checkpoint = (
        Path(args.checkpoint) if args.checkpoint else out.with_name(f"{out.stem}.checkpoint.pt")
    )
    torch.manual_seed(settings.seed)
    model = models.build_model(args.arch, ds.input_shape, ds.num_classes, ds.mean, ds.std)
    _cli.log(
        f"training {args.arch} on {ds.name} ({len(ds.x_train)} images) on {device}, "
        f"{sum(p.numel() for p in model.parameters())} parameters, settings {settings}"
    )
    # a checkpoint resumes only if these files are what it was trained from (by content)
    files = {
        "data": args.data,
        "targets": getattr(args, "targets", None),
        "teacher": getattr(args, "teacher", None),
    }
    inputs = {name: io.file_digest(path) for name, path in files.items() if path}
    # the CPU guard: --device auto that found no CUDA device (set by _cli.setup)
    hours = getattr(args, "cpu_hours_limit", CPU_HOURS_LIMIT)
    guard = getattr(args, "device_asked", None) == "auto" and device == "cpu" and hours > 0
    try:
        history = fit(
            model,
            ds,
            target_source,
            settings,
            checkpoint,
            device,
            log=_cli.log,
            inputs=inputs,
            time_limit_s=hours * 3600 if guard else None,
        )
    except TooLong as e:
        raise ValueError(
            f"device: auto found no CUDA device, so this job would train on the CPU, and {e}. "
            "Run it where torch sees a GPU, or set device: cpu in the config to train on this "
            "CPU anyway."
        ) from None
    used = history[-1]["strategy"] if history else None
    if settings.strategy == AUTO and used:  # the choice is part of the result: say so
        meta["strategy_note"] = AUTO_NOTE.format(strategy=used)
    models.save_model(
        out,
        model,
        args.arch,
        ds.input_shape,
        ds.num_classes,
        dataset=ds.name,
        classes=ds.classes,
        seed=settings.seed,
        lam=settings.lam,
        # settings hold the strategy asked for (maybe "auto"); this, the one that computed it
        settings=asdict(settings),
        strategy_used=used,
        history=history,
        **meta,
    )
    checkpoint.unlink(missing_ok=True)
    _cli.log(f"saved {out}")


if __name__ == "__main__":
    _cli.run(main)

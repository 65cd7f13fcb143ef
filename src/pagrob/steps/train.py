"""Train one classifier (vanilla, or CE + lam * PAG with one gradient source) and save it.

Resumable: the checkpoint written after every epoch (``--checkpoint``, default
``<out>.checkpoint.pt`` beside ``--out``) is picked up when the same command runs again, and removed
once the final model is saved.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from pagrob import data, io, models, pag, sources, target_files
from pagrob.pag import AUTO
from pagrob.steps import _cli
from pagrob.train import AUTO_NOTE, DEFAULT_PAG_VARIANT, PAG_VARIANTS, TooLong, TrainSettings, fit

#: ``--device auto`` without CUDA: the most hours of CPU training a job starts without being told
#: to (``device: cpu``), e.g. not config.yaml's 100-epoch ResNet-18s
CPU_HOURS_LIMIT = 3.0


def add_training_options(p, required: bool = True) -> None:
    p.add_argument("--data", required=True, help="prepared dataset file")
    p.add_argument("--arch", required=required, choices=models.ARCHITECTURES)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--epochs", type=int, required=required)
    p.add_argument("--batch-size", type=int, required=required)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--lr", type=float, required=required)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument(
        "--milestones",
        type=_cli.int_list,
        default=[],
        help="e.g. '50 75': lr *= gamma from these epochs",
    )
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument(
        "--crop-padding", type=int, default=0, help="random crop with this zero padding (0: none)"
    )
    p.add_argument("--flip", type=_cli.boolean, default=False, help="random horizontal flips")
    p.add_argument(
        "--amp",
        type=_cli.boolean,
        default=False,
        help="bfloat16 autocast (CUDA only; refused on the CPU)",
    )
    p.add_argument(
        "--channels-last", type=_cli.boolean, default=False, help="channels-last memory format"
    )
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
    p.add_argument("--source", required=True, choices=sources.SOURCES)
    p.add_argument(
        "--label",
        help="the model's source in its file and every table (default: --source); the workflow "
        "names a model of another class score than pag.grad_of <source>.<grad_of>",
    )
    p.add_argument("--lam", type=float, required=True, help="PAG weight (0 for vanilla)")
    p.add_argument(
        "--targets", help="representative and file sources: the file built by make_targets"
    )
    p.add_argument("--teacher", help="rigd_* sources: the robust teacher's model file")
    p.add_argument("--grad-of", default="logit", choices=pag.GRAD_OF)
    p.add_argument(
        "--strategy",
        default=pag.DEFAULT_STRATEGY,
        choices=pag.STRATEGY_CHOICES,
        help="how the C input-gradients are computed (identical results); auto: the fastest, timed at the start",
    )
    p.add_argument("--pag-eps", type=float, default=1e-8, help="epsilon of Eq. (2)")
    p.add_argument("--classes-per-step", type=int, default=0, help="0: all classes every step")
    p.add_argument(
        "--pag-variant",
        default=DEFAULT_PAG_VARIANT,
        choices=PAG_VARIANTS,
        help="follow: CE and PAG on the per-image augmented batch, targets following each crop and "
        "flip; authors: the released code's (CE on one view, PAG gradient w.r.t. the un-augmented "
        "image through another, each one crop and flip per step, un-augmented targets)",
    )
    return p


def main() -> None:
    args = parser().parse_args()
    if (args.source == "vanilla") != (args.lam == 0):
        raise ValueError(
            f"source {args.source!r} with lam {args.lam}: vanilla needs lam 0, PAG sources lam > 0"
        )
    if (args.source in sources.REPRESENTATIVES or args.source == sources.FILE) and not args.targets:
        raise ValueError(
            f"source {args.source!r} needs --targets (built by pagrob.steps.make_targets)"
        )
    device = _cli.setup(args, [args.out])

    ds = data.load_prepared(args.data)
    ds.x_train, ds.y_train = (
        ds.x_train.to(device),
        ds.y_train.to(device),
    )  # once, shared by the sources
    settings = settings_from(
        args,
        lam=args.lam,
        grad_of=args.grad_of,
        strategy=args.strategy,
        pag_eps=args.pag_eps,
        classes_per_step=args.classes_per_step or None,
        pag_variant=args.pag_variant,
    )
    source = None
    if args.source in sources.REPRESENTATIVES:
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
        source = sources.TeacherGradients(teacher, args.grad_of)
    train_and_save(args, ds, settings, source, device, source=args.label or args.source)


def settings_from(args, **extra) -> TrainSettings:
    return TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        milestones=args.milestones,
        gamma=args.gamma,
        crop_padding=args.crop_padding,
        flip=args.flip,
        seed=args.seed,
        amp=args.amp,
        channels_last=args.channels_last,
        **extra,
    )


def train_and_save(args, ds, settings: TrainSettings, target_source, device: str, **meta) -> None:
    out = Path(args.out)
    checkpoint = (
        Path(args.checkpoint) if args.checkpoint else out.with_name(f"{out.stem}.checkpoint.pt")
    )
    torch.manual_seed(args.seed)
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
        seed=args.seed,
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

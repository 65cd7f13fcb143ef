"""Precompute a representative gradient source: class_mean once per dataset
(``results/<dataset>/targets/class_mean.pt``); a drawn one (one_image, nearest_neighbor,
clustered_nn) once per draw seed, ``--seed`` (``results/<dataset>/targets/<source>/seed<seed>.pt``:
the training seed of the models that use it); for a score-based source (score_based, and its
control score_shuffled), g(x, c) = D(x, c, sigma) - x of a trained denoiser (``--denoiser``,
``--sigma``) for every training image and class (``results/<dataset>/targets/<source>.pt``); or,
for the ``file`` source, match a file of targets computed elsewhere (``--file``, ``--labels``) to
the training set and write the matching record (``results/<dataset>/targets/file.pt``)."""

from __future__ import annotations

import time

from pagrob import data, denoiser, io, sources, target_files
from pagrob.steps import _cli


def parser():
    p = _cli.parser(__doc__)
    p.add_argument("--data", required=True, help="prepared dataset file")
    p.add_argument(
        "--source", required=True, choices=sources.REPRESENTATIVES + sources.SCORE + (sources.FILE,)
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random choices")
    p.add_argument(
        "--nn-sample-size", type=int, default=100, help="nearest_neighbor: images per class"
    )
    p.add_argument(
        "--class-mean-rescale",
        type=_cli.boolean,
        default=True,
        help="class_mean: rescale each mean to its class's mean image norm",
    )
    p.add_argument(
        "--clusters",
        type=int,
        default=sources.CLUSTERS,
        help=f"clustered_nn: k-means clusters per class (default {sources.CLUSTERS})",
    )
    p.add_argument(
        "--file",
        help="file source: the targets file, N x (1 + C) x image (an image and a target "
        "per class, any order) or N x C x image (aligned with the training set)",
    )
    p.add_argument("--labels", help="file source: its labels file (N integers; optional)")
    p.add_argument("--denoiser", help="score-based sources: the denoiser's model file")
    p.add_argument(
        "--sigma",
        type=float,
        help="score-based sources: the noise level at which the denoiser's residual is taken",
    )
    p.add_argument("--out", required=True)
    return p


def main() -> None:
    args = parser().parse_args()
    check_args(args)
    device = _cli.setup(args, [args.out])
    ds = data.load_prepared(args.data)
    t0 = time.perf_counter()
    if args.source == sources.FILE:
        match_file(args, ds)
        _cli.log(
            f"file targets for {ds.name} matched in {time.perf_counter() - t0:.1f}s -> {args.out}"
        )
        return
    if args.source in sources.SCORE:
        io.save(score_targets(args, ds, device), args.out)
        _cli.log(
            f"{args.source} targets for {ds.name} in {time.perf_counter() - t0:.1f}s -> {args.out}"
        )
        return
    built = sources.build(
        args.source,
        ds,
        seed=args.seed,
        nn_sample_size=args.nn_sample_size,
        class_mean_rescale=args.class_mean_rescale,
        clusters=args.clusters,
    )
    io.save(built, args.out)
    _cli.log(
        f"{args.source} targets for {ds.name} in {time.perf_counter() - t0:.1f}s -> {args.out}"
    )


def check_args(args) -> None:
    """The options that go with one kind of source only, given with it."""
    if (args.source == sources.FILE) != bool(args.file):
        raise ValueError("--file (and --labels) go with --source file, which needs --file")
    if args.labels and not args.file:
        raise ValueError("--labels goes with --source file --file PATH")
    if (args.source in sources.SCORE) != bool(args.denoiser and args.sigma):
        raise ValueError(
            "--denoiser and --sigma go with the score-based sources "
            f"({', '.join(sources.SCORE)}), which need both"
        )


def score_targets(args, ds: data.Dataset, device) -> dict:
    """g(x, c) = D(x, c, sigma) - x for every training image and class, on the CPU: for
    score_shuffled each image's classes permuted with no class kept (seeded by --seed)."""
    net, meta = denoiser.load(args.denoiser, device)
    if meta.get("dataset") != ds.name or tuple(meta["input_shape"]) != ds.input_shape:
        raise io.BadFileError(
            f"denoiser {args.denoiser} was trained on {meta.get('dataset')!r} "
            f"({meta['input_shape']}), not {ds.name!r}; train one on this dataset"
        )
    classes = None
    if args.source == "score_shuffled":
        classes = denoiser.shuffled_classes(len(ds.x_train), ds.num_classes, args.seed)
    g = denoiser.score_targets(net, ds.x_train.to(device), args.sigma, classes).cpu()
    _cli.log(
        f"denoiser {args.denoiser} at sigma {args.sigma:g}: mean |g| "
        f"{float(g.flatten(2).norm(dim=2).mean()):.4f} (L2 per image and class)"
    )
    return {
        "source": args.source,
        "dataset": ds.name,
        "num_train": len(ds.x_train),
        "sigma": args.sigma,
        "denoiser": str(args.denoiser),
        "gradients": g,
        "classes": classes,
    }


def match_file(args, ds: data.Dataset) -> None:
    file = target_files.read(
        args.file, args.labels, image_shape=ds.input_shape, num_classes=ds.num_classes
    )
    _cli.log(f"targets file {file.describe()}")
    record = target_files.match(file, ds)
    _cli.log(
        f"layout {record['layout']}, images in {record['range']} (targets scaled by "
        f"{target_files.PIXEL_SCALE[record['range']]:g} to pixel space), {record['matched']:,} of "
        f"{record['num_train']:,} training images matched to file rows"
        + (", labels agree" if args.labels else ", no labels to check")
    )
    io.save(record, args.out)


if __name__ == "__main__":
    _cli.run(main)

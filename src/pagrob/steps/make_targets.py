"""Precompute a representative gradient source (one_image, class_mean, nearest_neighbor,
clustered_nn) once per dataset: ``results/<dataset>/targets/<source>.pt``."""

from __future__ import annotations

import time

from pagrob import data, io, sources
from pagrob.steps import _cli


def main() -> None:
    p = _cli.parser(__doc__)
    p.add_argument("--data", required=True, help="prepared dataset file")
    p.add_argument("--source", required=True, choices=sources.REPRESENTATIVES)
    p.add_argument("--seed", type=int, default=0, help="seed of the random choices")
    p.add_argument("--nn-sample-size", type=int, default=100, help="nearest_neighbor: images per class")
    p.add_argument(
        "--class-mean-rescale", type=_cli.boolean, default=True,
        help="class_mean: rescale each mean to its class's mean image norm",
    )
    p.add_argument(
        "--clusters", type=int, default=sources.CLUSTERS,
        help=f"clustered_nn: k-means clusters per class (default {sources.CLUSTERS})",
    )
    p.add_argument("--out", required=True)
    args = p.parse_args()
    _cli.setup(args, [args.out])
    ds = data.load_prepared(args.data)
    t0 = time.perf_counter()
    built = sources.build(
        args.source, ds, seed=args.seed, nn_sample_size=args.nn_sample_size,
        class_mean_rescale=args.class_mean_rescale, clusters=args.clusters,
    )
    io.save(built, args.out)
    _cli.log(f"{args.source} targets for {ds.name} in {time.perf_counter() - t0:.1f}s -> {args.out}")


if __name__ == "__main__":
    _cli.run(main)

"""What the clustered nearest-neighbour targets (``sources.clustered_nn``) cost: seeded k-means
of each class's training images, then every image's nearest centroid of every class.

Times ``clustered_nn`` on synthetic classes of CIFAR-10's size (5,000 images of 3 x 32 x 32 per
class) for each k, on one CPU thread by default, and prints the seconds per class and the
projection for CIFAR-10's ten classes. Run by hand:

    .venv/bin/python bench/kmeans_targets.py [--classes 2] [--k 10 100] [--threads 1]

Random images are not real ones: k-means may take other iteration counts on CIFAR-10.
"""

from __future__ import annotations

import argparse
import time

import torch
from threadpoolctl import threadpool_limits

from pagrob import sources


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--classes", type=int, default=2, help="synthetic classes timed")
    p.add_argument("--per-class", type=int, default=5000, help="images per class (CIFAR-10's)")
    p.add_argument("--k", type=int, nargs="+", default=[10, 100], help="clusters per class")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    n = args.classes * args.per_class
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.arange(args.classes).repeat_interleave(args.per_class)
    print(
        f"{args.classes} classes of {args.per_class} images (3 x 32 x 32), {args.threads} thread(s)"
    )
    with threadpool_limits(args.threads):  # scikit-learn's k-means: the same threads
        for k in args.k:
            t0 = time.perf_counter()
            sources.clustered_nn(x, y, args.classes, k, torch.Generator().manual_seed(0))
            per_class = (time.perf_counter() - t0) / args.classes
            print(
                f"k = {k}: {per_class:.1f} s per class, so about {10 * per_class / 60:.1f} min "
                "for CIFAR-10's ten classes"
            )


if __name__ == "__main__":
    main()

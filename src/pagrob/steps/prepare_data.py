"""Prepare one dataset into a single file of train/test tensors: ``results/<dataset>/data.pt``.

toy: generated (Section 5.1); digits: scikit-learn's bundled 8x8 digits, split per class;
cifar10, stl10: torchvision's files under --root (extracted there from the archive, downloaded
first with --download true); fashion_mnist: its four files from --root, torchvision's download
(--download true) or Debian's package (pagrob.datasets), optionally a fixed class-balanced
subset of its training images (--train-size, drawn with --seed).
"""

from __future__ import annotations

import json

from pagrob import data, datasets, registry
from pagrob.steps import _cli


def main() -> None:
    p = _cli.parser(__doc__)
    p.add_argument("--dataset", required=True, choices=list(registry.DATASETS))
    p.add_argument("--out", required=True)
    p.add_argument(
        "--seed", type=int, default=0, help="toy: seed of the points; digits: of the split"
    )
    p.add_argument(
        "--toy-centers",
        default="[[-50, -10, 30], [-30, 10, 50]]",
        help="toy: JSON list, per class, of the mode centres of x1",
    )
    p.add_argument("--toy-per-mode", type=int, default=1000, help="toy: training points per mode")
    p.add_argument("--toy-test", type=int, default=600, help="toy: test points in all")
    p.add_argument("--test-fraction", type=float, default=0.3, help="digits: test share per class")
    p.add_argument(
        "--root", help="cifar10, stl10, fashion_mnist: folder with the dataset or its archive"
    )
    p.add_argument(
        "--download",
        type=_cli.boolean,
        default=False,
        help="cifar10, stl10, fashion_mnist: fetch if missing",
    )
    p.add_argument(
        "--train-size", type=int, default=0, help="fashion_mnist: training images kept (0: all)"
    )
    args = p.parse_args()
    _cli.setup(args, [args.out])
    kind = registry.DATASETS[args.dataset].kind
    if kind == "generated":
        ds = data.make_toy(
            json.loads(args.toy_centers), args.toy_per_mode, args.toy_test, args.seed
        )
    elif kind == "bundled":
        ds = datasets.load_digits(args.test_fraction, args.seed)
    elif not args.root:
        raise ValueError(f"--root is required for {args.dataset}")
    elif args.dataset == "fashion_mnist":
        ds, where = datasets.load_fashion_mnist(args.root, args.download)
        _cli.log(f"Fashion-MNIST's files: {where}")
        ds = data.subset(ds, args.train_size, args.seed)
    else:
        ds = datasets.LOADERS[args.dataset](args.root, args.download)
    data.save_prepared(ds, args.out)
    _cli.log(
        f"{ds.name}: {len(ds.x_train)} train / {len(ds.x_test)} test, shape {ds.input_shape}, "
        f"{ds.num_classes} classes -> {args.out}"
    )


if __name__ == "__main__":
    _cli.run(main)

"""Prepare one dataset into a single file of train/test tensors: ``results/<dataset>/data.pt``."""

from __future__ import annotations

import json

from pagrob import data
from pagrob.steps import _cli


def main() -> None:
    p = _cli.parser(__doc__)
    p.add_argument("--dataset", required=True, choices=["toy"])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0, help="toy: seed of the sampled points")
    p.add_argument(
        "--toy-centers",
        default="[[-50, -10, 30], [-30, 10, 50]]",
        help="toy: JSON list, per class, of the mode centres of x1",
    )
    p.add_argument("--toy-per-mode", type=int, default=1000, help="toy: training points per mode")
    p.add_argument("--toy-test", type=int, default=600, help="toy: test points in all")
    args = p.parse_args()
    _cli.setup(args, [args.out])
    if args.dataset == "toy":
        ds = data.make_toy(json.loads(args.toy_centers), args.toy_per_mode, args.toy_test, args.seed)
    data.save_prepared(ds, args.out)
    _cli.log(
        f"{ds.name}: {len(ds.x_train)} train / {len(ds.x_test)} test, shape {ds.input_shape}, "
        f"{ds.num_classes} classes -> {args.out}"
    )


if __name__ == "__main__":
    _cli.run(main)

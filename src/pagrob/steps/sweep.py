"""The PGD side of the gradient-masking checks for one model, as tidy rows (the columns of
pagrob.report.COLUMNS): accuracy against eps (``attack = curve``, one row per eps of every
``--curve``) and a much stronger PGD at the table's eps (``attack = pgd-<steps>x<restarts>``:
robust only if every restart fails)."""

from __future__ import annotations

import dataclasses
import time

from pagrob.evaluate import sweep
from pagrob.steps import _cli
from pagrob.steps.evaluate import add_model_options, attack_spec, load_test_set, write_rows


def main() -> None:
    p = _cli.parser(__doc__)
    add_model_options(p)
    p.add_argument(
        "--curve",
        type=attack_spec,
        action="append",
        default=[],
        help="repeatable: one PGD per eps of the curve, norm:eps:steps[:step_size]",
    )
    p.add_argument(
        "--strong",
        type=attack_spec,
        action="append",
        default=[],
        help="repeatable: the strong PGD at a table's eps, norm:eps:steps[:step_size]",
    )
    p.add_argument(
        "--restarts", type=int, default=5, help="random restarts of every --strong attack"
    )
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.restarts < 1:
        raise ValueError(f"--restarts must be at least 1, not {args.restarts}")
    device = _cli.setup(args, [args.out])
    ds, model, meta, x, y = load_test_set(args, device)
    t0 = time.perf_counter()
    curve = [dataclasses.replace(a, bounds=ds.bounds) for a in args.curve]
    strong = [dataclasses.replace(a, bounds=ds.bounds) for a in args.strong]
    rows = sweep(model, x, y, curve, strong, args.restarts, args.batch_size, args.seed, device)
    write_rows(meta, rows, len(x), args.out)
    _cli.log(f"swept {len(x)} images in {time.perf_counter() - t0:.1f}s -> {args.out}")


if __name__ == "__main__":
    _cli.run(main)

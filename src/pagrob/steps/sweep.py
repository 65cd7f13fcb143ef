"""The PGD side of the gradient-masking checks for one model, as tidy rows (the columns of
pagrob.report.COLUMNS): accuracy against eps (``attack = curve``, one row per eps of every
curve attack) and a much stronger PGD at the table's eps (``attack = pgd-<steps>x<restarts>``:
robust only if every restart fails)."""

from __future__ import annotations

import dataclasses
import time

from pagrob.evaluate import sweep
from pagrob.settings import SweepSettings
from pagrob.steps import _cli
from pagrob.steps.evaluate import add_model_options, load_test_set, write_rows


def main() -> None:
    p = _cli.parser(__doc__)
    add_model_options(p)
    _cli.add_settings(p, SweepSettings)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    s = _cli.read_settings(args, SweepSettings)
    device = _cli.setup(args, [args.out])
    ds, model, meta, x, y = load_test_set(args, device, s.max_images)
    t0 = time.perf_counter()
    curve = [dataclasses.replace(a, bounds=ds.bounds) for a in s.curves]
    strong = [dataclasses.replace(a, bounds=ds.bounds) for a in s.strong]
    rows = sweep(model, x, y, curve, strong, s.restarts, s.batch_size, s.seed, device)
    write_rows(meta, rows, len(x), args.out)
    _cli.log(f"swept {len(x)} images in {time.perf_counter() - t0:.1f}s -> {args.out}")


if __name__ == "__main__":
    _cli.run(main)

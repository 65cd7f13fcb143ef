"""Fig. 5: clean / L-inf / L2 accuracy against lambda (ours beside the paper's), and the
targeted large-eps attacks of each lambda's model on one test image."""

from __future__ import annotations

import dataclasses

import pandas as pd

from pagrob import figures, report
from pagrob.settings import PicturesSettings
from pagrob.steps import _cli
from pagrob.steps.pag_figure import add_picture_options, attack_rows


def main() -> None:
    p = _cli.parser(__doc__)
    add_picture_options(p)
    p.add_argument(
        "--table", required=True, help="the ablation table CSV (pagrob.steps.table ablation)"
    )
    args = p.parse_args()
    s = _cli.read_settings(args, PicturesSettings)
    s = dataclasses.replace(s, images=s.images[:1])  # one image: a row per lambda
    device = _cli.setup(args, [args.out_png, args.out_pdf])
    table = pd.read_csv(args.table)
    ds, rows = attack_rows(args, s, device, lambda meta: f"λ={meta['lam']:g}")
    rows.sort(key=lambda r: float(r[0].split("=")[1].split("\n")[0]))
    source = report.method(next(s for s in table["source"] if s != "vanilla"))  # vanilla: λ = 0
    title = f"{source} on {ds.name}: accuracy against λ, and targeted L2 PGD (ε={s.attack.eps:g})"
    figures.lambda_ablation(table, rows, ds.classes, title, args.out_png, args.out_pdf)
    _cli.log(f"-> {args.out_png}, {args.out_pdf}")


if __name__ == "__main__":
    _cli.run(main)

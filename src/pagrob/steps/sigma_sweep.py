"""The noise-level sweep's table and figure: a score-based source's accuracies against the
noise level of its targets (experiments.sigma_sweep), from the models' tidy metrics CSVs."""

from __future__ import annotations

import pandas as pd

from pagrob import report, sigma_report
from pagrob.steps import _cli


def main() -> None:
    p = _cli.parser(__doc__)
    p.add_argument("--metrics", nargs="+", required=True, help="the models' metrics CSVs")
    _cli.add_table_outputs(p)
    p.add_argument("--out-png", required=True)
    p.add_argument("--out-pdf", required=True)
    args = p.parse_args()
    metrics = pd.concat([report.read_metrics(f) for f in args.metrics], ignore_index=True)
    full, text = sigma_report.sigma_table(metrics)
    sigma_report.sigma_figure(full, args.out_png, args.out_pdf)
    _cli.write_table(args, full, text)


if __name__ == "__main__":
    _cli.run(main)

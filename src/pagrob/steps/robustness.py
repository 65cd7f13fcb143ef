"""Trusting the robustness numbers, from the tidy metrics of a dataset's models (pandas and
matplotlib only):

- ``checks``: the gradient-masking checks of every model with an AutoAttack record, as
  results/tables/masking_<dataset>.{md,csv} (see pagrob.robustness for what each check means);
- ``curves``: robust accuracy against eps, PGD at every eps of the curve and AutoAttack at the
  table's eps, one line per model (results/figures/robustness_curves_<dataset>.{png,pdf}).
"""

from __future__ import annotations

import argparse

import pandas as pd

from pagrob import report, robustness
from pagrob.settings import ChecksSettings
from pagrob.steps import _cli


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("what", choices=["checks", "curves"])
    p.add_argument("--metrics", nargs="+", required=True, help="tidy metrics CSVs")
    p.add_argument("--records", nargs="*", default=[], help="checks: the AutoAttack JSON records")
    _cli.add_settings(p, ChecksSettings, required=False, option="--checks")  # checks
    p.add_argument("--title", default="", help="curves: the figure's title")
    _cli.add_table_outputs(p, required=False)  # checks
    _cli.add_figure_outputs(p, required=False)  # curves
    args = p.parse_args()
    metrics = pd.concat([report.read_metrics(m) for m in args.metrics], ignore_index=True)
    if args.what == "checks":
        needed = {
            "--records": args.records,
            "--checks": args.checks,
            "--out-md": args.out_md,
            "--out-csv": args.out_csv,
        }
        missing = [k for k, v in needed.items() if v in (None, [])]
        if missing:
            raise ValueError(f"checks needs {', '.join(missing)}")
        s = _cli.read_settings(args, ChecksSettings, "--checks")
        checks = robustness.masking_checks(
            metrics,
            robustness.read_records(args.records),
            tolerance=s.tolerance,
            max_gap=s.max_gap,
            zero_at=s.zero_at,
        )
        text = robustness.masking_table(checks, report.method)
        _cli.write_table(args, checks, text)
        print(text)
    else:
        if not (args.out_png and args.out_pdf):
            raise ValueError("curves needs --out-png and --out-pdf")
        robustness.curves_figure(
            metrics, report.method, report.SOURCE_ORDER, args.title, args.out_png, args.out_pdf
        )
        _cli.log(f"wrote {args.out_png}, {args.out_pdf}")


if __name__ == "__main__":
    _cli.run(main)

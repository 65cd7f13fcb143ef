"""Build one of the paper's tables from gathered metrics, the paper's numbers beside ours."""

from __future__ import annotations

import argparse

from pagrob import io, report
from pagrob.steps import _cli


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("table", choices=["toy"])
    p.add_argument("--metrics", required=True, help="gathered metrics CSV")
    p.add_argument("--paper", required=True, help="the paper's numbers (paper_numbers.csv)")
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-csv", required=True)
    args = p.parse_args()
    metrics = report.read_metrics(args.metrics)
    paper = report.read_paper(args.paper)
    if args.table == "toy":
        full, text = report.toy_table(metrics, paper)
    io.write_text(full.to_csv(index=False), args.out_csv)
    io.write_text(text, args.out_md)
    print(text)


if __name__ == "__main__":
    _cli.run(main)

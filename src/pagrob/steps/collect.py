"""Concatenate tidy CSVs (one per model) into one: metrics (pagrob.report.COLUMNS) or PAG scores
(pagrob.pag_report.COLUMNS)."""

from __future__ import annotations

import argparse

import pandas as pd

from pagrob import io, pag_report, report
from pagrob.steps import _cli


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("inputs", nargs="+")
    p.add_argument("--kind", choices=["metrics", "pag_scores"], default="metrics")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    columns = report.COLUMNS if args.kind == "metrics" else pag_report.COLUMNS
    frames = []
    for path in args.inputs:
        df = pd.read_csv(path)
        if list(df.columns) != columns:
            raise ValueError(
                f"{path} has columns {list(df.columns)}, expected {columns}; rebuild it"
            )
        frames.append(df)
    io.write_text(pd.concat(frames).to_csv(index=False), args.out)
    _cli.log(f"{len(args.inputs)} files -> {args.out}")


if __name__ == "__main__":
    _cli.run(main)

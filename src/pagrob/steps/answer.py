"""The answer page of one dataset (pagrob.answer): its figure (pagrob.answer_figure), a compact
table of each model's difference to vanilla with its 95% interval and verdict, the rank
correlations, and a few words; the tests themselves as CSV.

  images  --dataset D --metrics (the main table's tidy CSVs, its teachers' too: the ceiling)
          [--scores (their pag_scores.csv)]
  toy     --metrics (the toy models' tidy CSVs) --toy-pag results/tables/toy_pag.csv

pandas, scipy and matplotlib only (no torch): runs in the report environment."""

from __future__ import annotations

import argparse
import os

import pandas as pd

from pagrob import answer, answer_figure, pag_report, report
from pagrob.steps import _cli


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("what", choices=["images", "toy"])
    p.add_argument("--dataset", help="images: the dataset")
    p.add_argument("--metrics", nargs="+", required=True, help="tidy metrics CSVs")
    p.add_argument("--scores", nargs="+", help="images: the models' PAG scores (pag_scores.csv)")
    p.add_argument("--toy-pag", help="toy: results/tables/toy_pag.csv")
    _cli.add_table_outputs(p)
    _cli.add_figure_outputs(p)
    args = p.parse_args()
    metrics = pd.concat([report.read_metrics(m) for m in args.metrics], ignore_index=True)
    # the page names its figure relative to itself
    figure = os.path.relpath(args.out_png, os.path.dirname(os.path.abspath(args.out_md)) or ".")
    if args.what == "images":
        if not args.dataset:
            raise ValueError("images needs --dataset")
        scores = pag_report.read_scores(args.scores) if args.scores else None
        full, text = answer.image_answer(metrics, scores, args.dataset, figure)
    else:
        if not args.toy_pag:
            raise ValueError("toy needs --toy-pag (results/tables/toy_pag.csv)")
        full, text = answer.toy_answer(metrics, pd.read_csv(args.toy_pag), figure)
    title = text.splitlines()[0].lstrip("# ")
    answer_figure.answer_figure(full, title, args.out_png, args.out_pdf)
    _cli.write_table(args, full, text, title, images={figure: args.out_png})
    print(text)


if __name__ == "__main__":
    _cli.run(main)

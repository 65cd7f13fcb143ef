"""Tables and figures of the PAG scores (pandas and matplotlib only, no torch):

table   one row per model, one column per score x reference (cells not independent of their reference marked)
lambda  a source's score against λ (Fig. 5's ablation), table and, with --out-png, a panel
plot    each model's score against its AutoAttack robust accuracy, one panel per norm
"""

from __future__ import annotations

import argparse

import pandas as pd

from pagrob import io, pag_report, report
from pagrob.steps import _cli


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("what", choices=["table", "lambda", "plot"])
    p.add_argument(
        "--scores", nargs="+", required=True, help="PAG score CSVs (pagrob.steps.pag_scores)"
    )
    p.add_argument(
        "--metrics", nargs="+", default=[], help="plot: tidy metrics CSVs with AutoAttack rows"
    )
    p.add_argument(
        "--score",
        nargs="+",
        choices=pag_report.SCORES,
        help="lambda: which score (default alignment); plot: which scores, a row of panels each "
        "(default: the instruments alignment, alignment_log_softmax, tangent_fraction, those present)",
    )
    p.add_argument("--source", help="lambda: the ablated source, e.g. class_mean")
    _cli.add_table_outputs(p, required=False)  # table, lambda; plot: --out-csv, its points
    _cli.add_figure_outputs(p, required=False)
    args = p.parse_args()
    scores = pag_report.read_scores(args.scores)
    if args.what == "plot":
        if not (args.metrics and args.out_png):
            raise ValueError("plot needs --metrics and --out-png (and optionally --out-pdf)")
        from pagrob import pag_figures

        metrics = pd.concat([report.read_metrics(m) for m in args.metrics], ignore_index=True)
        wanted = args.score or [s for s, _ in pag_report.INSTRUMENTS]
        points = pag_figures.pag_vs_robustness(scores, metrics, wanted, args.out_png, args.out_pdf)
        if args.out_csv:
            io.write_text(points.to_csv(index=False), args.out_csv)
        print(f"{len(points)} points -> {args.out_png}")
        return
    if not (args.out_md and args.out_csv):
        raise ValueError(f"{args.what} needs --out-md and --out-csv")
    if args.what == "table":
        full, text = pag_report.pag_scores_table(scores)
    else:
        if not args.source:
            raise ValueError("lambda needs --source")
        score = args.score[0] if args.score else pag_report.SCORES[0]
        full, text = pag_report.lambda_table(scores, args.source, score)
        if args.out_png:
            from pagrob import pag_figures

            pag_figures.pag_vs_lambda(scores, args.source, args.out_png, args.out_pdf, score)
    title = (
        "PAG scores"
        if args.what == "table"
        else f"PAG score against λ ({pag_report.method(args.source)})"
    )
    _cli.write_table(args, full, text, title)
    print(text)


if __name__ == "__main__":
    _cli.run(main)

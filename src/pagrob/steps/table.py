"""Build one of the paper's tables from tidy metrics, the paper's numbers beside ours:
toy (Section 5.1), main (Tables 1-2), lambda (Table 3), seeds (Table 4), ablation (Fig. 5);
and external: imported models beside ours and the paper's."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from pagrob import report
from pagrob.settings import ChecksSettings
from pagrob.steps import _cli


def parser() -> argparse.ArgumentParser:
    """The step's command-line options."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "table", choices=["toy", "main", "lambda", "seeds", "ablation", "external", "grad_of"]
    )
    p.add_argument("--metrics", nargs="+", default=[], help="tidy metrics CSVs (one or more)")
    p.add_argument("--paper", required=True, help="the paper's numbers (paper_numbers.csv)")
    p.add_argument("--name", help="main: the table's name, e.g. table1")
    p.add_argument("--dataset", help="main, external: the dataset")
    p.add_argument(
        "--externals", help='external: JSON {name: {"claims": source, "lam": lambda or null}}'
    )
    p.add_argument("--lams", help="lambda: JSON {dataset: {source: lambda}}")
    p.add_argument(
        "--records",
        nargs="*",
        default=[],
        help="main, external: the AutoAttack records of its models; their gradient-masking checks "
        "are computed here (from --metrics, with --checks) and footnoted, "
        "so the table needs no other model's",
    )
    # main, external: as pagrob.steps.robustness checks
    _cli.add_settings(p, ChecksSettings, required=False, option="--checks")
    _cli.add_table_outputs(p)
    p.add_argument("--scores", nargs="+", help="grad_of: the models' PAG scores (pag_scores.csv)")
    p.add_argument(
        "--default-score",
        help="grad_of: pag.grad_of, the class score of the models named without one",
    )
    _cli.add_figure_outputs(p, required=False)  # grad_of: its figure
    return p


def metrics_table(args, metrics: pd.DataFrame, paper) -> tuple[pd.DataFrame, str]:
    """The table built from the metrics (all but lambda's): its numbers and its Markdown."""
    if args.table == "toy":
        full, text = report.toy_table(metrics, paper)
    elif args.table == "main":
        if not (args.name and args.dataset):
            raise ValueError("the main table needs --name and --dataset")
        full, text = report.main_table(
            metrics, paper, args.name, args.dataset, own_checks(args, metrics)
        )
    elif args.table == "external":
        if not (args.dataset and args.externals):
            raise ValueError("the external table needs --dataset and --externals")
        full, text = report.external_table(
            metrics, paper, args.dataset, json.loads(args.externals), own_checks(args, metrics)
        )
    elif args.table == "seeds":
        full, text = report.seeds_table(metrics, paper)
    elif args.table == "grad_of":
        if not args.default_score:
            raise ValueError("the grad_of table needs --default-score (the config's pag.grad_of)")
        from pagrob import pag_report

        scores = pag_report.read_scores(args.scores) if args.scores else None
        full, text = pag_report.grad_of_table(metrics, scores, args.default_score)
        if args.out_png:
            from pagrob import pag_figures

            pag_figures.grad_of_figure(full, args.out_png, args.out_pdf)
    else:
        full, text = report.ablation_table(metrics, paper)
    return full, text


def main() -> None:
    args = parser().parse_args()
    paper = report.read_paper(args.paper)
    if args.table == "lambda":
        if not args.lams:
            raise ValueError("the lambda table needs --lams")
        full, text = report.lambda_table(json.loads(args.lams), paper)
    else:
        if not args.metrics:
            raise ValueError(f"the {args.table} table needs --metrics")
        metrics = pd.concat([report.read_metrics(m) for m in args.metrics], ignore_index=True)
        full, text = metrics_table(args, metrics, paper)
    _cli.write_table(args, full, text)
    print(text)


def own_checks(args, metrics: pd.DataFrame) -> dict | None:
    """(source, lam, seed) -> the gradient-masking checks it failed, computed from the table's own
    metrics and --records (None without records: no AutoAttack configured)."""
    if not args.records:
        return None
    from pagrob import robustness

    if not args.checks:
        raise ValueError("--records needs --checks (the checks' thresholds)")
    s = _cli.read_settings(args, ChecksSettings, "--checks")
    checks = robustness.masking_checks(
        metrics,
        robustness.read_records(args.records),
        tolerance=s.tolerance,
        max_gap=s.max_gap,
        zero_at=s.zero_at,
    )
    return robustness.flags_by_model(checks)


if __name__ == "__main__":
    _cli.run(main)

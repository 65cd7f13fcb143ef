"""Where a run's job time went: every Snakemake benchmark file under a results root, summed by
kind of job (training, AutoAttack, PGD evaluation, PAG scores, targets, the rest), with each
kind's share, job count and the machine's CPU. Run by hand after a run, e.g.

    .venv/bin/python bench/job_split.py results/demo
    .venv/bin/python bench/job_split.py results/fmnist --only '*.centred/*' '*.log_softmax/*'

(the second: the jobs of the class-score ablation's own models, its cost beside the rest).

The shares are of the jobs' own seconds (two jobs at once on two cores count twice); the
workflow's wall time is its last line ("Workflow finished: ...").
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from fnmatch import fnmatch
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from pagrob.io import cpu_model  # noqa: E402

#: a benchmark file's kind, by its name (the first that matches)
KINDS = (
    ("training", ("train.benchmark.tsv",)),
    ("AutoAttack", ("autoattack_",)),
    ("PGD evaluation", ("evaluate.benchmark.tsv",)),
    ("PAG scores", ("pag_scores.benchmark.tsv", "pag_baselines")),
    ("targets", ("targets_",)),
)


def kind(path: Path) -> str:
    for name, patterns in KINDS:
        if any(p in path.name for p in patterns):
            return name
    return "other (data, figures, checks' sweeps, ...)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="a results root, e.g. results/demo")
    p.add_argument(
        "--only",
        nargs="+",
        metavar="GLOB",
        help="only the benchmark files whose path below the root matches one of these patterns",
    )
    args = p.parse_args()
    seconds, jobs = defaultdict(float), defaultdict(int)
    for path in args.root.rglob("*.benchmark.tsv"):
        below = path.relative_to(args.root)
        if args.only and not any(below.match(g) or fnmatch(str(below), g) for g in args.only):
            continue
        rows = path.read_text().splitlines()
        if len(rows) > 1:
            seconds[kind(path)] += float(rows[1].split("\t")[0])
            jobs[kind(path)] += 1
    total = sum(seconds.values())
    if not total:
        raise SystemExit(f"no benchmark files under {args.root}")
    print(f"{sum(jobs.values())} timed jobs, {total:.0f} s of job time, on {cpu_model()}")
    for name in sorted(seconds, key=seconds.get, reverse=True):
        share = 100 * seconds[name] / total
        print(f"{share:5.1f}%  {seconds[name]:7.0f} s  {jobs[name]:4d} jobs  {name}")


if __name__ == "__main__":
    main()

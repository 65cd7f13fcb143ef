"""Where a run's job time went: every Snakemake benchmark file under a results root, summed by
kind of job (training, AutoAttack, PGD evaluation, PAG scores, targets, the rest), with each
kind's share, job count and the machine's CPU.

Run by hand after a run, e.g.

    .venv/bin/python bench/job_split.py results/demo
    .venv/bin/python bench/job_split.py results/fmnist --only '*.centred/*' '*.log_softmax/*'

(the second: the jobs of the class-score ablation's own models, its cost beside the rest).

The shares are of the jobs' own seconds (two jobs at once on two cores count twice); the
workflow's wall time is its last line ("Workflow finished: ...") and its record in
<root>/logs/runs.jsonl. The sums are pagrob.job_time's, which docs/numbers.md shows too
(make numbers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from pagrob import job_time  # noqa: E402
from pagrob.io import cpu_model  # noqa: E402


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
    split = job_time.split(args.root, args.only)
    if not split.total:
        raise SystemExit(f"no benchmark files under {args.root}")
    print(f"{split.job_count} timed jobs, {split.total:.0f} s of job time, on {cpu_model()}")
    for name, seconds, share, jobs in split.rows():
        print(f"{share:5.1f}%  {seconds:7.0f} s  {jobs:4d} jobs  {name}")


if __name__ == "__main__":
    main()

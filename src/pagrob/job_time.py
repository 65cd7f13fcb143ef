"""Where a run's job time went: every Snakemake benchmark file (``*.benchmark.tsv``) under a
results root, its seconds summed by kind of job (training, AutoAttack, PGD evaluation, PAG
scores, targets, the rest), with each kind's share and job count. Pure Python (standard library
only): bench/job_split.py prints it, pagrob.numbers_page puts it in docs/numbers.md.

The shares are of the jobs' own seconds (two jobs at once on two cores count twice), not of the
workflow's wall time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

#: a benchmark file's kind, by its name (the first that matches)
KINDS = (
    ("training", ("train.benchmark.tsv",)),
    ("AutoAttack", ("autoattack_",)),
    ("PGD evaluation", ("evaluate.benchmark.tsv",)),
    ("PAG scores", ("pag_scores.benchmark.tsv", "pag_baselines")),
    ("targets", ("targets_",)),
)
#: the kind of every other benchmark file
OTHER = "other (data, figures, checks' sweeps, ...)"


def kind(path: Path) -> str:
    """The kind of job whose benchmark file this is (KINDS, else OTHER)."""
    for name, patterns in KINDS:
        if any(p in path.name for p in patterns):
            return name
    return OTHER


@dataclass
class Split:
    """A root's job time by kind: seconds and job counts."""

    seconds: dict[str, float]
    jobs: dict[str, int]

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @property
    def job_count(self) -> int:
        return sum(self.jobs.values())

    def rows(self) -> list[tuple[str, float, float, int]]:
        """(kind, seconds, share in %, jobs), the largest first."""
        total = self.total
        return [
            (name, self.seconds[name], 100 * self.seconds[name] / total, self.jobs[name])
            for name in sorted(self.seconds, key=self.seconds.get, reverse=True)
        ]


def split(root: str | Path, only: list[str] | None = None) -> Split:
    """Sum the first row's seconds (column ``s``) of every benchmark file under ``root`` by
    kind. ``only``: glob patterns; then only the files whose path below the root matches one
    (``Path.match`` from the right, or ``fnmatch`` on the whole path). A benchmark file without
    a data row (a job killed before Snakemake wrote it) counts for nothing."""
    root = Path(root)
    seconds: dict[str, float] = defaultdict(float)
    jobs: dict[str, int] = defaultdict(int)
    for path in root.rglob("*.benchmark.tsv"):
        below = path.relative_to(root)
        if only and not any(below.match(g) or fnmatch(str(below), g) for g in only):
            continue
        rows = path.read_text().splitlines()
        if len(rows) > 1:
            seconds[kind(path)] += float(rows[1].split("\t")[0])
            jobs[kind(path)] += 1
    return Split(dict(seconds), dict(jobs))

"""The record of each workflow run: one JSON line appended to <results root>/logs/runs.jsonl when
the run succeeds (the Snakefile's onsuccess), saying when it finished, how long it took, on how
many cores of which CPU, at which commit, with which config files and targets, by which command.
docs/numbers.md (pagrob.numbers_page) reads it for the wall time and the stamp of its numbers.

Pure Python (standard library only): the Snakefile imports it where no PyTorch may be installed.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pagrob.io import cpu_model

#: the runs' records, below a results root
RUNS = "logs/runs.jsonl"


def record(
    *,
    wall_s: float,
    cores: int | None,
    commit: str | None,
    configfiles: Iterable[str | os.PathLike],
    targets: Iterable[str],
    command: Sequence[str],
    basedir: str | os.PathLike | None = None,
    finished: datetime | None = None,
) -> dict:
    """One run's record (a dict of JSON values).

    ``commit``: the checkout's commit as the workflow's ``git_commit()`` gives it (with -dirty
    for uncommitted changes); its ``"unknown"`` (no git checkout) is recorded as null.
    ``configfiles`` are recorded relative to ``basedir`` (the workflow's folder) when inside
    it; ``command`` is the run's argv, its program by name only (``snakemake ...``).
    ``cores`` is None when jobs go to a cluster.
    """
    finished = finished or datetime.now(UTC)

    def shown(path) -> str:
        path = Path(path)
        if basedir is not None:
            try:
                return str(path.resolve().relative_to(Path(basedir).resolve()))
            except ValueError:
                pass
        return str(path)

    return {
        "finished": finished.astimezone(UTC).isoformat(timespec="seconds"),
        "wall_s": round(float(wall_s), 1),
        "cores": cores,
        "cpu": cpu_model(),
        "commit": None if commit in (None, "", "unknown") else commit,
        "configfiles": [shown(p) for p in configfiles],
        "targets": [str(t) for t in targets],
        "command": shlex.join([Path(command[0]).name, *command[1:]]) if command else None,
    }


def append(path: str | Path, entry: dict) -> Path:
    """Append ``entry`` as one line of ``path`` (made with its folder when missing), in a single
    write, so that two runs finishing at once each leave a whole line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return path


def read(root: str | Path) -> list[dict]:
    """The runs recorded under a results root, oldest first; [] when it has none. A line that is
    not a JSON object (a write cut short) is passed over."""
    path = Path(root) / RUNS
    if not path.is_file():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            runs.append(entry)
    return runs

"""One step, several runs, one Python start-up: for jobs so small that importing PyTorch would
take longer than the work (the toy's per-seed training, evaluation and targets).

    python -m pagrob.steps.runs <step module> <arguments of run 1> ::: <arguments of run 2> ...

runs ``python -m <step module> <arguments>`` for each run in turn, in this process, exactly as
the step runs alone (its own argument parsing, settings, seeds and threads: each run sets them
itself; tests/unit/test_runs.py checks the files are the same bit for bit). The first run that
fails ends the job with its exit status; the runs before it keep their outputs."""

from __future__ import annotations

import runpy
import sys

SEPARATOR = ":::"


def split(argv: list[str]) -> list[list[str]]:
    """The runs' argument lists, between the separators (an empty run is refused)."""
    runs, current = [], []
    for arg in argv:
        if arg == SEPARATOR:
            runs.append(current)
            current = []
        else:
            current.append(arg)
    runs.append(current)
    if any(not run for run in runs):
        raise SystemExit(f"error: a run with no arguments (two {SEPARATOR} in a row, or at an end)")
    return runs


def main() -> None:
    if len(sys.argv) < 3 or not sys.argv[1].startswith("pagrob.steps."):
        raise SystemExit(
            f"usage: python -m pagrob.steps.runs pagrob.steps.<step> <arguments> "
            f"[{SEPARATOR} <arguments> ...]"
        )
    module = sys.argv[1]
    for i, args in enumerate(split(sys.argv[2:]), 1):
        print(f"--- run {i}: python -m {module} {' '.join(args)}", flush=True)
        sys.argv = [module, *args]
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as e:
            if e.code not in (None, 0):
                raise


if __name__ == "__main__":
    main()

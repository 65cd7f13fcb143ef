"""Atomic writes give outputs the permissions of any new file: 0666 less the umask (a shared
results folder stays readable by colleagues when the umask says so), never mkstemp's 0600."""

import contextlib
import os
import stat
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import ROOT
from pagrob import io


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


WRITERS = {
    "write_text": lambda p: io.write_text("x\n", p),
    "save": lambda p: io.save({"w": torch.zeros(2)}, p),
    "atomic_write": lambda p: io.atomic_write(p, lambda tmp: tmp.write_bytes(b"abc")),
}


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(
    "mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o027, 0o640)]
)
def test_outputs_honour_the_umask(tmp_path, writer, mask, expected):
    target = tmp_path / "out" / "file"
    with umask(mask):
        WRITERS[writer](target)
    assert mode(target) == expected
    assert [p.name for p in target.parent.iterdir()] == ["file"]  # no temporary file left


def test_a_replaced_file_takes_the_current_umask(tmp_path):
    target = tmp_path / "metrics.csv"
    with umask(0o077):
        io.write_text("old\n", target)
    assert mode(target) == 0o600
    with umask(0o022):
        io.write_text("new\n", target)
    assert mode(target) == 0o644 and target.read_text() == "new\n"


def test_a_step_run_under_umask_022_writes_a_world_readable_output(tmp_path):
    """End to end, as a job runs: the collect step in a shell whose umask is 022."""
    from pagrob.report import COLUMNS

    metrics = tmp_path / "m.csv"
    pd.DataFrame([dict.fromkeys(COLUMNS, 0)])[COLUMNS].to_csv(metrics, index=False)
    out = tmp_path / "results" / "metrics.csv"
    proc = subprocess.run(
        [
            "sh",
            "-c",
            f'umask 022 && exec "{sys.executable}" -m pagrob.steps.collect "{metrics}" --out "{out}"',
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert mode(out) == 0o644

"""Style held by formatters: ruff format and ruff check (pyproject.toml's [tool.ruff]: line length
100) over src, bench and tests; the rule files are held by snakefmt (tests/workflow)."""

import subprocess

import pytest

from conftest import BIN, ROOT

PATHS = ["src", "bench", "tests"]


@pytest.mark.parametrize(
    "command", [["format", "--check", "--diff"], ["check"]], ids=["format", "check"]
)
def test_ruff_clean(command):
    proc = subprocess.run(
        [str(BIN / "ruff"), *command, *PATHS], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, (
        f"ruff {' '.join(command)} found problems; run `.venv/bin/ruff format src bench tests` "
        f"and `.venv/bin/ruff check --fix src bench tests`:\n{proc.stdout}{proc.stderr}"
    )

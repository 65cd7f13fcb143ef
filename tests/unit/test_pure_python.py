"""The library's modules that the workflow imports at parse time are pure Python: Snakemake may
run where no PyTorch is installed (its jobs then run in envs/), and the workflow knows nothing of
PyTorch."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT

PURE = ("pagrob.registry", "pagrob.grid", "pagrob.settings", "pagrob.io", "pagrob.html_table")


@pytest.mark.parametrize("module", PURE)
def test_imports_with_torch_and_snakemake_blocked(module):
    code = (
        f"import sys; sys.modules['torch'] = None; sys.modules['snakemake'] = None; import {module}"
    )
    env = {"PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_workflow_imports_only_those():
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    imported = set()
    for path in files:
        text = path.read_text()
        imported |= {f"pagrob.{m}" for m in re.findall(r"^from pagrob import (\w+)", text, re.M)}
        imported |= set(re.findall(r"^from (pagrob\.\w+) import", text, re.M))
    assert imported and imported <= set(PURE), imported - set(PURE)

"""The library's modules that the workflow imports at parse time are pure Python: Snakemake may
run where no PyTorch is installed (its jobs then run in envs/), and the workflow knows nothing of
PyTorch."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT

PURE = (
    "pagrob.registry",
    "pagrob.grid",
    "pagrob.settings",
    "pagrob.io",
    "pagrob.html_table",
    "pagrob.run_record",
)


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


def library_imports() -> dict[str, set[str]]:
    """Each module of src/pagrob (and its steps) -> the pagrob modules it imports, at the top or
    inside a function."""
    import ast

    graph = {}
    for path in sorted((ROOT / "src" / "pagrob").rglob("*.py")):
        parts = path.relative_to(ROOT / "src").with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("pagrob")
            ):
                if node.module == "pagrob":
                    deps |= {f"pagrob.{a.name}" for a in node.names}
                else:
                    deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("pagrob")}
        graph[name] = deps - {name}
    return graph


def test_no_two_library_modules_import_each_other():
    """The imports form no cycle (report and pag_report once imported each other): each module
    can be read knowing only those below it."""
    graph = library_imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module, path):
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep in graph and not state.get(dep):
                visit(dep, path + [dep])
        state[module] = 2

    for module in graph:
        if not state.get(module):
            visit(module, [module])

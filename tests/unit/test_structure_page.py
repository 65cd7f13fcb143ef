"""docs/structure.md (pagrob.structure_page): it lists every Python file under src/ (the tree
walked here too), a file there without a module docstring stops it with the file's name and the
fix, and the committed page is what the generator writes now, so that it cannot drift."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from pagrob import structure_page

PAGE = ROOT / "docs" / "structure.md"


def src_files():
    return sorted(
        p
        for p in (ROOT / "src").rglob("*.py")
        if "__pycache__" not in p.parts and not any(s.endswith(".egg-info") for s in p.parts)
    )


def test_every_src_file_is_listed_with_its_docstring():
    text = structure_page.render(ROOT)
    files = src_files()
    assert len(files) > 20
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        first = ast.get_docstring(ast.parse(path.read_text())).split("\n\n")[0].split()[0]
        assert f"- `{rel}`: " in text, f"{rel} is missing from the page"
        line = next(x for x in text.splitlines() if x.startswith(f"- `{rel}`: "))
        assert first.replace("*", r"\*").replace("<", "&lt;") in line, line
    # each package its own heading, the rule files, bench and the top-level files too
    assert "### pagrob.steps" in text
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        assert f"- `workflow/rules/{path.name}`: " in text
    for path in sorted((ROOT / "bench").glob("*.py")):
        assert f"- `bench/{path.name}`: " in text
    for name in ("Snakefile", "Makefile", "config.yaml", "demo.yaml", "study.yaml", "fmnist.yaml"):
        assert f"- `{name}`: " in text and f"- `{name}`: (no" not in text


@pytest.fixture
def tree(tmp_path):
    """A copy of what the page reads: src/, workflow/rules, bench and the top-level files."""
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "workflow" / "rules", tmp_path / "workflow" / "rules")
    shutil.copytree(ROOT / "bench", tmp_path / "bench", ignore=shutil.ignore_patterns("__py*"))
    for name in ("Snakefile", "Makefile", "config.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_a_new_subpackage_is_found(tree):
    (tree / "src/pagrob/newpkg").mkdir()
    (tree / "src/pagrob/newpkg/__init__.py").write_text('"""A package made up here."""\n')
    (tree / "src/pagrob/newpkg/deep.py").write_text('"""Deep.\n\nNot this paragraph."""\n')
    text = structure_page.render(tree)
    assert "### pagrob.newpkg" in text
    assert "- `src/pagrob/newpkg/deep.py`: Deep.\n" in text


def test_a_src_file_without_a_docstring_fails_naming_it(tree):
    (tree / "src/pagrob/steps/nodoc.py").write_text("import os\n")
    with pytest.raises(structure_page.MissingDocstring, match=r"src/pagrob/steps/nodoc\.py"):
        structure_page.render(tree)
    proc = subprocess.run(
        [sys.executable, "-m", "pagrob.structure_page", "--root", str(tree), "--out", "x.md"],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and not (tree / "x.md").exists()
    assert "src/pagrob/steps/nodoc.py" in proc.stderr and "docstring" in proc.stderr
    assert "make docs" in proc.stderr


def test_the_committed_page_is_what_the_generator_writes():
    assert PAGE.is_file(), f"{PAGE} is missing: run `make docs` or `{structure_page.COMMAND}`"
    assert PAGE.read_text() == structure_page.render(ROOT), (
        f"{PAGE.relative_to(ROOT)} is out of date with the code's docstrings: run `make docs` "
        f"(or `.venv/bin/{structure_page.COMMAND}`) and commit the page"
    )


def test_pure_python():
    code = "import sys; sys.modules['torch'] = None; import pagrob.structure_page"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

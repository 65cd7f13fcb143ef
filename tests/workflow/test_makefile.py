"""The Makefile's two user commands, `make demo` and `make test`, on machines they meet: an old
python3 stops them with a message naming its version and 3.11, and a .venv made by another
interpreter is removed and made again. Runs make on a copy of the Makefile with stand-in
pythons that log their calls; no real venv is built and the project's .venv is never touched."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

REAL = os.path.realpath(
    getattr(sys, "_base_executable", sys.executable)
)  # the interpreter under .venv
VERSION = ".".join(map(str, sys.version_info[:3]))

# python3 stand-in: logs each call; `-m venv DIR` makes DIR as the venv module would (its
# pyvenv.cfg names the real interpreter) with a logging DIR/bin/python; else the real python.
FAKE_PYTHON3 = f"""#!/bin/sh
echo "python3 $*" >> "$MAKE_LOG"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin"
    for tool in python snakemake; do
        printf '#!/bin/sh\\necho "venv-%s $*" >> "$MAKE_LOG"\\n' $tool > "$3/bin/$tool"
        chmod +x "$3/bin/$tool"
    done
    printf 'home = %s\\nversion = {VERSION}\\nexecutable = {REAL}\\n' "$(dirname {REAL})" > "$3/pyvenv.cfg"
    exit 0
fi
exec {REAL} "$@"
"""


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def project(tmp_path):
    """A folder with the Makefile and pyproject.toml, and a bin/ for stand-ins."""
    (tmp_path / "project").mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / "project" / name)
    (tmp_path / "bin").mkdir()
    return tmp_path / "project"


def make(project, *goals, python3=None):
    """Run make with ``python3`` (a stand-in, or the logging one) first on PATH."""
    bin_dir = project.parent / "bin"
    executable(bin_dir / "python3", python3 or FAKE_PYTHON3)
    log = project.parent / "make.log"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", MAKE_LOG=str(log))
    for var in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON", "VIRTUAL_ENV"):
        env.pop(var, None)
    proc = subprocess.run(
        ["make", "--no-print-directory", *goals],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, (log.read_text().splitlines() if log.exists() else [])


def old_python(version):
    return f'#!/bin/sh\necho "python3 $*" >> "$MAKE_LOG"\necho {version}\n'


def write_venv(project, executable_path, version, installed=True):
    venv = project / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(
        f"home = {os.path.dirname(executable_path)}\ninclude-system-site-packages = false\n"
        f"version = {version}\nexecutable = {executable_path}\n"
    )
    for tool in ("python", "snakemake"):
        executable(venv / "bin" / tool, f'#!/bin/sh\necho "venv-{tool} $*" >> "$MAKE_LOG"\n')
    (venv / "old-marker").write_text("")
    if installed:
        (venv / ".installed").write_text("")
        os.utime(project / "pyproject.toml", (1, 1))  # the stamp is newer: nothing to install
    return venv


def test_pyproject_requires_python_3_11():
    import tomllib

    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert spec.replace(" ", "") == ">=3.11"


@pytest.mark.parametrize("goal", ["test", "demo"])
@pytest.mark.parametrize("version", ["3.10.12", "3.9.18"])
def test_an_old_python3_stops_with_a_message_naming_it(project, goal, version):
    proc, log = make(project, goal, python3=old_python(version))
    assert proc.returncode != 0
    assert f"needs Python 3.11 or newer, but python3 is {version}" in proc.stderr
    assert f"make PYTHON=/path/to/python3.11 {goal}" in proc.stderr
    assert not (project / ".venv").exists()
    assert not [line for line in log if "-m venv" in line or "pip" in line]


def test_no_python3_at_all_says_so(project):
    proc, _ = make(project, "check-python", "PYTHON=/nonexistent/python3")
    assert proc.returncode != 0 and "but /nonexistent/python3 is not found" in proc.stderr


@pytest.mark.parametrize("version", ["3.11.0", "3.12.4", "3.14.0", "4.0.0"])
def test_python_3_11_and_newer_pass_the_check(project, version):
    proc, _ = make(project, "check-python", python3=old_python(version))
    assert proc.returncode == 0, proc.stderr


def test_a_fresh_checkout_gets_a_venv_and_runs_the_tests_in_it(project):
    proc, log = make(project, "test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "python3 -m venv .venv" in log
    assert (
        "venv-python -m pip install --quiet --disable-pip-version-check --no-compile -e .[test]"
        in log
    )
    # then byte-compiled on every core, after the install
    compile_at = log.index("venv-python -m compileall -q -j 0 .venv/lib")
    assert compile_at > log.index(
        "venv-python -m pip install --quiet --disable-pip-version-check --no-compile -e .[test]"
    )
    assert log[-1] == "venv-python -m pytest"  # the venv's python runs the tests
    assert (project / ".venv" / ".installed").exists()
    # a second run reuses it: no new venv, no install
    proc, log2 = make(project, "test")
    assert proc.returncode == 0 and log2[len(log) :][-1] == "venv-python -m pytest"
    assert not [line for line in log2[len(log) :] if "-m venv" in line or "pip" in line]


@pytest.mark.parametrize(
    "made_by, version",
    [
        ("/usr/bin/python3.10", "3.10.12"),
        (REAL, "3.10.4"),
        ("/opt/python/3.13/bin/python3.13", "3.13.1"),
        ("/elsewhere/bin/python3", VERSION),
    ],
    ids=["another interpreter", "another version", "a newer one", "same version elsewhere"],
)
@pytest.mark.parametrize("goal", ["test", "demo", "study", "fmnist", "-j4 test"])
def test_a_venv_made_by_another_interpreter_is_made_again(project, made_by, version, goal):
    venv = write_venv(project, made_by, version)
    proc, log = make(project, *goal.split())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        f".venv was made by {made_by} (Python {version}), not by {REAL} (Python {VERSION})"
        in proc.stdout
    )
    assert not (venv / "old-marker").exists()  # removed, not patched
    assert "python3 -m venv .venv" in log
    assert any(
        "venv-python -m pip install" in line for line in log
    )  # even though the old stamp was newer
    assert (venv / ".installed").exists()
    run = {
        "demo": "venv-snakemake --profile workflow/profiles/demo --report results/demo/report.html --report-after-run",
        "study": "venv-snakemake --profile workflow/profiles/demo --configfile demo.yaml study.yaml "
        "--report results/demo/report.html --report-after-run",
        "fmnist": "venv-snakemake --profile workflow/profiles/demo --configfile fmnist.yaml "
        "--report results/fmnist/report.html --report-after-run",
    }.get(goal, "venv-python -m pytest")
    assert log[-1] == run  # with the new venv's tools


def test_a_broken_venv_without_pyvenv_cfg_is_made_again(project):
    venv = write_venv(project, REAL, VERSION)
    (venv / "pyvenv.cfg").unlink()
    proc, log = make(project, "test")
    assert proc.returncode == 0, proc.stderr
    assert not (venv / "old-marker").exists() and "python3 -m venv .venv" in log


def test_a_venv_made_by_this_interpreter_is_kept(project):
    venv = write_venv(project, REAL, VERSION)
    proc, log = make(project, "test")
    assert proc.returncode == 0, proc.stderr
    assert (venv / "old-marker").exists() and "made again" not in proc.stdout
    assert not [line for line in log if "-m venv" in line or "pip" in line]
    assert log[-1] == "venv-python -m pytest"
    # pyproject.toml changed: reinstalled into the same venv
    os.utime(project / "pyproject.toml")
    proc, log = make(project, "test")
    assert (venv / "old-marker").exists()
    assert any("venv-python -m pip install" in line for line in log) and not any(
        "-m venv" in line for line in log
    )

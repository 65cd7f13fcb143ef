import atexit
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: the environment as the session found it: a run in the background never sees a test's patches
ENV = dict(os.environ)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def snakemake(args, cwd, check=True, timeout=1800, background=False):
    """Run the Snakemake of this interpreter's environment; returns the CompletedProcess.
    ``background``: an early run's (see EarlyRun below)."""
    cmd = [str(BIN / "snakemake"), *args]
    if background:
        proc = _niced_run(cmd, cwd, timeout)
    else:
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


# --- Early runs: the long Snakemake runs that tests only read, started in the background -------
#
# Most tests run one process at a time (the unit tier, the dry runs, the steps' own tests) and
# leave one of the two cores of a machine like CI's idle. So the long runs that tests only read
# (the session's toy run, the reduced demo, Fashion-MNIST: each an early_fixture) start when the
# session's first test starts, each in a thread of its own, niced (the test in front keeps its
# core), if a selected test uses them; such a test waits for its run, whose failure is its own.

_RUNNING: set[subprocess.Popen] = set()  # the early runs' Snakemake processes now running
#: at most this many of them at once (each runs up to two jobs): enough to keep both cores busy
_SLOTS = threading.BoundedSemaphore(3)


def _niced_run(cmd, cwd, timeout) -> subprocess.CompletedProcess:
    """subprocess.run for an early run: niced, in a process group of its own, ended with the
    session if it still runs then. In the tests' session: Linux shares the CPU between sessions
    equally whatever their nice values (sched_autogroup), so a session of its own would take a
    core from the tests."""
    env = dict(ENV, PATH=f"{BIN}{os.pathsep}{ENV['PATH']}")
    with _SLOTS:
        proc = subprocess.Popen(
            ["nice", "-n", "10", *cmd],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            process_group=0,
        )
        _RUNNING.add(proc)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        finally:
            _end(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _end(proc: subprocess.Popen) -> None:
    """End a Snakemake process of an early run and its jobs (nothing if it has ended)."""
    _RUNNING.discard(proc)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


atexit.register(lambda: [_end(proc) for proc in list(_RUNNING)])


class EarlyRun:
    """``make(where)``, run once per session in a thread of its own (where: a new folder named
    after it), after ``prepare(where)`` in the calling thread (what must not run beside the
    tests: PyTorch's global random state, say); ``result()`` waits for it and returns its
    value, or raises its error."""

    tmp_path_factory = None  # the session's, set by _start_early_runs

    def __init__(self, name, make, when=True, prepare=None):
        self.name, self.make, self.when, self.prepare = name, make, when, prepare
        self.thread = self.value = self.error = None

    def start(self) -> None:
        if self.thread is None:
            where = EarlyRun.tmp_path_factory.mktemp(self.name)
            if self.prepare is not None:
                self.prepare(where)
            self.thread = threading.Thread(target=self._run, args=(where,), daemon=True)
            self.thread.start()

    def _run(self, where):
        try:
            self.value = self.make(where)
        except BaseException as e:  # raised again in the test that uses the run
            self.error = e

    def result(self):
        self.start()
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.value


EARLY: dict[str, EarlyRun] = {}


def early_fixture(name, make, when=True, prepare=None):
    """A session fixture ``name`` whose value is ``make(where)``, an early run (``when``: whether
    the session starts it early; a test skipped without it should pass False). ``make`` runs
    Snakemake with background=True."""
    EARLY[name] = EarlyRun(name, make, when, prepare)

    @pytest.fixture(scope="session", name=name)
    def fixture(tmp_path_factory):
        EarlyRun.tmp_path_factory = tmp_path_factory
        return EARLY[name].result()

    return fixture


def pytest_collection_modifyitems(config, items):
    """The tests that read an early run go last, in their order: the session's other tests run
    while the early runs do."""
    early = [item for item in items if EARLY.keys() & set(item.fixturenames)]
    items[:] = [item for item in items if item not in early] + early


@pytest.fixture(scope="session", autouse=True)
def _start_early_runs(request, tmp_path_factory):
    """Starts, as the session's first test starts, the early runs that its selected tests use;
    ends those still running when it ends."""
    EarlyRun.tmp_path_factory = tmp_path_factory
    used = {name for item in request.session.items for name in item.fixturenames}
    for name, run in EARLY.items():
        if name in used and run.when:
            run.start()
    yield
    for proc in list(_RUNNING):
        _end(proc)
    for run in EARLY.values():  # their own clean-up (the SLURM run stops its daemons)
        if run.thread is not None:
            run.thread.join(timeout=300)


def copy_workflow(dest: Path) -> Path:
    """A fresh checkout-like copy of the workflow (sources, config, rules; no results)."""
    for name in ("Snakefile", "config.yaml", "demo.yaml", "study.yaml", "fmnist.yaml"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("workflow", "envs", "src"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a finished run's folder (workflow, config, results, Snakemake's records; the
    files' times kept, so that Snakemake sees it as up to date), to change without touching
    the original."""
    shutil.copytree(run, dest, symlinks=True, dirs_exist_ok=True)
    return dest


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake (dry) run as {rule: count}, without 'total'."""
    lines = output.splitlines()
    start = lines.index("Job stats:")
    counts = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


def write_config(dest: Path, base: str, change) -> Path:
    """``base`` config with ``change(config)`` applied, written to ``dest``."""
    import yaml

    cfg = yaml.safe_load((ROOT / base).read_text())
    change(cfg)
    dest.write_text(yaml.safe_dump(cfg))
    return dest


def load_grid(*paths: Path):
    """The grid (pagrob.grid) of these config files merged in order (as ``--configfile a b``
    merges them), validated against the schema with its defaults filled in."""
    import yaml
    from snakemake.utils import validate

    from pagrob.grid import Grid

    def merge(into: dict, keys: dict) -> None:
        for key, value in keys.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    cfg: dict = {}
    for path in paths:
        merge(cfg, yaml.safe_load(Path(path).read_text()))
    validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"), set_default=True)
    return Grid(cfg)


def settings_json(**fields) -> str:
    """A step's ``--settings`` by hand: the JSON of these fields (pagrob.settings)."""
    import json

    return json.dumps(fields)


# --- demo.yaml's toy experiment, run once per session ----------------------------------------

#: the toy's training epochs in toy_run: long enough for a training to be killed in its middle
#: (test_reliability), short enough to take seconds
TOY_EPOCHS = 20
#: toy_run's config file (in the run's folder) and cores
TOY_OPTS = ["--configfile", "toy.yaml", "--cores", "2"]


def demo_toy(cfg):
    """demo.yaml's toy experiment alone, under the demo's results root (results/demo): one seed,
    TOY_EPOCHS epochs, its adversarially trained reference and its score-based source's denoiser
    5."""
    cfg["experiments"] = {"toy": {"sources": ["nearest_neighbor"], "seeds": [0]}}
    del cfg["datasets"]["digits"]
    toy = cfg["datasets"]["toy"]
    toy["train"]["epochs"] = TOY_EPOCHS
    toy["teachers"]["epochs"] = 5
    if "score_based" in toy:
        toy["score_based"]["denoiser"]["epochs"] = 5


def toy_workflow(dest: Path) -> Path:
    """A copy of the workflow with demo_toy's config as toy.yaml, nothing run."""
    copy_workflow(dest)
    write_config(dest / "toy.yaml", "demo.yaml", demo_toy)
    return dest


def run_toy(where: Path) -> Path:
    """toy_workflow run to the end: every output of its config (the toy's table, Fig. 3,
    toy_pag, the answer page, the provenance page)."""
    toy_workflow(where)
    snakemake(TOY_OPTS, where, background=True)
    return where


#: run_toy's folder, an early run. The toy tests that need a finished run read it (the SLURM run
#: and a killed run compare their results with it) or work on a copy of it (copy_run): none
#: changes it.
toy_run = early_fixture("toy_run", run_toy)

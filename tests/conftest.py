import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def snakemake(args, cwd, check=True, timeout=1800):
    """Run the Snakemake of this interpreter's environment; returns the CompletedProcess."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [str(BIN / "snakemake"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def copy_workflow(dest: Path) -> Path:
    """A fresh checkout-like copy of the workflow (sources, config, rules; no results)."""
    for name in ("Snakefile", "config.yaml", "demo.yaml", "study.yaml", "fmnist.yaml"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("workflow", "envs", "src"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
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

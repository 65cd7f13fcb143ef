"""What every experiment of the grid declares, in one place: the config block it reads, the
datasets it runs on, the model folders it trains or imports there, the tables and figures it
writes, and the checks of its block that the schema cannot make. ``pagrob.grid`` composes the
experiments (``pagrob.experiments.EXPERIMENTS``); pure Python, like the grid."""

from __future__ import annotations


class ConfigError(Exception):
    """A config that the schema accepts but that does not define a grid; says which key to fix."""


def lam_str(lam) -> str:
    """0.4 -> '0.4', 1.0 -> '1', 0 -> '0': the lambda as it appears in paths."""
    return f"{float(lam):.10f}".rstrip("0").rstrip(".")


def tables(grid, *names: str) -> list[str]:
    """Each table under the results root, as markdown and CSV."""
    return [grid.results(f"tables/{n}.{ext}") for n in names for ext in ("md", "csv")]


def figures(grid, *names: str) -> list[str]:
    """Each figure under the results root, as PNG and PDF."""
    return [grid.results(f"figures/{n}.{ext}") for n in names for ext in ("png", "pdf")]


class Experiment:
    """One experiment of the grid. ``name`` is its block under experiments: (or, for what each
    dataset's own block configures, its name on the grid: grid.<name>); a subclass overrides
    what it has. The single-dataset experiments list their models with ``trained()``."""

    name: str = ""

    def __init__(self, grid):
        self.grid = grid

    @property
    def cfg(self) -> dict | None:
        """Its block under experiments: (None where the config has none)."""
        return self.grid.experiment(self.name)

    def dataset(self) -> str:
        """The dataset its block names."""
        return self.cfg["dataset"]

    def datasets(self) -> list[str]:
        """The datasets it runs on."""
        return [self.cfg["dataset"]] if self.cfg else []

    def trained(self) -> list[str]:
        """Its models on its one dataset."""
        return []

    def models(self, dataset: str) -> list[str]:
        """The model folders it trains or imports on ``dataset``."""
        return self.trained() if dataset in self.datasets() else []

    def outputs(self) -> list[str]:
        """Its tables and figures."""
        return []

    def check(self) -> None:
        """Refuse what its block cannot mean (a ConfigError naming the key); nothing by default."""

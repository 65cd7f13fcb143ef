"""The noise-level sweep of the score-based source (experiments.sigma_sweep, like Fig. 5's
lambda): one score-based source trained with the targets of several noise levels sigma at one
seed, its robustness and clean accuracy against sigma, in its own table and figure, beside the
vanilla model of the same seed; what the config's datasets.<d>.score_based.sigma is chosen by."""

from __future__ import annotations

from pagrob.experiments.base import ConfigError, Experiment, figures, lam_str, tables
from pagrob.registry import SCORE

#: a model of the sweep is named <source>.sigma<sigma> (its folder and every table)
PREFIX = "sigma"


def variant(source: str, sigma) -> str:
    """The sweep's name of ``source`` at noise level ``sigma``: score_based.sigma0.3."""
    return f"{source}.{PREFIX}{lam_str(sigma)}"


def sigma_of(name: str) -> float | None:
    """The noise level a model's source name carries (score_based.sigma0.3 -> 0.3), or None."""
    _, _, rest = name.partition(".")
    return float(rest.removeprefix(PREFIX)) if rest.startswith(PREFIX) else None


class SigmaSweep(Experiment):
    name = "sigma_sweep"

    def trained(self) -> list[str]:
        exp, g = self.cfg, self.grid
        lam = g.source_lam(exp["dataset"], exp["source"])
        return [
            g.model_dir(exp["dataset"], variant(exp["source"], s), lam, exp["seed"])
            for s in exp["sigmas"]
        ]

    def table_models(self) -> list[str]:
        """The sweep's models and, as the reference, the main experiment's vanilla model of the
        same seed where it trains one on that dataset."""
        exp, main = self.cfg, self.grid.experiment("main")
        vanilla = []
        if main and exp["dataset"] in main["tables"] and "vanilla" in main["sources"]:
            vanilla = [self.grid.model_dir(exp["dataset"], "vanilla", 0, exp["seed"])]
        return vanilla + self.trained()

    def outputs(self) -> list[str]:
        if not self.cfg:
            return []
        return tables(self.grid, "sigma_sweep") + figures(self.grid, "sigma_sweep")

    def check(self) -> None:
        if self.cfg and self.cfg["source"] not in SCORE:
            raise ConfigError(
                f"config: experiments.sigma_sweep.source {self.cfg['source']!r}: the sweep varies "
                f"a score-based source's noise level; choose one of {list(SCORE)}"
            )
        if self.cfg:
            self.grid.score_based.config(self.dataset())

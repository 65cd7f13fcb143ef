"""Table 4: one source trained over several seeds (experiments.seeds), the spread that one
seed's number hides."""

from __future__ import annotations

from pagrob.experiments.base import Experiment, tables


class Seeds(Experiment):
    name = "seeds"

    def trained(self) -> list[str]:
        exp, g = self.cfg, self.grid
        lam = g.source_lam(exp["dataset"], exp["source"])
        return [g.model_dir(exp["dataset"], exp["source"], lam, seed) for seed in exp["seeds"]]

    def outputs(self) -> list[str]:
        return tables(self.grid, "table4_seeds") if self.cfg else []

"""The class-score ablation (experiments.grad_of_ablation, beyond the paper): each hand-made
source trained with each class score whose gradient Eq. 1 aligns (the logit, the log-softmax,
the centred logit), over seeds; its table and figure."""

from __future__ import annotations

from pagrob.experiments.base import ConfigError, Experiment, figures, tables
from pagrob.registry import REPRESENTATIVES


class ClassScoreAblation(Experiment):
    name = "grad_of_ablation"

    def class_score_dir(self, dataset, source, grad_of, seed) -> str:
        """A source's model trained with the class score ``grad_of``: the main experiment's path
        for pag.grad_of's, <root>/<d>/<source>.<grad_of>/... for another."""
        g = self.grid
        lam = g.source_lam(dataset, source)
        if grad_of == g.config["pag"]["grad_of"]:
            return g.model_dir(dataset, source, lam, seed)
        return g.model_dir(dataset, f"{source}.{grad_of}", lam, seed)

    def trained(self) -> list[str]:
        """Each source with each class score, for each seed."""
        exp = self.cfg
        if not exp:
            return []
        return [
            self.class_score_dir(exp["dataset"], s, score, seed)
            for s in exp["sources"]
            for score in exp["class_scores"]
            for seed in exp["seeds"]
        ]

    def outputs(self) -> list[str]:
        if not self.cfg:
            return []
        return tables(self.grid, "grad_of_ablation") + figures(self.grid, "grad_of_ablation")

    def check(self) -> None:
        bad = [s for s in (self.cfg or {}).get("sources", []) if s not in REPRESENTATIVES]
        if bad:
            raise ConfigError(
                f"config: experiments.grad_of_ablation.sources {bad}: the ablation compares the "
                f"hand-made sources' class scores; choose among {REPRESENTATIVES}"
            )

"""Fig. 5, the lambda ablation (experiments.lambda_ablation): one source trained with several
lambdas at one seed, its robustness and clean accuracy against lambda, and the PAG pictures of
each model."""

from __future__ import annotations

from pagrob.experiments.base import Experiment, figures, tables


class LambdaAblation(Experiment):
    name = "lambda_ablation"

    def trained(self) -> list[str]:
        exp, g = self.cfg, self.grid
        return [g.model_dir(exp["dataset"], exp["source"], lam, exp["seed"]) for lam in exp["lams"]]

    def table_models(self) -> list[str]:
        """Fig. 5's numbers: the ablation's models and, as lambda = 0, the vanilla model of the
        same seed where experiments.main trains one on that dataset."""
        exp, main = self.cfg, self.grid.experiment("main")
        vanilla = []
        if main and exp["dataset"] in main["tables"] and "vanilla" in main["sources"]:
            vanilla = [self.grid.model_dir(exp["dataset"], "vanilla", 0, exp["seed"])]
        return vanilla + self.trained()

    def outputs(self) -> list[str]:
        if not self.cfg:
            return []
        return tables(self.grid, "fig5_lambda_ablation") + figures(
            self.grid, "fig5_lambda_ablation"
        )

    def check(self) -> None:
        if self.cfg:
            self.grid.pictures_config(self.dataset())

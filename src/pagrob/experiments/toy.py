"""The toy experiment (Fig. 3, experiments.toy): vanilla and each PAG source of its list on the
2-D toy data, over seeds; its table, its figure and, where the toy's PAG scores are on, its answer page; where
datasets.toy.score_based is set, the validation of the score-based source's denoiser against the
toy's exact class scores (tables/toy_score)."""

from __future__ import annotations

from pagrob.experiments.base import Experiment, figures, tables


class Toy(Experiment):
    name = "toy"

    def datasets(self) -> list[str]:
        return ["toy"] if self.cfg else []

    def recipes(self) -> list[tuple[str, float]]:
        """Its recipes, (source, lam): vanilla and each of its PAG sources."""
        if not self.cfg:
            return []
        pag = [(s, self.grid.source_lam("toy", s)) for s in self.cfg["sources"]]
        return [("vanilla", 0), *pag]

    def seeds(self) -> list[int]:
        return list((self.cfg or {}).get("seeds", []))

    def trained(self) -> list[str]:
        g = self.grid
        return [
            g.model_dir("toy", s, lam, seed) for s, lam in self.recipes() for seed in self.seeds()
        ]

    def draws(self, source) -> list[str]:
        """The targets files the toy models of a stored ``source`` read (a drawn one's: one per draw
        seed)."""
        return list(dict.fromkeys(self.grid.targets_file("toy", source, s) for s in self.seeds()))

    def score_validated(self) -> bool:
        """Whether the toy's denoiser is checked against the exact score (its score_based)."""
        return bool(self.cfg and self.grid.dataset_config("toy").get("score_based"))

    def outputs(self) -> list[str]:
        if not self.cfg:
            return []
        g = self.grid
        outs = (
            tables(g, "answer_toy") + figures(g, "answer_toy") if g.pag_scores.toy_enabled() else []
        )
        if self.score_validated():
            outs += tables(g, "toy_score")
        return outs + tables(g, "toy") + figures(g, "fig3_toy")

    def check(self) -> None:
        if self.score_validated():
            self.grid.score_based.config("toy")

"""The score-based sources' denoiser (datasets.<dataset>.score_based): where a dataset's models
train with score_based or score_shuffled, its noise level and denoiser recipe, the denoiser's
file and the targets files; a score-based source without a noise level is refused here."""

from __future__ import annotations

from pagrob.experiments.base import ConfigError, Experiment, lam_str
from pagrob.registry import SCORE


class ScoreBased(Experiment):
    name = "score_based"

    @property
    def cfg(self) -> None:
        return None  # configured per dataset: config(dataset)

    def datasets(self) -> list[str]:
        return []  # it serves the datasets the other experiments use

    def config(self, dataset) -> dict:
        """datasets.<dataset>.score_based, which a score-based source needs with its sigma."""
        block = self.grid.dataset_config(dataset).get("score_based")
        if not block or block.get("sigma") is None:
            raise ConfigError(
                f"config: a score-based source ({', '.join(SCORE)}) is trained on {dataset!r} but "
                f"datasets.{dataset}.score_based.sigma is not set: give the noise level of its "
                f"targets (and datasets.{dataset}.score_based.denoiser, the denoiser's recipe)"
            )
        return block

    def used_on(self, dataset) -> bool:
        """Whether some model of ``dataset`` trains with a score-based source."""
        return any(
            m.split("/")[-3].split(".")[0] in SCORE
            for m in self.grid.dataset_models(dataset)
            if "/external/" not in m
        )

    def denoiser_file(self, dataset) -> str:
        seed = self.config(dataset)["denoiser"]["seed"]
        return self.grid.results(f"{dataset}/denoiser/seed{seed}/model.pt")

    def targets_file(self, dataset, source, sigma) -> str:
        """The targets of a score-based source at a swept noise level (experiments.sigma_sweep):
        <root>/<dataset>/targets/<source>/sigma<sigma>.pt."""
        return self.grid.results(f"{dataset}/targets/{source}/sigma{lam_str(sigma)}.pt")

    def check(self) -> None:
        for dataset in self.grid.used_datasets():
            if self.used_on(dataset):
                self.config(dataset)

"""The PAG scores (datasets.<dataset>.pag_scores, beyond the paper): every model of a dataset
scored against robust references trained with the teachers' recipe and an independent seed,
and against an autoencoder's tangent space; where the dataset has a score-based denoiser recipe
(datasets.<dataset>.score_based), against the class-conditional score of a denoiser of that
recipe with the references' seed (the score instrument); the teachers at their own seed as the
realistic ceiling; the scores' tables and figures (and the toy's PAG table)."""

from __future__ import annotations

from pagrob.experiments.base import ConfigError, Experiment, figures, tables


class PagScores(Experiment):
    name = "pag_scores"

    @property
    def cfg(self) -> None:
        return None  # configured per dataset: config(dataset)

    def datasets(self) -> list[str]:
        return []  # it scores the models of the datasets the other experiments use

    def config(self, dataset) -> dict | None:
        """datasets.<dataset>.pag_scores (None: no PAG scores there); the attack defaults to the
        pictures' one (Fig. 4). Needs robust references (teachers) or an autoencoder, and a
        reference seed that no scored model uses."""
        g = self.grid
        cfg = g.dataset_config(dataset).get("pag_scores")
        if not cfg:
            return cfg
        if not g.configured_teachers(dataset) and not self.autoencoder_config(dataset):
            raise ConfigError(
                f"config: datasets.{dataset}.pag_scores needs robust references or an autoencoder: "
                f"add datasets.{dataset}.teachers (their recipe trains the references) and/or "
                f"datasets.{dataset}.autoencoder"
            )
        self.check_reference_seed(dataset)
        self.score_config(dataset)
        return cfg

    def reference_seeds(self, dataset) -> list[int]:
        cfg = self.grid.dataset_config(dataset).get("pag_scores")
        return [cfg["reference_seed"]] if cfg and self.grid.configured_teachers(dataset) else []

    def check_reference_seed(self, dataset) -> None:
        """The references start from an initialisation no scored model shares: refused otherwise."""
        seeds = self.reference_seeds(dataset)
        if not seeds:
            return
        (seed,) = seeds
        teachers = self.grid.dataset_config(dataset)["teachers"]
        scored = [m for m in self.scored_dirs(dataset) if m.rsplit("seed", 1)[-1] == str(seed)]
        if seed == teachers["seed"] and self.ceiling(dataset):
            scored.append(f"datasets.{dataset}.teachers.seed")
        if scored:
            raise ConfigError(
                f"config: datasets.{dataset}.pag_scores.reference_seed {seed} is also the seed of "
                f"{', '.join(scored)}: a PAG reference must be independent of what it scores (the "
                "same seed gives the same initial weights): choose a reference_seed that no scored "
                "model uses."
            )

    def score_config(self, dataset) -> dict | None:
        """datasets.<dataset>.score_based where the score instrument runs (PAG scores on, a
        denoiser recipe and sigma, a reference seed); None elsewhere. Refused where its seed is
        the score-based sources' denoiser's: the instrument must not be the students' teacher."""
        g = self.grid
        cfg = g.dataset_config(dataset).get("pag_scores")
        block = g.dataset_config(dataset).get("score_based")
        if not (cfg and block and block.get("sigma") is not None and "reference_seed" in cfg):
            return None
        if cfg["reference_seed"] == block["denoiser"]["seed"]:
            raise ConfigError(
                f"config: datasets.{dataset}.pag_scores.reference_seed {cfg['reference_seed']} is "
                f"also datasets.{dataset}.score_based.denoiser.seed: the score instrument's "
                "denoiser would be the score-based sources' own; choose another reference_seed"
            )
        return block

    def denoiser_file(self, dataset) -> str | list:
        """The score instrument's denoiser ([] where it does not run): the score-based sources'
        recipe with the reference seed."""
        if not self.score_config(dataset):
            return []
        seed = self.grid.dataset_config(dataset)["pag_scores"]["reference_seed"]
        return self.grid.results(f"{dataset}/denoiser/seed{seed}/model.pt")

    def reference_dirs(self, dataset) -> list[str]:
        """The references: one adversarially trained model per threat model of the teachers'
        recipe, with the reference seed."""
        g = self.grid
        return [
            g.model_dir(dataset, f"teacher_{n}", 0, seed)
            for seed in self.reference_seeds(dataset)
            for n in ("linf", "l2")
            if n in g.dataset_config(dataset)["teachers"]
        ]

    def references(self, dataset) -> list[str]:
        return [f"{m}/model.pt" for m in self.reference_dirs(dataset)]

    def ceiling(self, dataset) -> list[str]:
        """The teachers at their seed, scored as the realistic ceiling (robust models of the
        references' recipe with another seed) unless pag_scores.ceiling is false."""
        cfg = self.grid.dataset_config(dataset).get("pag_scores") or {}
        return self.grid.configured_teachers(dataset) if cfg.get("ceiling", True) else []

    def scored_dirs(self, dataset) -> list[str]:
        """Every model of the dataset, and the realistic ceiling."""
        g = self.grid
        if dataset == "toy":
            return g.toy.trained() + self.ceiling("toy")
        return list(dict.fromkeys(g.dataset_models(dataset) + self.ceiling(dataset)))

    def scored(self, dataset) -> list[str]:
        """Every model of the dataset gets a PAG score (when pag_scores is configured)."""
        return self.scored_dirs(dataset) if self.config(dataset) else []

    def autoencoder_config(self, dataset) -> dict | None:
        """datasets.<dataset>.autoencoder (None: no tangent-space scores)."""
        return self.grid.dataset_config(dataset).get("autoencoder")

    def autoencoder_file(self, dataset):
        ae = self.autoencoder_config(dataset)
        return self.grid.results(f"{dataset}/autoencoder/seed{ae['seed']}/model.pt") if ae else []

    def toy_enabled(self) -> bool:
        """The toy's PAG table: the toy experiment, its pag_scores and its teachers."""
        g = self.grid
        enabled = bool(
            g.experiment("toy")
            and g.dataset_config("toy").get("pag_scores")
            and g.configured_teachers("toy")
        )
        if enabled:
            self.check_reference_seed("toy")
        return enabled

    def toy_models(self) -> list[str]:
        """The toy's PAG table: the toy models and the toy teachers at their seed (the realistic
        ceiling), scored against the toy's reference."""
        return self.scored_dirs("toy") if self.toy_enabled() else []

    def toy_reference(self, wildcards=None) -> str:
        refs = [m for m in self.reference_dirs("toy") if "/teacher_l2/" in m]
        if not refs:
            raise ConfigError(
                "config: the toy's PAG table needs an L2 reference: add datasets.toy.teachers.l2"
            )
        return f"{refs[0]}/model.pt"

    def outputs_on(self, dataset) -> list[str]:
        g = self.grid
        if dataset == "toy":
            return tables(g, "toy_pag") if self.toy_enabled() else []
        if not self.config(dataset):
            return []
        outs = [g.results(f"{dataset}/pag_scores.csv"), *tables(g, f"pag_scores_{dataset}")]
        if g.robustness.checked(dataset):
            outs += figures(g, f"pag_vs_robustness_{dataset}")
        if dataset in g.lambda_ablation.datasets():
            outs += tables(g, "fig5_pag_scores") + figures(g, "fig5_pag_scores")
        return outs

    def outputs(self) -> list[str]:
        return [o for d in self.grid.used_datasets() for o in self.outputs_on(d)]

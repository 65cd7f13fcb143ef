"""The robustness evaluation that the experiments' models get beyond PGD-20
(datasets.<dataset>.eval.autoattack and eval.checks): which models get AutoAttack (the whole
version or its APGD stages) and the gradient-masking checks, under which threat models; the
masking table and the robustness curves."""

from __future__ import annotations

from pagrob.experiments.base import ConfigError, Experiment, figures, tables


class Robustness(Experiment):
    name = "robustness"

    @property
    def cfg(self) -> None:
        return None  # configured per dataset: config(dataset)

    def datasets(self) -> list[str]:
        return []  # it evaluates the models of the datasets the other experiments use

    def config(self, dataset) -> dict | None:
        """datasets.<dataset>.eval.autoattack (None: no AutoAttack and no checks there)."""
        return self.grid.dataset_config(dataset)["eval"].get("autoattack")

    def checked(self, dataset) -> list[str]:
        """The models of ``dataset`` that get AutoAttack and the gradient-masking checks."""
        aa, g = self.config(dataset), self.grid
        if not aa:
            return []
        models = [m for name in aa["experiments"] for m in g.experiment_models(name, dataset)]
        if not aa["teachers"]:
            models = [m for m in models if m not in g.configured_teachers(dataset)]
        if aa["seeds"] is not None:  # e.g. one seed of each source, where AutoAttack is costly
            models = [m for m in models if int(m.rsplit("seed", 1)[1]) in aa["seeds"]]
        # imported models get the whole evaluation: that is what they are imported for
        return list(dict.fromkeys(models + g.external.models(dataset)))

    def aa_full(self, dataset, model) -> bool:
        """Whether the checked ``model`` (its folder) gets AutoAttack's whole version: its seed
        is one of eval.autoattack.full_seeds (null: every seed), or it is imported. The others
        get its APGD stages (settings.APGD_STAGES), on the same images."""
        full = (self.config(dataset) or {}).get("full_seeds")
        if full is None or "/external/" in model:
            return True
        return int(model.rsplit("seed", 1)[1]) in full

    def eval_norms(self, dataset) -> list[str]:
        return list(self.grid.dataset_config(dataset)["eval"]["attacks"])

    def norms(self, dataset) -> list[str]:
        """The threat models that get AutoAttack and the checks: eval.autoattack.norms, or all."""
        aa = self.config(dataset) or {}
        norms = aa.get("norms") or self.eval_norms(dataset)
        unknown = [n for n in norms if n not in self.eval_norms(dataset)]
        if unknown:
            raise ConfigError(
                f"config: datasets.{dataset}.eval.autoattack.norms {unknown} have no PGD attack: add "
                f"them to datasets.{dataset}.eval.attacks or drop them"
            )
        return norms

    def sweeps(self, dataset) -> bool:
        """Whether the checked models get the checks' PGD sweep (eval.checks.sweep)."""
        return self.grid.dataset_config(dataset)["eval"]["checks"]["sweep"]

    def records(self, dataset) -> list[str]:
        """Every checked model's AutoAttack record, per threat model."""
        return self.checked_records(dataset, self.checked(dataset))

    def checked_records(self, dataset, models) -> list[str]:
        """The AutoAttack records of those of ``models`` that are checked: a table computes their
        gradient-masking checks from these and its metrics, to footnote the models that fail one,
        so that it waits for no other model (the masking table waits for every checked one).
        """
        models = set(models)
        return [
            f"{m}/autoattack_{n}.json"
            for m in self.checked(dataset)
            if m in models
            for n in self.norms(dataset)
        ]

    def curve_models(self, dataset) -> list[str]:
        """The robustness curves: the main table's models (and its teachers), and the imported."""
        g = self.grid
        models = g.main.models(dataset) + g.external.models(dataset)
        return [m for m in models if m in self.checked(dataset)]

    def outputs_on(self, dataset) -> list[str]:
        if not self.config(dataset):
            return []
        outs = tables(self.grid, f"masking_{dataset}")
        curves = self.grid.dataset_config(dataset)["eval"]["checks"]["curves"]
        if self.sweeps(dataset) and self.curve_models(dataset) and any(curves.values()):
            outs += figures(self.grid, f"robustness_curves_{dataset}")
        return outs

    def outputs(self) -> list[str]:
        return [o for d in self.grid.used_datasets() for o in self.outputs_on(d)]

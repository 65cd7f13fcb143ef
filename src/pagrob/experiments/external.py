"""Imported models (experiments.external): checkpoints someone else trained (the authors'),
evaluated with our attacks beside our models of the sources they claim, in their own table."""

from __future__ import annotations

from pagrob.experiments.base import ConfigError, Experiment, tables


class External(Experiment):
    name = "external"

    def specs(self, dataset=None) -> dict:
        """Its models (name -> spec), those on ``dataset`` when given."""
        return {
            name: spec
            for name, spec in (self.cfg or {}).items()
            if dataset is None or spec["dataset"] == dataset
        }

    def datasets(self) -> list[str]:
        return list(dict.fromkeys(spec["dataset"] for spec in self.specs().values()))

    def models(self, dataset) -> list[str]:
        return [self.grid.results(f"{dataset}/external/{name}") for name in self.specs(dataset)]

    def table_models(self, dataset) -> list[str]:
        """The external table's models: the imported ones and ours of the sources they claim."""
        if not self.specs(dataset):
            raise ConfigError(
                f"{self.grid.results()}/tables/external_{dataset} needs imported models: "
                f"experiments.external has none on {dataset!r}; add one (docs/external.md: the "
                "authors' checkpoints and targets)"
            )
        return self.models(dataset) + self.comparison(dataset)

    def comparison(self, dataset) -> list[str]:
        """Our models that the table sets beside the imported ones: the main experiment's model
        of each claimed source, where the config trains one on ``dataset``."""
        main = self.grid.main
        if dataset not in main.datasets():
            return []
        claimed = {spec["source"] for spec in self.specs(dataset).values()}
        return [m for m in main.trained(dataset) if m.split("/")[-3] in claimed]

    def records(self, dataset) -> list[str]:
        """The AutoAttack records of the table's models that are checked."""
        return self.grid.robustness.checked_records(dataset, self.table_models(dataset))

    def outputs(self) -> list[str]:
        return [o for d in self.datasets() for o in tables(self.grid, f"external_{d}")]

"""Tables 1-2 over seeds (experiments.main): every source at its lambda, for each seed, on each
dataset of its tables, beside the adversarially trained teachers; each dataset's answer page,
Fig. 4 (the PAG pictures of the first seed's models), Fig. 1 (vanilla beside the teachers) and
Table 3 (the lambdas)."""

from __future__ import annotations

from pagrob.experiments.base import ConfigError, Experiment, figures, tables
from pagrob.registry import FILE, RIGD


class Main(Experiment):
    name = "main"

    def datasets(self) -> list[str]:
        return list(self.cfg["tables"]) if self.cfg else []

    def models(self, dataset) -> list[str]:
        """Its sources' models and the teachers the table shows as reference rows."""
        if dataset not in self.datasets():
            return []
        return self.trained(dataset) + self.teachers(dataset)

    def trained(self, dataset, seeds=None) -> list[str]:
        """Every source at its lambda, for each of its seeds (or of ``seeds``)."""
        exp, g = self.cfg, self.grid
        if not exp or dataset not in exp["tables"]:
            raise ConfigError(f"config: experiments.main.tables has no entry for {dataset!r}")
        return [
            g.model_dir(dataset, s, g.source_lam(dataset, s), seed)
            for s in self.sources(dataset)
            for seed in (exp["seeds"] if seeds is None else seeds)
        ]

    def first_seed_models(self, dataset) -> list[str]:
        """Fig. 4: one model per source, of the first seed."""
        return self.trained(dataset, self.cfg["seeds"][:1])

    def sources(self, dataset) -> list[str]:
        """Its sources on ``dataset``: the file source only where a targets file is given (the
        authors' is CIFAR-10's alone)."""
        return [s for s in self.cfg["sources"] if s != FILE or dataset in self.with_file()]

    def with_file(self) -> list[str]:
        return [d for d in self.cfg["tables"] if self.grid.dataset_config(d)["targets"].get("file")]

    def teachers(self, dataset) -> list[str]:
        """The adversarially trained teachers the table shows as reference rows (and the answer
        as the ceiling): those of its RIGD sources, and every configured one."""
        g = self.grid
        rigd = [g.teacher_dir(dataset, RIGD[s]) for s in self.cfg["sources"] if s in RIGD]
        return list(dict.fromkeys(rigd + g.configured_teachers(dataset)))

    def robust_figure_models(self, dataset) -> list[str]:
        """Fig. 1: the vanilla model beside the robust teachers."""
        exp, g = self.cfg, self.grid
        if not exp or "vanilla" not in exp["sources"]:
            raise ConfigError("Fig. 1 needs experiments.main with the vanilla source")
        return [
            g.model_dir(dataset, "vanilla", 0, exp["seeds"][0]),
            *g.configured_teachers(dataset),
        ]

    def check_table_name(self, table, dataset) -> str:
        """<root>/tables/<table>_<dataset> must be the name the block gives the dataset."""
        expected = (self.cfg or {}).get("tables", {}).get(dataset)
        if expected != table:
            raise ConfigError(
                f"{self.grid.results()}/tables/{table}_{dataset} is not a table of this config: "
                f"experiments.main.tables.{dataset} is {expected!r}"
            )
        return table

    def outputs(self) -> list[str]:
        if not self.cfg:
            return []
        g, outs = self.grid, []
        for dataset, table in self.cfg["tables"].items():
            outs += tables(g, f"{table}_{dataset}", f"answer_{dataset}")
            outs += figures(g, f"answer_{dataset}", f"fig4_{dataset}")
            if g.configured_teachers(dataset):
                outs += figures(g, f"fig1_{dataset}")
        return outs + tables(g, "table3_lambda")

    def check(self) -> None:
        """A table for each dataset with its pictures; the file source only with a targets file."""
        if not self.cfg:
            return
        for dataset in self.datasets():
            self.grid.pictures_config(dataset)
        if FILE in self.cfg["sources"] and not self.with_file():
            raise ConfigError(
                "config: experiments.main.sources has the file source, but no dataset of "
                "experiments.main.tables has datasets.<dataset>.targets.file; add one, or drop file"
            )

"""The grid a config defines: which models exist and where their files live, composed from the
experiments the config asks for (pagrob.experiments: each declares its models, outputs and
config checks), the settings every experiment shares (datasets, lambdas, teachers, targets
files) and the jobs they add up to (pagrob.grid_jobs).

Pure Python (no PyTorch, no Snakemake): the workflow's rule files (workflow/rules/common.smk) and
bench/gpu_check.py build their grid from this one module. ``config`` is the config as the schema
validated it, its defaults filled in.

Paths encode the grid: <root>/{dataset}/{source}/lam{lam}/seed{seed}/... for the models we
train, <root>/{dataset}/external/{name}/... for imported ones, where <root> is the config's
results root (the key results: config.yaml's results, demo.yaml's results/demo), so that two
configs never write the same file.
"""

from __future__ import annotations

from pagrob import grid_jobs, registry
from pagrob.experiments import EXPERIMENTS
from pagrob.experiments.base import ConfigError, lam_str
from pagrob.grid_jobs import Job
from pagrob.registry import DRAWN

__all__ = ["ConfigError", "Grid", "Job", "files_of", "lam_str"]


def files_of(models) -> list[str]:
    """Each model folder's model file."""
    return [f"{m}/model.pt" for m in models]


class Grid:
    """The grid of one config; every method reads ``config`` (never a copy). Each experiment is
    an attribute by its name: grid.main, grid.toy, grid.pag_scores, ... (pagrob.experiments)."""

    def __init__(self, config: dict):
        self.config = config
        self.check_results_root(config["results"])
        self.experiments = {cls.name: cls(self) for cls in EXPERIMENTS}

    def __getattr__(self, name):
        experiments = self.__dict__.get("experiments", {})
        if name in experiments:
            return experiments[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute or experiment {name!r}")

    def results(self, path=""):
        """``path`` under this config's results root (the key results), or the root itself."""
        return f"{self.config['results']}/{path}" if path else self.config["results"]

    def check_results_root(self, root):
        """A results root inside results/ must not be a folder that results/ itself holds."""
        parts = root.split("/")
        reserved = [*registry.DATASETS, "tables", "figures", "logs"]
        if len(parts) > 1 and parts[1] in reserved:
            raise ConfigError(
                f"invalid config:\n  results: {root!r} is a folder that the results root 'results' "
                f"uses itself ({', '.join(reserved)}); choose another, e.g. results/demo"
            )

    def experiment(self, name):
        """The block experiments.<name> (None where the config has none)."""
        return self.config["experiments"].get(name)

    def experiment_models(self, name, dataset):
        """The models of one experiment on ``dataset`` (none if it runs elsewhere)."""
        return self.experiments[name].models(dataset)

    def dataset_config(self, dataset):
        if dataset not in self.config["datasets"]:
            raise ConfigError(
                f"config: dataset {dataset!r} is used but datasets.{dataset} is not defined; "
                f"add its settings under datasets: (defined: {sorted(self.config['datasets'])})"
            )
        return self.config["datasets"][dataset]

    def res(self, dataset):
        """datasets.<dataset>.resources, the schema's defaults filled in."""
        return self.dataset_config(dataset)["resources"]

    def pictures_config(self, dataset):
        pictures = self.dataset_config(dataset).get("pictures")
        if not pictures:
            raise ConfigError(
                f"config: datasets.{dataset}.pictures is needed for its PAG figure; add images: "
                "[...] and attack: {eps: ..., steps: ...}"
            )
        return pictures

    def source_lam(self, dataset, source):
        """The lambda of a source on a dataset (Table 3); 0 for vanilla."""
        if source == "vanilla":
            return 0
        lams = self.dataset_config(dataset)["lam"]
        if source not in lams:
            raise ConfigError(
                f"config: no lambda for source {source!r} on {dataset!r}; "
                f"add datasets.{dataset}.lam.{source}: <value>"
            )
        return lams[source]

    def model_dir(self, dataset, source, lam, seed):
        return f"{self.results()}/{dataset}/{source}/lam{lam_str(lam)}/seed{seed}"

    # --- The teachers (RIGD, Fig. 1, the tables' reference rows, the PAG references) ----------

    def teacher_config(self, dataset, norm):
        teachers = self.dataset_config(dataset).get("teachers") or {}
        if norm not in teachers:
            raise ConfigError(
                f"config: the {norm} teacher of {dataset!r} is needed (rigd_{norm}, Fig. 1) but "
                f"datasets.{dataset}.teachers.{norm} is not defined; add its training attack "
                "{eps, steps, step_size} (and seed, epochs under teachers)"
            )
        return teachers[norm], teachers

    def imports_teacher(self, dataset, norm, seed):
        """The teacher at teachers.seed comes from its checkpoint where one is given; the PAG
        references (pag_scores.reference_seed) are always trained with the teachers' recipe.
        """
        t, teachers = self.teacher_config(dataset, norm)
        seeds = [teachers["seed"], *self.pag_scores.reference_seeds(dataset)]
        if seed not in seeds:
            raise ConfigError(
                f"the {norm} teacher of {dataset} has seed {teachers['seed']} in the config "
                f"(and PAG references {seeds[1:]}), not {seed}"
            )
        return bool(t.get("checkpoint")) and seed == teachers["seed"]

    def teacher_dir(self, dataset, norm):
        _, teachers = self.teacher_config(dataset, norm)
        return self.model_dir(dataset, f"teacher_{norm}", 0, teachers["seed"])

    def configured_teachers(self, dataset):
        teachers = self.dataset_config(dataset).get("teachers") or {}
        return [self.teacher_dir(dataset, n) for n in ("linf", "l2") if n in teachers]

    # --- The targets files ----------------------------------------------------------------------

    def targets_file(self, dataset, source, seed):
        """The targets a model of ``source`` (a representative or the file source) with training
        seed ``seed`` trains with: a drawn source's draw from that seed (from targets.seed where
        targets.per_seed is false), <root>/<dataset>/targets/<source>/seed<draw>.pt; another's
        one file per dataset, <root>/<dataset>/targets/<source>.pt."""
        if source in DRAWN:
            t = self.dataset_config(dataset)["targets"]
            draw = int(seed) if t["per_seed"] else t["seed"]
            return self.results(f"{dataset}/targets/{source}/seed{draw}.pt")
        return self.results(f"{dataset}/targets/{source}.pt")

    def file_targets_config(self, dataset):
        """datasets.<dataset>.targets.file, which the file source needs."""
        spec = self.dataset_config(dataset)["targets"].get("file")
        if not spec:
            raise ConfigError(
                f"config: the file source on {dataset!r} needs datasets.{dataset}.targets.file "
                "{data: <targets file>, labels: <labels file>}"
            )
        return spec

    # --- The experiments composed ----------------------------------------------------------------

    def used_datasets(self):
        """Every dataset some experiment runs on, in the experiments' order."""
        used = [d for exp in self.experiments.values() for d in exp.datasets()]
        return list(dict.fromkeys(used))

    def dataset_models(self, dataset):
        """Every model that some experiment trains or imports on ``dataset`` (each once)."""
        models = [m for exp in self.experiments.values() for m in exp.models(dataset)]
        if not models:
            raise ConfigError(f"config: no experiment trains models on {dataset!r}")
        return list(dict.fromkeys(models))

    def check(self):
        """Every experiment's config checks, and a definition for every dataset they use."""
        for dataset in self.used_datasets():
            self.dataset_config(dataset)
        for exp in self.experiments.values():
            exp.check()

    def all_outputs(self):
        """Every table and figure that the config's experiments ask for, and each dataset's
        metrics of every model."""
        self.check()
        outs = [self.results(f"{d}/metrics.csv") for d in self.used_datasets()]
        return outs + [o for exp in self.experiments.values() for o in exp.outputs()]

    def model_metrics(self, dataset, models):
        """Every tidy CSV of ``models``: clean and PGD, and where checked, AutoAttack per norm and
        the checks' PGD sweep."""
        rob = self.robustness
        checked = set(rob.checked(dataset))
        files = []
        for m in models:
            files.append(f"{m}/metrics.csv")
            if m in checked:
                files += [f"{m}/autoattack_{n}.csv" for n in rob.norms(dataset)]
                if rob.sweeps(dataset):
                    files.append(f"{m}/sweep.csv")
        return files

    def refuse_target(self, path):
        """A table or figure that this config does not make: the error lists those it makes."""
        shown = sorted(p for p in self.all_outputs() if p.endswith((".md", ".png")))
        raise ConfigError(
            f"{path}: not a table or figure of this config. It makes these (each table also as "
            ".csv and .html, each figure also as .pdf):\n" + "\n".join(f"  {p}" for p in shown)
        )

    # --- The jobs: what the bench projects (pagrob.grid_jobs) ----------------------------------

    def jobs(self, datasets=None) -> list[Job]:
        """The jobs that run a PyTorch step, over ``datasets`` (default: every one used)."""
        self.check()
        return grid_jobs.jobs(self, datasets or self.used_datasets())

    def job_counts(self, datasets=None) -> dict[str, int]:
        """Jobs per rule (what a dry run of every output lists for these rules)."""
        return grid_jobs.counts(self.jobs(datasets))

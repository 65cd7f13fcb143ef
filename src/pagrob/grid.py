"""The grid a config defines: which models exist, where their files live, which tables, figures
and jobs the config's experiments ask for, and the meaning-level checks of the config (what the
schema cannot say: a lambda for every trained source, a reference seed no scored model uses, ...).

Pure Python (no PyTorch, no Snakemake): the workflow's rule files (workflow/rules/common.smk) and
bench/gpu_check.py build their grid from this one module. ``config`` is the config as the schema
validated it, its defaults filled in.

Paths encode the grid: <root>/{dataset}/{source}/lam{lam}/seed{seed}/... for the models we
train, <root>/{dataset}/external/{name}/... for imported ones, where <root> is the config's
results root (the key results: config.yaml's results, demo.yaml's results/demo), so that two
configs never write the same file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pagrob import registry
from pagrob.registry import DRAWN, FILE, REPRESENTATIVES, RIGD


class ConfigError(Exception):
    """A config that the schema accepts but that does not define a grid; says which key to fix."""


def lam_str(lam) -> str:
    """0.4 -> '0.4', 1.0 -> '1', 0 -> '0': the lambda as it appears in paths."""
    return f"{float(lam):.10f}".rstrip("0").rstrip(".")


def files_of(models) -> list[str]:
    """Each model folder's model file."""
    return [f"{m}/model.pt" for m in models]


@dataclass(frozen=True)
class Job:
    """One job of the grid that costs compute: the rule that runs it, its dataset, and its main
    output (a model's folder for the training rules)."""

    rule: str
    dataset: str
    output: str
    source: str = ""  # the training and targets jobs' gradient source (teacher_<norm> too)
    norm: str = ""  # the teachers' and AutoAttack's threat model
    imported: bool = False  # a teacher read from its checkpoint, not trained


class Grid:
    """The grid of one config; every method reads ``config`` (never a copy)."""

    def __init__(self, config: dict):
        self.config = config
        self.check_results_root(config["results"])

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

    def dataset_config(self, dataset):
        if dataset not in self.config["datasets"]:
            raise ConfigError(
                f"config: dataset {dataset!r} is used but datasets.{dataset} is not defined; "
                f"add its settings under datasets: (defined: {sorted(self.config['datasets'])})"
            )
        return self.config["datasets"][dataset]

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

    def experiment(self, name):
        return self.config["experiments"].get(name)

    def toy_models(self):
        exp = self.experiment("toy")
        if not exp:
            return []
        pag_lam = self.source_lam("toy", exp["source"])
        return [
            self.model_dir("toy", src, lam, seed)
            for src, lam in (("vanilla", 0), (exp["source"], pag_lam))
            for seed in exp["seeds"]
        ]

    def toy_recipes(self):
        """The toy experiment's recipes, (source, lam): vanilla and its PAG source."""
        exp = self.experiment("toy")
        if not exp:
            return []
        return [("vanilla", 0), (exp["source"], self.source_lam("toy", exp["source"]))]

    def toy_seeds(self):
        return list((self.experiment("toy") or {}).get("seeds", []))

    def toy_draws(self, source):
        """The targets files the toy models of a drawn ``source`` read (one per draw seed)."""
        return list(dict.fromkeys(self.targets_file("toy", source, s) for s in self.toy_seeds()))

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
        seeds = [teachers["seed"], *self.reference_seed_list(dataset)]
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

    def main_models(self, dataset, seeds=None):
        """Tables 1-2: every source of experiments.main at its lambda, for each of its seeds (or of
        ``seeds``, e.g. the first only: Fig. 4 shows one model per source)."""
        exp = self.experiment("main")
        if not exp or dataset not in exp["tables"]:
            raise ConfigError(f"config: experiments.main.tables has no entry for {dataset!r}")
        return [
            self.model_dir(dataset, s, self.source_lam(dataset, s), seed)
            for s in self.main_sources(dataset)
            for seed in (exp["seeds"] if seeds is None else seeds)
        ]

    def first_seed_models(self, dataset):
        """Fig. 4: one model per source, of experiments.main's first seed."""
        return self.main_models(dataset, self.experiment("main")["seeds"][:1])

    def main_sources(self, dataset):
        """experiments.main's sources on ``dataset``: the file source only where a targets file is
        given (the authors' is CIFAR-10's alone), and then it must be on at least one dataset.
        """
        exp = self.experiment("main")
        with_file = [d for d in exp["tables"] if self.dataset_config(d)["targets"].get("file")]
        if FILE in exp["sources"] and not with_file:
            raise ConfigError(
                "config: experiments.main.sources has the file source, but no dataset of "
                "experiments.main.tables has datasets.<dataset>.targets.file; add one, or drop file"
            )
        return [s for s in exp["sources"] if s != FILE or dataset in with_file]

    def check_table_name(self, table, dataset):
        """<results>/tables/<table>_<dataset> must be the name experiments.main gives the dataset."""
        expected = (self.experiment("main") or {}).get("tables", {}).get(dataset)
        if expected != table:
            raise ConfigError(
                f"{self.results()}/tables/{table}_{dataset} is not a table of this config: "
                f"experiments.main.tables.{dataset} is {expected!r}"
            )
        return table

    def table_teachers(self, dataset):
        """The adversarially trained teachers a main table shows as reference rows (and the
        answer as the ceiling): those of its RIGD sources, and every configured one (also
        the PAG scores' realistic ceiling)."""
        rigd = [
            self.teacher_dir(dataset, RIGD[s])
            for s in self.experiment("main")["sources"]
            if s in RIGD
        ]
        return list(dict.fromkeys(rigd + self.configured_teachers(dataset)))

    def seeds_models(self):
        """Table 4: one source over several seeds."""
        exp = self.experiment("seeds")
        lam = self.source_lam(exp["dataset"], exp["source"])
        return [self.model_dir(exp["dataset"], exp["source"], lam, seed) for seed in exp["seeds"]]

    def ablation_models(self):
        """Fig. 5: one source for several lambdas."""
        exp = self.experiment("lambda_ablation")
        return [
            self.model_dir(exp["dataset"], exp["source"], lam, exp["seed"]) for lam in exp["lams"]
        ]

    def ablation_table_models(self):
        """Fig. 5's numbers: the ablation's models and, as lambda = 0, the vanilla model of the
        same seed where experiments.main trains one on that dataset."""
        exp, main = self.experiment("lambda_ablation"), self.experiment("main")
        vanilla = []
        if main and exp["dataset"] in main["tables"] and "vanilla" in main["sources"]:
            vanilla = [self.model_dir(exp["dataset"], "vanilla", 0, exp["seed"])]
        return vanilla + self.ablation_models()

    def class_score_dir(self, dataset, source, grad_of, seed):
        """A source's model trained with the class score ``grad_of``: the main experiment's path
        for pag.grad_of's, results/<d>/<source>.<grad_of>/... for another."""
        lam = self.source_lam(dataset, source)
        if grad_of == self.config["pag"]["grad_of"]:
            return self.model_dir(dataset, source, lam, seed)
        return self.model_dir(dataset, f"{source}.{grad_of}", lam, seed)

    def grad_of_dataset(self):
        return self.experiment("grad_of_ablation")["dataset"]

    def grad_of_models(self):
        """experiments.grad_of_ablation: each source with each class score, for each seed."""
        exp = self.experiment("grad_of_ablation")
        if not exp:
            return []
        bad = [s for s in exp["sources"] if s not in REPRESENTATIVES]
        if bad:
            raise ConfigError(
                f"config: experiments.grad_of_ablation.sources {bad}: the ablation compares the "
                f"hand-made sources' class scores; choose among {REPRESENTATIVES}"
            )
        return [
            self.class_score_dir(exp["dataset"], s, g, seed)
            for s in exp["sources"]
            for g in exp["class_scores"]
            for seed in exp["seeds"]
        ]

    def externals(self, dataset=None):
        """experiments.external (name -> spec), those on ``dataset`` when given."""
        return {
            name: spec
            for name, spec in (self.experiment("external") or {}).items()
            if dataset is None or spec["dataset"] == dataset
        }

    def external_models(self, dataset):
        return [f"{self.results()}/{dataset}/external/{name}" for name in self.externals(dataset)]

    def external_table_models(self, dataset):
        """The external table's models: the imported ones and ours of the sources they claim."""
        if not self.externals(dataset):
            raise ConfigError(
                f"{self.results()}/tables/external_{dataset} needs imported models: experiments.external has "
                f"none on {dataset!r}; add one (README: Using the authors' checkpoints and targets)"
            )
        return self.external_models(dataset) + self.external_comparison(dataset)

    def external_comparison(self, dataset):
        """Our models that the external table sets beside the imported ones: the main experiment's
        model of each claimed source, where the config trains one on ``dataset``."""
        exp = self.experiment("main")
        if not exp or dataset not in exp["tables"]:
            return []
        claimed = {spec["source"] for spec in self.externals(dataset).values()}
        return [
            self.model_dir(dataset, s, self.source_lam(dataset, s), seed)
            for s in self.main_sources(dataset)
            if s in claimed
            for seed in exp["seeds"]
        ]

    def external_records(self, dataset):
        """The AutoAttack records of the external table's models that are checked."""
        return self.checked_records(dataset, self.external_table_models(dataset))

    def dataset_models(self, dataset):
        """Every model that some experiment trains or imports on ``dataset`` (each once)."""
        models = self.toy_models() if dataset == "toy" else []
        if self.experiment("main") and dataset in self.experiment("main")["tables"]:
            models += self.main_models(dataset) + self.table_teachers(dataset)
        if self.experiment("seeds") and self.experiment("seeds")["dataset"] == dataset:
            models += self.seeds_models()
        if (
            self.experiment("lambda_ablation")
            and self.experiment("lambda_ablation")["dataset"] == dataset
        ):
            models += self.ablation_models()
        if (
            self.experiment("grad_of_ablation")
            and self.experiment("grad_of_ablation")["dataset"] == dataset
        ):
            models += self.grad_of_models()
        models += self.external_models(dataset)
        if not models:
            raise ConfigError(f"config: no experiment trains models on {dataset!r}")
        return list(dict.fromkeys(models))

    def used_datasets(self):
        used = []
        if self.experiment("toy"):
            used.append("toy")
        if self.experiment("main"):
            used += list(self.experiment("main")["tables"])
        for name in ("seeds", "lambda_ablation", "grad_of_ablation"):
            if self.experiment(name):
                used.append(self.experiment(name)["dataset"])
        used += [spec["dataset"] for spec in self.externals().values()]
        return list(dict.fromkeys(used))

    def pictures_config(self, dataset):
        pictures = self.dataset_config(dataset).get("pictures")
        if not pictures:
            raise ConfigError(
                f"config: datasets.{dataset}.pictures is needed for its PAG figure; add images: "
                "[...] and attack: {eps: ..., steps: ...}"
            )
        return pictures

    def all_outputs(self):
        """Every table and figure that the config's experiments ask for."""
        for dataset in self.used_datasets():
            self.dataset_config(dataset)
        outs = [f"{self.results()}/{d}/metrics.csv" for d in self.used_datasets()]
        for d in self.used_datasets():
            outs += self.robustness_outputs(d) + self.pag_outputs(d)
        if self.experiment("toy"):
            if self.toy_pag_enabled():
                outs += [f"{self.results()}/tables/answer_toy.{ext}" for ext in ("md", "csv")]
                outs += [f"{self.results()}/figures/answer_toy.{ext}" for ext in ("png", "pdf")]
            outs += [f"{self.results()}/tables/toy.{ext}" for ext in ("md", "csv")]
            outs += [f"{self.results()}/figures/fig3_toy.{ext}" for ext in ("png", "pdf")]
        if self.experiment("main"):
            for dataset, table in self.experiment("main")["tables"].items():
                self.pictures_config(dataset)
                outs += [
                    f"{self.results()}/tables/{table}_{dataset}.{ext}" for ext in ("md", "csv")
                ]
                outs += [f"{self.results()}/tables/answer_{dataset}.{ext}" for ext in ("md", "csv")]
                outs += [
                    f"{self.results()}/figures/answer_{dataset}.{ext}" for ext in ("png", "pdf")
                ]
                outs += [f"{self.results()}/figures/fig4_{dataset}.{ext}" for ext in ("png", "pdf")]
                if self.configured_teachers(dataset):
                    outs += [
                        f"{self.results()}/figures/fig1_{dataset}.{ext}" for ext in ("png", "pdf")
                    ]
            outs += [f"{self.results()}/tables/table3_lambda.{ext}" for ext in ("md", "csv")]
        if self.experiment("seeds"):
            outs += [f"{self.results()}/tables/table4_seeds.{ext}" for ext in ("md", "csv")]
        for dataset in dict.fromkeys(spec["dataset"] for spec in self.externals().values()):
            outs += [f"{self.results()}/tables/external_{dataset}.{ext}" for ext in ("md", "csv")]
        if self.experiment("grad_of_ablation"):
            outs += [f"{self.results()}/tables/grad_of_ablation.{ext}" for ext in ("md", "csv")]
            outs += [f"{self.results()}/figures/grad_of_ablation.{ext}" for ext in ("png", "pdf")]
        if self.experiment("lambda_ablation"):
            self.pictures_config(self.experiment("lambda_ablation")["dataset"])
            outs += [f"{self.results()}/tables/fig5_lambda_ablation.{ext}" for ext in ("md", "csv")]
            outs += [
                f"{self.results()}/figures/fig5_lambda_ablation.{ext}" for ext in ("png", "pdf")
            ]
        return outs

    def robust_figure_models(self, dataset):
        """Fig. 1: the vanilla model beside the robust teachers."""
        exp = self.experiment("main")
        if not exp or "vanilla" not in exp["sources"]:
            raise ConfigError("Fig. 1 needs experiments.main with the vanilla source")
        return [
            self.model_dir(dataset, "vanilla", 0, exp["seeds"][0]),
            *self.configured_teachers(dataset),
        ]

    def autoattack_config(self, dataset):
        """datasets.<dataset>.eval.autoattack (None: no AutoAttack and no checks there)."""
        return self.dataset_config(dataset)["eval"].get("autoattack")

    def experiment_models(self, name, dataset):
        """The models of one experiment on ``dataset`` (none if it runs elsewhere)."""
        exp = self.experiment(name)
        if name == "main":
            if exp and dataset in exp["tables"]:
                return self.main_models(dataset) + self.table_teachers(dataset)
            return []
        if exp and exp["dataset"] == dataset:
            return {
                "seeds": self.seeds_models,
                "lambda_ablation": self.ablation_models,
                "grad_of_ablation": self.grad_of_models,
            }[name]()
        return []

    def checked_models(self, dataset):
        """The models of ``dataset`` that get AutoAttack and the gradient-masking checks."""
        aa = self.autoattack_config(dataset)
        if not aa:
            return []
        models = [m for name in aa["experiments"] for m in self.experiment_models(name, dataset)]
        if not aa["teachers"]:
            models = [m for m in models if m not in self.configured_teachers(dataset)]
        if aa["seeds"] is not None:  # e.g. one seed of each source, where AutoAttack is costly
            models = [m for m in models if int(m.rsplit("seed", 1)[1]) in aa["seeds"]]
        # imported models get the whole evaluation: that is what they are imported for
        return list(dict.fromkeys(models + self.external_models(dataset)))

    def aa_full(self, dataset, model):
        """Whether the checked ``model`` (its folder) gets AutoAttack's whole version: its seed
        is one of eval.autoattack.full_seeds (null: every seed), or it is imported. The others
        get its APGD stages (settings.APGD_STAGES), on the same images."""
        full = (self.autoattack_config(dataset) or {}).get("full_seeds")
        if full is None or "/external/" in model:
            return True
        return int(model.rsplit("seed", 1)[1]) in full

    def eval_norms(self, dataset):
        return list(self.dataset_config(dataset)["eval"]["attacks"])

    def aa_norms(self, dataset):
        """The threat models that get AutoAttack and the checks: eval.autoattack.norms, or all."""
        aa = self.autoattack_config(dataset) or {}
        norms = aa.get("norms") or self.eval_norms(dataset)
        unknown = [n for n in norms if n not in self.eval_norms(dataset)]
        if unknown:
            raise ConfigError(
                f"config: datasets.{dataset}.eval.autoattack.norms {unknown} have no PGD attack: add "
                f"them to datasets.{dataset}.eval.attacks or drop them"
            )
        return norms

    def model_metrics(self, dataset, models):
        """Every tidy CSV of ``models``: clean and PGD, and where checked, AutoAttack per norm and
        the checks' PGD sweep."""
        checked = set(self.checked_models(dataset))
        files = []
        for m in models:
            files.append(f"{m}/metrics.csv")
            if m in checked:
                files += [f"{m}/autoattack_{n}.csv" for n in self.aa_norms(dataset)]
                if self.sweeps(dataset):
                    files.append(f"{m}/sweep.csv")
        return files

    def sweeps(self, dataset):
        """Whether the checked models get the checks' PGD sweep (eval.checks.sweep)."""
        return self.dataset_config(dataset)["eval"]["checks"]["sweep"]

    def autoattack_records(self, dataset):
        return [
            f"{m}/autoattack_{n}.json"
            for m in self.checked_models(dataset)
            for n in self.aa_norms(dataset)
        ]

    def curve_models(self, dataset):
        """The robustness curves: the models of the dataset's main table (and its teachers), and
        the imported ones."""
        models = self.experiment_models("main", dataset) + self.external_models(dataset)
        return [m for m in models if m in self.checked_models(dataset)]

    def robustness_outputs(self, dataset):
        if not self.autoattack_config(dataset):
            return []
        outs = [f"{self.results()}/tables/masking_{dataset}.{ext}" for ext in ("md", "csv")]
        if (
            self.sweeps(dataset)
            and self.curve_models(dataset)
            and any(self.dataset_config(dataset)["eval"]["checks"]["curves"].values())
        ):
            outs += [
                f"{self.results()}/figures/robustness_curves_{dataset}.{ext}"
                for ext in ("png", "pdf")
            ]
        return outs

    def checked_records(self, dataset, models):
        """The AutoAttack records of those of ``models`` that are checked: a table computes their
        gradient-masking checks from these and its metrics, to footnote the models that fail one,
        so that it waits for no other model (the masking table waits for every checked one).
        """
        models = set(models)
        return [
            f"{m}/autoattack_{n}.json"
            for m in self.checked_models(dataset)
            if m in models
            for n in self.aa_norms(dataset)
        ]

    def pag_scores_config(self, dataset):
        """datasets.<dataset>.pag_scores (None: no PAG scores there); the attack defaults to the
        pictures' one (Fig. 4). Needs robust references (teachers) or an autoencoder, and a
        reference seed that no scored model uses."""
        cfg = self.dataset_config(dataset).get("pag_scores")
        if not cfg:
            return cfg
        if not self.configured_teachers(dataset) and not self.autoencoder_config(dataset):
            raise ConfigError(
                f"config: datasets.{dataset}.pag_scores needs robust references or an autoencoder: "
                f"add datasets.{dataset}.teachers (their recipe trains the references) and/or "
                f"datasets.{dataset}.autoencoder"
            )
        self.check_reference_seed(dataset)
        return cfg

    def reference_seed_list(self, dataset):
        cfg = self.dataset_config(dataset).get("pag_scores")
        return [cfg["reference_seed"]] if cfg and self.configured_teachers(dataset) else []

    def check_reference_seed(self, dataset):
        """The references start from an initialisation no scored model shares: refused otherwise."""
        seeds = self.reference_seed_list(dataset)
        if not seeds:
            return
        (seed,) = seeds
        teachers = self.dataset_config(dataset)["teachers"]
        scored = [
            m for m in self.scored_model_dirs(dataset) if m.rsplit("seed", 1)[-1] == str(seed)
        ]
        if seed == teachers["seed"] and self.ceiling_teachers(dataset):
            scored.append(f"datasets.{dataset}.teachers.seed")
        if scored:
            raise ConfigError(
                f"config: datasets.{dataset}.pag_scores.reference_seed {seed} is also the seed of "
                f"{', '.join(scored)}: a PAG reference must be independent of what it scores (the "
                "same seed gives the same initial weights): choose a reference_seed that no scored "
                "model uses."
            )

    def reference_dirs(self, dataset):
        """The PAG references: one adversarially trained model per threat model of the teachers'
        recipe, with the reference seed."""
        return [
            self.model_dir(dataset, f"teacher_{n}", 0, seed)
            for seed in self.reference_seed_list(dataset)
            for n in ("linf", "l2")
            if n in self.dataset_config(dataset)["teachers"]
        ]

    def pag_references(self, dataset):
        return files_of(self.reference_dirs(dataset))

    def ceiling_teachers(self, dataset):
        """The teachers at their seed, scored as the realistic ceiling (robust models of the
        references' recipe with another seed) unless pag_scores.ceiling is false."""
        cfg = self.dataset_config(dataset).get("pag_scores") or {}
        return self.configured_teachers(dataset) if cfg.get("ceiling", True) else []

    def scored_model_dirs(self, dataset):
        """Every model of the dataset, and the realistic ceiling (``ceiling_teachers``)."""
        if dataset == "toy":
            return self.toy_models() + self.ceiling_teachers("toy")
        return list(dict.fromkeys(self.dataset_models(dataset) + self.ceiling_teachers(dataset)))

    def scored_models(self, dataset):
        """Every model of the dataset gets a PAG score (when pag_scores is configured)."""
        return self.scored_model_dirs(dataset) if self.pag_scores_config(dataset) else []

    def autoencoder_config(self, dataset):
        """datasets.<dataset>.autoencoder (None: no tangent-space scores)."""
        return self.dataset_config(dataset).get("autoencoder")

    def autoencoder_file(self, dataset):
        ae = self.autoencoder_config(dataset)
        return f"{self.results()}/{dataset}/autoencoder/seed{ae['seed']}/model.pt" if ae else []

    def toy_pag_models(self):
        """The toy's PAG table: the toy models and the toy teachers at their seed (the realistic
        ceiling), scored against the toy's reference."""
        return self.scored_model_dirs("toy") if self.toy_pag_enabled() else []

    def toy_pag_enabled(self):
        enabled = bool(
            self.experiment("toy")
            and self.dataset_config("toy").get("pag_scores")
            and self.configured_teachers("toy")
        )
        if enabled:
            self.check_reference_seed("toy")
        return enabled

    def toy_reference(self, wildcards=None):
        refs = [m for m in self.reference_dirs("toy") if "/teacher_l2/" in m]
        if not refs:
            raise ConfigError(
                "config: the toy's PAG table needs an L2 reference: add datasets.toy.teachers.l2"
            )
        return f"{refs[0]}/model.pt"

    def pag_outputs(self, dataset):
        if dataset == "toy":
            if not self.toy_pag_enabled():
                return []
            return [f"{self.results()}/tables/toy_pag.{ext}" for ext in ("md", "csv")]
        if not self.pag_scores_config(dataset):
            return []
        outs = [f"{self.results()}/{dataset}/pag_scores.csv"]
        outs += [f"{self.results()}/tables/pag_scores_{dataset}.{ext}" for ext in ("md", "csv")]
        if self.checked_models(dataset):
            outs += [
                f"{self.results()}/figures/pag_vs_robustness_{dataset}.{ext}"
                for ext in ("png", "pdf")
            ]
        exp = self.experiment("lambda_ablation")
        if exp and exp["dataset"] == dataset:
            outs += [f"{self.results()}/tables/fig5_pag_scores.{ext}" for ext in ("md", "csv")]
            outs += [f"{self.results()}/figures/fig5_pag_scores.{ext}" for ext in ("png", "pdf")]
        return outs

    def res(self, dataset):
        """datasets.<dataset>.resources, the schema's defaults filled in."""
        return self.dataset_config(dataset)["resources"]

    def ablation_dataset(self):
        return self.experiment("lambda_ablation")["dataset"]

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

    def refuse_target(self, path):
        """A table or figure that this config does not make: the error lists those it makes."""
        shown = sorted(p for p in self.all_outputs() if p.endswith((".md", ".png")))
        raise ConfigError(
            f"{path}: not a table or figure of this config. It makes these (each table also as "
            ".csv and .html, each figure also as .pdf):\n" + "\n".join(f"  {p}" for p in shown)
        )

    # --- The jobs: what the bench projects, one entry per job of the rules that compute --------

    def model_folders(self, dataset):
        """Every model folder that some output of the config reads on ``dataset``: the
        experiments' models, the PAG scores' references and robust ceilings, Fig. 1's."""
        if dataset == "toy":
            models = self.toy_models() + self.external_models("toy")
            if self.toy_pag_enabled():
                models += self.toy_pag_models() + [self.toy_reference().rsplit("/", 1)[0]]
            return list(dict.fromkeys(models))
        models = self.dataset_models(dataset) + self.scored_models(dataset)
        if self.pag_scores_config(dataset):
            models += self.reference_dirs(dataset)
        main = self.experiment("main")
        if main and dataset in main["tables"] and self.configured_teachers(dataset):
            models += self.robust_figure_models(dataset)
        return list(dict.fromkeys(models))

    def jobs(self, datasets=None) -> list[Job]:
        """The jobs that run a PyTorch step (not the tables that gather their CSVs), over
        ``datasets`` (default: every dataset the config uses), as a run of every output of the
        config schedules them from nothing."""
        out = []
        for d in datasets or self.used_datasets():
            out += self._jobs(d)
        return out

    def _jobs(self, d) -> list[Job]:
        out = []

        def job(rule, output, **details):
            out.append(Job(rule, d, output, **details))

        job("prepare_data", self.results(f"{d}/data.pt"))
        folders = self.model_folders(d)
        targets = {}  # each targets file once, with the source it is for
        for m in folders:
            if "/external/" in m:
                continue
            source = m.split("/")[-3].split(".")[0]  # a class-score variant: its source's
            if source in REPRESENTATIVES or source == FILE:
                targets.setdefault(self.targets_file(d, source, m.rsplit("seed", 1)[1]), source)
        for path, source in targets.items():
            job("draw_targets" if source in DRAWN else "make_targets", path, source=source)
        for m in folders:
            source = m.split("/")[-3]
            if "/external/" in m:
                job("import_external", m)
            elif source.startswith("teacher_"):
                norm = source.removeprefix("teacher_")
                imported = self.imports_teacher(d, norm, int(m.rsplit("seed", 1)[1]))
                job("teacher", m, source=source, norm=norm, imported=imported)
            else:
                job("train_class_score" if "." in source else "train", m, source=source)
        # the experiments' models; on the toy also those its PAG table reads (its teachers)
        for m in dict.fromkeys(
            self.dataset_models(d) + (self.toy_pag_models() if d == "toy" else [])
        ):
            job("evaluate", f"{m}/metrics.csv")
        if d == "toy":  # its figure, and its PAG table scores its models in one job
            if self.experiment("toy"):
                job("toy_figure", self.results("figures/fig3_toy.png"))
            if self.toy_pag_enabled():
                job("toy_pag", self.results("tables/toy_pag.csv"))
            return self._toy_per_recipe(out)
        for m in self.checked_models(d):
            for norm in self.aa_norms(d):
                job("autoattack", f"{m}/autoattack_{norm}.csv", norm=norm)
            if self.sweeps(d):
                job("sweep", f"{m}/sweep.csv")
        if self.pag_scores_config(d):
            for m in self.scored_models(d):
                job("pag_scores", f"{m}/pag_scores.csv")
            job("pag_baselines", self.results(f"{d}/pag_baselines.csv"))
            if self.autoencoder_config(d):
                job("autoencoder", self.autoencoder_file(d))
        main = self.experiment("main")
        if main and d in main["tables"]:
            job("pag_figure", self.results(f"figures/fig4_{d}.png"))
            if self.configured_teachers(d):
                job("robust_figure", self.results(f"figures/fig1_{d}.png"))
        abl = self.experiment("lambda_ablation")
        if abl and abl["dataset"] == d:
            job("ablation_figure", self.results("figures/fig5_lambda_ablation.png"))
        return out

    #: the toy's per-seed rules and the rule that runs every seed of a recipe in one job
    TOY_BATCHED = {
        "train": "train_toy",
        "evaluate": "evaluate_toy",
        "draw_targets": "draw_toy_targets",
    }

    def _toy_per_recipe(self, jobs: list[Job]) -> list[Job]:
        """The toy experiment's per-seed jobs (training, evaluation, drawn targets) as one job
        per recipe (per drawn source for the targets), named by its log: its jobs are so small
        that a job's start-up outweighs its work (workflow/rules/toy.smk)."""
        models = set(self.toy_models())
        out, seen = [], set()
        for j in jobs:
            model = j.output.removesuffix("/metrics.csv")
            if j.rule in ("train", "evaluate") and model in models:
                log = f"{model.rsplit('/', 1)[0]}/{j.rule}.log"
            elif j.rule == "draw_targets":
                log = self.results(f"toy/logs/targets_{j.source}.log")
            else:
                out.append(j)
                continue
            if log not in seen:
                seen.add(log)
                out.append(Job(self.TOY_BATCHED[j.rule], j.dataset, log, source=j.source))
        return out

    def job_counts(self, datasets=None) -> dict[str, int]:
        """Jobs per rule (what a dry run of every output lists for these rules)."""
        return dict(Counter(j.rule for j in self.jobs(datasets)))

"""The jobs a grid adds up to: one entry per job of the rules that run a PyTorch step (not the
tables that gather their CSVs), as a run of every output of the config schedules them from
nothing. What bench/gpu_check.py projects and the tests count; pure Python."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pagrob.experiments.sigma_sweep import sigma_of
from pagrob.registry import DRAWN, SCORE, STORED


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


#: the toy's per-seed rules and the rule that runs every seed of a recipe in one job
TOY_BATCHED = {
    "train": "train_toy",
    "evaluate": "evaluate_toy",
    "draw_targets": "draw_toy_targets",
}


def jobs(grid, datasets) -> list[Job]:
    """The jobs over ``datasets``."""
    out = []
    for d in datasets:
        out += dataset_jobs(grid, d)
    return out


def counts(jobs: list[Job]) -> dict[str, int]:
    """Jobs per rule."""
    return dict(Counter(j.rule for j in jobs))


def model_folders(grid, dataset) -> list[str]:
    """Every model folder that some output of the config reads on ``dataset``: the
    experiments' models, the PAG scores' references and robust ceilings, Fig. 1's."""
    pag = grid.pag_scores
    if dataset == "toy":
        models = grid.toy.trained() + grid.external.models("toy")
        if pag.toy_enabled():
            models += pag.toy_models() + [pag.toy_reference().rsplit("/", 1)[0]]
        return list(dict.fromkeys(models))
    models = grid.dataset_models(dataset) + pag.scored(dataset)
    if pag.config(dataset):
        models += pag.reference_dirs(dataset)
    if dataset in grid.main.datasets() and grid.configured_teachers(dataset):
        models += grid.main.robust_figure_models(dataset)
    return list(dict.fromkeys(models))


def dataset_jobs(grid, d) -> list[Job]:
    """The jobs on one dataset: its data, targets, models and their evaluation."""
    folders = model_folders(grid, d)
    out = [Job("prepare_data", d, grid.results(f"{d}/data.pt"))]
    out += targets_jobs(grid, d, folders) + model_jobs(grid, d, folders)
    # the experiments' models; on the toy also those its PAG table reads (its teachers)
    toy_pag = grid.pag_scores.toy_models() if d == "toy" else []
    for m in dict.fromkeys(grid.dataset_models(d) + toy_pag):
        out.append(Job("evaluate", d, f"{m}/metrics.csv"))
    if d == "toy":  # its figure, and its PAG table scores its models in one job
        if grid.experiment("toy"):
            out.append(Job("toy_figure", d, grid.results("figures/fig3_toy.png")))
        if grid.pag_scores.toy_enabled():
            out.append(Job("toy_pag", d, grid.results("tables/toy_pag.csv")))
            if grid.pag_scores.denoiser_file(d):  # its score instrument's denoiser
                out.append(Job("denoiser", d, grid.pag_scores.denoiser_file(d)))
        if grid.toy.score_validated():  # its denoiser against the exact score
            if not any(j.output == grid.score_based.denoiser_file(d) for j in out):
                out.append(Job("denoiser", d, grid.score_based.denoiser_file(d)))
            out.append(Job("toy_score", d, grid.results("tables/toy_score.csv")))
        return toy_per_recipe(grid, out)
    return out + checks_jobs(grid, d) + pag_jobs(grid, d) + figure_jobs(grid, d)


def targets_jobs(grid, d, folders) -> list[Job]:
    """Each targets file that a trained model reads, once, with the source it is for."""
    targets = {}
    for m in folders:
        if "/external/" in m:
            continue
        name = m.split("/")[-3]
        source, sigma = name.split(".")[0], sigma_of(name)  # a variant: its source's
        if sigma is not None:  # the sigma sweep's: the targets at its noise level
            targets.setdefault(grid.score_based.targets_file(d, source, sigma), (source, "sigma"))
        elif source in STORED:
            targets.setdefault(grid.targets_file(d, source, m.rsplit("seed", 1)[1]), (source, ""))
    rules = {"sigma": "make_score_targets"}
    out = [
        Job(
            rules.get(kind) or ("draw_targets" if s in DRAWN else "make_targets"), d, path, source=s
        )
        for path, (s, kind) in targets.items()
    ]
    if any(s in SCORE for s, _ in targets.values()):  # their denoiser, first
        out.insert(0, Job("denoiser", d, grid.score_based.denoiser_file(d)))
    return out


def model_jobs(grid, d, folders) -> list[Job]:
    """Each model folder's job: imported, a teacher (trained or from its checkpoint), trained."""
    out = []
    for m in folders:
        source = m.split("/")[-3]
        if "/external/" in m:
            out.append(Job("import_external", d, m))
        elif source.startswith("teacher_"):
            norm = source.removeprefix("teacher_")
            imported = grid.imports_teacher(d, norm, int(m.rsplit("seed", 1)[1]))
            out.append(Job("teacher", d, m, source=source, norm=norm, imported=imported))
        else:
            rule = "train_class_score" if "." in source else "train"
            if sigma_of(source) is not None:
                rule = "train_sigma"
            out.append(Job(rule, d, m, source=source))
    return out


def checks_jobs(grid, d) -> list[Job]:
    """AutoAttack per threat model and the checks' sweep, for each checked model."""
    rob, out = grid.robustness, []
    for m in rob.checked(d):
        out += [Job("autoattack", d, f"{m}/autoattack_{n}.csv", norm=n) for n in rob.norms(d)]
        if rob.sweeps(d):
            out.append(Job("sweep", d, f"{m}/sweep.csv"))
    return out


def pag_jobs(grid, d) -> list[Job]:
    """The PAG scores of each scored model, the baselines, the autoencoder, and the score
    instrument's denoiser (the score-based sources' recipe with the reference seed)."""
    pag = grid.pag_scores
    if not pag.config(d):
        return []
    out = [Job("pag_scores", d, f"{m}/pag_scores.csv") for m in pag.scored(d)]
    out.append(Job("pag_baselines", d, grid.results(f"{d}/pag_baselines.csv")))
    if pag.autoencoder_config(d):
        out.append(Job("autoencoder", d, pag.autoencoder_file(d)))
    if pag.denoiser_file(d):
        out.append(Job("denoiser", d, pag.denoiser_file(d)))
    return out


def figure_jobs(grid, d) -> list[Job]:
    """The figures that run a model: Fig. 4 and Fig. 1 of the main table, Fig. 5."""
    out = []
    if d in grid.main.datasets():
        out.append(Job("pag_figure", d, grid.results(f"figures/fig4_{d}.png")))
        if grid.configured_teachers(d):
            out.append(Job("robust_figure", d, grid.results(f"figures/fig1_{d}.png")))
    if d in grid.lambda_ablation.datasets():
        out.append(Job("ablation_figure", d, grid.results("figures/fig5_lambda_ablation.png")))
    return out


def toy_per_recipe(grid, jobs: list[Job]) -> list[Job]:
    """The toy experiment's per-seed jobs (training, evaluation, drawn targets) as one job per
    recipe (per drawn source for the targets), named by its log: its jobs are so small that a
    job's start-up outweighs its work (workflow/rules/toy.smk)."""
    models = set(grid.toy.trained())
    out, seen = [], set()
    for j in jobs:
        model = j.output.removesuffix("/metrics.csv")
        if j.rule in ("train", "evaluate") and model in models:
            log = f"{model.rsplit('/', 1)[0]}/{j.rule}.log"
        elif j.rule == "draw_targets":
            log = grid.results(f"toy/logs/targets_{j.source}.log")
        else:
            out.append(j)
            continue
        if log not in seen:
            seen.add(log)
            out.append(Job(TOY_BATCHED[j.rule], j.dataset, log, source=j.source))
    return out

"""pagrob.grid: the models, outputs and jobs a config defines, composed from the experiments
(pagrob.experiments), and the config's meaning-level checks, read by the workflow and the bench
(pure Python)."""

from __future__ import annotations

import pytest

from conftest import ROOT, load_grid
from pagrob.grid import ConfigError, lam_str


def test_lambdas_in_paths():
    assert [lam_str(x) for x in (0, 1.0, 0.4, 2, 0.125)] == ["0", "1", "0.4", "2", "0.125"]


def test_table1_models_are_its_sources_times_its_seeds_under_the_results_root():
    grid = load_grid(ROOT / "config.yaml")
    main = grid.experiment("main")
    models = grid.main.trained("cifar10")
    assert len(models) == len(grid.main.sources("cifar10")) * len(main["seeds"])
    assert all(m.startswith(f"{grid.config['results']}/cifar10/") for m in models)
    lam = grid.source_lam("cifar10", "class_mean")
    assert f"{grid.config['results']}/cifar10/class_mean/lam{lam_str(lam)}/seed0" in models


def test_each_model_is_trained_once_and_each_job_writes_its_own_output():
    grid = load_grid(ROOT / "demo.yaml", ROOT / "study.yaml")
    jobs = grid.jobs()
    outputs = [j.output for j in jobs]
    assert len(outputs) == len(set(outputs))
    trained = {
        j.output for j in jobs if j.rule in ("train", "train_class_score", "train_sigma", "teacher")
    }
    # the toy's recipes: one job trains every seed (named by its log, in the recipe's folder)
    recipes = [j.output.rsplit("/", 1)[0] for j in jobs if j.rule == "train_toy"]
    assert sorted(recipes) == sorted(
        grid.model_dir("toy", s, lam, 0).rsplit("/", 1)[0] for s, lam in grid.toy.recipes()
    )
    trained |= {f"{r}/seed{s}" for r in recipes for s in grid.toy.seeds()}
    assert not any(
        j.rule == "train" and j.dataset == "toy" for j in jobs if "/teacher" not in j.output
    )
    for d in grid.used_datasets():
        assert set(grid.dataset_models(d)) <= trained | {
            j.output for j in jobs if j.rule == "import_external"
        }
        # every evaluated model has its training job
        evaluated = {j.output.rsplit("/", 1)[0] for j in jobs if j.rule == "evaluate"}
        assert evaluated <= trained
    targets = ("make_targets", "draw_targets", "draw_toy_targets")
    assert {j.source for j in jobs if j.rule in targets} <= {
        j.source for j in jobs if j.rule in ("train", "train_toy")
    }


def test_drawn_targets_come_from_each_models_training_seed():
    from pagrob.registry import DRAWN

    grid = load_grid(ROOT / "demo.yaml")
    root = grid.config["results"]
    assert (
        grid.targets_file("digits", "one_image", 1) == f"{root}/digits/targets/one_image/seed1.pt"
    )
    assert grid.targets_file("digits", "one_image", 0) != grid.targets_file(
        "digits", "one_image", 1
    )
    # class_mean draws nothing: one file for every seed
    assert grid.targets_file("digits", "class_mean", 2) == f"{root}/digits/targets/class_mean.pt"
    # one draw job per drawn source of the main table and seed, each of its seed
    main = grid.experiment("main")
    drawn = [s for s in main["sources"] if s in DRAWN]
    draws = {j.output: j.source for j in grid.jobs(["digits"]) if j.rule == "draw_targets"}
    assert draws == {
        grid.targets_file("digits", s, seed): s for s in drawn for seed in main["seeds"]
    }
    # the switch keeps one shared draw, from targets.seed
    grid.config["datasets"]["digits"]["targets"]["per_seed"] = False
    shared = grid.config["datasets"]["digits"]["targets"]["seed"]
    assert {grid.targets_file("digits", "one_image", seed) for seed in (0, 1, 2)} == {
        f"{root}/digits/targets/one_image/seed{shared}.pt"
    }
    assert len([j for j in grid.jobs(["digits"]) if j.rule == "draw_targets"]) == len(drawn)


def test_a_reference_seed_that_a_scored_model_uses_is_refused():
    grid = load_grid(ROOT / "demo.yaml")
    used = grid.experiment("main")["seeds"][0]
    grid.config["datasets"]["digits"]["pag_scores"]["reference_seed"] = used
    with pytest.raises(ConfigError, match="reference_seed .* also the seed of"):
        grid.jobs()


def test_a_missing_lambda_names_the_key_to_add():
    grid = load_grid(ROOT / "demo.yaml")
    del grid.config["datasets"]["digits"]["lam"]["class_mean"]
    with pytest.raises(ConfigError, match=r"datasets\.digits\.lam\.class_mean"):
        grid.all_outputs()


def test_a_results_root_that_results_itself_uses_is_refused():
    grid = load_grid(ROOT / "demo.yaml")
    grid.config["results"] = "results/digits"
    with pytest.raises(ConfigError, match="choose another"):
        type(grid)(grid.config)


#: every config the project ships, as --configfile merges them
SHIPPED = [("config.yaml",), ("demo.yaml",), ("demo.yaml", "study.yaml"), ("fmnist.yaml",)]


@pytest.mark.parametrize("files", SHIPPED, ids=lambda f: "+".join(f))
def test_the_grid_is_its_experiments_composed(files):
    """The grid's models and outputs are exactly the union of what its experiment modules
    declare: none of its own, none lost (each output also made by one experiment only)."""
    grid = load_grid(*(ROOT / f for f in files))
    experiments = grid.experiments.values()
    for d in grid.used_datasets():
        declared = [m for exp in experiments for m in exp.models(d)]
        assert grid.dataset_models(d) == list(dict.fromkeys(declared))
    outputs = [o for exp in experiments for o in exp.outputs()]
    assert len(outputs) == len(set(outputs))
    metrics = {grid.results(f"{d}/metrics.csv") for d in grid.used_datasets()}
    assert set(grid.all_outputs()) == metrics | set(outputs)


def test_each_experiment_declares_the_models_and_outputs_of_its_config_block():
    """Each module's models and outputs are those its block names (demo and study together)."""
    grid = load_grid(ROOT / "demo.yaml", ROOT / "study.yaml")
    cfg, res = grid.config["experiments"], grid.results

    seeds = cfg["seeds"]
    lam = grid.source_lam(seeds["dataset"], seeds["source"])
    assert grid.seeds.trained() == [
        grid.model_dir(seeds["dataset"], seeds["source"], lam, s) for s in seeds["seeds"]
    ]
    assert grid.seeds.outputs() == [res("tables/table4_seeds.md"), res("tables/table4_seeds.csv")]

    abl = cfg["lambda_ablation"]
    assert grid.lambda_ablation.models(abl["dataset"]) == [
        grid.model_dir(abl["dataset"], abl["source"], lam, abl["seed"]) for lam in abl["lams"]
    ]
    assert res("figures/fig5_lambda_ablation.png") in grid.lambda_ablation.outputs()

    sweep = cfg["sigma_sweep"]
    lam = grid.source_lam(sweep["dataset"], sweep["source"])
    assert grid.sigma_sweep.trained() == [
        grid.model_dir(sweep["dataset"], f"{sweep['source']}.sigma{lam_str(s)}", lam, sweep["seed"])
        for s in sweep["sigmas"]
    ]
    assert res("figures/sigma_sweep.png") in grid.sigma_sweep.outputs()

    main = cfg["main"]
    for d in main["tables"]:
        models = grid.main.models(d)
        assert len(models) == len(grid.main.sources(d)) * len(main["seeds"]) + len(
            grid.main.teachers(d)
        )
        assert res(f"tables/answer_{d}.md") in grid.main.outputs()

    toy = cfg["toy"]
    assert len(grid.toy.models("toy")) == (1 + len(toy["sources"])) * len(toy["seeds"])
    assert grid.toy.models("digits") == []

    ablation = cfg["grad_of_ablation"]
    assert len(grid.grad_of_ablation.trained()) == len(ablation["sources"]) * len(
        ablation["class_scores"]
    ) * len(ablation["seeds"])

    external = cfg.get("external") or {}
    for name, spec in external.items():
        assert res(f"{spec['dataset']}/external/{name}") in grid.external.models(spec["dataset"])

    # the evaluations add outputs, never models
    for d in grid.used_datasets():
        assert grid.pag_scores.models(d) == grid.robustness.models(d) == []
    assert res("tables/masking_digits.md") in grid.robustness.outputs()
    assert res("tables/pag_scores_digits.md") in grid.pag_scores.outputs()


def test_an_experiment_checks_its_own_block():
    """A block the schema accepts but that means nothing is refused by its module's check."""
    grid = load_grid(ROOT / "demo.yaml", ROOT / "study.yaml")
    grid.config["experiments"]["grad_of_ablation"]["sources"] = ["rigd_linf"]
    with pytest.raises(ConfigError, match="grad_of_ablation.sources"):
        grid.grad_of_ablation.check()
    with pytest.raises(ConfigError, match="grad_of_ablation.sources"):
        grid.all_outputs()


def test_an_unknown_experiment_name_is_an_attribute_error():
    grid = load_grid(ROOT / "demo.yaml")
    with pytest.raises(AttributeError, match="no attribute or experiment 'mian'"):
        grid.mian  # noqa: B018


def test_a_score_based_source_without_a_noise_level_is_refused_naming_the_key():
    grid = load_grid(ROOT / "demo.yaml")
    assert "score_based" in grid.config["experiments"]["main"]["sources"]
    digits = grid.config["datasets"]["digits"]
    block = digits.pop("score_based")
    with pytest.raises(ConfigError, match=r"datasets\.digits\.score_based\.sigma"):
        grid.all_outputs()
    digits["score_based"] = {**block, "sigma": None}
    with pytest.raises(ConfigError, match=r"datasets\.digits\.score_based\.sigma"):
        grid.jobs()
    digits["score_based"]["sigma"] = 0.3
    jobs = grid.jobs(["digits"])
    denoiser = [j for j in jobs if j.rule == "denoiser"]
    assert [j.output for j in denoiser] == [
        grid.results("digits/denoiser/seed0/model.pt"),  # the sources'
        grid.results("digits/denoiser/seed100/model.pt"),  # the score instrument's
    ]
    assert grid.results("digits/targets/score_based.pt") in {j.output for j in jobs}


def test_the_score_instrument_has_a_denoiser_of_the_reference_seed_and_refuses_the_sources():
    """The score instrument's denoiser: the sources' recipe with pag_scores.reference_seed, so
    that it is not the denoiser the score-based students learnt from; the same seed refused,
    naming both keys; no instrument without a score_based block."""
    grid = load_grid(ROOT / "demo.yaml")
    assert grid.pag_scores.denoiser_file("digits") == grid.results(
        "digits/denoiser/seed100/model.pt"
    )
    assert grid.pag_scores.denoiser_file("toy") == grid.results("toy/denoiser/seed100/model.pt")
    grid.config["datasets"]["digits"]["score_based"]["denoiser"]["seed"] = 100
    with pytest.raises(
        ConfigError, match=r"reference_seed 100 is also datasets\.digits\.score_based\.denoiser"
    ):
        grid.jobs()
    grid = load_grid(ROOT / "fmnist.yaml")
    del grid.config["datasets"]["fashion_mnist"]["score_based"]
    grid.config["experiments"]["main"]["sources"].remove("score_based")
    grid.config["experiments"]["main"]["sources"].remove("score_shuffled")
    del grid.config["experiments"]["sigma_sweep"]
    assert grid.pag_scores.denoiser_file("fashion_mnist") == []
    assert not [j for j in grid.jobs() if j.rule == "denoiser"]

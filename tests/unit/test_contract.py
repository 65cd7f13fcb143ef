"""One source of truth: the config schema's defaults are the library's and the steps' (their
settings, pagrob.settings, built from the config's blocks: a step run by hand behaves as the
workflow runs it), and every key of a block a step reads is a field of its settings."""

import argparse
import dataclasses
import importlib
import sys

import pytest
import yaml

from conftest import ROOT, load_grid
from pagrob import autoattack, pag, settings, sources
from pagrob.attacks import Attack
from pagrob.train import TrainSettings


class Parsed(Exception):
    def __init__(self, parser):
        self.parser = parser


def step_options(module: str, monkeypatch) -> dict[str, object]:
    """{option string: default} of a step's command line (its parser, caught before parsing)."""

    def catch(self, *args, **kwargs):
        raise Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    monkeypatch.setattr(sys, "argv", [module])
    with pytest.raises(Parsed) as caught:
        importlib.import_module(module).main()
    return {
        option: action.default
        for action in caught.value.parser._actions
        for option in action.option_strings
    }


def schema():
    return yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


def dataset_schema():
    return schema()["$defs"]["dataset"]["properties"]


def defaults(cls) -> dict:
    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }


def test_pag_strategy_default_is_the_librarys():
    strategy = schema()["properties"]["pag"]["properties"]["strategy"]
    assert strategy["default"] == pag.DEFAULT_STRATEGY == defaults(TrainSettings)["strategy"]
    assert set(strategy["enum"]) == set(pag.STRATEGY_CHOICES)
    assert pag.STRATEGIES == settings.STRATEGIES  # the names of the library's strategies


def test_pag_batchnorm_default_is_the_librarys():
    batchnorm = schema()["properties"]["pag"]["properties"]["batchnorm"]
    assert (
        batchnorm["default"] == settings.DEFAULT_BATCHNORM == defaults(TrainSettings)["batchnorm"]
    )
    assert set(batchnorm["enum"]) == set(settings.BATCHNORM)
    import inspect

    assert inspect.signature(pag.pag_backward).parameters["batchnorm"].default == (
        settings.DEFAULT_BATCHNORM
    )


def test_targets_defaults_are_the_librarys_and_the_steps(monkeypatch):
    targets = dataset_schema()["targets"]["properties"]
    cli = step_options("pagrob.steps.make_targets", monkeypatch)
    assert targets["clusters"]["default"] == sources.CLUSTERS == cli["--clusters"]
    assert targets["nn_sample_size"]["default"] == cli["--nn-sample-size"]
    assert targets["class_mean_rescale"]["default"] == cli["--class-mean-rescale"]


def test_source_names_agree():
    """The schema's sources and the library's are the same lists (the workflow's come from the
    registry too: tests/unit/test_registry.py)."""
    s = schema()
    assert set(s["$defs"]["source"]["enum"]) == set(sources.SOURCES) - {"vanilla"}
    lam_pattern = next(iter(dataset_schema()["lam"]["patternProperties"]))
    assert set(lam_pattern.strip("^$()").split("|")) == set(sources.SOURCES) - {"vanilla"}


def test_evaluation_defaults_are_the_steps():
    e = dataset_schema()["eval"]["properties"]
    for key in ("batch_size", "max_images", "seed"):
        assert defaults(settings.EvalSettings)[key] == e[key]["default"], key
    aa = e["autoattack"]["properties"]
    assert aa["version"]["default"] in autoattack.VERSIONS
    for key in ("version", "seed", "batch_size", "images"):
        assert defaults(settings.AutoAttackSettings)[key] == aa[key]["default"], key
    checks = e["checks"]["properties"]
    assert defaults(settings.SweepSettings)["restarts"] == checks["restarts"]["default"]
    for key in ("tolerance", "max_gap", "zero_at"):
        assert defaults(settings.ChecksSettings)[key] == checks[key]["default"], key
    scores = dataset_schema()["pag_scores"]["properties"]
    for key in ("images", "batch_size", "seed"):
        assert defaults(settings.PagScoresSettings)[key] == scores[key]["default"], key


def test_a_null_step_size_is_two_eps_over_steps_in_one_place():
    """The schema's null step size reaches the steps as null, which the library turns into 2ε/k."""
    assert "2 * eps / steps" in yaml.safe_dump(
        schema()["$defs"]["attack"]["properties"]["step_size"]
    )
    attack = Attack.from_config("linf", {"eps": 0.1, "steps": 20, "step_size": None})
    assert attack.step_size is None and attack.alpha == pytest.approx(2 * 0.1 / 20)
    assert Attack("l2", 0.5, 10).alpha == pytest.approx(0.1)


def test_every_train_and_pag_key_is_a_field_of_the_training_settings():
    """The train rule hands datasets.<d>.train and pag to TrainSettings.from_config whole: each
    key is a field (pag.eps: pag_eps), with the schema's default."""
    fields = defaults(TrainSettings) | {"epochs": None, "batch_size": None}
    train = dataset_schema()["train"]["properties"]
    missing = [k for k in train if k not in fields]
    assert not missing, f"config keys datasets.<d>.train.{missing} are no field of TrainSettings"
    for key, spec in train.items():
        if "default" in spec:
            assert fields[key] == spec["default"], key
    pag_keys = schema()["properties"]["pag"]["properties"]
    assert {"pag_eps" if k == "eps" else k for k in pag_keys} <= set(fields)


def test_every_block_of_the_shipped_configs_builds_its_settings():
    """From config.yaml's, demo.yaml's and fmnist.yaml's blocks, as the rules build them."""
    for path in ("config.yaml", "demo.yaml", "fmnist.yaml"):
        grid = load_grid(ROOT / path)
        for d in grid.used_datasets():
            dc = grid.dataset_config(d)
            TrainSettings.from_config(dc["train"], grid.config["pag"], lam=1, seed=0)
            settings.EvalSettings.from_config(dc["eval"])
            if dc["eval"].get("autoattack"):
                for norm in grid.robustness.norms(d):
                    settings.AutoAttackSettings.from_config(dc["eval"], norm)
                settings.SweepSettings.from_config(dc["eval"], grid.robustness.norms(d))
                settings.ChecksSettings.from_config(dc["eval"]["checks"])
            if dc.get("pictures"):
                settings.PicturesSettings.from_config(dc["pictures"])
            if dc.get("autoencoder"):
                settings.AutoencoderSettings.from_config(dc["autoencoder"])
            if dc.get("pag_scores") and d != "toy":
                pictures = dc["pictures"]["attack"]
                settings.PagScoresSettings.from_config(dc["pag_scores"], pictures)


def test_a_config_key_without_its_field_is_refused_by_name():
    with pytest.raises(ValueError, match=r"\['warmup'\] not a setting of TrainSettings"):
        TrainSettings.from_config({"epochs": 1, "batch_size": 2, "warmup": 3}, {}, lam=0, seed=0)
    with pytest.raises(ValueError, match=r"eval: \['restarts'\] not a setting of EvalSettings"):
        settings.EvalSettings.from_config({"attacks": {}, "restarts": 2})


def test_a_job_given_fewer_threads_than_the_config_refuses(tmp_path):
    """--cores caps a job's threads, and a result depends on its thread count: a step given
    other --threads than its --config-threads (the config's) refuses, naming the fix."""
    from pagrob.steps import _cli

    p = _cli.parser("test")
    args = p.parse_args(["--threads", "2", "--config-threads", "4", "--device", "cpu"])
    with pytest.raises(ValueError, match="Run Snakemake with --cores 4 or more"):
        _cli.setup(args, [tmp_path / "out.csv"])
    ok = p.parse_args(["--threads", "4", "--config-threads", "4", "--device", "cpu"])
    assert _cli.setup(ok, [tmp_path / "out.csv"]) == "cpu"
    by_hand = p.parse_args(["--threads", "1", "--device", "cpu"])  # no config: any threads
    assert _cli.setup(by_hand, [tmp_path / "out.csv"]) == "cpu"

"""One source of truth: the config schema's defaults are the library's and the step CLIs' (a step
run by hand behaves as the workflow runs it), and every config key the rule glue passes on by
name is an option of the step that receives it."""

import argparse
import importlib
import sys

import pytest
import yaml

from conftest import ROOT
from pagrob import autoattack, pag, sources
from pagrob.attacks import Attack


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


def test_pag_strategy_default_is_the_librarys(monkeypatch):
    strategy = schema()["properties"]["pag"]["properties"]["strategy"]
    assert strategy["default"] == pag.DEFAULT_STRATEGY
    assert set(strategy["enum"]) == set(pag.STRATEGY_CHOICES)
    assert step_options("pagrob.steps.train", monkeypatch)["--strategy"] == pag.DEFAULT_STRATEGY


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


def test_evaluation_defaults_are_the_steps(monkeypatch):
    e = dataset_schema()["eval"]["properties"]
    for step in ("pagrob.steps.evaluate", "pagrob.steps.sweep", "pagrob.steps.autoattack"):
        cli = step_options(step, monkeypatch)
        assert cli["--max-images"] == e["max_images"]["default"], step
        assert cli["--seed"] == e["seed"]["default"], step
    assert (
        step_options("pagrob.steps.evaluate", monkeypatch)["--batch-size"]
        == e["batch_size"]["default"]
    )
    aa = e["autoattack"]["properties"]
    cli = step_options("pagrob.steps.autoattack", monkeypatch)
    assert (
        cli["--version"] == aa["version"]["default"]
        and aa["version"]["default"] in autoattack.VERSIONS
    )
    assert (
        cli["--aa-seed"] == aa["seed"]["default"]
        and cli["--batch-size"] == aa["batch_size"]["default"]
    )
    checks = e["checks"]["properties"]
    assert (
        step_options("pagrob.steps.sweep", monkeypatch)["--restarts"]
        == checks["restarts"]["default"]
    )


def test_a_null_step_size_is_two_eps_over_steps_in_one_place():
    """The schema's null step size reaches the steps as 'auto', which the library turns into 2ε/k."""
    from pagrob.steps.evaluate import attack_spec

    assert "2 * eps / steps" in yaml.safe_dump(
        schema()["$defs"]["attack"]["properties"]["step_size"]
    )
    attack = attack_spec("linf:0.1:20:auto")
    assert attack.step_size is None and attack.alpha == pytest.approx(2 * 0.1 / 20)
    assert Attack("l2", 0.5, 10).alpha == pytest.approx(0.1)


@pytest.mark.parametrize("step", ["pagrob.steps.train", "pagrob.steps.teacher"])
def test_every_train_key_is_an_option_of_the_training_steps(step, monkeypatch):
    """The train rule passes datasets.<d>.train on key by key (--batch-size for batch_size...)."""
    cli = step_options(step, monkeypatch)
    train = dataset_schema()["train"]["properties"]
    if step == "pagrob.steps.teacher":  # Madry training has no PAG term: teacher_flags drops it
        train = {k: v for k, v in train.items() if k != "pag_variant"}
    missing = [k for k in train if f"--{k.replace('_', '-')}" not in cli]
    assert not missing, f"config keys datasets.<d>.train.{missing} are no option of {step}"
    for key, spec in train.items():
        if "default" in spec:
            assert cli[f"--{key.replace('_', '-')}"] == spec["default"], (step, key)


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

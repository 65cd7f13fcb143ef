"""pagrob.settings: a step's settings as data. The JSON the workflow writes is the settings
the step reads (the same values, also in a file given by hand), and a bad one is refused
naming the field."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from pagrob import settings
from pagrob.settings import Attack, EvalSettings, SweepSettings, TrainSettings


def test_settings_round_trip_through_their_json():
    train = TrainSettings.from_config(
        {"epochs": 2, "batch_size": 8, "lr": 1, "milestones": [1]},
        {"eps": 1e-8, "classes_per_step": 0, "grad_of": "centred"},
        lam="0.4",
        seed=3,
        adversarial=settings.to_data(Attack("linf", 0.1, 5, 0.04)),
    )
    assert train.lr == 1.0 and isinstance(train.lr, float)  # a YAML 1, as the old options read it
    assert train.classes_per_step is None and train.pag_eps == 1e-8 and train.lam == 0.4
    assert list(train.adversarial) == ["norm", "eps", "steps", "step_size", "random_start"]
    assert settings.read(TrainSettings, settings.to_json(train)) == train
    ev = EvalSettings.from_config(
        {"batch_size": 10, "seed": 1, "attacks": {"linf": {"eps": 0.1, "steps": 20}}}
    )
    back = settings.read(EvalSettings, settings.to_json(ev))
    assert back == ev and back.attacks == (Attack("linf", 0.1, 20),)
    assert "bounds" not in settings.to_json(ev)  # the dataset's, set by the step


def test_a_settings_file_is_read_like_its_json(tmp_path):
    ev = EvalSettings(attacks=(Attack("l2", 0.5, 10, random_start=False),), max_images=7)
    path = tmp_path / "eval.json"
    path.write_text(settings.to_json(ev))
    assert settings.read(EvalSettings, str(path)) == ev


def test_the_sweep_holds_the_curve_and_the_strong_attack_of_the_checks():
    e = {
        "batch_size": 100,
        "seed": 2,
        "attacks": {"linf": {"eps": 0.1, "steps": 20, "step_size": None}},
        "autoattack": {"images": 50},
        "checks": {"steps": 100, "restarts": 5, "curves": {"linf": [0.05, 0.5]}},
    }
    s = SweepSettings.from_config(e, ["linf"])
    assert [a.eps for a in s.curves] == [0.05, 0.5] and {a.steps for a in s.curves} == {20}
    assert all(a.step_size is None for a in s.curves)  # 2 eps / steps of each curve's eps
    (strong,) = s.strong
    assert (strong.eps, strong.steps, strong.step_size) == (0.1, 100, pytest.approx(0.01))
    assert (s.max_images, s.restarts, s.seed, s.batch_size) == (50, 5, 2, 100)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"attacks": [], "batch_size": 5, "colour": 1}', r"\['colour'\] not a field"),
        ('{"attacks": [{"norm": "linf", "eps": 0.1}]}', r"Attack needs \['steps'\]"),
        ('{"batch_size": "5"}', "batch_size: expected int, got '5'"),
        ('{"batch_size": true}', "batch_size: expected int, got True"),
        ('{"attacks": {"linf": {}}}', "attacks: expected a list"),
        ("{not json", "not JSON"),
        ("no/such/settings.json", "no such file"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        settings.read(EvalSettings, text)


def test_a_step_names_its_settings_fields_in_its_help():
    proc = subprocess.run(
        [sys.executable, "-m", "pagrob.steps.evaluate", "--help"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "--settings JSON|FILE" in proc.stdout
    for field in ("attacks", "batch_size (default 500)", "max_images (default 0)"):
        assert field in " ".join(proc.stdout.split()), field


def test_a_bad_settings_argument_ends_the_step_with_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pagrob.steps.evaluate",
            "--data",
            "d.pt",
            "--model",
            "m.pt",
            "--settings",
            json.dumps({"attacks": [], "batch": 5}),
            "--out",
            str(tmp_path / "m.csv"),
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "error: --settings: ['batch'] not a field of EvalSettings" in proc.stderr

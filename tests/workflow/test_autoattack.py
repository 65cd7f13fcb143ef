"""AutoAttack (the original code) beside PGD, its resumable runs, and the gradient-masking checks
that tell a sound evaluation from a masked one."""

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import torch
from torch import nn

from conftest import ROOT, settings_json
from pagrob import autoattack, models, report, robustness
from pagrob.attacks import Attack
from pagrob.data import save_prepared
from pagrob.datasets import load_digits
from pagrob.evaluate import evaluate, sweep
from pagrob.train import TrainSettings, fit

IMAGES = 100  # one image = 1 point of accuracy
EPS = 0.1
THRESHOLDS = {"tolerance": 1.0, "max_gap": 10.0, "zero_at": 5.0}  # the schema's defaults
CURVE = [0.05, 0.1, 0.3, 0.5]


def step(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def autoattack_step(files, out, log=None, **more):
    data, model = files
    args = [
        "pagrob.steps.autoattack",
        "--data",
        data,
        "--model",
        model,
        "--settings",
        settings_json(pgd={"norm": "linf", "eps": EPS, "steps": 20}, images=IMAGES, **more),
        "--threads",
        1,
        "--out",
        out,
        "--out-json",
        out.with_suffix(".json"),
    ]
    return step(*args)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A small CNN trained for a few epochs on the digits, as files the steps read."""
    where = tmp_path_factory.mktemp("digits")
    ds = load_digits(0.3, seed=0)
    save_prepared(ds, where / "data.pt")
    torch.manual_seed(0)
    model = models.build_model("small_cnn", ds.input_shape, ds.num_classes, ds.mean, ds.std)
    s = TrainSettings(epochs=3, batch_size=64, lr=0.05, seed=0)
    fit(model, ds, None, s, where / "ckpt.pt", log=lambda m: None)
    models.save_model(
        where / "model.pt",
        model,
        "small_cnn",
        ds.input_shape,
        ds.num_classes,
        dataset=ds.name,
        classes=ds.classes,
        seed=0,
        lam=0.0,
        source="vanilla",
        settings={},
    )
    return ds, model, (where / "data.pt", where / "model.pt")


@pytest.fixture(scope="module")
def autoattack_runs(digits, tmp_path_factory):
    """The autoattack step on the digits model twice, run at once (a process each, one thread
    each): the whole standard version ("whole") and its APGD stages alone ("apgd"); for each,
    its CSV and its log."""
    where = tmp_path_factory.mktemp("aa")
    runs = {
        "whole": (where / "autoattack_linf.csv", {}),
        "apgd": (where / "autoattack_apgd.csv", {"stages": ["apgd-ce", "apgd-t"]}),
    }
    procs = [autoattack_step(digits[2], out, **more) for out, more in runs.values()]
    with ThreadPoolExecutor(len(procs)) as pool:
        logs = list(pool.map(lambda proc: proc.communicate(timeout=900)[0], procs))
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log
    return {name: (out, log) for (name, (out, _)), log in zip(runs.items(), logs)}


@pytest.fixture(scope="module")
def uninterrupted(autoattack_runs):
    return autoattack_runs["whole"]


@pytest.mark.slow
def test_the_apgd_stages_alone_are_what_the_whole_run_has_after_them(
    autoattack_runs, uninterrupted
):
    """The cheaper stage of the seeds outside full_seeds: AutoAttack stopped after APGD-T gives
    the same rows, per-image results included, as the whole version after its APGD stages, and
    no final row (it is not the whole version)."""
    whole, _ = uninterrupted
    out, log = autoattack_runs["apgd"]
    cheap = pd.read_csv(out, keep_default_na=False)
    assert cheap["attack"].tolist() == ["autoattack:apgd-ce", "autoattack:apgd-t"]
    full = pd.read_csv(whole, keep_default_na=False).set_index("attack")
    for _, r in cheap.iterrows():
        assert r["accuracy"] == full.loc[r["attack"], "accuracy"]
        assert r["correct"].startswith("x") and r["correct"] == full.loc[r["attack"], "correct"]
    assert report.metric_name(cheap.iloc[1]) == "apgd_linf"
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["complete"] is False and list(record["stages"]) == ["apgd-ce", "apgd-t"]
    assert "FAB" not in log and "fab-t" not in log
    # a state of the whole run is never taken for the cheaper one's (the stages are settings)
    assert json.loads(whole.with_suffix(".json").read_text())["complete"] is True


@pytest.mark.slow
def test_autoattack_rows_per_stage_and_never_above_pgd(uninterrupted):
    out, log = uninterrupted
    rows = pd.read_csv(out)
    assert list(rows.columns) == report.COLUMNS
    assert rows["attack"].tolist() == [
        "autoattack",
        "autoattack:apgd-ce",
        "autoattack:apgd-t",
        "autoattack:fab-t",
        "autoattack:square",
    ]
    assert (rows["images"] == IMAGES).all() and (rows["eps"] == EPS).all()
    stages = rows["accuracy"].tolist()[1:]
    assert stages == sorted(stages, reverse=True)  # each stage only removes images
    assert rows["accuracy"].iloc[0] == stages[-1]
    record = json.loads(out.with_suffix(".json").read_text())
    assert (
        record["version"] == "standard"
        and record["autoattack_seed"] == 0
        and record["library"].startswith("pyautoattack")
    )
    assert {k: record[k] for k in ("dataset", "source", "lam", "seed")} == {
        "dataset": "digits",
        "source": "vanilla",
        "lam": 0.0,
        "seed": 0,
    }
    pgd = record["pgd_same_images"]["accuracy"]
    assert stages[-1] <= pgd + 1.0  # AutoAttack is never weaker than PGD-20 beyond one image
    assert record["clean"] > 80 and pgd < record["clean"]
    # the resumable state is gone once the result is written
    assert not out.with_name("autoattack_linf.state.json").exists()


@pytest.mark.slow
def test_killed_autoattack_resumes_to_the_same_result(digits, uninterrupted, tmp_path):
    out = tmp_path / "autoattack_linf.csv"
    proc = step(
        "pagrob.steps.autoattack",
        "--data",
        digits[2][0],
        "--model",
        digits[2][1],
        "--settings",
        settings_json(pgd={"norm": "linf", "eps": EPS, "steps": 20}, images=IMAGES),
        "--threads",
        1,
        "--out",
        out,
        "--out-json",
        out.with_suffix(".json"),
    )
    deadline = time.time() + 600
    for line in proc.stdout:  # kill it once the second stage is done, in the third
        if "robust accuracy after apgd-t" in line:
            break
        assert time.time() < deadline
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and not out.with_suffix(".json").exists()  # nothing under a real name
    state = out.with_name("autoattack_linf.state.json")
    assert state.exists()

    again = autoattack_step(digits[2], out)
    log, _ = again.communicate(timeout=900)
    assert again.returncode == 0, log
    assert "resuming AutoAttack" in log and "finished stages ['apgd-ce', 'apgd-t']" in log
    assert "apgd-ce: batch" not in log and "apgd-t: batch" not in log  # not run again
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(uninterrupted[0]))


def test_a_state_of_other_inputs_or_a_damaged_one_is_not_reused(tmp_path):
    state = tmp_path / "aa.state.json"
    saved = {
        "fingerprint": {"model": "a", "eps": 0.1},
        "clean": 90.0,
        "robust": [True, False],
        "stage": 1,
        "batch": 0,
        "standing": None,
        "stages": {"apgd-ce": 50.0},
        "stage_robust": {"apgd-ce": [True, False]},
        "warnings": [],
    }
    state.write_text(json.dumps(saved))
    logs = []
    assert autoattack._resume(state, {"model": "a", "eps": 0.1}, logs.append) == saved
    assert "resuming" in logs[-1]
    assert autoattack._resume(state, {"model": "b", "eps": 0.1}, logs.append) is None
    assert not state.exists() and "changed: model" in logs[-1]
    state.write_text(json.dumps(saved)[:30])  # a damaged file
    assert autoattack._resume(state, {"model": "a", "eps": 0.1}, logs.append) is None
    assert not state.exists() and "cannot be read" in logs[-1]


class ScaledLogits(nn.Module):
    """Gradient masking by saturation: logits x 1e4 make float32 softmax exactly one-hot, so the
    cross-entropy's gradient is 0 and PGD stands still; the decisions are unchanged."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) * 1e4


def checks_of(model, ds, tmp_path, name, autoattack_record=None):
    """Every number the checks need for one model (L∞), measured in-process; its AutoAttack
    (standard, on the same images) too unless ``autoattack_record`` (the autoattack step's
    record of this model) already holds it."""
    x, y = ds.x_test[:IMAGES], ds.y_test[:IMAGES]
    pgd20 = Attack("linf", EPS, 20)
    rows = evaluate(model, x, y, [pgd20], 500)
    rows += sweep(
        model, x, y, [Attack("linf", e, 20) for e in CURVE], [Attack("linf", EPS, 100)], 5, 500
    )
    if autoattack_record is None:
        result = autoattack.run(
            model,
            x,
            y,
            "linf",
            EPS,
            state_path=tmp_path / f"{name}.state.json",
            fingerprint={"model": name},
            log=print,
        )
    else:
        assert autoattack_record["images"] == IMAGES and autoattack_record["complete"]
        keys = ("clean", "robust", "stages", "warnings")
        result = autoattack.AutoAttackResult(IMAGES, **{k: autoattack_record[k] for k in keys})
    rows.append(
        {"attack": "autoattack", "norm": "linf", "eps": EPS, "steps": 0, "accuracy": result.robust}
    )
    ids = {
        "dataset": "digits",
        "source": name,
        "lam": 0.0,
        "seed": 0,
        "classes_per_step": 0,
        "images": IMAGES,
    }
    metrics = pd.DataFrame([ids | r for r in rows], columns=report.COLUMNS)
    record = ids | {
        "norm": "linf",
        "clean": result.clean,
        "stages": result.stages,
        "warnings": result.warnings,
        "images": IMAGES,
        "pgd_same_images": {"accuracy": rows[1]["accuracy"]},
    }
    checks = robustness.masking_checks(metrics, [record], **THRESHOLDS)
    return dict(zip(checks["check"], checks["flagged"])), checks


@pytest.mark.slow
def test_a_gradient_masked_model_is_flagged_and_a_normal_one_is_not(
    digits, uninterrupted, tmp_path
):
    ds, model, _ = digits
    # the normal model's AutoAttack: the autoattack step's, on the same images (uninterrupted)
    record = json.loads(uninterrupted[0].with_suffix(".json").read_text())
    normal, normal_checks = checks_of(model, ds, tmp_path, "vanilla", record)
    assert set(normal) == set(robustness.CHECKS)
    assert not any(normal.values()), normal_checks[["check", "value", "detail"]].to_string()

    masked, masked_checks = checks_of(ScaledLogits(model), ds, tmp_path, "one_image")
    # PGD overestimates by tens of points: the saturated cross-entropy has no gradient, while
    # APGD-T's targeted DLR loss (a ratio of logit differences) does not see the scale. AutoAttack's
    # own zero-gradient check looks at the DLR losses only, so it raises no warning here: the gap
    # check is what catches this kind of masking.
    shown = masked_checks[["check", "value", "detail"]].to_string()
    assert masked["autoattack_gap"], shown
    assert masked_checks.set_index("check").loc["autoattack_gap", "value"] > 20, shown

    # flagged models carry a footnote in Tables 1-2
    flags = robustness.flags_by_model(pd.concat([normal_checks, masked_checks]))
    assert list(flags) == [("one_image", 0.0, 0)]
    metrics = pd.DataFrame(
        [
            {
                "dataset": "digits",
                "source": s,
                "lam": 0.0,
                "seed": 0,
                "attack": "clean",
                "norm": "none",
                "eps": 0.0,
                "steps": 0,
                "accuracy": 90.0,
                "classes_per_step": 0,
                "images": IMAGES,
                "ci_low": 85.0,
                "ci_high": 95.0,
                "correct": "",
            }
            for s in ("vanilla", "one_image")
        ]
    )
    metrics["metric"] = "clean"
    paper = pd.DataFrame(
        columns=["table", "dataset", "source", "lam", "metric", "value", "std", "where"]
    )
    _, text = report.main_table(metrics, paper, "table1", "digits", flags)
    assert "| One Image ⚠1 |" in text and "| Vanilla |" in text
    assert "1. One Image (λ 0): autoattack_gap (L∞)" in text


def test_the_checks_of_a_cheaper_stage_and_what_the_whole_version_takes_off_it():
    """A seed that got the whole version: later_stages_gain is APGD-T's accuracy minus the
    final one (flagged above tolerance). A seed that got the APGD stages only: its PGD gap is
    taken against them, and it has no later_stages_gain."""
    ids = {"dataset": "digits", "source": "vanilla", "lam": 0.0, "classes_per_step": 0}
    rows = []
    for seed, final in ((0, 38.0), (1, None)):
        rows += [
            ids | {"seed": seed, "attack": "clean", "norm": "none", "accuracy": 90.0},
            ids | {"seed": seed, "attack": "pgd", "norm": "linf", "accuracy": 45.0},
        ]
        if final is not None:
            rows.append(
                ids | {"seed": seed, "attack": "autoattack", "norm": "linf", "accuracy": final}
            )
    metrics = pd.DataFrame(rows).assign(eps=EPS, steps=20, images=IMAGES)
    stages = {"apgd-ce": 42.0, "apgd-t": 40.0, "fab-t": 39.0, "square": 38.0}
    common = ids | {"norm": "linf", "clean": 90.0, "warnings": [], "images": IMAGES}
    whole = common | {"seed": 0, "stages": stages, "pgd_same_images": {"accuracy": 45.0}}
    cheap = common | {
        "seed": 1,
        "stages": {"apgd-ce": 43.0, "apgd-t": 41.0},
        "complete": False,
        "pgd_same_images": {"accuracy": 46.0},
    }
    checks = robustness.masking_checks(metrics, [whole, cheap], **THRESHOLDS)
    got = checks.set_index(["seed", "check"])
    assert got.loc[(0, "later_stages_gain"), "value"] == pytest.approx(2.0)  # 40 - 38
    assert got.loc[(0, "later_stages_gain"), "flagged"]  # above the tolerance of 1 point
    assert got.loc[(0, "autoattack_gap"), "value"] == pytest.approx(7.0)  # 45 - 38
    assert got.loc[(1, "autoattack_gap"), "value"] == pytest.approx(5.0)  # 46 - 41 (APGD-T)
    assert "apgd-t" in got.loc[(1, "autoattack_gap"), "detail"]
    assert (1, "later_stages_gain") not in got.index

"""pagrob.steps.runs: several runs of a step in one Python process (the toy's per-seed jobs)
compute what each run computes alone, bit for bit, and stop at the first that fails."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import torch

from conftest import ROOT
from pagrob import data, settings
from pagrob.steps import runs

ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src"))


def step(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", *args], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert not check or proc.returncode == 0, proc.stderr
    return proc


def steps(*runs: list[str]) -> list[str]:
    """These step runs (each the arguments of ``python -m``) at once, a process each (each
    computes alone: one thread, its own seed); each must succeed. Their standard outputs."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", *args],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in runs
    ]
    with ThreadPoolExecutor(len(procs)) as pool:
        outputs = list(pool.map(lambda proc: proc.communicate(timeout=300), procs))
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    return [out for out, _ in outputs]


def train_args(folder, seed, out):
    s = settings.TrainSettings(epochs=3, batch_size=32, optimizer="adam", lr=0.01, seed=seed)
    return [
        "--data",
        str(folder / "data.pt"),
        "--arch",
        "mlp",
        "--source",
        "vanilla",
        "--settings",
        settings.to_json(s),
        "--threads",
        "1",
        "--out",
        str(out),
    ]


@pytest.fixture
def toy(tmp_path):
    ds = data.make_toy([[-5.0, 3.0], [-3.0, 5.0]], n_per_mode=40, n_test=40, seed=0)
    data.save_prepared(ds, tmp_path / "data.pt")
    return tmp_path


def test_runs_in_one_process_equal_runs_alone(toy):
    alone = [toy / "alone" / f"seed{s}" / "model.pt" for s in (0, 1)]
    together = [toy / "together" / f"seed{s}" / "model.pt" for s in (0, 1)]
    # each seed alone, and both in one process (the three processes at once)
    *_, stdout = steps(
        *(["pagrob.steps.train", *train_args(toy, seed, out)] for seed, out in zip((0, 1), alone)),
        [
            "pagrob.steps.runs",
            "pagrob.steps.train",
            *train_args(toy, 0, together[0]),
            runs.SEPARATOR,
            *train_args(toy, 1, together[1]),
        ],
    )
    assert stdout.count("--- run ") == 2
    for a, b in zip(alone, together):
        sa = torch.load(a, weights_only=True)["state_dict"]
        sb = torch.load(b, weights_only=True)["state_dict"]
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # the two seeds differ (each run set its own seed)
    s0, s1 = (torch.load(p, weights_only=True)["state_dict"] for p in together)
    assert any(not torch.equal(s0[k], s1[k]) for k in s0)

    # evaluation too: the same tidy rows
    ev = settings.to_json(settings.EvalSettings(attacks=(settings.Attack("l2", 1.0, 5),)))

    def evaluate(model, out):
        return ["--data", str(toy / "data.pt"), "--model", str(model), "--settings", ev,
                "--threads", "1", "--out", str(out)]  # fmt: skip

    steps(
        *(
            ["pagrob.steps.evaluate", *evaluate(m, toy / f"alone{i}.csv")]
            for i, m in enumerate(alone)
        ),
        [
            "pagrob.steps.runs",
            "pagrob.steps.evaluate",
            *evaluate(together[0], toy / "together0.csv"),
            runs.SEPARATOR,
            *evaluate(together[1], toy / "together1.csv"),
        ],
    )
    for i in range(2):
        a, b = pd.read_csv(toy / f"alone{i}.csv"), pd.read_csv(toy / f"together{i}.csv")
        pd.testing.assert_frame_equal(a, b)


def test_the_first_failing_run_ends_the_job_and_earlier_outputs_stay(toy):
    first = toy / "a" / "model.pt"
    bad = train_args(toy, 1, toy / "b" / "model.pt")
    bad[bad.index("--data") + 1] = str(toy / "missing.pt")
    proc = step(
        "pagrob.steps.runs",
        "pagrob.steps.train",
        *train_args(toy, 0, first),
        runs.SEPARATOR,
        *bad,
        runs.SEPARATOR,
        *train_args(toy, 2, toy / "c" / "model.pt"),
        check=False,
    )
    assert proc.returncode == 2 and "missing.pt" in proc.stderr
    assert first.exists() and not (toy / "c" / "model.pt").exists()


def test_split_refuses_an_empty_run():
    assert runs.split(["a", "1", ":::", "b"]) == [["a", "1"], ["b"]]
    for argv in (["a", ":::", ":::", "b"], [":::", "b"], ["a", ":::"]):
        with pytest.raises(SystemExit, match="a run with no arguments"):
            runs.split(argv)

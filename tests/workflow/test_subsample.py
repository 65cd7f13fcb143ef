"""classes_per_step: k random target classes per step, scaled by C / k, is an unbiased
estimate of the full PAG term, and every output of such a model says so."""

import itertools
import subprocess
import sys

import pandas as pd
import torch

from conftest import ROOT, settings_json
from pagrob import models
from pagrob.data import make_toy, save_prepared
from pagrob.pag import pag_backward


def test_subset_average_equals_full_term():
    torch.manual_seed(0)
    model = models.build_model(
        "small_cnn", (1, 8, 8), 4, torch.tensor([0.5]), torch.tensor([0.3])
    ).double()
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(4, (5,))
    targets = torch.randn(4, 5, 1, 8, 8, dtype=torch.float64)
    model.zero_grad()
    pag_backward(model, x, y, lambda c: targets[c], 0.7, batchnorm="batch")
    full = [p.grad.clone() for p in model.parameters()]
    subsets = list(itertools.combinations(range(4), 2))
    mean = [torch.zeros_like(p) for p in model.parameters()]
    for subset in subsets:  # every subset equally likely: the expectation of the estimate
        model.zero_grad()
        pag_backward(model, x, y, lambda c: targets[c], 0.7, classes=subset, batchnorm="batch")
        for m, p in zip(mean, model.parameters()):
            m += p.grad / len(subsets)
    for f, m in zip(full, mean):
        torch.testing.assert_close(m, f)


def test_subsampled_model_is_marked_in_metrics_and_tables(tmp_path):
    ds = make_toy([[-50, -10, 30], [-30, 10, 50]], n_per_mode=30, n_test=60, seed=0)
    save_prepared(ds, tmp_path / "data.pt")

    def step(*args):
        proc = subprocess.run(
            [sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT
        )
        assert proc.returncode == 0, proc.stderr

    step(
        "pagrob.steps.make_targets",
        "--data",
        str(tmp_path / "data.pt"),
        "--source",
        "nearest_neighbor",
        "--nn-sample-size",
        "10",
        "--out",
        str(tmp_path / "nn.pt"),
    )
    step(
        "pagrob.steps.train",
        "--data",
        str(tmp_path / "data.pt"),
        "--arch",
        "mlp",
        "--settings",
        settings_json(
            epochs=2, batch_size=32, optimizer="adam", lr=0.01, lam=1, classes_per_step=1
        ),
        "--source",
        "nearest_neighbor",
        "--targets",
        str(tmp_path / "nn.pt"),
        "--out",
        str(tmp_path / "m.pt"),
    )
    model, meta = models.load_model(tmp_path / "m.pt")
    assert meta["settings"]["classes_per_step"] == 1
    step(
        "pagrob.steps.evaluate",
        "--data",
        str(tmp_path / "data.pt"),
        "--model",
        str(tmp_path / "m.pt"),
        "--settings",
        settings_json(
            attacks=[{"norm": "l2", "eps": 15, "steps": 2, "step_size": 2, "random_start": False}]
        ),
        "--out",
        str(tmp_path / "m.csv"),
    )
    metrics = pd.read_csv(tmp_path / "m.csv")
    assert (metrics["classes_per_step"] == 1).all()
    step(
        "pagrob.steps.table",
        "toy",
        "--metrics",
        str(tmp_path / "m.csv"),
        "--paper",
        str(ROOT / "workflow/resources/paper_numbers.csv"),
        "--out-md",
        str(tmp_path / "t.md"),
        "--out-csv",
        str(tmp_path / "t.csv"),
    )
    assert "PAG (Nearest Neighbor (1 classes/step))" in (tmp_path / "t.md").read_text()

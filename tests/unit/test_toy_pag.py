"""The toy's ground-truth PAG score (pagrob.toy_pag): 1 for a margin that varies along the data's
line, 0 across it; the teacher alignment's sign and its indifference to what both logits share;
the score alignment's sign against the exact class scores; the line defined once (pagrob.data)
without changing the data; the toy_pag step end to end, with and without the score instrument;
and Fig. 3's margin-gradient arrows."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.quiver
import pandas as pd
import pytest
import torch
from torch import nn

from pagrob import data, denoiser, figures, models, pag_report, report, settings, toy_pag

ROOT = Path(__file__).resolve().parents[2]
TANGENT = torch.tensor([1.0, 2.0]) / math.sqrt(5)  # along the line x2 = 2 x1
NORMAL = torch.tensor([-2.0, 1.0]) / math.sqrt(5)  # across it
CENTERS = [[-50, -10, 30], [-30, 10, 50]]


def plane_points(n=200, seed=0):
    """Points off the line too (the score is defined everywhere), at the toy's scale."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * 30


class Margin(nn.Module):
    """Logits [h(x), h(x) + sign * m(w·x)] with m(s) = s³/100 + s (increasing): the margin
    f_1 - f_0 varies along w only, while each logit alone (through the shared h, which varies
    across the line) does not."""

    def __init__(self, w, sign=1.0, shared=True, margin=True):
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.sign, self.shared, self.margin = sign, shared, margin

    def forward(self, x):
        h = 5 * torch.sin(x @ NORMAL) * (x @ NORMAL) if self.shared else torch.zeros_like(x[:, 0])
        s = x @ self.w
        m = self.sign * (s**3 / 100 + s) if self.margin else 0 * s
        return torch.stack([h, h + m], dim=1)


def smooth_net(seed):
    """A generic two-class net whose margin gradient is nowhere 0."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))


class Plus(nn.Module):
    """``net``'s logits with the same function of x added to both (or the classes swapped)."""

    def __init__(self, net, swap=False):
        super().__init__()
        self.net, self.swap = net, swap

    def forward(self, x):
        logits = self.net(x)
        if self.swap:
            return logits.flip(1)
        return logits + (torch.sin(x[:, :1] / 7) * x[:, 1:] + x[:, :1] ** 2 / 50)


# --- the scores ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["up", "down"])
def test_manifold_alignment_is_one_along_the_line_and_zero_across(sign):
    x = plane_points()
    along = toy_pag.manifold_alignment(Margin(TANGENT, sign), x, data.toy_tangent())
    across = toy_pag.manifold_alignment(Margin(NORMAL, sign), x, data.toy_tangent())
    assert along.shape == (len(x),) and along.dtype == torch.float32
    torch.testing.assert_close(along, torch.ones(len(x)), atol=1e-6, rtol=0)
    assert across.abs().max() < 1e-6
    # the margin's gradient itself: m'(w·x) w, the shared h cancelled
    g = toy_pag.margin_gradients(Margin(TANGENT, sign), x)
    s = x @ TANGENT
    expected = sign * (3 * s[:, None] ** 2 / 100 + 1) * TANGENT
    torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-4)


def test_zero_gradient_scores_zero_not_nan():
    x = plane_points(50)
    flat = Margin(TANGENT, margin=False)  # both logits h(x): margin 0, its gradient exactly 0

    class Constant(nn.Module):  # logits that ignore x: no graph to x at all
        def forward(self, x):
            return torch.zeros(len(x), 2)

    for model in (flat, Constant()):
        torch.testing.assert_close(toy_pag.margin_gradients(model, x), torch.zeros(50, 2))
        score = toy_pag.manifold_alignment(model, x, data.toy_tangent())
        assert torch.equal(score, torch.zeros(50))
        assert torch.equal(toy_pag.teacher_alignment(model, smooth_net(0), x), torch.zeros(50))
        assert torch.equal(toy_pag.teacher_alignment(smooth_net(0), model, x), torch.zeros(50))


def test_batches_and_frozen_eval_mode():
    """Eval mode inside (dropout off), the model's state as it was after; batches agree."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 2))
    x = plane_points(300)
    expected = toy_pag.margin_gradients(net.eval(), x)
    net.train()
    torch.testing.assert_close(toy_pag.margin_gradients(net, x), expected)
    torch.testing.assert_close(toy_pag.margin_gradients(net, x, batch_size=7), expected)
    assert net.training and all(p.requires_grad and p.grad is None for p in net.parameters())


def test_teacher_alignment_self_negated_and_shared_terms():
    x, model, reference = plane_points(), smooth_net(2), smooth_net(3)
    torch.testing.assert_close(toy_pag.teacher_alignment(model, model, x), torch.ones(len(x)))
    negated = toy_pag.teacher_alignment(Plus(model, swap=True), model, x)
    torch.testing.assert_close(negated, -torch.ones(len(x)))
    base = toy_pag.teacher_alignment(model, reference, x)
    # neither ±1 nor one value, both signs: the check below bites
    assert base.abs().mean() < 0.95 and (base > 0.1).any() and (base < -0.1).any()
    torch.testing.assert_close(toy_pag.teacher_alignment(Plus(model), reference, x), base)
    torch.testing.assert_close(toy_pag.teacher_alignment(model, Plus(reference), x), base)


class Bayes(nn.Module):
    """The toy's Bayes classifier at noise level sigma: logits log p_sigma(x | k) (up to a
    constant), the class densities that ``data.toy_score`` differentiates; its margin gradient
    is s_1 - s_0. ``swap``: the classes swapped."""

    def __init__(self, sigma, swap=False):
        super().__init__()
        self.sigma, self.swap = sigma, swap

    def forward(self, x):
        norm = math.sqrt(5)  # |TOY_DIRECTION|
        s = x @ TANGENT
        across = x - s[:, None] * TANGENT
        var = norm**2 + self.sigma**2
        logits = torch.stack(
            [
                torch.logsumexp(-((s[:, None] - torch.tensor(c) * norm) ** 2) / (2 * var), 1)
                - (across**2).sum(1) / (2 * self.sigma**2)
                for c in CENTERS
            ],
            dim=1,
        )
        return logits.flip(1) if self.swap else logits


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["up", "down"])
def test_score_alignment_against_the_exact_class_scores(sign):
    """Signed cos(grad (f_1 - f_0), s_1 - s_0): the Bayes classifier +1 (its classes swapped -1);
    a margin along the line ±1 with the sign of (s_1 - s_0) along it; a margin across it 0."""
    x = plane_points()
    score = data.toy_score(x, CENTERS, 2.0)  # [N, 2 classes, 2]
    assert score.shape == (len(x), 2, 2)
    diff = score[:, 1] - score[:, 0]
    moving = diff.norm(dim=1) > 1e-2  # where s_1 - s_0 is not 0
    assert moving.sum() > 0.9 * len(x)
    bayes = toy_pag.score_alignment(Bayes(2.0, swap=sign < 0), x, score)
    assert bayes.shape == (len(x),)
    torch.testing.assert_close(
        bayes[moving], sign * torch.ones(int(moving.sum())), atol=1e-4, rtol=0
    )
    along = toy_pag.score_alignment(Margin(TANGENT, sign), x, score)
    expected = sign * torch.sign(diff @ TANGENT.double()).float()
    assert (expected[moving] != 0).all() and (expected > 0).any() and (expected < 0).any()
    torch.testing.assert_close(along[moving], expected[moving], atol=1e-4, rtol=0)
    across = toy_pag.score_alignment(Margin(NORMAL, sign), x, score)
    assert across.abs().max() < 1e-4


def test_scores_stay_on_the_data_device():
    """On the meta device (no values: any host read raises) every result stays on it."""
    net = models.build_model("mlp", (2,), 2, torch.zeros(2), torch.ones(2)).to("meta")
    x = torch.empty(10, 2, device="meta")
    assert toy_pag.manifold_alignment(net, x, data.toy_tangent("meta")).device.type == "meta"
    assert toy_pag.teacher_alignment(net, net, x).device.type == "meta"


# --- the line, defined once ----------------------------------------------------------------------


def test_toy_points_unchanged_and_the_tangent_along_the_line():
    ds = data.make_toy(CENTERS, n_per_mode=50, n_test=60, seed=3)
    for x in (ds.x_train, ds.x_test):
        assert torch.equal(x[:, 1], 2 * x[:, 0])  # exactly on x2 = 2 x1
    # bit for bit what the data were before the line got its constant
    g = torch.Generator().manual_seed(3)
    expected = []
    for n in (50, 10):
        xs = []
        for class_centers in CENTERS:
            for c in class_centers:
                x1 = c + torch.randn(n, generator=g, dtype=torch.float64)
                xs.append(torch.stack([x1, 2 * x1], dim=1))
        expected.append(torch.cat(xs).float())
    assert torch.equal(ds.x_train, expected[0]) and torch.equal(ds.x_test, expected[1])
    t = data.toy_tangent()
    assert t.dtype == torch.float32 and t.shape == (2,)
    direction = torch.tensor(data.TOY_DIRECTION)
    torch.testing.assert_close(t, direction / direction.norm())
    torch.testing.assert_close(t, TANGENT)
    assert data.toy_tangent("meta").device.type == "meta"


# --- the step -----------------------------------------------------------------------------------


def metrics_rows(source, lam, seed, clean, robust):
    common = {
        "dataset": "toy",
        "source": source,
        "lam": lam,
        "seed": seed,
        "classes_per_step": 0,
        "images": 60,
    }
    return [
        {**common, "attack": "clean", "norm": "none", "eps": 0.0, "steps": 0, "accuracy": clean},
        {**common, "attack": "pgd", "norm": "l2", "eps": 15.0, "steps": 10, "accuracy": robust},
    ]


SPECS = {  # name: (source, lam, seed, clean, robust)
    "a": ("vanilla", 0.0, 0, 97.0, 10.0),
    "b": ("nearest_neighbor", 1.0, 0, 96.0, 60.0),
    "c": ("vanilla", 0.0, 1, 95.0, 30.0),
    "ref": ("teacher_l2", 0.0, 5, 90.0, None),
}


def step_inputs(tmp_path):
    """The toy_pag step's inputs (data, three models, the reference, their metrics): the
    dataset, the nets by name, the step's arguments and its outputs."""
    ds = data.make_toy(CENTERS, n_per_mode=20, n_test=60, seed=0)
    data.save_prepared(ds, tmp_path / "data.pt")
    nets, rows = {}, []
    for i, (name, (source, lam, seed, clean, robust)) in enumerate(SPECS.items()):
        torch.manual_seed(10 + i)
        nets[name] = models.build_model("mlp", (2,), 2, torch.zeros(2), torch.ones(2))
        models.save_model(
            tmp_path / f"{name}.pt",
            nets[name],
            "mlp",
            (2,),
            2,
            dataset="toy",
            source=source,
            lam=lam,
            seed=seed,
        )
        rows += metrics_rows(source, lam, seed, clean, robust)[: 1 if robust is None else 2]
    rows += metrics_rows("nearest_neighbor", 0.5, 0, 11.0, 12.0)  # another λ: not b's
    rows += metrics_rows("vanilla", 0.0, 2, 13.0, 14.0)  # another seed
    pd.DataFrame(rows, columns=report.COLUMNS).to_csv(tmp_path / "metrics.csv", index=False)
    out = {ext: tmp_path / "out" / f"toy_pag.{ext}" for ext in ("csv", "md", "html")}
    args = [
        "--data",
        str(tmp_path / "data.pt"),
        "--models",
        *(str(tmp_path / f"{n}.pt") for n in "abc"),
        "--reference",
        str(tmp_path / "ref.pt"),
        "--metrics",
        str(tmp_path / "metrics.csv"),
        *(a for ext, path in out.items() for a in (f"--out-{ext}", str(path))),
        "--device",
        "cpu",
    ]
    return ds, nets, args, out


def test_toy_pag_step_end_to_end(tmp_path):
    ds, nets, args, out = step_inputs(tmp_path)
    specs = SPECS
    proc = subprocess.run(
        [sys.executable, "-m", "pagrob.steps.toy_pag", *args, "--threads", "1"],
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out["csv"])
    assert list(df.columns) == [
        "dataset",
        "source",
        "lam",
        "seed",
        "manifold_alignment",
        "teacher_alignment",
        "score_alignment",
        "score_alignment_exact",
        "clean",
        "robust",
        "role",
        "manifold_alignment_per_point",
        "teacher_alignment_per_point",
        "score_alignment_per_point",
        "score_alignment_exact_per_point",
    ]
    # no denoiser: the score instrument's columns empty, and neither in the table nor its note
    assert df.filter(like="score_alignment").isna().all().all()
    assert df["role"].tolist() == ["model"] * 3 + ["reference"]
    x, tangent = ds.x_test, data.toy_tangent()
    for (name, (source, lam, seed, clean, robust)), (_, r) in zip(specs.items(), df.iterrows()):
        assert (r["dataset"], r["source"], r["lam"], r["seed"]) == ("toy", source, lam, seed)
        manifold = toy_pag.manifold_alignment(nets[name], x, tangent).double().mean().item()
        teacher = toy_pag.teacher_alignment(nets[name], nets["ref"], x).double().mean().item()
        assert r["manifold_alignment"] == pytest.approx(manifold, abs=1e-6)
        assert r["teacher_alignment"] == pytest.approx(teacher, abs=1e-6)
        # each point's value, for the answer's tests over seeds and points: their mean the score
        points = [float(v) for v in r["manifold_alignment_per_point"].split(";")]
        assert len(points) == len(x) and sum(points) / len(x) == pytest.approx(manifold, abs=1e-5)
        per_point = toy_pag.manifold_alignment(nets[name], x, tangent).tolist()
        assert points == pytest.approx(per_point, rel=1e-5, abs=1e-6)
        points = [float(v) for v in r["teacher_alignment_per_point"].split(";")]
        assert sum(points) / len(x) == pytest.approx(teacher, abs=1e-5)
        assert r["clean"] == clean
        assert r["robust"] == robust if robust is not None else math.isnan(r["robust"])
    assert df["teacher_alignment"].iloc[-1] == pytest.approx(1.0, abs=1e-6)
    assert df["manifold_alignment"].between(0, 1).all()

    md = out["md"].read_text()
    assert "PGD-10 L2 ε=15" in md and "answer_toy" in md
    assert "Score alignment" not in md and "Spearman ρ" not in md
    table = [
        line for line in md.split("Each recipe's mean")[0].splitlines() if line.startswith("| ")
    ]
    assert len(table) == 1 + 4  # header, three models, the reference
    assert table[1].startswith("| Vanilla | 0 | 0 |")
    assert table[2].startswith("| Vanilla | 0 | 1 |")
    assert table[3].startswith("| PAG (Nearest Neighbor) | 1 | 0 |")
    assert table[4].startswith("| Teacher ℓ2 (adversarial training), the reference | 0 | 5 |")
    assert table[4].rstrip().endswith("| 90.00 |  |")  # its PGD accuracy blank
    # each recipe's mean over its seeds: vanilla's two seeds, then PAG's one
    means = [
        line for line in md.split("Each recipe's mean")[1].splitlines() if line.startswith("| ")
    ]
    vanilla = df[(df["source"] == "vanilla")]
    assert means[1].startswith(
        f"| Vanilla | 0 | 2 | {vanilla['manifold_alignment'].mean():.3f} | "
        f"{vanilla['teacher_alignment'].mean():.3f} | 96.00 | 20.00 |"
    )
    assert means[2].startswith("| PAG (Nearest Neighbor) | 1 | 1 |")
    html = out["html"].read_text()
    assert html.count("<table>") == 2


def toy_denoiser(path):
    """An untrained toy denoiser's file (the step's plumbing, not its values)."""
    cfg = settings.DenoiserSettings(
        arch="mlp",
        epochs=1,
        batch_size=64,
        lr=1e-3,
        sigma_min=0.5,
        sigma_max=20.0,
        width=16,
        scale=50.0,
    )
    torch.manual_seed(0)
    net = denoiser.build("mlp", (2,), 2, width=16, scale=50.0)
    denoiser.save(path, net, cfg, dataset="toy")
    return net


def test_toy_pag_step_with_the_score_instrument(tmp_path, monkeypatch):
    from pagrob.steps import toy_pag as step

    ds, nets, args, out = step_inputs(tmp_path)
    net = toy_denoiser(tmp_path / "denoiser.pt")
    options = ["--denoiser", str(tmp_path / "denoiser.pt"), "--centers", json.dumps(CENTERS)]
    # the three go together: one alone is refused, naming them, before anything is written
    monkeypatch.setattr(sys, "argv", ["toy_pag", *args, *options[:2]])
    with pytest.raises(ValueError, match="--denoiser, --centers and --sigma"):
        step.main()
    assert not out["csv"].exists()
    monkeypatch.setattr(sys, "argv", ["toy_pag", *args, *options, "--sigma", "2.0"])
    step.main()
    df = pd.read_csv(out["csv"])
    assert df["role"].tolist() == ["model"] * 3 + ["reference"]
    x = ds.x_test
    fields = {
        "score_alignment": denoiser.score_targets(net, x, 2.0),
        "score_alignment_exact": data.toy_score(x, CENTERS, 2.0),
    }
    for name, (_, r) in zip(SPECS, df.iterrows()):
        for k, field in fields.items():
            expected = toy_pag.score_alignment(nets[name], x, field).double()
            assert math.isfinite(r[k]) and r[k] == pytest.approx(expected.mean().item(), abs=1e-6)
            points = [float(v) for v in r[f"{k}_per_point"].split(";")]
            assert points == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-6)
    md = out["md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert "| Score alignment |" in header and "| Score alignment (exact score) |" in header
    models_ = df[df["role"] == "model"]
    rho = pag_report.spearman(models_["score_alignment"], models_["score_alignment_exact"])
    assert f"Over the 3 models, the denoiser's against the exact: Spearman ρ = {rho:+.3f}" in md


# --- Fig. 3's arrows ----------------------------------------------------------------------------


def captured_figure(monkeypatch):
    shown = {}
    monkeypatch.setattr(figures, "save", lambda fig, png, pdf: shown.setdefault("fig", fig))
    return shown


def test_decision_regions_draws_the_arrows(monkeypatch):
    shown = captured_figure(monkeypatch)
    x = torch.stack([torch.linspace(-10, 10, 40), 2 * torch.linspace(-10, 10, 40)], dim=1)
    y = (x[:, 0] > 0).long()
    at, direction = x[::20], torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    panels = [[("a", smooth_net(0)), ("b", smooth_net(1))]]
    figures.decision_regions(
        panels, x, y, None, None, resolution=20, arrows=lambda model: (at, direction)
    )
    quivers = [
        [a for a in ax.get_children() if isinstance(a, matplotlib.quiver.Quiver)]
        for ax in shown["fig"].axes
    ]
    assert [len(q) for q in quivers] == [1, 1]
    q = quivers[0][0]
    assert q.N == 2 and torch.equal(torch.tensor(q.U).float(), direction[:, 0])
    torch.testing.assert_close(torch.tensor(q.XY).float(), at)
    figures.decision_regions(panels, x, y, None, None, resolution=20)  # none asked for: none
    assert not any(isinstance(a, matplotlib.quiver.Quiver) for a in shown["fig"].get_children())


def test_toy_figure_step_titles_and_arrows(tmp_path, monkeypatch):
    from pagrob.steps import toy_figure

    ds = data.make_toy(CENTERS, n_per_mode=20, n_test=60, seed=0)
    data.save_prepared(ds, tmp_path / "data.pt")
    torch.manual_seed(0)
    net = models.build_model("mlp", (2,), 2, torch.zeros(2), torch.ones(2))
    models.save_model(
        tmp_path / "m.pt", net, "mlp", (2,), 2, dataset="toy", source="vanilla", lam=0.0, seed=0
    )
    pd.DataFrame(metrics_rows("vanilla", 0.0, 0, 97.0, 10.0), columns=report.COLUMNS).to_csv(
        tmp_path / "metrics.csv", index=False
    )
    seen = {}
    real = figures.decision_regions

    def spy(panels, x_test, y_test, png, pdf, **kwargs):
        seen["panels"], seen["arrows"] = panels, kwargs.get("arrows")
        real(panels, x_test, y_test, None, None, resolution=10, arrows=kwargs.get("arrows"))

    monkeypatch.setattr(figures, "decision_regions", spy)
    monkeypatch.setattr(figures, "save", lambda fig, png, pdf: None)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "toy_figure",
            "--data",
            str(tmp_path / "data.pt"),
            "--models",
            str(tmp_path / "m.pt"),
            "--metrics",
            str(tmp_path / "metrics.csv"),
            "--out-png",
            "x.png",
            "--out-pdf",
            "x.pdf",
        ],
    )
    toy_figure.main()
    (((title, model),),) = seen["panels"]
    aligned = toy_pag.manifold_alignment(net, ds.x_test, data.toy_tangent()).mean().item()
    assert title.endswith(f"\n|cos(∇margin, line)| = {aligned:.2f}")
    at, direction = seen["arrows"](model)
    assert torch.equal(at, ds.x_test[::20])
    g = toy_pag.margin_gradients(net, at)
    torch.testing.assert_close(direction, g / g.norm(dim=1, keepdim=True))

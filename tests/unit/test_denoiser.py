"""pagrob.denoiser: a class-conditional denoiser trained by denoising score matching, and the
score-based targets g(x, c) = D(x, c, sigma) - x (Tweedie) it gives."""

from __future__ import annotations

import importlib
import json
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from conftest import settings_json
from pagrob import data, denoiser, sources
from pagrob.datasets import load_digits
from pagrob.settings import DenoiserSettings

#: two classes, each an isotropic Gaussian: their smoothed scores are known exactly
MEANS = torch.tensor([[2.0, 0.0], [-1.0, 1.5]])
STD = 0.5


def gaussian_classes(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return MEANS[y] + STD * torch.randn(n, 2, generator=g), y


def true_score(x, c, sigma):
    """grad log N(x; mu_c, (STD^2 + sigma^2) I)."""
    return -(x - MEANS[c]) / (STD**2 + sigma**2)


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)  # set up before the autouse fixture that does it per test
    x, y = gaussian_classes(2000, seed=0)
    settings = denoiser.DenoiserSettings(
        arch="mlp",
        epochs=20,
        batch_size=128,
        lr=3e-3,
        sigma_min=0.1,
        sigma_max=2.0,
        width=64,
        scale=1.5,
    )
    torch.manual_seed(settings.seed)
    net = denoiser.build("mlp", (2,), 2, width=settings.width, scale=settings.scale)
    denoiser.fit(net, x, y, settings, log=lambda _: None)
    return net, settings


@pytest.mark.parametrize("sigma", [0.3, 1.0])
def test_a_denoiser_of_gaussian_classes_points_along_each_class_score(trained, sigma):
    """Tweedie: D(x, c) - x = sigma^2 grad log p_sigma(x | c); on test points of both classes,
    each class's target points along its true smoothed score (mean cosine at least 0.9)."""
    net, _ = trained
    x, _ = gaussian_classes(1000, seed=1)
    g = denoiser.score_targets(net, x, sigma)
    assert g.shape == (1000, 2, 2)
    for c in (0, 1):
        cos = torch.cosine_similarity(g[:, c], true_score(x, c, sigma), dim=1)
        assert cos.mean() >= 0.9, (c, sigma, cos.mean())


def test_the_targets_are_the_denoised_image_minus_the_image(trained):
    net, _ = trained
    x, _ = gaussian_classes(50, seed=2)
    g = denoiser.score_targets(net, x, 0.5, batch_size=7)
    for c in (0, 1):
        d = denoiser.denoise(net, x, torch.full((50,), c), 0.5)
        torch.testing.assert_close(g[:, c], d - x)


def test_shuffled_classes_change_every_slot_and_the_targets(trained):
    net, _ = trained
    for num_classes in (2, 10):
        classes = denoiser.shuffled_classes(200, num_classes, seed=3)
        assert (classes != torch.arange(num_classes)).all()
        assert (classes.sort(dim=1).values == torch.arange(num_classes)).all()
    x, _ = gaussian_classes(100, seed=4)
    shuffled = denoiser.score_targets(net, x, 0.5, denoiser.shuffled_classes(100, 2, seed=3))
    plain = denoiser.score_targets(net, x, 0.5)
    torch.testing.assert_close(shuffled[:, 0], plain[:, 1])
    assert not torch.allclose(shuffled, plain)


def test_save_and_load_give_the_same_denoiser(trained, tmp_path):
    net, settings = trained
    denoiser.save(tmp_path / "model.pt", net, settings, dataset="gaussians")
    again, meta = denoiser.load(tmp_path / "model.pt")
    x, y = gaussian_classes(20, seed=5)
    torch.testing.assert_close(denoiser.denoise(again, x, y, 0.4), denoiser.denoise(net, x, y, 0.4))
    assert meta["dataset"] == "gaussians" and meta["settings"]["sigma_max"] == 2.0


def test_conv_denoiser_keeps_the_image_shape():
    net = denoiser.build("conv", (1, 8, 8), 10, width=8)
    x = torch.rand(3, 1, 8, 8)
    assert denoiser.score_targets(net, x, 0.2).shape == (3, 10, 1, 8, 8)


def test_bad_settings_name_the_problem():
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        denoiser.DenoiserSettings("mlp", 1, 8, 1e-3, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="choose mlp or conv"):
        denoiser.DenoiserSettings("unet", 1, 8, 1e-3, sigma_min=0.1, sigma_max=0.5)


@pytest.fixture(scope="module")
def digits():
    return load_digits(0.3, 0)


def first_images(ds, train: int, test: int) -> data.Dataset:
    """``ds`` cut to its first ``train`` training and ``test`` test images."""
    return data.Dataset(
        ds.name, ds.x_train[:train], ds.y_train[:train], ds.x_test[:test], ds.y_test[:test],
        ds.classes, ds.mean, ds.std,
    )  # fmt: skip


def run_step(module, *args):
    """The step's main() in this process, as ``python -m module args`` runs it (no interpreter
    start): its exit status (0, or 2 for an input error, as _cli.run ends) and error line."""
    argv = [module, *map(str, args), "--device", "cpu", "--threads", "1"]
    saved = sys.argv
    sys.argv = argv
    try:
        importlib.import_module(module).main()
    except ValueError as e:
        return SimpleNamespace(returncode=2, stdout="", stderr=f"error: {e}")
    finally:
        sys.argv = saved
    return SimpleNamespace(returncode=0, stdout="", stderr="")


def test_the_steps_train_a_denoiser_and_write_one_target_per_image_and_class(tmp_path, digits):
    """steps.denoiser, then steps.make_targets --source score_based: a file of g(x, c) =
    D(x, c, sigma) - x, one per training image and class; score_shuffled the same denoiser's
    residual with each image's classes permuted (other targets); the training step reads it
    as representatives r = x + g."""
    small = first_images(digits, 120, 40)
    prepared = tmp_path / "digits.pt"
    data.save_prepared(small, prepared)
    net_file = tmp_path / "denoiser" / "model.pt"
    recipe = settings_json(
        arch="mlp", epochs=2, batch_size=32, lr=1e-3, sigma_min=0.05, sigma_max=1.0, width=16
    )
    proc = run_step(
        "pagrob.steps.denoiser", "--data", prepared, "--settings", recipe, "--out", net_file
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    net, meta = denoiser.load(net_file)
    assert meta["dataset"] == "digits" and len(meta["history"]) == 2
    files = {}
    for source in ("score_based", "score_shuffled"):
        files[source] = tmp_path / f"{source}.pt"
        proc = run_step(
            "pagrob.steps.make_targets", "--data", prepared, "--source", source,
            "--denoiser", net_file, "--sigma", 0.3, "--seed", 0, "--out", files[source],
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
    stored = torch.load(files["score_based"], weights_only=True)
    g = stored["gradients"]
    assert g.shape == (120, 10, 1, 8, 8) and stored["sigma"] == 0.3
    for c in (0, 7):
        d = denoiser.denoise(net, small.x_train, torch.full((120,), c), 0.3)
        torch.testing.assert_close(g[:, c], d - small.x_train)
    shuffled = torch.load(files["score_shuffled"], weights_only=True)["gradients"]
    assert not torch.allclose(shuffled, g)
    source = sources.load_representatives(files["score_based"], small, "score_based")
    x = small.x_train[:5]
    torch.testing.assert_close(source.for_batch(x, torch.arange(5), None)(3), g[:5, 3])
    # the options go with the score-based sources only
    proc = run_step(
        "pagrob.steps.make_targets", "--data", prepared, "--source", "score_based",
        "--out", tmp_path / "none.pt",
    )  # fmt: skip
    assert proc.returncode != 0 and "--denoiser and --sigma" in proc.stderr


def test_the_toy_score_is_the_gradient_of_the_smoothed_class_log_density():
    """data.toy_score against a numerical gradient of log p_sigma(x | k), the density written
    out as a 2-D Gaussian mixture (each mode: mean c d, covariance d d^T + sigma^2 I)."""
    centers = [[-50.0, -10.0, 30.0], [-30.0, 10.0, 50.0]]
    sigma = 1.5
    d = torch.tensor([1.0, 2.0], dtype=torch.float64)
    cov = torch.outer(d, d) + sigma**2 * torch.eye(2, dtype=torch.float64)

    def log_p(x, k):
        modes = [torch.distributions.MultivariateNormal(c * d, cov).log_prob(x) for c in centers[k]]
        return torch.logsumexp(torch.stack(modes), 0)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 2, generator=g, dtype=torch.float64) * 30
    x[:10] = x[:10, :1] * d  # half on the line
    score = data.toy_score(x, centers, sigma)
    for k in (0, 1):
        numeric = torch.func.vmap(torch.func.grad(lambda v, k=k: log_p(v, k)))(x)
        torch.testing.assert_close(score[:, k], numeric)


def test_the_toy_step_scores_each_class_on_the_test_points_and_the_region(tmp_path):
    """steps.toy_score: per place, noise level and class, the mean cosine between a toy
    denoiser's residual and the exact score; the config's sigma marked."""
    centers = [[-50, -10, 30], [-30, 10, 50]]
    toy = data.make_toy(centers, n_per_mode=50, n_test=60, seed=0)
    prepared = tmp_path / "toy.pt"
    data.save_prepared(toy, prepared)
    net_file = tmp_path / "denoiser.pt"
    settings = DenoiserSettings("mlp", 2, 64, 1e-3, 0.5, 20.0, width=16, scale=50.0)
    torch.manual_seed(0)
    net = denoiser.build("mlp", (2,), 2, width=16, scale=50.0)
    denoiser.fit(net, toy.x_train, toy.y_train, settings, log=lambda _: None)
    denoiser.save(net_file, net, settings, dataset="toy")
    out = tmp_path / "toy_score"
    proc = run_step(
        "pagrob.steps.toy_score", "--data", prepared, "--denoiser", net_file,
        "--centers", json.dumps(centers), "--sigma", 2.0,
        "--out-md", out.with_suffix(".md"), "--out-csv", out.with_suffix(".csv"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = pd.read_csv(out.with_suffix(".csv"))
    assert set(table["where"]) == {"test points", "Fig. 3's region"}
    assert sorted(set(table["sigma"])) == [0.5, 2.0, 20.0] and set(table["class"]) == {0, 1}
    assert len(table) == 12 and table["cosine"].between(-1, 1).all()
    # its cosines are those of the library's exact score
    x = toy.x_test
    exact = data.toy_score(x, centers, 2.0)[:, 1]
    learned = denoiser.score_targets(net, x, 2.0)[:, 1].double()
    row = table[(table["where"] == "test points") & (table["sigma"] == 2.0) & (table["class"] == 1)]
    want = torch.cosine_similarity(learned, exact, dim=1).mean()
    assert row["cosine"].iloc[0] == pytest.approx(float(want), abs=1e-6)
    assert "2 (the config's)" in out.with_suffix(".md").read_text()


# --- the score instrument (pagrob.pag_scores.score_alignment) --------------------------------


class ExactDenoiser(torch.nn.Module):
    """The denoiser of the two Gaussian classes, exactly: D(x, c, sigma) = x + sigma^2 times the
    smoothed class score (Tweedie)."""

    num_classes = 2

    def denoise(self, x, y, s):
        var = STD**2 + s[:, None] ** 2
        return x - s[:, None] ** 2 * (x - MEANS[y]) / var


class Bayes(torch.nn.Module):
    """Logits log N(x; mu_c, v I) (+ a function of x shared by both classes, which no prediction
    sees): the Bayes classifier of the classes smoothed to variance v; ``sign`` -1 reverses it."""

    def __init__(self, var, sign=1.0):
        super().__init__()
        self.var, self.sign = var, sign

    def forward(self, x):
        logits = -((x[:, None] - MEANS) ** 2).sum(-1) / (2 * self.var)
        return self.sign * logits + x.sum(1, keepdim=True) ** 3


def score_alignment(model, net, x, sigma):
    from pagrob import pag_scores

    values = pag_scores.gradient_scores(model, x, 64, score=(net, sigma))
    return torch.tensor(values[("score_alignment", pag_scores.DENOISER)])


def test_the_score_instrument_scores_the_bayes_classifier_one_and_its_reverse_minus_one(trained):
    """Against the exact denoiser the Bayes classifier of the smoothed classes scores 1 on every
    image whatever function both logits share (its centred gradients are the centred scores)
    and the reversed one -1; against the trained denoiser, at least 0.9."""
    x, _ = gaussian_classes(300, seed=6)
    sigma = 0.5
    bayes = Bayes(STD**2 + sigma**2)
    exact = score_alignment(bayes, ExactDenoiser(), x, sigma)
    torch.testing.assert_close(exact, torch.ones_like(exact), atol=1e-5, rtol=0)
    reverse = score_alignment(Bayes(STD**2 + sigma**2, -1.0), ExactDenoiser(), x, sigma)
    torch.testing.assert_close(reverse, -torch.ones_like(reverse), atol=1e-5, rtol=0)
    net, _ = trained
    assert score_alignment(bayes, net, x, sigma).mean() >= 0.9


def test_score_based_students_are_circular_for_the_score_instrument():
    from pagrob.pag_scores import CIRCULAR, DENOISER, INDEPENDENT, relation

    for source in ("score_based", "score_shuffled", "score_based.sigma0.5"):
        assert relation(source, DENOISER) == CIRCULAR
    for source in ("vanilla", "nearest_neighbor", "rigd_linf", "floor"):
        assert relation(source, DENOISER) == INDEPENDENT
    assert relation("score_based", "teacher_linf") == INDEPENDENT


def test_the_pag_scores_step_scores_against_a_denoiser(tmp_path, digits, monkeypatch):
    """steps.pag_scores --denoiser --score-sigma: a score_alignment row against "denoiser" per
    model, the score-based student's marked circular; refused with one option alone or with
    a denoiser of another dataset."""
    from pagrob import models
    from pagrob.steps import pag_scores as step

    small = first_images(digits, 50, 20)
    prepared = tmp_path / "digits.pt"
    data.save_prepared(small, prepared)
    settings = DenoiserSettings("mlp", 1, 32, 1e-3, 0.05, 1.0, width=16)
    torch.manual_seed(0)
    for name, dataset in (("d.pt", "digits"), ("t.pt", "toy")):
        net = denoiser.build("mlp", (1, 8, 8), 10, width=16)
        denoiser.save(tmp_path / name, net, settings, dataset=dataset)
    files = []
    for i, source in enumerate(("vanilla", "score_based")):
        net = models.build_model("small_cnn", (1, 8, 8), 10, small.mean, small.std)
        files.append(str(tmp_path / f"{source}.pt"))
        models.save_model(files[-1], net, "small_cnn", (1, 8, 8), 10, dataset="digits",
                          source=source, lam=0.0 if i == 0 else 1.0, seed=i)  # fmt: skip

    def run(*options, out):
        attack = {"norm": "l2", "eps": 1.0, "steps": 2, "step_size": 0.5}
        argv = ["pag_scores", "--data", str(prepared), "--models", *files, "--settings",
                settings_json(attack=attack, images=8), "--device", "cpu",
                *map(str, options), "--out", str(tmp_path / out)]  # fmt: skip
        monkeypatch.setattr(sys, "argv", argv)
        step.main()
        return pd.read_csv(tmp_path / out)

    rows = run("--denoiser", tmp_path / "d.pt", "--score-sigma", 0.3, out="scores.csv")
    score = rows[rows["score"] == "score_alignment"].set_index("source")
    assert set(score["reference"]) == {"denoiser"} and score["value"].between(-1, 1).all()
    assert score.loc["score_based", "relation"] == "circular"
    assert score.loc["vanilla", "relation"] == "independent"
    assert len(score.loc["vanilla", "per_image"].split(";")) == 8
    with pytest.raises(ValueError, match="--denoiser and --score-sigma go together"):
        run("--denoiser", tmp_path / "d.pt", out="no.csv")
    with pytest.raises(ValueError, match="was trained on 'toy'"):
        run("--denoiser", tmp_path / "t.pt", "--score-sigma", 0.3, out="toy.csv")

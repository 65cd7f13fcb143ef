"""The autoencoder, the tangent-space fraction and on/off-manifold noise (pagrob.autoencoder),
and the step that trains and saves an autoencoder (pagrob.steps.autoencoder)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import jacfwd

from conftest import settings_json
from pagrob import autoencoder as A
from pagrob import data
from pagrob.datasets import load_digits
from pagrob.io import BadFileError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits():
    return load_digits(0.3, 0)


def raw_jacobians(ae, x):
    """The decoder's Jacobians [B, d, k] at enc(x), one image at a time (no vmap, no QR)."""
    with torch.no_grad():
        z = ae.encode(x)
    return torch.stack([jacfwd(lambda v: ae.decode(v[None])[0].flatten())(zi) for zi in z]).detach()


def small_mlp(seed=0, latent=8):
    torch.manual_seed(seed)
    return A.build("mlp", (1, 8, 8), latent).eval()


def test_fraction_is_one_inside_the_span_and_sqrt_k_over_d_for_random_directions():
    ae = small_mlp()
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    basis = A.tangent_basis(ae, x)
    jac = raw_jacobians(ae, x)
    g = torch.Generator().manual_seed(2)
    v = torch.randn(3, 5, 8, generator=g)
    inside = torch.einsum("bdk,cbk->cbd", jac, v).reshape(3, 5, 1, 8, 8)
    frac = A.tangent_fraction(inside, basis)
    assert frac.shape == (3, 5)
    assert torch.allclose(frac, torch.ones(3, 5), atol=1e-5)

    random = torch.randn(800, 5, 1, 8, 8, generator=g)  # 4,000 isotropic directions
    frac = A.tangent_fraction(random, basis)
    baseline = A.random_baseline(8, 64)
    assert baseline == pytest.approx((8 / 64) ** 0.5)
    assert frac.mean().item() == pytest.approx(baseline, rel=0.05)  # ~3% below (Jensen)
    assert frac.square().mean().item() == pytest.approx(8 / 64, rel=0.03)  # exact in expectation


def test_tangent_basis_is_orthonormal_and_spans_the_jacobian():
    ae = small_mlp(seed=3)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    q = A.tangent_basis(ae, x)
    jac = raw_jacobians(ae, x)
    assert q.shape == (4, 64, 8)
    assert torch.allclose(q.transpose(1, 2) @ q, torch.eye(8).expand(4, 8, 8), atol=1e-5)
    assert (torch.linalg.matrix_rank(jac) == 8).all()  # so span(Q) = span(J) iff J in span(Q)
    assert torch.allclose(q @ (q.transpose(1, 2) @ jac), jac, atol=1e-5)


def test_zero_gradient_gives_fraction_zero_not_nan():
    ae = small_mlp()
    basis = A.tangent_basis(ae, torch.rand(2, 1, 8, 8))
    g = torch.randn(3, 2, 1, 8, 8)
    g[1, 0] = 0
    frac = A.tangent_fraction(g, basis)
    assert not frac.isnan().any()
    assert frac[1, 0] == 0
    assert (frac[0] > 0).all()
    half = A.tangent_fraction(g.half(), basis)  # low precision in, float32 out
    assert half.dtype == torch.float32 and half[1, 0] == 0


def test_fit_on_digits_beats_the_mean_image_and_is_reproducible(digits):
    settings = A.AutoencoderSettings("mlp", latent=8, epochs=15, batch_size=64, lr=3e-3, seed=0)

    def train(seed, s=settings):
        torch.manual_seed(seed)
        ae = A.build("mlp", digits.input_shape, 8)
        history = A.fit(ae, digits.x_train, s, log=lambda m: None)
        return ae, history

    ae, history = train(0)
    assert [h["epoch"] for h in history] == list(range(1, 16))
    assert history[-1]["train_mse"] < history[0]["train_mse"]
    mean_mse = (digits.x_test - digits.x_train.mean(0)).square().mean().item()
    test_mse = A.reconstruction_error(ae, digits.x_test)
    assert test_mse < 0.4 * mean_mse, (test_mse, mean_mse)

    again, _ = train(0)
    for (k, a), b in zip(ae.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    # the batch order follows settings.seed: same initialisation, another order, other weights
    one = dataclasses.replace(settings, epochs=1)
    first, _ = train(0, one)
    other, _ = train(0, dataclasses.replace(one, seed=1))
    assert not torch.equal(first.decoder[2].weight, other.decoder[2].weight)


def test_fit_refuses_a_non_finite_loss(digits):
    settings = A.AutoencoderSettings("mlp", latent=8, epochs=1, batch_size=64, lr=1e-3, seed=0)
    x = digits.x_train[:100].clone()
    x[7, 0, 3, 3] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite"):
        A.fit(A.build("mlp", digits.input_shape, 8), x, settings, log=lambda m: None)


def test_conv_autoencoder_shapes_and_tangent_basis():
    torch.manual_seed(0)
    for shape in [(3, 32, 32), (3, 96, 96)]:
        ae = A.build("conv", shape, 16)
        x = torch.rand(2, *shape)
        assert ae.encode(x).shape == (2, 16)
        assert ae(x).shape == (2, *shape)
        assert ae.latent == 16 and ae.input_shape == shape
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in ae.modules())
    ae = A.build("conv", (3, 32, 32), 16)
    q = A.tangent_basis(ae, torch.rand(1, 3, 32, 32))
    assert q.shape == (1, 3072, 16)
    assert torch.allclose(q[0].T @ q[0], torch.eye(16), atol=1e-5)
    with pytest.raises(ValueError, match="divisible by 8"):
        A.build("conv", (3, 30, 30), 16)
    with pytest.raises(ValueError, match="mlp.*conv"):
        A.build("vae", (3, 32, 32), 16)


class ProjectedLinear(nn.Module):
    """Logits that depend on x only through its coordinates in the subspace spanned by q."""

    def __init__(self, q, classes=5):
        super().__init__()
        self.q = q
        self.w = torch.randn(q.shape[1], classes, generator=torch.Generator().manual_seed(5)) * 3

    def forward(self, x):
        return (x.flatten(1) @ self.q) @ self.w


def test_noise_off_the_manifold_leaves_a_projected_model_unchanged():
    d, k, b = 64, 6, 4
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=torch.Generator().manual_seed(6)))
    model = ProjectedLinear(q)
    x = torch.rand(b, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    basis = q.expand(b, d, k)
    on, off = A.manifold_noise_change(model, x, basis, 0.5, 8, torch.Generator().manual_seed(8))
    assert on.shape == off.shape == (b,)
    assert off.abs().max() < 1e-5
    assert (on > 1e-2).all()
    again = A.manifold_noise_change(model, x, basis, 0.5, 8, torch.Generator().manual_seed(8))
    assert torch.equal(again[0], on) and torch.equal(again[1], off)


def test_save_load_round_trip_and_bad_files(tmp_path):
    settings = A.AutoencoderSettings("conv", latent=4, epochs=0, batch_size=8, lr=1e-3, seed=0)
    torch.manual_seed(0)
    ae = A.build("conv", (1, 8, 8), 4).eval()
    path = tmp_path / "ae.pt"
    A.save(path, ae, settings, dataset="digits", test_mse=0.5)
    info = json.loads(path.with_suffix(".json").read_text())
    assert info["arch"] == "conv" and info["latent"] == 4 and info["test_mse"] == 0.5
    back, meta = A.load(path)
    assert meta["dataset"] == "digits" and meta["settings"]["seed"] == 0
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(back(x), ae(x))

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(BadFileError, match="truncated.pt"):
        A.load(truncated)
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": ae.state_dict()}, wrong)  # no metadata: not an autoencoder file
    with pytest.raises(BadFileError, match="wrong.pt"):
        A.load(wrong)
    other = tmp_path / "other.pt"
    torch.save({**torch.load(path, weights_only=True), "latent": 5}, other)
    with pytest.raises(ValueError, match="other.pt"):  # a state dict of another shape
        A.load(other)


def test_step_trains_saves_and_refuses_to_overwrite(tmp_path, digits, monkeypatch):
    small = data.Dataset(
        "digits",
        digits.x_train[:300],
        digits.y_train[:300],
        digits.x_test[:100],
        digits.y_test[:100],
        digits.classes,
        digits.mean,
        digits.std,
    )
    prepared = tmp_path / "digits.pt"
    data.save_prepared(small, prepared)
    out = tmp_path / "results" / "ae" / "model.pt"
    cmd = [
        sys.executable,
        "-m",
        "pagrob.steps.autoencoder",
        "--data",
        str(prepared),
        "--settings",
        settings_json(arch="mlp", latent=8, epochs=2, batch_size=64, lr=1e-3, seed=0),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "epoch 2/2" in proc.stdout
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["dataset"] == "digits" and len(info["history"]) == 2
    assert 0 < info["test_mse"] < 1 and info["baseline"] == pytest.approx((8 / 64) ** 0.5)
    assert info["d"] == 64 and info["k"] == 8
    ae, meta = A.load(out)
    assert meta["test_mse"] == info["test_mse"]

    before = out.read_bytes()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "already exists" in proc.stderr, proc.stderr
    assert out.read_bytes() == before

    # the conv arch is refused (in-process: no second interpreter) for inputs it cannot take
    from pagrob.steps import autoencoder as step

    odd = data.Dataset(
        "odd",
        torch.rand(20, 1, 12, 12),
        torch.zeros(20, dtype=torch.long),
        torch.rand(5, 1, 12, 12),
        torch.zeros(5, dtype=torch.long),
        ["a"],
        torch.zeros(1),
        torch.ones(1),
    )
    data.save_prepared(odd, tmp_path / "odd.pt")
    args = [a if a != str(prepared) else str(tmp_path / "odd.pt") for a in cmd[3:]]
    settings = args.index("--settings") + 1
    args[settings] = args[settings].replace('"mlp"', '"conv"')
    args[args.index(str(out))] = str(tmp_path / "odd" / "model.pt")
    monkeypatch.setattr(sys, "argv", ["autoencoder", *args])
    with pytest.raises(ValueError, match="use arch mlp"):
        step.main()

"""Autoencoders, and a PAG score that needs no robust model: the tangent-space fraction.

Bordt et al. (CVPR workshops 2023) and Srinivas, Bordt & Lakkaraju (NeurIPS 2023, "Which models
have perceptually-aligned gradients? An explanation via off-manifold robustness") measure how
much of a classifier's input-gradient lies in the tangent space of the data manifold. The
manifold is modelled by an autoencoder trained on the training images: at a test image x its
tangent space T is the span of the decoder's Jacobian at enc(x) (orthonormalised here), and the
score of a gradient g is ``||P_T g|| / ||g||``. An isotropic random direction scores
``sqrt(k / d)`` (k the latent size, d the input dimension), the baseline to compare with.

The same basis splits noise into on-manifold (inside T) and off-manifold (orthogonal to T)
parts: :func:`manifold_noise_change` measures how much each moves a classifier's softmax.

No BatchNorm anywhere, so that evaluation is deterministic and ``torch.func`` applies.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pagrob import io
from pagrob.settings import AutoencoderSettings  # its settings, pure Python (built from the config)

ARCHS = ("mlp", "conv")
FILE_KEYS = ("state_dict", "arch", "input_shape", "latent", "settings")


def _check_latent(input_shape: tuple[int, ...], latent: int) -> int:
    d = math.prod(input_shape)
    if not 1 <= latent < d:
        raise ValueError(
            f"latent size {latent} for inputs of dimension {d} ({input_shape}): choose "
            f"1 <= latent < {d} (a latent of the input's size spans every direction)"
        )
    return d


class MLPAutoencoder(nn.Module):
    """flatten -> hidden -> latent -> hidden -> d, ReLU inside, sigmoid output in the image's
    shape (for the 8x8 digits, or any small input in [0, 1])."""

    arch = "mlp"

    def __init__(self, input_shape, latent: int, hidden: int = 256):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent = int(latent)
        self.hidden = int(hidden)
        d = _check_latent(self.input_shape, self.latent)
        self.encoder = nn.Sequential(
            nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, self.latent)
        )
        self.decoder = nn.Sequential(
            nn.Linear(self.latent, hidden), nn.ReLU(), nn.Linear(hidden, d)
        )

    def options(self) -> dict:
        return {"hidden": self.hidden}

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(z)).view(-1, *self.input_shape)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


class ConvAutoencoder(nn.Module):
    """For C x H x W images with H and W divisible by 8 (3x32x32 CIFAR-10, 3x96x96 STL-10):
    three stride-2 3x3 convolutions (32, 64, 128 channels, ReLU) and a linear layer to the
    latent; the decoder mirrors it (linear layer, three stride-2 transposed convolutions),
    sigmoid output."""

    arch = "conv"
    widths = (32, 64, 128)

    def __init__(self, input_shape, latent: int):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent = int(latent)
        if len(self.input_shape) != 3 or any(s % 8 for s in self.input_shape[1:]):
            raise ValueError(
                f"the conv autoencoder needs C x H x W images with H and W divisible by 8, not "
                f"inputs of shape {self.input_shape}; use the 'mlp' autoencoder for these"
            )
        _check_latent(self.input_shape, self.latent)
        c, h, w = self.input_shape
        w1, w2, w3 = self.widths
        self.code_shape = (w3, h // 8, w // 8)
        flat = math.prod(self.code_shape)
        self.encoder = nn.Sequential(
            nn.Conv2d(c, w1, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(w1, w2, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(w2, w3, 3, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(flat, self.latent),
        )
        self.fc = nn.Linear(self.latent, flat)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(w3, w2, 3, 2, 1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(w2, w1, 3, 2, 1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(w1, c, 3, 2, 1, output_padding=1),
        )

    def options(self) -> dict:
        return {}

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        h = F.relu(self.fc(z)).view(-1, *self.code_shape)
        return torch.sigmoid(self.decoder(h))

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


def build(arch: str, input_shape, latent: int, **options) -> nn.Module:
    """A fresh autoencoder; ``options`` are the architecture's own (``hidden`` for mlp)."""
    if arch == "mlp":
        return MLPAutoencoder(input_shape, latent, **options)
    if arch == "conv":
        return ConvAutoencoder(input_shape, latent, **options)
    raise ValueError(f"unknown autoencoder architecture {arch!r}; choose one of {ARCHS}")


@contextmanager
def _evaluating(module: nn.Module):
    """Eval mode for the block, the previous mode restored after it."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


# --- Training ------------------------------------------------------------------------------------


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The epoch's batch order's generator (the same formula as the classifiers' training)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def fit(
    ae: nn.Module,
    x_train: Tensor,
    settings: AutoencoderSettings,
    device="cpu",
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train ``ae`` (initialised by the caller under ``torch.manual_seed(settings.seed)``) to
    reconstruct ``x_train`` with Adam and the mean squared error; returns the per-epoch
    history. Each epoch's batch order comes from a CPU generator seeded by (seed, epoch), so a
    run is the same on any device; the loss is summed on the device and read once per epoch."""
    if settings.epochs < 0 or settings.batch_size < 1 or not settings.lr > 0:
        raise ValueError(f"invalid autoencoder settings {settings}")
    n = len(x_train)
    if n == 0:
        raise ValueError("no training images to fit the autoencoder on")
    ae.to(device)
    x = x_train.to(device)
    opt = torch.optim.Adam(ae.parameters(), lr=settings.lr)
    history = []
    for epoch in range(1, settings.epochs + 1):
        t0 = time.perf_counter()
        ae.train()
        g = epoch_generator(settings.seed, epoch)
        order = torch.randperm(n, generator=g).to(x.device)  # cpu: seeded draw, moved once
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for start in range(0, n, settings.batch_size):
            xb = x[order[start : start + settings.batch_size]]
            loss = F.mse_loss(ae(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().double() * len(xb)  # stays on the device: no wait
        mse = float(total) / n  # the epoch's one read from the device
        if not math.isfinite(mse):
            raise FloatingPointError(
                f"autoencoder training diverged: non-finite reconstruction loss ({mse}) in epoch "
                f"{epoch}; lower the learning rate (now {settings.lr})"
            )
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch, "train_mse": mse, "seconds": seconds})
        log(f"epoch {epoch}/{settings.epochs}: train MSE {mse:.6f}, {seconds:.1f}s")
    ae.eval()
    return history


def reconstruction_error(ae: nn.Module, x: Tensor, batch_size: int = 500) -> float:
    """Mean squared error per pixel of ``ae``'s reconstruction of ``x``."""
    if len(x) == 0:
        raise ValueError("no images to measure the reconstruction error on")
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    with _evaluating(ae), torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size]
            total += (ae(xb).double() - xb.double()).square().sum()
    return float(total) / x.numel()


# --- Tangent space -------------------------------------------------------------------------------


def tangent_basis(ae: nn.Module, x: Tensor) -> Tensor:
    """Orthonormal bases [B, d, k] of the tangent spaces at the images ``x`` [B, *shape]: the
    decoder's Jacobian at enc(x) (``torch.func.jacfwd`` of a one-image decoder, vmapped over
    the batch; d = prod(input_shape)), orthonormalised by a reduced QR decomposition.

    Where a Jacobian has rank below k (dead ReLUs), Q still has k orthonormal columns, spanning
    the Jacobian's columns and arbitrary directions beside them."""
    from torch.func import jacfwd, vmap

    def decode_one(z: Tensor) -> Tensor:
        return ae.decode(z[None])[0].flatten()

    with _evaluating(ae), torch.no_grad():
        z = ae.encode(x)
        jac = vmap(jacfwd(decode_one))(z)  # [B, d, k]
    q, _ = torch.linalg.qr(
        jac.float() if jac.dtype in (torch.float16, torch.bfloat16) else jac, mode="reduced"
    )
    return q


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def tangent_fraction(g: Tensor, basis: Tensor) -> Tensor:
    """``||Q^T g|| / ||g||`` [C, B] for gradients ``g`` [C, B, *shape] (C per image) and the
    images' orthonormal bases ``basis`` [B, d, k]; 0 where a gradient is 0. In float32 at
    least (float64 inputs stay float64)."""
    c, b = g.shape[:2]
    if basis.dim() != 3 or basis.shape[0] != b or math.prod(g.shape[2:]) != basis.shape[1]:
        raise ValueError(
            f"gradients of shape {tuple(g.shape)} ([C, B, *shape]) do not match bases of shape "
            f"{tuple(basis.shape)} ([B, d, k])"
        )
    dtype = _compute_dtype(g, basis)
    flat = g.reshape(c, b, -1).to(dtype)
    proj = torch.einsum("bdk,cbd->cbk", basis.to(dtype), flat)
    num, den = proj.norm(dim=-1), flat.norm(dim=-1)
    return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0)


def random_baseline(k: int, d: int) -> float:
    """``sqrt(k / d)``: the tangent fraction to expect of an isotropic random direction g.

    For a fixed k-dimensional subspace with projection P, E ||P g||^2 / ||g||^2 = k / d
    exactly (the fraction squared is Beta(k/2, (d-k)/2)); the mean of the fraction itself is
    slightly below its square root (Jensen), by about 3% for k = 8, d = 64."""
    if not 0 < k <= d:
        raise ValueError(f"need 0 < k <= d, got k={k}, d={d}")
    return math.sqrt(k / d)


def manifold_noise_change(
    model: nn.Module,
    x: Tensor,
    basis: Tensor,
    sigma: float,
    draws: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """On- and off-manifold robustness of ``model`` at the images ``x`` [B, *shape]: each a
    [B] tensor, the mean over ``draws`` random directions of the total-variation distance
    ``0.5 * ||softmax(model(x + n)) - softmax(model(x))||_1``, where n has L2 norm ``sigma``
    and is a uniformly random direction inside the tangent space (``basis`` [B, d, k],
    orthonormal) for ``on``, inside its orthogonal complement for ``off``.

    The noise is not clamped to the input box (it must stay in its subspace)."""
    b, d, k = basis.shape
    if b != len(x) or d != math.prod(x.shape[1:]):
        raise ValueError(
            f"images of shape {tuple(x.shape)} do not match bases of shape {tuple(basis.shape)}"
        )
    if k >= d:
        raise ValueError(f"a tangent space of dimension {k} in R^{d} has no orthogonal complement")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, not {draws}")
    dtype = _compute_dtype(basis)
    # cpu: seeded draws from the caller's generator (the same on any device), moved once
    z = torch.randn(draws, b, k, generator=generator, dtype=dtype)  # cpu: seeded, moved once
    r = torch.randn(draws, b, d, generator=generator, dtype=dtype)  # cpu: seeded, moved once
    z, r = z.to(x.device), r.to(x.device)
    q = basis.to(device=x.device, dtype=dtype)
    on = torch.einsum("bdk,nbk->nbd", q, F.normalize(z, dim=-1))
    off = r - torch.einsum("bdk,nbk->nbd", q, torch.einsum("bdk,nbd->nbk", q, r))
    off = F.normalize(off, dim=-1)
    shape = (b, *x.shape[1:])
    on_change = torch.zeros(b, dtype=torch.float64, device=x.device)
    off_change = torch.zeros(b, dtype=torch.float64, device=x.device)
    with _evaluating(model), torch.no_grad():
        p0 = model(x).float().softmax(-1)
        for i in range(draws):
            for noise, acc in ((on[i], on_change), (off[i], off_change)):
                xn = x + (sigma * noise).view(shape).to(x.dtype)
                p = model(xn).float().softmax(-1)
                acc += 0.5 * (p - p0).abs().sum(-1).double()
    return (on_change / draws).float(), (off_change / draws).float()


# --- Files --------------------------------------------------------------------------------------


def save(path, ae: nn.Module, settings: AutoencoderSettings, **meta) -> None:
    """A plain state dict plus metadata (architecture, input shape, latent size, settings,
    library versions, and ``meta``: dataset, history, test_mse...) in one file, and the
    metadata again beside it as readable JSON (``model.json`` next to ``model.pt``)."""
    if settings.arch != ae.arch or settings.latent != ae.latent:
        raise ValueError(
            f"settings {settings} do not describe the autoencoder ({ae.arch}, latent {ae.latent})"
        )
    info = {
        "arch": ae.arch,
        "input_shape": list(ae.input_shape),
        "latent": ae.latent,
        "options": ae.options(),
        "settings": asdict(settings),
        "versions": io.versions(),
        **meta,
    }
    state = {k: v.detach().cpu() for k, v in ae.state_dict().items()}
    io.save({"state_dict": state, **info}, path)
    io.write_text(json.dumps(info, indent=1, default=str) + "\n", Path(path).with_suffix(".json"))


def load(path, device="cpu") -> tuple[nn.Module, dict]:
    """Rebuild an autoencoder saved by :func:`save` (``weights_only=True``: no pickled code);
    returns it in eval mode on ``device`` and its metadata (without the state dict)."""
    from pagrob import models

    meta = io.load(path, "autoencoder file", FILE_KEYS)
    sd = meta.pop("state_dict")
    try:
        ae = build(
            meta["arch"], tuple(meta["input_shape"]), meta["latent"], **meta.get("options", {})
        )
    except (TypeError, ValueError) as e:
        raise io.BadFileError(f"autoencoder file {path} describes no valid autoencoder: {e}") from e
    models.load_state_dict_checked(ae, sd, f"autoencoder file {path}", meta["arch"])
    return ae.to(device).eval(), meta

"""Class-conditional denoisers, and from them score-based gradients (SBG): the authors' fifth
gradient source, made here instead of downloaded.

A denoiser D(x_sigma, c, sigma) trained by denoising score matching estimates E[x0 | x_sigma, c],
the clean image of class c behind a noisy one. By Tweedie's formula
``E[x0 | x_sigma, c] - x_sigma = sigma^2 grad log p_sigma(x_sigma | c)``, so evaluated at a clean
training image x its residual ``g(x, c) = D(x, c, sigma) - x`` is the score of class c's density
smoothed at noise level sigma, scaled by sigma^2: a target of the same shape, r - x, as the
hand-made sources, with r the denoiser's class-conditional estimate instead of a fixed image.

The network F is preconditioned as in Karras et al. (EDM, 2022), with the data's scale
sigma_d (``scale``): ``D(x, c, sigma) = c_skip x + c_out F(c_in x, c, log(sigma) / 4)``,
c_skip = sigma_d^2 / (sigma^2 + sigma_d^2), c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2),
c_in = 1 / sqrt(sigma^2 + sigma_d^2), so that F's input and target have unit scale at every
sigma and D passes x through where the noise is small (an MLP narrower than the image could not
learn that identity). It is trained on the noise it implies, ``(x_sigma - D) / sigma``, against
the noise added, over noise levels drawn log-uniformly from [sigma_min, sigma_max] (denoising
score matching: Vincent 2011; Song & Ermon 2019), so that one model serves the whole sweep of
sigma. ``mlp`` conditions on a one-hot class and log sigma concatenated to the flattened input
(the toy, the 8x8 digits, Fashion-MNIST); ``conv`` on the same as constant feature maps.

No BatchNorm: evaluation is deterministic and per image.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from pagrob import io
from pagrob.settings import DenoiserSettings  # pure Python (built from the config)

ARCHS = ("mlp", "conv")
FILE_KEYS = ("state_dict", "arch", "input_shape", "num_classes", "settings")


def _conditioning(y: Tensor, sigma: Tensor, num_classes: int, dtype) -> Tensor:
    """[B, C + 1]: the one-hot class and log(sigma) / 4, the network's conditioning."""
    onehot = nn.functional.one_hot(y, num_classes).to(dtype)
    return torch.cat([onehot, (sigma.log() / 4).to(dtype).view(-1, 1)], dim=1)


class _Preconditioned(nn.Module):
    """D from the raw network ``forward_raw`` with EDM's preconditioning (module docstring)."""

    def denoise(self, x: Tensor, y: Tensor, sigma: Tensor) -> Tensor:
        s = sigma.to(x.dtype).view(-1, *[1] * (x.dim() - 1))
        var = s**2 + self.scale**2
        c_skip, c_out, c_in = self.scale**2 / var, s * self.scale / var.sqrt(), var.rsqrt()
        return c_skip * x + c_out * self.forward_raw(c_in * x, y, sigma)

    def noise(self, x: Tensor, y: Tensor, sigma: Tensor) -> Tensor:
        """The noise that D implies: (x - D(x, c, sigma)) / sigma."""
        s = sigma.to(x.dtype).view(-1, *[1] * (x.dim() - 1))
        return (x - self.denoise(x, y, sigma)) / s


class MLPDenoiser(_Preconditioned):
    """[flattened x, one-hot c, log sigma] -> width -> width -> width -> noise estimate, SiLU."""

    arch = "mlp"

    def __init__(self, input_shape, num_classes: int, width: int = 256, scale: float = 0.5):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.width = int(width)
        self.scale = float(scale)
        d = math.prod(self.input_shape)
        self.net = nn.Sequential(
            nn.Linear(d + self.num_classes + 1, self.width),
            nn.SiLU(),
            nn.Linear(self.width, self.width),
            nn.SiLU(),
            nn.Linear(self.width, self.width),
            nn.SiLU(),
            nn.Linear(self.width, d),
        )

    def options(self) -> dict:
        return {"width": self.width, "scale": self.scale}

    def forward_raw(self, x: Tensor, y: Tensor, sigma: Tensor) -> Tensor:
        cond = _conditioning(y, sigma, self.num_classes, x.dtype)
        return self.net(torch.cat([x.flatten(1), cond], dim=1)).view_as(x)


class ConvDenoiser(_Preconditioned):
    """Four 3x3 convolutions at full resolution on [x, class maps, log-sigma map], SiLU, with
    a skip of the input channels into the last; for small images (28x28 and below)."""

    arch = "conv"

    def __init__(self, input_shape, num_classes: int, width: int = 64, scale: float = 0.5):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.width = int(width)
        self.scale = float(scale)
        if len(self.input_shape) != 3:
            raise ValueError(f"the conv denoiser takes images (C, H, W), not {self.input_shape}")
        channels = self.input_shape[0]
        cin = channels + self.num_classes + 1
        self.body = nn.Sequential(
            nn.Conv2d(cin, self.width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(self.width, self.width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(self.width, self.width, 3, padding=1),
            nn.SiLU(),
        )
        self.out = nn.Conv2d(self.width + cin, channels, 3, padding=1)

    def options(self) -> dict:
        return {"width": self.width, "scale": self.scale}

    def forward_raw(self, x: Tensor, y: Tensor, sigma: Tensor) -> Tensor:
        cond = _conditioning(y, sigma, self.num_classes, x.dtype)
        maps = cond[:, :, None, None].expand(-1, -1, *x.shape[2:])
        h = torch.cat([x, maps], dim=1)
        return self.out(torch.cat([self.body(h), h], dim=1))


def build(arch: str, input_shape, num_classes: int, **options) -> nn.Module:
    """A fresh denoiser; ``options`` are the architecture's own (``width``)."""
    if arch == "mlp":
        return MLPDenoiser(input_shape, num_classes, **options)
    if arch == "conv":
        return ConvDenoiser(input_shape, num_classes, **options)
    raise ValueError(f"unknown denoiser architecture {arch!r}; choose one of {ARCHS}")


def denoise(net: nn.Module, x: Tensor, y: Tensor, sigma: float | Tensor) -> Tensor:
    """D(x, c, sigma): the estimate of the clean image of class ``y`` behind ``x`` at noise
    level ``sigma`` (a number, or one per image)."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(len(x))
    return net.denoise(x, y, s)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The epoch's draws' generator (the same formula as the classifiers' training)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def fit(
    net: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    settings: DenoiserSettings,
    device="cpu",
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train ``net`` (initialised by the caller under ``torch.manual_seed(settings.seed)``) by
    denoising score matching over log-uniform noise levels; returns the per-epoch history.
    Each epoch's order, noise levels and noise come from a CPU generator seeded by (seed,
    epoch), moved to the device once, so a run is the same on any device; the loss is summed on
    the device and read once per epoch."""
    n = len(x_train)
    if n == 0:
        raise ValueError("no training images to fit the denoiser on")
    net.to(device)
    x, y = x_train.to(device), y_train.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    lo, hi = math.log(settings.sigma_min), math.log(settings.sigma_max)
    history = []
    for epoch in range(1, settings.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        g = epoch_generator(settings.seed, epoch)
        # cpu: seeded draws, each moved to the device once per epoch
        order = torch.randperm(n, generator=g).to(x.device)  # cpu: seeded draw, moved once
        u = torch.rand(n, generator=g, dtype=x.dtype)  # cpu: seeded draw, moved once
        log_sigma = (u * (hi - lo) + lo).to(x.device)
        noise = torch.randn(x.shape, generator=g, dtype=x.dtype)  # cpu: seeded draw
        noise = noise.to(x.device)
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for start in range(0, n, settings.batch_size):
            idx = order[start : start + settings.batch_size]
            sigma, e = log_sigma[idx].exp(), noise[idx]
            x_noisy = x[idx] + sigma.view(-1, *[1] * (x.dim() - 1)) * e
            loss = (net.noise(x_noisy, y[idx], sigma) - e).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().double() * len(idx)  # stays on the device: no wait
        mse = float(total) / n  # the epoch's one read from the device
        if not math.isfinite(mse):
            raise FloatingPointError(
                f"denoiser training diverged: non-finite loss ({mse}) in epoch {epoch}; lower "
                f"the learning rate (now {settings.lr})"
            )
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch, "noise_mse": mse, "seconds": seconds})
        log(f"epoch {epoch}/{settings.epochs}: noise MSE {mse:.5f}, {seconds:.1f}s")
    net.eval()
    return history


def score_targets(
    net: nn.Module,
    x: Tensor,
    sigma: float,
    classes: Tensor | None = None,
    batch_size: int = 256,
) -> Tensor:
    """[N, C, *image] g(x, c) = D(x, c, sigma) - x for every image and class (on x's device
    and dtype), sigma^2 times the score of class c's density smoothed at ``sigma``.

    ``classes`` [N, C] (optional) names, for each image and target slot c, the class whose
    score fills it: the shuffled-label control passes a permutation per image; by default slot
    c holds class c."""
    n, num_classes = len(x), net.num_classes
    if classes is None:
        classes = torch.arange(num_classes, device=x.device).expand(n, -1)
    out = torch.empty((n, num_classes, *x.shape[1:]), dtype=x.dtype, device=x.device)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            xb = x[start : start + batch_size]
            cb = classes[start : start + batch_size].to(x.device)
            for c in range(num_classes):
                out[start : start + len(xb), c] = denoise(net, xb, cb[:, c], sigma) - xb
    return out


def shuffled_classes(n: int, num_classes: int, seed: int) -> Tensor:
    """[n, C] for each image a random permutation of the classes with no fixed point (a
    derangement, so that no slot keeps its own class): the shuffled-label control's classes."""
    g = torch.Generator().manual_seed(seed)
    # a random cyclic shift by 1..C-1 of a random permutation has no fixed point
    keys = torch.rand(n, num_classes, generator=g)  # cpu: seeded labels, moved where used
    perm = torch.argsort(keys, dim=1)
    shift = torch.randint(1, num_classes, (n, 1), generator=g)  # cpu: see above
    rows = torch.arange(n).view(-1, 1)  # cpu: see above
    cycle = torch.arange(num_classes)  # cpu: see above
    out = torch.empty_like(perm)
    out[rows, perm] = perm.gather(1, (cycle + shift) % num_classes)
    return out


def save(path, net: nn.Module, settings: DenoiserSettings, **meta) -> None:
    """A plain state dict plus metadata in one file, and the metadata again beside it as JSON
    (``model.json`` next to ``model.pt``)."""
    info = {
        "arch": net.arch,
        "input_shape": list(net.input_shape),
        "num_classes": net.num_classes,
        "options": net.options(),
        "settings": asdict(settings),
        "versions": io.versions(),
        **meta,
    }
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    io.save({"state_dict": state, **info}, path)
    io.write_text(json.dumps(info, indent=1, default=str) + "\n", Path(path).with_suffix(".json"))


def load(path, device="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a denoiser saved by :func:`save` (``weights_only=True``); returns it in eval mode
    on ``device`` and its metadata (without the state dict)."""
    from pagrob import models

    meta = io.load(path, "denoiser file", FILE_KEYS)
    sd = meta.pop("state_dict")
    try:
        net = build(
            meta["arch"], tuple(meta["input_shape"]), meta["num_classes"], **meta["options"]
        )
    except (TypeError, ValueError, KeyError) as e:
        raise io.BadFileError(f"denoiser file {path} describes no valid denoiser: {e}") from e
    models.load_state_dict_checked(net, sd, f"denoiser file {path}", meta["arch"])
    return net.to(device).eval(), meta

"""Train a class-conditional denoiser on a prepared dataset's training images by denoising
score matching and save it: the model of the score-based sources (pagrob.denoiser), with its
per-epoch history and its noise-prediction error on the test images at a few noise levels."""

from __future__ import annotations

import math

import torch

from pagrob import data, denoiser
from pagrob.settings import DenoiserSettings
from pagrob.steps import _cli


def parser():
    p = _cli.parser(__doc__)
    p.add_argument("--data", required=True, help="prepared dataset file")
    # arch: one of denoiser.ARCHS; sigma_min, sigma_max: the noise levels it learns
    _cli.add_settings(p, DenoiserSettings)
    p.add_argument("--out", required=True, help="the denoiser file (.pt; a .json beside it)")
    return p


def test_error(net, ds: data.Dataset, settings: DenoiserSettings, device) -> dict[str, float]:
    """Noise-prediction MSE on the test images at sigma_min, their geometric mean and
    sigma_max (a fixed seed: the same noise for every model)."""
    g = torch.Generator().manual_seed(0)
    x = ds.x_test.to(device)
    e = torch.randn(ds.x_test.shape, generator=g).to(device)  # cpu: seeded draw, moved once
    y = ds.y_test.to(device)
    levels = [settings.sigma_min, math.sqrt(settings.sigma_min * settings.sigma_max)]
    out = {}
    with torch.no_grad():
        for sigma in [*levels, settings.sigma_max]:
            s = torch.full((len(x),), sigma, device=device)
            pred = net.noise(x + sigma * e, y, s)
            out[f"{sigma:g}"] = float((pred - e).pow(2).mean())
    return out


def main() -> None:
    args = parser().parse_args()
    settings = _cli.read_settings(args, DenoiserSettings)
    device = _cli.setup(args, [args.out])
    ds = data.load_prepared(args.data)
    torch.manual_seed(settings.seed)
    net = denoiser.build(
        settings.arch, ds.input_shape, ds.num_classes, width=settings.width, scale=settings.scale
    )
    _cli.log(
        f"training the {settings.arch} denoiser on {ds.name} ({len(ds.x_train)} images) on "
        f"{device}, {sum(p.numel() for p in net.parameters())} parameters, settings {settings}"
    )
    history = denoiser.fit(net, ds.x_train, ds.y_train, settings, device, log=_cli.log)
    errors = test_error(net, ds, settings, device)
    _cli.log(f"test noise MSE by sigma: {errors}")
    denoiser.save(args.out, net, settings, dataset=ds.name, history=history, test_mse=errors)


if __name__ == "__main__":
    _cli.run(main)

"""Train an autoencoder on a prepared dataset's training images and save it.

Its decoder's Jacobian gives the tangent spaces of the data manifold that the tangent-space
fraction (a PAG score needing no robust model) and the on/off-manifold noise use. Saved with
the per-epoch history, the test and training reconstruction errors (MSE per pixel), the input
dimension d, the latent size k and the random-direction baseline sqrt(k / d).
"""

from __future__ import annotations

import math

import torch

from pagrob import autoencoder, data
from pagrob.settings import AutoencoderSettings
from pagrob.steps import _cli


def parser():
    p = _cli.parser(__doc__)
    p.add_argument("--data", required=True, help="prepared dataset file")
    # arch: one of autoencoder.ARCHS; latent: the latent size k; lr: Adam's learning rate
    _cli.add_settings(p, AutoencoderSettings)
    p.add_argument("--out", required=True, help="the autoencoder file (.pt; a .json beside it)")
    return p


def check_inputs(arch: str, ds: data.Dataset, latent: int) -> None:
    shape = ds.input_shape
    if ds.bounds != (0.0, 1.0):
        raise ValueError(
            f"dataset {ds.name} has inputs bounded by {ds.bounds}, but the autoencoders decode "
            "into [0, 1] (sigmoid output); use an image dataset"
        )
    if arch == "conv" and (len(shape) != 3 or any(s % 8 for s in shape[1:])):
        raise ValueError(
            f"arch conv needs C x H x W images with H and W divisible by 8, but {ds.name} has "
            f"inputs of shape {shape}; use arch mlp (datasets.<d>.autoencoder.arch)"
        )
    d = math.prod(shape)
    if not 1 <= latent < d:
        raise ValueError(f"latent {latent} for {ds.name} (d = {d}): choose 1 <= latent < {d}")


def main() -> None:
    args = parser().parse_args()
    settings = _cli.read_settings(args, AutoencoderSettings)
    if settings.arch not in autoencoder.ARCHS:
        raise ValueError(f"arch {settings.arch!r}: one of {autoencoder.ARCHS}")
    device = _cli.setup(args, [args.out])
    ds = data.load_prepared(args.data)
    check_inputs(settings.arch, ds, settings.latent)
    x_train = ds.x_train.to(device)  # once
    torch.manual_seed(settings.seed)
    ae = autoencoder.build(settings.arch, ds.input_shape, settings.latent)
    d, k = math.prod(ds.input_shape), settings.latent
    _cli.log(
        f"training the {settings.arch} autoencoder (latent {k}, d {d}) on {ds.name} "
        f"({len(x_train)} images) on {device}, {sum(p.numel() for p in ae.parameters())} "
        f"parameters, settings {settings}"
    )
    history = autoencoder.fit(ae, x_train, settings, device, log=_cli.log)
    test_mse = autoencoder.reconstruction_error(ae, ds.x_test.to(device))
    train_mse = autoencoder.reconstruction_error(ae, x_train)
    baseline = autoencoder.random_baseline(k, d)
    _cli.log(
        f"test MSE {test_mse:.6f}, train MSE {train_mse:.6f}, baseline sqrt(k/d) {baseline:.4f}"
    )
    autoencoder.save(
        args.out,
        ae,
        settings,
        dataset=ds.name,
        history=history,
        test_mse=test_mse,
        train_mse=train_mse,
        d=d,
        k=k,
        baseline=baseline,
    )
    _cli.log(f"saved {args.out}")


if __name__ == "__main__":
    _cli.run(main)

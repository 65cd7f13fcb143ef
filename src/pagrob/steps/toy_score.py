"""The score-based source validated where the truth is known: on the toy data, each class's
smoothed density is a Gaussian mixture whose score is exact (data.toy_score), so a trained
denoiser's residual D(x, c, sigma) - x (sigma^2 times its learned score) can be compared with it:
the mean cosine per class, on the test points and on the grid of Fig. 3's region, at the
denoiser's smallest and largest noise level and the config's."""

from __future__ import annotations

import pandas as pd
import torch

from pagrob import data, denoiser, report
from pagrob.steps import _cli

#: grid points per side over Fig. 3's region (figures.decision_regions' span)
RESOLUTION = 60


def region(x_test: torch.Tensor) -> torch.Tensor:
    """Fig. 3's region: the test points' box, 15% wider on each side, as a grid of points."""
    lo, hi = x_test.min(0).values, x_test.max(0).values
    pad = 0.15 * (hi - lo)
    axes = [
        torch.linspace(lo[i] - pad[i], hi[i] + pad[i], RESOLUTION)  # cpu: the toy's points
        for i in (0, 1)
    ]
    return torch.cartesian_prod(*axes)


def cosines(net, x: torch.Tensor, centers, sigma: float) -> torch.Tensor:
    """[K] the mean cosine per class between the learned and the exact score at ``x``."""
    learned = denoiser.score_targets(net, x, sigma).double()  # sigma^2 times the score
    exact = data.toy_score(x, centers, sigma)
    return torch.cosine_similarity(learned, exact, dim=2).mean(0)


def main() -> None:
    p = _cli.parser(__doc__)
    p.add_argument("--data", required=True, help="the toy's prepared data")
    p.add_argument("--denoiser", required=True, help="the toy's denoiser (pagrob.steps.denoiser)")
    p.add_argument("--centers", required=True, help="the toy's mode centres per class (JSON)")
    p.add_argument("--sigma", type=float, required=True, help="the config's noise level")
    _cli.add_table_outputs(p)
    args = p.parse_args()
    _cli.setup(args, [args.out_md, args.out_csv])
    import json

    centers = json.loads(args.centers)
    ds = data.load_prepared(args.data)
    net, meta = denoiser.load(args.denoiser)
    s = meta["settings"]
    sigmas = sorted({s["sigma_min"], args.sigma, s["sigma_max"]})
    rows = []
    for where, x in (("test points", ds.x_test), ("Fig. 3's region", region(ds.x_test))):
        for sigma in sigmas:
            for k, cos in enumerate(cosines(net, x, centers, sigma).tolist()):
                rows.append({"where": where, "sigma": sigma, "class": k, "cosine": cos})
    full = pd.DataFrame(rows)
    shown = full.pivot_table(index=["where", "sigma"], columns="class", values="cosine", sort=False)
    shown = shown.reset_index()
    shown.columns = ["where", "σ"] + [f"class {k}" for k in shown.columns[2:]]
    for c in shown.columns[2:]:
        shown[c] = shown[c].map(lambda v: f"{v:.3f}")
    shown["σ"] = shown["σ"].map(lambda v: f"{v:g}" + (" (the config's)" if v == args.sigma else ""))
    text = (
        "# The toy's learned score against the exact one\n\n"
        "Mean cosine, per class, between the denoiser's residual D(x, c, σ) − x (σ² times its "
        "learned score of class c) and the exact score of class c's density smoothed at σ, on "
        f"the {len(ds.x_test)} test points and on a {RESOLUTION}×{RESOLUTION} grid over Fig. 3's "
        "region; 1 is the same direction everywhere.\n\n" + report.markdown(shown)
    )
    _cli.write_table(args, full, text)
    _cli.log(text)


if __name__ == "__main__":
    _cli.run(main)

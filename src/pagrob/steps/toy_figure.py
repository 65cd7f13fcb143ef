"""Fig. 3: decision regions of the vanilla and PAG toy models (a row per seed), with the unit
margin gradients (grad_x (f_1 - f_0)) at every 20th test point and each model's mean manifold
alignment |cos(grad_x (f_1 - f_0), line)| over the test points (``pagrob.toy_pag``)."""

from __future__ import annotations

import argparse

import torch

from pagrob import data, figures, models, report, toy_pag
from pagrob.steps import _cli

#: the margin gradient is drawn at every ARROW_EVERY-th test point
ARROW_EVERY = 20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--metrics", required=True, help="gathered toy metrics (for the titles)")
    _cli.add_figure_outputs(p)
    args = p.parse_args()
    ds = data.load_prepared(args.data)
    metrics = report.read_metrics(args.metrics)
    loaded = [models.load_model(path) for path in args.models]
    tangent = data.toy_tangent()
    at = ds.x_test[::ARROW_EVERY]

    def arrows(model):
        g = toy_pag.margin_gradients(model, at)
        return at, g / torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp(min=toy_pag.COS_EPS)

    rows = {}
    for model, meta in loaded:
        m = metrics[(metrics["source"] == meta["source"]) & (metrics["seed"] == meta["seed"])]
        acc = {r["metric"]: r["accuracy"] for _, r in m.iterrows()}
        robust = ", ".join(f"PGD {k.upper()} {v:.1f}%" for k, v in acc.items() if k != "clean")
        name = report.METHOD_NAMES.get(meta["source"], meta["source"])
        if meta["source"] != "vanilla":
            name = f"PAG ({name}, λ={meta['lam']:g})"
        title = (
            f"{name}, seed {meta['seed']}\nclean {acc.get('clean', float('nan')):.1f}%, {robust}"
        )
        aligned = toy_pag.manifold_alignment(model, ds.x_test, tangent).mean().item()
        title += f"\n|cos(∇margin, line)| = {aligned:.2f}"
        rows.setdefault(meta["seed"], []).append((meta["source"] != "vanilla", title, model))
    panels = [
        [(t, m) for _, t, m in sorted(r, key=lambda e: e[0])] for _, r in sorted(rows.items())
    ]
    figures.decision_regions(
        panels, ds.x_test, ds.y_test, args.out_png, args.out_pdf, arrows=arrows
    )
    _cli.log(f"{len(loaded)} models -> {args.out_png}, {args.out_pdf}")


if __name__ == "__main__":
    _cli.run(main)

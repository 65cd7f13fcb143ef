"""Figures of the PAG scores (matplotlib and pandas only: no torch, for the report environment).

- :func:`pag_vs_robustness`: every model as one point, its PAG score against its AutoAttack
  robust accuracy, one panel per threat model, Spearman's ρ in the title;
- :func:`pag_vs_lambda`: Fig. 5's λ ablation as a measured statement, the PAG score against λ.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pagrob import report  # noqa: E402
from pagrob.plots import save  # noqa: E402
from pagrob.pag_report import SCORE_NAMES, method, references, robustness_points, spearman  # noqa: E402

NORM_NAMES = {"linf": "ℓ∞", "l2": "ℓ2"}


def _colors(sources) -> dict[str, str]:
    order = report.SOURCE_ORDER + ["clustered_nn"]
    ranked = sorted(set(sources), key=lambda s: (order.index(s) if s in order else len(order), s))
    return {s: f"C{i % 10}" for i, s in enumerate(ranked)}


def _rho_text(points: pd.DataFrame) -> str:
    honest = points[~points["circular"]]
    rho = spearman(honest["value"], honest["accuracy"])
    text = f"ρ = {'n/a' if math.isnan(rho) else f'{rho:+.2f}'}, n = {len(honest)}"
    if points["circular"].any():
        rho_all = spearman(points["value"], points["accuracy"])
        text += f" (circular excluded; with them ρ = {'n/a' if math.isnan(rho_all) else f'{rho_all:+.2f}'}, n = {len(points)})"
    return text


def pag_vs_robustness(scores: pd.DataFrame, metrics: pd.DataFrame, score: str, png, pdf) -> pd.DataFrame:
    """One panel per threat model (norm, ε) of the metrics' AutoAttack rows: each model's
    ``score`` against the teacher of that threat model (x) and its AutoAttack accuracy (y),
    coloured by source; circular points (a RIGD student against its own teacher, a teacher
    against itself) hollow and left out of the title's Spearman ρ. Returns the points."""
    points = robustness_points(scores, metrics, score)
    if points.empty:
        raise ValueError(
            f"no model has both a {score} score against a teacher_<norm> reference and an "
            "AutoAttack row for that norm in the metrics"
        )
    norms = {n: i for i, n in enumerate(NORM_NAMES)}
    panels = sorted(points.groupby(["norm", "eps"]), key=lambda p: (norms.get(p[0][0], len(norms)), p[0]))
    colors = _colors(points["source"])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    for ax, ((norm, eps), g) in zip(axes[0], panels):
        several = g.groupby("source")["lam"].nunique()
        for source, s in g.groupby("source", sort=False):
            ax.scatter(
                s["value"], s["accuracy"], s=36, label=method(source), edgecolors=colors[source],
                facecolors=["none" if c else colors[source] for c in s["circular"]],
            )
            if several[source] > 1:
                seeds = s.groupby("lam")["seed"].transform("nunique")
                for (_, r), n in zip(s.iterrows(), seeds):
                    label = f"λ={r['lam']:g}" + (f" s{r['seed']}" if n > 1 else "")
                    ax.annotate(label, (r["value"], r["accuracy"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"{SCORE_NAMES.get(score, score)} vs {g['reference'].iloc[0]}")
        ax.set_ylabel(f"AutoAttack {NORM_NAMES.get(norm, norm)} ε={eps:g} accuracy (%)")
        ax.set_title(f"{NORM_NAMES.get(norm, norm)}: {_rho_text(g)}", fontsize=8)
        ax.legend(fontsize=6)
    dataset = ", ".join(sorted(points["dataset"].astype(str).unique()))
    fig.suptitle(f"{dataset}: PAG score against robust accuracy (hollow: circular)", fontsize=9)
    fig.tight_layout()
    save(fig, png, pdf)
    return points


def pag_vs_lambda(scores: pd.DataFrame, source: str, png, pdf, score: str = "alignment") -> None:
    """``score`` of ``source``'s models against λ (log axis; mean ± std over seeds), one line
    per reference; the vanilla model (λ = 0) dashed and the floor dotted, in the line's colour."""
    sel = scores[scores["score"] == score]
    if not (sel["source"] == source).any():
        raise ValueError(f"no {score} scores for source {source!r}")
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    rhos = []
    for i, ref in enumerate(references(sel["reference"])):
        g, color = sel[sel["reference"] == ref], f"C{i}"
        models = g[g["source"].isin([source, "vanilla"])].groupby("lam")["value"].mean()
        rho = spearman(models.index, models)
        rhos.append(f"ρ(λ, {ref}) = {'n/a' if math.isnan(rho) else f'{rho:+.2f}'}")
        s = g[g["source"] == source].groupby("lam")["value"].agg(["mean", "std"]).reset_index()
        ax.errorbar(s["lam"], s["mean"], yerr=s["std"].fillna(0), marker="o", color=color, label=f"{method(source)} vs {ref}")
        for base, style in (("vanilla", "--"), ("floor", ":")):
            v = g[g["source"] == base]["value"]
            if len(v):
                ax.axhline(v.mean(), linestyle=style, color=color, linewidth=1, label=f"{method(base)} vs {ref}")
    ax.set_xscale("log")
    lams = sorted(sel[sel["source"] == source]["lam"].unique())
    ax.set_xticks(lams, [f"{v:g}" for v in lams])
    ax.minorticks_off()
    ax.set_xlabel("λ")
    ax.set_ylabel(SCORE_NAMES.get(score, score))
    ax.legend(fontsize=6)
    ax.set_title(
        f"{method(source)}: {SCORE_NAMES.get(score, score)} against λ\n"
        f"Spearman {', '.join(rhos)} (vanilla as λ = 0)", fontsize=8,
    )
    fig.tight_layout()
    save(fig, png, pdf)

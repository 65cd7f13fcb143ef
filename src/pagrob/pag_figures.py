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
    honest = points[points["relation"] == "independent"]
    rho = spearman(honest["value"], honest["accuracy"])
    text = f"ρ = {'n/a' if math.isnan(rho) else f'{rho:+.2f}'}, n = {len(honest)}"
    if len(honest) < len(points):
        rho_all = spearman(points["value"], points["accuracy"])
        rho_all = "n/a" if math.isnan(rho_all) else f"{rho_all:+.2f}"
        text += f" (same recipe excluded; with them ρ = {rho_all}, n = {len(points)})"
    return text


SHORT_NAMES = {
    "vanilla": "V", "one_image": "OI", "class_mean": "CM", "nearest_neighbor": "NN",
    "clustered_nn": "CNN", "rigd_linf": "R∞", "rigd_l2": "R2", "teacher_linf": "T∞",
    "teacher_l2": "T2", "file": "F",
}


def pag_vs_robustness(
    scores: pd.DataFrame, metrics: pd.DataFrame, score, png, pdf
) -> pd.DataFrame:
    """One row of panels per score of ``score`` (a name or a list: the instruments), one panel per
    threat model (norm, ε) of the metrics' AutoAttack rows: each model's score (against the
    reference of that threat model, where the score has references) on x, its AutoAttack
    accuracy on y, coloured by source and labelled; points of the reference's own recipe
    (another seed of it, or a RIGD student of it) hollow and left out of the title's Spearman ρ.
    Returns the points of every score (column ``score``)."""
    names = [score] if isinstance(score, str) else list(score)
    found = []
    for name in names:
        points = robustness_points(scores, metrics, name)
        if len(points):
            found.append(points.assign(score=name))
    if not found:
        raise ValueError(
            f"no model has both a score of {names} and an AutoAttack row in the metrics "
            "(alignments need a teacher_<norm> reference of the AutoAttack row's norm)"
        )
    norms = {n: i for i, n in enumerate(NORM_NAMES)}
    panels_of = [
        sorted(p.groupby(["norm", "eps"]), key=lambda q: (norms.get(q[0][0], len(norms)), q[0]))
        for p in found
    ]
    cols = max(len(p) for p in panels_of)
    colors = _colors(pd.concat(found)["source"])
    fig, axes = plt.subplots(
        len(found), cols, figsize=(5.4 * cols, 4.4 * len(found)), squeeze=False
    )
    for row, (points, panels) in enumerate(zip(found, panels_of)):
        name = points["score"].iloc[0]
        for ax, ((norm, eps), g) in zip(axes[row], panels):
            for source, s in g.groupby("source", sort=False):
                hollow = s["relation"] != "independent"
                ax.scatter(
                    s["value"], s["accuracy"], s=36, label=method(source),
                    edgecolors=colors[source],
                    facecolors=["none" if h else colors[source] for h in hollow],
                )
                for _, r in s.iterrows():
                    label = SHORT_NAMES.get(source, source)
                    if s["lam"].nunique() > 1:
                        label += f" λ={r['lam']:g}"
                    if s["seed"].nunique() > 1:
                        label += f" s{r['seed']}"
                    ax.annotate(label, (r["value"], r["accuracy"]), fontsize=8,
                                xytext=(3, 3), textcoords="offset points")
            ref = g["reference"].iloc[0]
            xlabel = SCORE_NAMES.get(name, name)
            ax.set_xlabel(xlabel if not ref.startswith("teacher_") else f"{xlabel} vs {ref}")
            ax.set_ylabel(f"AutoAttack {NORM_NAMES.get(norm, norm)} ε={eps:g} accuracy (%)")
            ax.set_title(f"{NORM_NAMES.get(norm, norm)}, {xlabel}: {_rho_text(g)}", fontsize=8)
        axes[row][0].legend(fontsize=8)
    for row in axes:
        for ax in row:
            if not ax.has_data():
                ax.set_visible(False)
    dataset = ", ".join(sorted(pd.concat(found)["dataset"].astype(str).unique()))
    fig.suptitle(
        f"{dataset}: PAG scores against robust accuracy (hollow: the reference's own recipe)",
        fontsize=9,
    )
    fig.tight_layout()
    save(fig, png, pdf)
    return pd.concat(found, ignore_index=True)


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

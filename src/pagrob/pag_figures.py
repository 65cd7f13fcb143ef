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

from pagrob import registry, report  # noqa: E402
from pagrob.pag_report import SCORE_NAMES, method, references, robustness_points, spearman  # noqa: E402
from pagrob.plots import lam_axis, save  # noqa: E402

NORM_NAMES = {"linf": "ℓ∞", "l2": "ℓ2"}


def _colors(sources) -> dict[str, str]:
    order = report.SOURCE_ORDER + ["clustered_nn"]
    ranked = sorted(set(sources), key=lambda s: (order.index(s) if s in order else len(order), s))
    return {s: f"C{i % 10}" for i, s in enumerate(ranked)}


def _circular(points: pd.DataFrame) -> pd.Series:
    """Which points are models that saw a robust model (registry.circular), or are circular for
    the score (relation circular: a score-based student against the score instrument): never
    ranked."""
    out = points["source"].map(registry.circular).astype(bool)
    if "relation" in points:
        out |= points["relation"] == "circular"
    return out


def _rho_text(points: pd.DataFrame) -> str:
    """ρ over the models that never saw a robust model, a model one point whatever its seeds,
    with its bootstrap interval and exact permutation p (pagrob.stats.clustered_rank_correlation),
    then ρ with all points."""
    from pagrob import stats

    honest = points[~_circular(points)]
    clusters = list(zip(honest["source"], honest["lam"].astype(float)))
    r = stats.clustered_rank_correlation(honest["value"], honest["accuracy"], clusters)
    rho = r["rho"]
    text = f"ρ = {'n/a' if math.isnan(rho) else f'{rho:+.2f}'}"
    if not math.isnan(r["ci_low"]):
        text += f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}], p = {r['p']:.2f}"
    text += f", {r['models']} models ({r['points']} runs)"
    if len(honest) < len(points):
        rho_all = spearman(points["value"], points["accuracy"])
        rho_all = "n/a" if math.isnan(rho_all) else f"{rho_all:+.2f}"
        text += f" (circular models excluded; with them, runs as points, ρ = {rho_all})"
    return text


SHORT_NAMES = {
    "vanilla": "V",
    "one_image": "OI",
    "class_mean": "CM",
    "nearest_neighbor": "NN",
    "clustered_nn": "CNN",
    "score_based": "SB",
    "score_shuffled": "SB~",
    "rigd_linf": "R∞",
    "rigd_l2": "R2",
    "teacher_linf": "T∞",
    "teacher_l2": "T2",
    "file": "F",
}


def pag_vs_robustness(scores: pd.DataFrame, metrics: pd.DataFrame, score, png, pdf) -> pd.DataFrame:
    """One row of panels per score of ``score`` (a name or a list: the instruments), one panel per
    threat model (norm, ε) of the metrics' AutoAttack rows: each model's score (against the
    reference of that threat model, where the score has references) on x, its AutoAttack
    accuracy on y, coloured by source and labelled; the models that saw a robust model (RIGD
    students, teachers: registry.circular) hollow and left out of the title's Spearman ρ.
    Returns the points of every score (column ``score``)."""
    names = [score] if isinstance(score, str) else list(score)
    found = _found_points(scores, metrics, names)
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
            _robustness_panel(ax, g, name, norm, eps, colors)
        axes[row][0].legend(fontsize=8)
    for row in axes:
        for ax in row:
            if not ax.has_data():
                ax.set_visible(False)
    dataset = ", ".join(sorted(pd.concat(found)["dataset"].astype(str).unique()))
    fig.suptitle(
        f"{dataset}: PAG scores against robust accuracy (hollow: a model that saw a robust one)",
        fontsize=9,
    )
    fig.tight_layout()
    save(fig, png, pdf)
    return pd.concat(found, ignore_index=True)


def _found_points(scores: pd.DataFrame, metrics: pd.DataFrame, names: list) -> list:
    """The points (score beside AutoAttack accuracy) of each score of ``names`` that has any."""
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
    return found


def _robustness_panel(ax, g: pd.DataFrame, name: str, norm: str, eps: float, colors) -> None:
    """Draw one threat model's panel: each model's score against its accuracy."""
    for source, s in g.groupby("source", sort=False):
        hollow = _circular(s)
        ax.scatter(
            s["value"],
            s["accuracy"],
            s=36,
            label=method(source),
            edgecolors=colors[source],
            facecolors=["none" if h else colors[source] for h in hollow],
        )
        for _, r in s.iterrows():
            label = SHORT_NAMES.get(source, source)
            if s["lam"].nunique() > 1:
                label += f" λ={r['lam']:g}"
            if s["seed"].nunique() > 1:
                label += f" s{r['seed']}"
            ax.annotate(
                label,
                (r["value"], r["accuracy"]),
                fontsize=8,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ref = g["reference"].iloc[0]
    xlabel = SCORE_NAMES.get(name, name)
    ax.set_xlabel(xlabel if not ref.startswith("teacher_") else f"{xlabel} vs {ref}")
    ax.set_ylabel(f"AutoAttack {NORM_NAMES.get(norm, norm)} ε={eps:g} accuracy (%)")
    ax.set_title(f"{NORM_NAMES.get(norm, norm)}, {xlabel}: {_rho_text(g)}", fontsize=8)


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
        # vanilla as lambda = 0, then the source's lambdas: one line, mean +- std over seeds
        s = g[g["source"].isin([source, "vanilla"])].groupby("lam")["value"].agg(["mean", "std"])
        s = s.reset_index()
        ax.errorbar(
            s["lam"],
            s["mean"],
            yerr=s["std"].fillna(0),
            marker="o",
            color=color,
            label=f"{method(source)} vs {ref} (λ = 0: vanilla)",
        )
        v = g[g["source"] == "floor"]["value"]
        if len(v):
            ax.axhline(
                v.mean(),
                linestyle=":",
                color=color,
                linewidth=1,
                label=f"{method('floor')} vs {ref}",
            )
    lam_axis(ax, sel[sel["source"].isin([source, "vanilla"])]["lam"])
    ax.set_ylabel(SCORE_NAMES.get(score, score))
    ax.legend(fontsize=8)
    ax.set_title(
        f"{method(source)}: {SCORE_NAMES.get(score, score)} against λ\n"
        f"Spearman {', '.join(rhos)} (vanilla as λ = 0)",
        fontsize=8,
    )
    fig.tight_layout()
    save(fig, png, pdf)


def grad_of_figure(table: pd.DataFrame, png, pdf) -> None:
    """The grad_of ablation as bars: per source, one bar per class score, for each robust
    accuracy of the table (± its 95% interval) and the alignment with each reference."""
    from pagrob.report import CLASS_SCORE_NAMES, METHOD_NAMES

    metrics = [m for m in ("aa_linf", "aa_l2", "linf", "l2") if (table["metric"] == m).any()][:2]
    aligned = [c for c in table.columns if c.startswith("alignment vs ")]
    panels = [(m, "metric") for m in metrics] + [(c, "score") for c in aligned]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    bases = list(
        dict.fromkeys(table["base"] if "base" in table else table["source"].str.split(".").str[0])
    )
    scores = [s for s in CLASS_SCORE_NAMES if (table["class_score"] == s).any()]
    width = 0.8 / max(1, len(scores))
    for ax, (what, kind) in zip(axes[0], panels):
        for j, score in enumerate(scores):
            xs, ys, err = [], [], []
            for i, b in enumerate(bases):
                sel = table[
                    (table["source"].str.split(".").str[0] == b) & (table["class_score"] == score)
                ]
                if kind == "metric":
                    sel = sel[sel["metric"] == what]
                    value = sel["mean"] if len(sel) else []
                    e = sel["half"].fillna(0) if len(sel) else []
                else:
                    value = sel[what].dropna()[:1] if what in sel else []
                    e = [0] * len(value)
                if len(value):
                    xs.append(i + (j - (len(scores) - 1) / 2) * width)
                    ys.append(float(list(value)[0]))
                    err.append(float(list(e)[0]))
            ax.bar(
                xs, ys, width, yerr=err, capsize=3, color=f"C{j}", label=CLASS_SCORE_NAMES[score]
            )
        ax.set_xticks(range(len(bases)), [METHOD_NAMES.get(b, b) for b in bases], fontsize=8)
        names = {
            "aa_linf": "AutoAttack L∞",
            "aa_l2": "AutoAttack L2",
            "linf": "PGD L∞",
            "l2": "PGD L2",
        }
        ax.set_ylabel("accuracy (%)" if kind == "metric" else what)
        ax.set_title(names.get(what, what), fontsize=9)
        ax.legend(fontsize=8, title="class score", title_fontsize=8)
    fig.suptitle("Which class score should the PAG loss align?", fontsize=10)
    fig.tight_layout()
    save(fig, png, pdf)

"""The answer as one figure (matplotlib and pandas only: the report environment): for each model,
its difference to vanilla with its 95% interval, one panel per robustness measure (threat model)
and per alignment instrument, a line at 0, the models that saw a robust model set apart below as
the ceiling. Drawn from ``pagrob.answer``'s frame."""

from __future__ import annotations

import pandas as pd

from pagrob import report
from pagrob.answer import CEILING, CIRCULAR, SECONDARY, VERDICT, column
from pagrob.plots import plt, save

#: a point's look by its verdict: decided up, decided down, none detected, the ceiling
LOOKS = {
    "up": {"color": "#1b7837", "marker": "o", "fillstyle": "full"},
    "down": {"color": "#b2182b", "marker": "o", "fillstyle": "full"},
    "none": {"color": "#333333", "marker": "o", "fillstyle": "none"},
    CEILING: {"color": "#888888", "marker": "s", "fillstyle": "none"},
}
#: each measure's unit on the x-axis (robustness: any of its measures)
UNITS = {
    "robustness": "points of robust accuracy",
    "alignment": "cosine",
    "teacher_alignment": "cosine",
    "score_alignment": "cosine",
    "manifold_alignment": "|cosine|",
    "tangent_fraction": "fraction",
}


def _unit(r) -> str:
    return UNITS["robustness"] if r["question"] == "robustness" else UNITS.get(r["measure"], "")


def _look(r) -> dict:
    if r["role"] in (CEILING, CIRCULAR):  # never tested: the ceiling's look
        return LOOKS[CEILING]
    if r["verdict"].startswith(("more", "ranks robustness")):
        return LOOKS["up"]
    if r["verdict"].startswith(("less", "ranks it inversely")):
        return LOOKS["down"]
    return LOOKS["none"]


def answer_figure(df: pd.DataFrame, title: str, png, pdf) -> None:
    """One panel per column of the answer's compact table, one row per model (the ceiling's
    below a line), each a point at the difference to vanilla with its interval as a bar."""
    shown = df[df["question"].isin(("robustness", "alignment")) & (df["role"] != SECONDARY)]
    if shown.empty:
        raise ValueError("the answer has no difference to vanilla to draw")
    shown = shown.assign(column=[column(r) for _, r in shown.iterrows()])
    panels = list(dict.fromkeys(shown["column"]))
    keys = list(dict.fromkeys(zip(shown["role"] == CEILING, shown["source"], shown["lam"])))
    keys = sorted(keys, key=lambda k: k[0])  # the models that never saw a robust one first
    gap = 0.8 if any(k[0] for k in keys) and not all(k[0] for k in keys) else 0.0
    ypos = {k: -(i + (gap if k[0] else 0.0)) for i, k in enumerate(keys)}
    labels = [
        report.method(s) + (f" (λ {lam:g})" if lam and s not in report.TEACHERS else "")
        for _, s, lam in keys
    ]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(2.6 * len(panels) + 1.6, 0.42 * len(keys) + 1.6), sharey=True
    )
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, panel in zip(axes, panels):
        rows = shown[shown["column"] == panel]
        _answer_panel(ax, panel, rows, ypos, keys, gap, first_panel=ax is axes[0])
    axes[0].set_yticks(list(ypos.values()), labels, fontsize=7)
    _legend(fig)
    fig.suptitle(f"{title}: each model minus vanilla, 95% intervals", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save(fig, png, pdf)


def _answer_panel(
    ax, panel: str, rows: pd.DataFrame, ypos: dict, keys: list, gap: float, first_panel: bool
) -> None:
    """Draw one column's panel: each model's difference to vanilla with its interval."""
    for _, r in rows.iterrows():
        y = ypos[(r["role"] == CEILING, r["source"], r["lam"])]
        look = _look(r)
        ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=look["color"], lw=1.6)
        ax.plot([r["estimate"]], [y], linestyle="none", markersize=6, **look)
        if r["measure"] != rows.iloc[0]["measure"]:  # e.g. a teacher's PGD
            ax.annotate(
                r["measure"],
                (r["estimate"], y),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=6,
                color=look["color"],
            )
    ax.axvline(0, color="black", lw=0.8)
    if gap:
        ax.axhline(-(sum(not k[0] for k in keys) - 1 + gap / 2 + 0.5), color="#bbbbbb", lw=0.6)
        if first_panel:
            ax.annotate(
                "ceiling: saw a robust model, not tested",
                xy=(0, -(sum(not k[0] for k in keys) - 1 + gap / 2 + 0.5)),
                xycoords=("axes fraction", "data"),
                xytext=(2, -8),
                textcoords="offset points",
                fontsize=6,
                color="#666666",
            )
    first = rows.iloc[0]
    what = [first["measure"]] if first["question"] == "robustness" else []
    if first["role"] == VERDICT:
        what.append(f"{int(first['seeds'])} seeds")
    ax.set_title(panel + (f"\n({', '.join(what)})" if what else ""), fontsize=8)
    ax.set_xlabel(f"minus vanilla ({_unit(first)})", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(axis="x", color="#eeeeee")


def _legend(fig) -> None:
    """The figure's legend of the points' looks, below the panels."""
    handles = [
        plt.Line2D([], [], linestyle="none", markersize=6, **LOOKS[k])
        for k in ("up", "down", "none", CEILING)
    ]
    fig.legend(
        handles,
        [
            "decided: higher",
            "decided: lower",
            "no detectable difference",
            "not tested (ceiling, or circular for the instrument)",
        ],
        loc="lower center",
        ncol=4,
        fontsize=7,
        frameon=False,
        bbox_to_anchor=(0.5, -0.02),
    )

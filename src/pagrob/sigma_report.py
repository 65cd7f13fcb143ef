"""The noise-level sweep's table and figure (experiments.sigma_sweep): a score-based source's
clean and robust accuracy against the noise level sigma of its targets, beside vanilla of the
same seed; pure pandas and matplotlib (no PyTorch)."""

from __future__ import annotations

import math

import pandas as pd

from pagrob import report
from pagrob.experiments.sigma_sweep import sigma_of


def sigma_table(metrics: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One row per model, by sigma (vanilla first): each metric's accuracy with its interval
    (report.summarize: one seed, the exact interval over its test images)."""
    full = report.summarize(metrics)
    full["sigma"] = full["source"].map(sigma_of)
    full = full.sort_values("sigma", kind="stable", na_position="first")
    labels = report.metric_labels(report.table_rows(metrics))
    rows = []
    for _, g in full.groupby("source", sort=False):
        sigma = g["sigma"].iloc[0]
        row = {"σ": "— (vanilla)" if sigma is None or math.isnan(sigma) else f"{sigma:g}"}
        for metric, label in labels.items():
            r = g[g["metric"] == metric]
            if len(r):
                row[label] = report.fmt(r["mean"].iloc[0], r["half"].iloc[0])
        rows.append(row)
    shown = pd.DataFrame(rows)
    dataset = metrics["dataset"].iloc[0]
    base = next(s for s in full["source"] if sigma_of(s) is not None).split(".")[0]
    text = (
        f"# The noise-level sweep: {report.method(base)} on {dataset} against σ\n\n"
        f"{report.note(shown)} Each row's targets are a denoiser's residual D(x, c, σ) − x at "
        "its σ (pixel units of the [0, 1] images); the same denoiser, the same seed.\n\n"
        + report.markdown(shown)
    )
    return full, text


def sigma_figure(full: pd.DataFrame, png, pdf) -> None:
    """Accuracy against sigma (log axis), one line per metric; vanilla's as dashed lines."""
    import matplotlib.pyplot as plt

    from pagrob.plots import save

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    swept = full[full["sigma"].notna()]
    vanilla = full[full["sigma"].isna()]
    for i, (metric, g) in enumerate(swept.groupby("metric", sort=False)):
        color = f"C{i}"
        g = g.sort_values("sigma")
        label = f"PGD-20 {report.NORM_SYMBOLS[metric]}" if metric in report.NORM_SYMBOLS else metric
        ax.errorbar(g["sigma"], g["mean"], yerr=g["half"], color=color, marker="o", label=label)
        v = vanilla[vanilla["metric"] == metric]
        if len(v):
            ax.axhline(v["mean"].iloc[0], color=color, linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xticks(
        sorted(swept["sigma"].unique()), [f"{s:g}" for s in sorted(swept["sigma"].unique())]
    )
    ax.minorticks_off()
    ax.set_xlabel("σ of the targets")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Score-based source against σ (dashed: vanilla)", fontsize=9)
    ax.legend(fontsize=7)
    save(fig, png, pdf)

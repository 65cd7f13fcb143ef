"""The paper's question answered from one run's numbers, in a few generated lines per dataset
(pandas and scipy only: runs in the report environment).

For an image dataset (``image_answer``):

1. Are the PAG-trained models more robust than vanilla? Per source and threat model, under
   AutoAttack (and under the table's PGD), the difference in robust accuracy to the vanilla
   model of the same seed on the same test images: with one seed a paired bootstrap interval over
   the images and the exact McNemar test (``stats.paired_difference``); with several, the
   t-interval over the seeds' paired differences.
2. Are their gradients more aligned? Per source and instrument (alignment against each reference,
   the tangent-space fraction), the difference to vanilla's score: a paired bootstrap over the
   images with one seed, a t-interval over the seeds with several.
3. Does alignment rank robustness? Per instrument and threat model, Spearman's rho between the
   score and the AutoAttack accuracy over the models independent of the reference, with a
   bootstrap interval and a permutation p-value (``stats.rank_correlation``).

For the toy (``toy_answer``), the ground truth: the PAG model against vanilla under the toy's PGD
and in manifold alignment, and whether manifold alignment ranks robustness and the
teacher-based alignment ranks the models as the ground truth does.

Every verdict follows ``stats.verdict``'s rule from the 95% interval, never a hand-written word.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pagrob import pag_report, report, stats

COLUMNS = [
    "dataset",
    "question",
    "source",
    "lam",
    "measure",
    "reference",
    "norm",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "n",
    "interval",
    "verdict",
]
#: the robustness metrics compared, AutoAttack first (the answer's), then the table's PGD
ROBUST_METRICS = ("aa_linf", "aa_l2", "linf", "l2")
#: the instruments of question 2 (score, reference or None: each reference)
ALIGNMENT_INSTRUMENTS = (
    ("alignment", None),
    ("alignment_log_softmax", None),
    ("tangent_fraction", "autoencoder"),
)
NORM_SYMBOLS = {"linf": "L∞", "l2": "L2"}


def _students(metrics: pd.DataFrame) -> list[tuple[str, float]]:
    keys = metrics[~metrics["source"].isin(("vanilla", *report.TEACHERS))][["source", "lam"]]
    pairs = keys.drop_duplicates().itertuples(index=False)
    order = {s: i for i, s in enumerate(report.SOURCE_ORDER)}
    return sorted(((s, float(lam)) for s, lam in pairs), key=lambda p: (order.get(p[0], 99), p[1]))


def _flags(rows: pd.DataFrame) -> dict[int, np.ndarray]:
    """seed -> per-image correctness of the rows (one per seed) that recorded it."""
    out = {}
    for _, r in rows.iterrows():
        if isinstance(r["correct"], str) and r["correct"].startswith("x"):
            out[int(r["seed"])] = stats.unpack(r["correct"], int(r["images"]))
    return out


def _combine(per_seed: dict[int, dict]) -> tuple[float, float, float, float, str]:
    """(estimate, low, high, p, interval) from per-seed paired results."""
    if len(per_seed) == 1:
        ((seed, r),) = per_seed.items()
        return (
            r["diff"],
            r["ci_low"],
            r["ci_high"],
            r.get("mcnemar_p", math.nan),
            (f"paired bootstrap over {r['n']} images, seed {seed}"),
        )
    mean, half = stats.t_interval([r["diff"] for r in per_seed.values()])
    return (
        mean,
        mean - half,
        mean + half,
        math.nan,
        (
            f"t over {len(per_seed)} seeds' paired differences ({next(iter(per_seed.values()))['n']} images each)"
        ),
    )


def robustness_rows(metrics: pd.DataFrame, dataset: str) -> list[dict]:
    """Question 1: each source against vanilla, per robustness metric with per-image results."""
    rows = []
    metrics = metrics[metrics["metric"].isin(ROBUST_METRICS)]
    vanilla = metrics[metrics["source"] == "vanilla"]
    for source, lam in _students(metrics):
        mine = metrics[(metrics["source"] == source) & (metrics["lam"].astype(float) == lam)]
        for metric in ROBUST_METRICS:
            a = _flags(mine[mine["metric"] == metric])
            b = _flags(vanilla[vanilla["metric"] == metric])
            seeds = sorted(set(a) & set(b))
            seeds = [s for s in seeds if len(a[s]) == len(b[s])]
            if not seeds:
                continue
            per_seed = {s: stats.paired_difference(a[s], b[s]) for s in seeds}
            est, low, high, p, interval = _combine(per_seed)
            rows.append(
                {
                    "dataset": dataset,
                    "question": "robustness",
                    "source": source,
                    "lam": lam,
                    "measure": "AutoAttack" if metric.startswith("aa_") else "PGD",
                    "reference": "vanilla",
                    "norm": metric.removeprefix("aa_"),
                    "estimate": est,
                    "ci_low": low,
                    "ci_high": high,
                    "p": p,
                    "n": len(seeds),
                    "interval": interval,
                    "verdict": stats.verdict(low, high, "more robust", "less robust"),
                }
            )
    return rows


def _per_image(rows: pd.DataFrame) -> dict[int, np.ndarray]:
    out = {}
    for _, r in rows.iterrows():
        if isinstance(r["per_image"], str) and r["per_image"]:
            out[int(r["seed"])] = np.array([float(v) for v in r["per_image"].split(";")])
    return out


def _models(df: pd.DataFrame) -> set[tuple]:
    return set(zip(df["source"], df["lam"].astype(float), df["seed"].astype(int)))


def alignment_rows(scores: pd.DataFrame, dataset: str, models: set[tuple]) -> list[dict]:
    """Question 2: each source's score against vanilla's, per instrument, for ``models`` (source,
    lam, seed: the main table's) only."""
    rows = []
    refs = pag_report.references(scores["reference"])
    scores = scores[
        [
            m in models
            for m in zip(scores["source"], scores["lam"].astype(float), scores["seed"].astype(int))
        ]
    ]
    vanilla = scores[scores["source"] == "vanilla"]
    students = scores[~scores["source"].isin(("vanilla", *report.TEACHERS, *pag_report.BASELINES))]
    for score, fixed in ALIGNMENT_INSTRUMENTS:
        for ref in [fixed] if fixed else refs:
            sel = lambda df: df[(df["score"] == score) & (df["reference"] == ref)]  # noqa: E731
            b = _per_image(sel(vanilla))
            for source, lam in _students(students):
                mine = sel(
                    students[
                        (students["source"] == source) & (students["lam"].astype(float) == lam)
                    ]
                )
                a = _per_image(mine)
                seeds = [s for s in sorted(set(a) & set(b)) if len(a[s]) == len(b[s])]
                if not seeds:
                    continue
                per_seed = {s: stats.paired_mean_difference(a[s], b[s]) for s in seeds}
                est, low, high, _, interval = _combine(per_seed)
                relation = set(mine["relation"]) - {"independent"}
                rows.append(
                    {
                        "dataset": dataset,
                        "question": "alignment",
                        "source": source,
                        "lam": lam,
                        "measure": score,
                        "reference": ref,
                        "norm": "",
                        "estimate": est,
                        "ci_low": low,
                        "ci_high": high,
                        "p": math.nan,
                        "n": len(seeds),
                        "interval": interval + (" (same recipe)" if relation else ""),
                        "verdict": stats.verdict(low, high),
                    }
                )
    return rows


#: the fewest points a rank correlation's interval is drawn from (fewer: not measured)
MIN_POINTS = 5


def correlation_rows(scores: pd.DataFrame, metrics: pd.DataFrame, dataset: str) -> list[dict]:
    """Question 3: per instrument and threat model, Spearman's rho between the score and the
    AutoAttack accuracy over the independent models (a point per model and seed)."""
    rows = []
    for score, _ in ALIGNMENT_INSTRUMENTS:
        points = pag_report.robustness_points(scores, metrics, score)
        for norm, g in points.groupby("norm", sort=False):
            g = g[g["relation"] == "independent"]
            if len(g) < MIN_POINTS:
                continue
            r = stats.rank_correlation(g["value"], g["accuracy"])
            rows.append(
                {
                    "dataset": dataset,
                    "question": "ranking",
                    "source": "",
                    "lam": math.nan,
                    "measure": score,
                    "reference": str(g["reference"].iloc[0]),
                    "norm": norm,
                    "estimate": r["rho"],
                    "ci_low": r["ci_low"],
                    "ci_high": r["ci_high"],
                    "p": r["p"],
                    "n": r["n"],
                    "interval": f"bootstrap over {r['n']} models (and seeds), permutation p",
                    "verdict": stats.verdict(
                        r["ci_low"],
                        r["ci_high"],
                        "ranks robustness (positive rank correlation)",
                        "ranks it inversely",
                        "no detectable rank correlation",
                    ),
                }
            )
    return rows


def _num(v: float, digits: int = 1) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.{digits}f}"


def _p(p: float) -> str:
    if p is None or math.isnan(p):
        return ""
    return ", p < 0.001" if p < 0.001 else f", p = {p:.3f}"


def markdown(df: pd.DataFrame, dataset: str) -> str:
    """The answer page: the rule, then a line per source (and instrument)."""
    name = lambda s: report.method(s)  # noqa: E731
    lines = [
        f"# The answer on {dataset}",
        "",
        f"Generated from this run's numbers; every verdict follows one rule: {stats.RULE} "
        "(for a rank correlation: above 0, “ranks robustness”; below, “inversely”). "
        "95% intervals in brackets.",
        "",
    ]
    rob = df[df["question"] == "robustness"]
    if len(rob):
        lines += [
            "## Are the PAG-trained models more robust than vanilla?",
            "",
            "Robust accuracy minus vanilla's (the same seed, on the same test images), in "
            "points; AutoAttack first, the table's PGD in parentheses.",
            "",
        ]
        for (source, lam), g in rob.groupby(["source", "lam"], sort=False):
            parts = []
            for norm in ("linf", "l2"):
                aa = g[(g["norm"] == norm) & (g["measure"] == "AutoAttack")]
                pgd = g[(g["norm"] == norm) & (g["measure"] == "PGD")]
                main = aa if len(aa) else pgd
                if not len(main):
                    continue
                r = main.iloc[0]
                text = (
                    f"{NORM_SYMBOLS[norm]} {r['measure']} {_num(r['estimate'])} "
                    f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]{_p(r['p'])} "
                    f"({r['interval']}): **{r['verdict']}**"
                )
                if len(aa) and len(pgd):
                    q = pgd.iloc[0]
                    text += (
                        f" (PGD {_num(q['estimate'])} [{_num(q['ci_low'])}, "
                        f"{_num(q['ci_high'])}], {q['interval']})"
                    )
                parts.append(text)
            lines.append(f"- {name(source)} (λ {lam:g}): " + "; ".join(parts))
        lines.append("")
    ali = df[df["question"] == "alignment"]
    if len(ali):
        lines += [
            "## Are their gradients more aligned than vanilla's?",
            "",
            "Each instrument's score minus vanilla's (alignment: with each independent "
            "robust reference; tangent-space fraction: with the data manifold).",
            "",
        ]
        for (measure, ref), g in ali.groupby(["measure", "reference"], sort=False):
            label = pag_report._column(measure, ref)
            parts = [
                f"{name(r['source'])} {_num(r['estimate'], 3)} [{_num(r['ci_low'], 3)}, "
                f"{_num(r['ci_high'], 3)}]: **{r['verdict']}**"
                for _, r in g.iterrows()
            ]
            lines.append(f"- {label} ({g['interval'].iloc[0]}): " + "; ".join(parts))
        lines.append("")
    cor = df[df["question"] == "ranking"]
    if len(cor):
        lines += [
            "## Does alignment rank robustness?",
            "",
            "Spearman's ρ between each instrument and the AutoAttack accuracy over the "
            "models independent of the reference.",
            "",
        ]
        for _, r in cor.iterrows():
            label = pag_report._column(r["measure"], r["reference"])
            lines.append(
                f"- {label}, {NORM_SYMBOLS.get(r['norm'], r['norm'])}: ρ = {_num(r['estimate'], 2)} "
                f"[{_num(r['ci_low'], 2)}, {_num(r['ci_high'], 2)}], permutation p = "
                f"{r['p']:.3f}, {int(r['n'])} models: **{r['verdict']}**"
            )
        lines.append("")
    return "\n".join(lines)


def image_answer(metrics: pd.DataFrame, scores: pd.DataFrame | None, dataset: str):
    """(frame, markdown) for an image dataset."""
    rows = robustness_rows(metrics, dataset)
    if scores is not None and len(scores):
        rows += alignment_rows(scores, dataset, _models(metrics))
        rows += correlation_rows(scores, metrics, dataset)
    if not rows:
        raise ValueError(
            f"nothing to answer on {dataset}: no vanilla model, or no per-image results "
            "(rebuild the metrics: their 'correct' column)"
        )
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df, markdown(df, dataset)


def toy_answer(metrics: pd.DataFrame, toy_pag: pd.DataFrame):
    """(frame, markdown) for the toy: its ground truth."""
    rows = robustness_rows(metrics, "toy")
    models = toy_pag[toy_pag["role"] == "model"]
    pag = models[~models["source"].isin(("vanilla", *report.TEACHERS))]
    vanilla = models[models["source"] == "vanilla"].set_index("seed")
    for (source, lam), g in pag.groupby(["source", "lam"], sort=False):
        diffs = [
            r["manifold_alignment"] - vanilla.loc[r["seed"], "manifold_alignment"]
            for _, r in g.iterrows()
            if r["seed"] in vanilla.index
        ]
        if len(diffs) > 1:
            mean, half = stats.t_interval(diffs)
            rows.append(
                {
                    "dataset": "toy",
                    "question": "alignment",
                    "source": source,
                    "lam": float(lam),
                    "measure": "manifold_alignment",
                    "reference": "the data's line",
                    "norm": "",
                    "estimate": mean,
                    "ci_low": mean - half,
                    "ci_high": mean + half,
                    "p": math.nan,
                    "n": len(diffs),
                    "interval": f"t over {len(diffs)} seeds",
                    "verdict": stats.verdict(mean - half, mean + half),
                }
            )
    for x, y, measure, what in (
        ("manifold_alignment", "robust", "manifold_alignment", "robust accuracy"),
        ("teacher_alignment", "manifold_alignment", "teacher_alignment", "manifold alignment"),
    ):
        sel = models.dropna(subset=[x, y])
        r = stats.rank_correlation(sel[x], sel[y])
        rows.append(
            {
                "dataset": "toy",
                "question": "ranking",
                "source": "",
                "lam": math.nan,
                "measure": measure,
                "reference": what,
                "norm": "",
                "estimate": r["rho"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "p": r["p"],
                "n": r["n"],
                "interval": f"bootstrap over {r['n']} models, permutation p",
                "verdict": stats.verdict(
                    r["ci_low"],
                    r["ci_high"],
                    "ranks it (positive)",
                    "ranks it inversely",
                    "no detectable rank correlation",
                ),
            }
        )
    df = pd.DataFrame(rows, columns=COLUMNS)
    lines = markdown(df[df["question"] == "robustness"], "toy").splitlines()
    lines += ["## Do their gradients follow the data's line (the ground truth)?", ""]
    for _, r in df[df["question"] == "alignment"].iterrows():
        lines.append(
            f"- PAG ({report.method(r['source'])}) manifold alignment minus vanilla's "
            f"{_num(r['estimate'], 3)} [{_num(r['ci_low'], 3)}, {_num(r['ci_high'], 3)}] "
            f"({r['interval']}): **{r['verdict']}**"
        )
    lines += [
        "",
        "## Does the ground truth rank robustness, and does the teacher-based score "
        "rank the models as the ground truth does?",
        "",
    ]
    for _, r in df[df["question"] == "ranking"].iterrows():
        lines.append(
            f"- ρ({r['measure'].replace('_', ' ')}, {r['reference']}) = "
            f"{_num(r['estimate'], 2)} [{_num(r['ci_low'], 2)}, {_num(r['ci_high'], 2)}], "
            f"permutation p = {r['p']:.3f}, {int(r['n'])} models: **{r['verdict']}**"
        )
    return df, "\n".join(lines).replace(
        "# The answer on toy", "# The answer on the toy data"
    ) + "\n"

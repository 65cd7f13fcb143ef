"""Tables of the PAG scores (pandas only: no torch here, this runs in the report environment).

The paper says no number for "perceptually aligned" exists; ``pagrob.pag_scores`` measures
three, against an independent adversarially trained reference model per threat model:

- ``alignment``: the mean over test images and all C classes of cos(grad_x f(x)_c,
  grad_x f_ref(x)_c), the raw logits' input-gradients (1: the reference's own gradients);
- ``targeted_success``: the fraction of Fig. 4's large-eps targeted L2 attacks on the model
  (towards every class but the true one) that the reference classifies as the target class;
- ``targeted_prob``: the reference's mean softmax probability of the target class on them.

Scores are tidy rows (``COLUMNS``). ``circular`` marks a score that measures imitation rather
than PAG: a RIGD student against the teacher it was distilled from (``rigd_linf`` against
``teacher_linf``, ``rigd_l2`` against ``teacher_l2``), and a reference against itself. Two
baselines are scored the same way: ``floor``, a freshly initialised model of the students'
architecture, and ``ceiling``, each reference against itself.
"""

from __future__ import annotations

import math

import pandas as pd

from pagrob import report

COLUMNS = ["dataset", "source", "lam", "seed", "score", "reference", "value", "circular"]
SCORES = ("alignment", "targeted_success", "targeted_prob")
BASELINES = ("floor", "ceiling")
SCORE_NAMES = {
    "alignment": "gradient alignment",
    "targeted_success": "targeted success",
    "targeted_prob": "target probability",
}
EXTRA_NAMES = {
    "clustered_nn": "Clustered NN",
    "floor": "Floor (untrained model)",
    "ceiling": "Ceiling (the reference itself)",
}
CIRCULAR_NOTE = (
    "† circular: a RIGD student scored against the teacher it was distilled from, or a "
    "reference against itself; such a score measures imitation, not PAG."
)
KEYS = ["source", "lam", "seed"]


def method(source: str) -> str:
    return report.METHOD_NAMES.get(source, EXTRA_NAMES.get(source, source))


def read_scores(paths: list) -> pd.DataFrame:
    """PAG score CSVs (written by ``pagrob.steps.pag_scores``) as one frame."""
    frames = []
    for path in paths:
        df = pd.read_csv(path)
        missing = set(COLUMNS) - set(df.columns)
        if missing:
            raise ValueError(f"PAG scores file {path} lacks the columns {sorted(missing)}; rebuild it")
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df["circular"] = df["circular"].astype(str).str.lower().isin(["true", "1"])
    return df


def spearman(a, b) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks, ties given their
    average rank. NaN when fewer than two pairs or when either side is constant."""
    a, b = pd.Series(list(a), dtype=float), pd.Series(list(b), dtype=float)
    if len(a) != len(b):
        raise ValueError(f"spearman needs equally many values ({len(a)} and {len(b)})")
    ra, rb = a.rank(method="average") - (len(a) + 1) / 2, b.rank(method="average") - (len(b) + 1) / 2
    denom = math.sqrt((ra**2).sum() * (rb**2).sum())
    if len(a) < 2 or denom == 0:
        return float("nan")
    return float((ra * rb).sum() / denom)


def _order(df: pd.DataFrame) -> pd.DataFrame:
    """Floor first, then the sources in the tables' order, the ceiling last."""
    order = ["floor"] + report.SOURCE_ORDER + ["clustered_nn"] + ["ceiling"]
    rank = {s: i for i, s in enumerate(order)}
    return df.sort_values(
        KEYS, key=lambda col: col.map(lambda s: rank.get(s, len(order) - 1.5)) if col.name == "source" else col,
        kind="stable",
    )


def references(names) -> list[str]:
    """The paper's order: teacher_linf, teacher_l2, then any other reference by name."""
    first = ["teacher_linf", "teacher_l2"]
    return sorted(set(names), key=lambda r: (first.index(r) if r in first else len(first), r))


def _column(score: str, reference: str) -> str:
    return f"{SCORE_NAMES.get(score, score)} vs {reference}"


def _fmt(value: float, circular: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3f}" + ("†" if circular else "")


def pag_scores_table(scores: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One row per model (source, λ, seed) and one column per score x reference; the floor
    and ceiling rows included, circular cells marked with † (and a footnote).

    Returns the full frame (numbers; a ``circular: <reference>`` column per reference) and the
    markdown text."""
    if scores.empty:
        raise ValueError("no PAG scores to tabulate")
    pairs = [(s, r) for s in SCORES for r in references(scores["reference"])]
    pairs = [p for p in pairs if ((scores["score"] == p[0]) & (scores["reference"] == p[1])).any()]
    rows, cells = [], []
    for (source, lam, seed), g in _order(scores).groupby(KEYS, sort=False):
        row = {"dataset": ";".join(sorted(g["dataset"].astype(str).unique())), "source": source, "lam": lam, "seed": seed}
        cell = {"model": method(source), "λ": f"{lam:g}", "seed": seed}
        for score, ref in pairs:
            hit = g[(g["score"] == score) & (g["reference"] == ref)]
            value = float(hit["value"].iloc[0]) if len(hit) else float("nan")
            circ = bool(hit["circular"].iloc[0]) if len(hit) else False
            row[_column(score, ref)] = value
            cell[_column(score, ref)] = _fmt(value, circ)
        for ref in references(r for _, r in pairs):
            row[f"circular: {ref}"] = bool(g[g["reference"] == ref]["circular"].any())
        rows.append(row)
        cells.append(cell)
    full = pd.DataFrame(rows)
    note = (
        "PAG scores on the first test images: gradient alignment is the mean cosine between the "
        "model's and the reference's logit input-gradients over images and classes (1 at the "
        "ceiling); targeted success is the fraction of the model's large-ε targeted L2 attacks "
        "(Fig. 4) that the reference classifies as the target; target probability is the "
        "reference's mean probability of the target on them. Floor: a freshly initialised model "
        "of the students' architecture; ceiling: each reference against itself.\n\n"
        + CIRCULAR_NOTE
    )
    return full, report.markdown(pd.DataFrame(cells)) + "\n" + note + "\n"


def lambda_table(scores: pd.DataFrame, source: str, score: str = "alignment") -> tuple[pd.DataFrame, str]:
    """Fig. 5 as a measured statement: ``score`` of ``source``'s models against λ (mean ± std
    over seeds), with the vanilla model as λ = 0 and the floor for scale, and per reference the
    Spearman correlation between λ and the seeds' mean score (vanilla included as λ = 0).

    Returns the full frame (one row per λ: mean, std, seeds per reference) and markdown."""
    sel = scores[(scores["score"] == score) & scores["source"].isin([source, "vanilla", "floor"])]
    if not (sel["source"] == source).any():
        raise ValueError(f"no {score} scores for source {source!r}; score its λ ablation models first")
    refs = references(sel["reference"])
    rows, cells, rhos = [], [], []
    for (src, lam), g in _order(sel).groupby(["source", "lam"], sort=False):
        row = {"source": src, "lam": lam}
        cell = {"model": method(src), "λ": "—" if src == "floor" else f"{lam:g}"}
        for ref in refs:
            v = g[g["reference"] == ref]["value"]
            row[f"{ref} mean"] = v.mean() if len(v) else float("nan")
            row[f"{ref} std"] = v.std(ddof=1) if len(v) > 1 else float("nan")
            row[f"{ref} seeds"] = len(v)
            cell[f"{SCORE_NAMES.get(score, score)} vs {ref}"] = report.fmt(
                row[f"{ref} mean"], row[f"{ref} std"], 3
            )
        rows.append(row)
        cells.append(cell)
    full = pd.DataFrame(rows)
    for ref in refs:
        models = sel[(sel["reference"] == ref) & sel["source"].isin([source, "vanilla"])]
        means = models.groupby("lam")["value"].mean()
        rho = spearman(means.index, means)
        rhos.append(
            f"Spearman ρ(λ, {SCORE_NAMES.get(score, score)} vs {ref}) = "
            + ("n/a" if math.isnan(rho) else f"{rho:+.2f}")
            + f" over {len(means)} λ values ({len(models)} models; {method(source)}, vanilla as "
            "λ = 0; mean over seeds)."
        )
    text = report.markdown(pd.DataFrame(cells)) + "\n" + "\n".join(rhos) + "\n"
    if sel["circular"].any():
        text += "\n" + CIRCULAR_NOTE + "\n"
    return full, text


def robustness_points(scores: pd.DataFrame, metrics: pd.DataFrame, score: str) -> pd.DataFrame:
    """Each model's ``score`` against its AutoAttack robust accuracy, one row per model and
    threat model (norm, eps); the reference of a panel is the teacher of its threat model
    (``teacher_linf`` for linf, ``teacher_l2`` for l2). Columns: dataset, source, lam, seed,
    norm, eps, reference, value, accuracy, circular. Baselines have no robust accuracy."""
    aa = metrics[metrics["attack"] == "autoattack"].copy()
    sel = scores[(scores["score"] == score) & ~scores["source"].isin(BASELINES)].copy()
    sel["norm"] = sel["reference"].str.removeprefix("teacher_")
    keys = ["dataset", "source", "lam", "seed"]
    for df in (sel, aa):
        df["_lam"] = df["lam"].astype(float).round(12)
    out = sel.drop(columns="lam").merge(
        aa[keys[:1] + ["source", "_lam", "seed", "norm", "eps", "lam", "accuracy"]].drop_duplicates(),
        on=["dataset", "source", "_lam", "seed", "norm"],
    )
    cols = ["dataset", "source", "lam", "seed", "norm", "eps", "reference", "value", "accuracy", "circular"]
    return out[cols].reset_index(drop=True)

"""Tables of the PAG scores, and the class-score ablation's table (its robustness beside its PAG
scores); pandas only: no torch here, this runs in the report environment.

The paper says no number for "perceptually aligned" exists; ``pagrob.pag_scores`` measures
several, each a tidy row (``COLUMNS``):

- against an independently seeded adversarially trained reference per threat model
  (``teacher_linf``, ``teacher_l2``): ``alignment``, the mean over test images and all C classes
  of the cosine between the model's and the reference's input-gradients of the centred logits
  f_c - mean_k f_k (the default: blind, as the predictions are, to a function added to every
  logit); ``alignment_log_softmax`` (the same for log-softmax); ``alignment_logit`` (raw logits:
  a diagnostic); ``targeted_success`` (the fraction of Fig. 4's large-eps targeted L2 attacks on
  the model that the reference classifies as the target) and ``targeted_prob`` (the
  reference's mean probability of the target on them);
- against the score instrument's denoiser (reference ``denoiser``: a class-conditional denoiser
  with the references' seed, which never saw a robust model): ``score_alignment``, the mean
  cosine between the model's centred class gradients and the denoiser's centred score field;
- without a reference: ``common_mode`` (the fraction of the logit gradients' energy shared by all
  classes) and, with an autoencoder, ``tangent_fraction`` (||P_T g|| / ||g||, g the centred
  gradients, T the decoder's tangent space), ``on_manifold_change`` and ``off_manifold_change``.

``relation`` says how the model relates to the reference: ``independent``; ``same_recipe`` (an
adversarially trained model of the reference's threat model with another seed, the realistic
ceiling, or a RIGD student of such a teacher: agreement expected by construction); ``self``
(the reference against itself, the self-ceiling). Baselines are scored the same way: ``floor``,
a freshly initialised model; ``ceiling``, each reference against itself; ``random``, the
tangent fraction of a random direction, sqrt(k/d); ``autoencoder``, its test reconstruction
error (``reconstruction_mse``).
"""

from __future__ import annotations

import math

import pandas as pd

from pagrob import report

COLUMNS = [
    "dataset",
    "source",
    "lam",
    "seed",
    "score",
    "reference",
    "value",
    "relation",
    "per_image",
]
#: the scores in the tables' order; the first is the default (Fig. 5's, the plot's)
SCORES = (
    "alignment",
    "alignment_log_softmax",
    "alignment_logit",
    "score_alignment",
    "common_mode",
    "tangent_fraction",
    "on_manifold_change",
    "off_manifold_change",
    "targeted_success",
    "targeted_prob",
    "reconstruction_mse",
)
BASELINES = ("floor", "ceiling", "random", "autoencoder")
SCORE_NAMES = {
    "alignment": "alignment",
    "alignment_log_softmax": "log-softmax alignment",
    "alignment_logit": "raw-logit alignment",
    "score_alignment": "score alignment",
    "common_mode": "common-mode fraction",
    "tangent_fraction": "tangent-space fraction",
    "on_manifold_change": "on-manifold change",
    "off_manifold_change": "off-manifold change",
    "targeted_success": "targeted success",
    "targeted_prob": "target probability",
    "reconstruction_mse": "reconstruction MSE",
}
#: the instruments whose rank correlation with robustness the plot shows (score, reference):
#: reference None is the reference of the panel's threat model
INSTRUMENTS = (
    ("alignment", None),
    ("alignment_log_softmax", None),
    ("score_alignment", "denoiser"),
    ("tangent_fraction", "autoencoder"),
)
EXTRA_NAMES = {
    "floor": "Floor (untrained model)",
    "ceiling": "Self-ceiling (the reference itself)",
    "random": "Random direction (√(k/d))",
    "autoencoder": "Autoencoder (test reconstruction)",
    "teacher_linf": "Teacher ℓ∞ (another seed of the ℓ∞ reference's recipe)",
    "teacher_l2": "Teacher ℓ2 (another seed of the ℓ2 reference's recipe)",
}
RELATION_MARKS = {"same_recipe": "‡", "circular": "§", "self": "†"}
RELATION_NOTE = (
    "‡ same recipe: an adversarially trained model of the reference's threat model with another "
    "seed (the realistic ceiling: two independently seeded robust models), or a RIGD student of "
    "such a teacher; its agreement is expected by construction. § circular: another model that "
    "saw a robust model (a RIGD student of the other threat model's teacher, the other teacher, "
    "an imported model): robust models agree with each other, so its agreement is no evidence "
    "either; against the score instrument's denoiser, a score-based student (trained towards a "
    "denoiser of its recipe). † the reference against itself (the self-ceiling)."
)
KEYS = ["source", "lam", "seed"]
#: the references that are no robust model: a score's own (none), the autoencoder, the score
#: instrument's denoiser
NOT_MODELS = ("none", "autoencoder", "denoiser")


def method(source: str) -> str:
    return EXTRA_NAMES.get(source, report.METHOD_NAMES.get(source, source))


def read_scores(paths: list) -> pd.DataFrame:
    """PAG score CSVs (written by ``pagrob.steps.pag_scores``) as one frame."""
    frames = []
    for path in paths:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
        missing = set(COLUMNS) - set(df.columns)
        if missing:
            raise ValueError(
                f"PAG scores file {path} lacks the columns {sorted(missing)}; rebuild it"
            )
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def spearman(a, b) -> float:
    """Spearman's rank correlation (scipy.stats.spearmanr, ties given their average rank). NaN
    when fewer than two pairs or when either side is constant."""
    from scipy import stats

    a, b = list(map(float, a)), list(map(float, b))
    if len(a) != len(b):
        raise ValueError(f"spearman needs equally many values ({len(a)} and {len(b)})")
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def _order(df: pd.DataFrame) -> pd.DataFrame:
    """Floor first, then the sources in the tables' order, the baselines last."""
    order = ["floor"] + report.SOURCE_ORDER + ["ceiling", "random", "autoencoder"]
    rank = {s: i for i, s in enumerate(order)}

    def key(col):
        if col.name == "source":
            return col.map(lambda s: rank.get(s, len(order) - 3.5))
        return col

    return df.sort_values(KEYS, key=key, kind="stable")


def references(names) -> list[str]:
    """The paper's order: teacher_linf, teacher_l2, then any other reference by name."""
    first = ["teacher_linf", "teacher_l2"]
    names = {n for n in names if n not in NOT_MODELS}
    return sorted(names, key=lambda r: (first.index(r) if r in first else len(first), r))


def _column(score: str, reference: str) -> str:
    name = SCORE_NAMES.get(score, score)
    return name if reference in NOT_MODELS else f"{name} vs {reference}"


def _fmt(value: float, relation: str = "independent") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3f}" + RELATION_MARKS.get(relation, "")


#: the two tables of the scores: what the gradients are, and what the targeted attacks make
GRADIENT_TABLE = SCORES[:8]
TARGETED_TABLE = ("targeted_success", "targeted_prob")


def pag_scores_table(scores: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One row per model (source, λ, seed) and one column per score x reference; the baselines'
    rows included, cells that are not independent marked (‡ same recipe, † self).

    Returns the full frame (numbers, and a ``relation: <reference>`` column per reference) and
    the markdown text: the gradient scores, then the targeted attacks judged by the
    references, then the baselines that are one number per dataset."""
    if scores.empty:
        raise ValueError("no PAG scores to tabulate")
    refs = references(scores["reference"])
    present = set(zip(scores["score"], scores["reference"]))
    pairs = [(s, r) for s in SCORES for r in [*refs, *NOT_MODELS] if (s, r) in present]
    rows, cells = _model_rows(scores, refs, pairs)
    full = pd.DataFrame(rows)
    shown = pd.DataFrame(cells)
    text = "## Gradient scores\n\n" + _part(shown, pairs, GRADIENT_TABLE)
    targeted = _part(shown, pairs, TARGETED_TABLE)
    if targeted:
        text += "\n## Targeted attacks on the model, judged by the reference\n\n" + targeted
    singles = scores[scores["source"].isin(["random", "autoencoder"])]
    if len(singles):
        text += "\n" + "".join(
            f"- {method(r['source'])}: {SCORE_NAMES.get(r['score'], r['score'])} {r['value']:.4g}\n"
            for _, r in singles.iterrows()
        )
    note = (
        "\nPAG scores on the first test images. Alignment: the mean over images and classes of "
        "the cosine between the model's and the reference's input-gradients of the centred "
        "logits f_c − mean_k f_k (unchanged when one function of x is added to every logit, as "
        "the predictions are); log-softmax alignment the same for log-softmax; raw-logit "
        "alignment compares the raw logits' gradients (a diagnostic: it sees the direction "
        "shared by all classes, which no prediction depends on). Score alignment: the same "
        "cosine against the centred score field D(x, c, σ) − x of a class-conditional "
        "denoiser with the references' seed (Srinivas, Bordt & Lakkaraju 2023; no robust model "
        "involved: the Bayes classifier scores 1). Common-mode fraction: "
        "‖mean_c ∇f_c‖² / mean_c ‖∇f_c‖², the share of the logit gradients that all classes "
        "share (0: none, 1: all). Tangent-space fraction: ‖P_T g‖ / ‖g‖ for the centred "
        "gradients g, T the span of the autoencoder decoder's Jacobian at the image's code "
        "(Bordt et al. 2023; Srinivas, Bordt & Lakkaraju 2023), beside a random direction's "
        "√(k/d); on- and off-manifold change: the softmax's total-variation change under noise "
        "inside T and orthogonal to it. Targeted success: the fraction of the model's large-ε "
        "targeted L2 attacks (Fig. 4) that the reference classifies as the target; target "
        "probability: the reference's mean probability of the target on them. The references "
        "are adversarially trained with a seed that no scored model uses. Floor: a freshly "
        "initialised model of the students' architecture.\n\n" + RELATION_NOTE
    )
    return full, text + note + "\n"


def _model_rows(scores: pd.DataFrame, refs: list, pairs: list) -> tuple[list, list]:
    """One row of numbers and one of shown cells per model, the baselines left out."""
    rows, cells = [], []
    per_model = scores[~scores["source"].isin(["random", "autoencoder"])]
    for (source, lam, seed), g in _order(per_model).groupby(KEYS, sort=False):
        row = {
            "dataset": ";".join(sorted(g["dataset"].astype(str).unique())),
            "source": source,
            "lam": lam,
            "seed": seed,
        }
        cell = {"model": method(source), "λ": f"{lam:g}", "seed": seed}
        for score, ref in pairs:
            hit = g[(g["score"] == score) & (g["reference"] == ref)]
            value = float(hit["value"].iloc[0]) if len(hit) else float("nan")
            rel = str(hit["relation"].iloc[0]) if len(hit) else "independent"
            row[_column(score, ref)] = value
            cell[_column(score, ref)] = _fmt(value, rel)
        for ref in refs:
            rel = g[g["reference"] == ref]["relation"]
            row[f"relation: {ref}"] = rel.iloc[0] if len(rel) else ""
        rows.append(row)
        cells.append(cell)
    return rows, cells


def _part(shown: pd.DataFrame, pairs: list, which) -> str:
    """The Markdown table of the scores in ``which`` (the models that have one); "" if none."""
    ident = ["model", "λ", "seed"]
    cols = [_column(s, r) for s, r in pairs if s in which]
    if not cols:
        return ""
    sub = shown[ident + cols]
    keep = sub[cols].ne("").any(axis=1)
    return report.markdown(sub[keep])


def lambda_table(
    scores: pd.DataFrame, source: str, score: str = "alignment"
) -> tuple[pd.DataFrame, str]:
    """Fig. 5 as a measured statement: ``score`` of ``source``'s models against λ (mean ± std
    over seeds), with the vanilla model as λ = 0 and the floor for scale, and per reference the
    Spearman correlation between λ and the seeds' mean score (vanilla included as λ = 0).

    Returns the full frame (one row per λ: mean, std, seeds per reference) and markdown."""
    sel = scores[(scores["score"] == score) & scores["source"].isin([source, "vanilla", "floor"])]
    if not (sel["source"] == source).any():
        raise ValueError(
            f"no {score} scores for source {source!r}; score its λ ablation models first"
        )
    refs = references(sel["reference"]) or sorted(set(sel["reference"]))
    rows, cells, rhos = [], [], []
    for (src, lam), g in _order(sel).groupby(["source", "lam"], sort=False):
        row = {"source": src, "lam": lam}
        cell = {"model": method(src), "λ": "—" if src == "floor" else f"{lam:g}"}
        for ref in refs:
            v = g[g["reference"] == ref]["value"]
            row[f"{ref} mean"] = v.mean() if len(v) else float("nan")
            row[f"{ref} std"] = v.std(ddof=1) if len(v) > 1 else float("nan")
            row[f"{ref} seeds"] = len(v)
            cell[_column(score, ref)] = report.fmt(row[f"{ref} mean"], row[f"{ref} std"], 3)
        rows.append(row)
        cells.append(cell)
    full = pd.DataFrame(rows)
    for ref in refs:
        models = sel[(sel["reference"] == ref) & sel["source"].isin([source, "vanilla"])]
        means = models.groupby("lam")["value"].mean()
        rho = spearman(means.index, means)
        rhos.append(
            f"Spearman ρ(λ, {_column(score, ref)}) = "
            + ("n/a" if math.isnan(rho) else f"{rho:+.2f}")
            + f" over {len(means)} λ values ({len(models)} models; {method(source)}, vanilla as "
            "λ = 0; mean over seeds)."
        )
    text = report.markdown(pd.DataFrame(cells)) + "\n" + "\n".join(rhos) + "\n"
    if (sel["relation"] != "independent").any():
        text += "\n" + RELATION_NOTE + "\n"
    return full, text


def robustness_points(scores: pd.DataFrame, metrics: pd.DataFrame, score: str) -> pd.DataFrame:
    """Each model's ``score`` against its AutoAttack robust accuracy, one row per model and
    threat model (norm, eps). A score against references is taken against the reference of the
    panel's threat model (``teacher_linf`` for linf, ``teacher_l2`` for l2); a score without one
    (the tangent-space fraction, the common-mode fraction) is the same in every panel. Columns:
    dataset, source, lam, seed, norm, eps, reference, value, accuracy, relation. Baselines have
    no robust accuracy."""
    aa = metrics[metrics["attack"] == "autoattack"].copy()
    sel = scores[(scores["score"] == score) & ~scores["source"].isin(BASELINES)].copy()
    keys = ["dataset", "source", "_lam", "seed"]
    for df in (sel, aa):
        df["_lam"] = df["lam"].astype(float).round(12)
    aa = aa[keys + ["norm", "eps", "lam", "accuracy"]].drop_duplicates()
    if sel["reference"].str.startswith("teacher_").any():
        sel["norm"] = sel["reference"].str.removeprefix("teacher_")
        out = sel.drop(columns="lam").merge(aa, on=[*keys, "norm"])
    else:
        out = sel.drop(columns="lam").merge(aa, on=keys)
    cols = [
        "dataset",
        "source",
        "lam",
        "seed",
        "norm",
        "eps",
        "reference",
        "value",
        "accuracy",
        "relation",
    ]
    return out[cols].reset_index(drop=True)


def grad_of_table(
    metrics: pd.DataFrame, scores: pd.DataFrame | None, default_score: str
) -> tuple[pd.DataFrame, str]:
    """The grad_of ablation: per hand-made source and class score (``default_score`` for the
    models named without one), clean, PGD and AutoAttack accuracy (± their 95% intervals), and
    where ``scores`` are given the PAG scores (mean over seeds): the alignment with each
    reference and the common-mode fraction."""
    summary = report.summarize(metrics)
    base = summary["source"].map(lambda s: report.split_source(s)[0])
    summary["class_score"] = summary["source"].map(
        lambda s: report.split_source(s)[1] or default_score
    )
    summary["base"] = base
    labels = report.metric_labels(report.table_rows(metrics))
    pag_cols = []
    if scores is not None and len(scores):
        wanted = ["alignment", "common_mode", "tangent_fraction"]
        sel = scores[scores["score"].isin(wanted)]
        means = sel.groupby(["source", "score", "reference"])["value"].mean()
        refs = references(sel["reference"]) + ["none", "autoencoder"]
        for score in wanted:
            for ref in refs:
                if ((sel["score"] == score) & (sel["reference"] == ref)).any():
                    pag_cols.append(_column(score, ref))
        for (source, score, ref), value in means.items():
            summary.loc[summary["source"] == source, _column(score, ref)] = value
    rows = []
    order = {s: i for i, s in enumerate(report.CLASS_SCORE_NAMES)}
    summary = summary.sort_values(
        ["base", "class_score"],
        key=lambda c: c.map(report.source_rank) if c.name == "base" else c.map(order),
        kind="stable",
    )
    for (b, score), g in summary.groupby(["base", "class_score"], sort=False):
        row = {
            "Method": report.METHOD_NAMES.get(b, b),
            "class score": report.CLASS_SCORE_NAMES[score],
            "λ": f"{g['lam'].iloc[0]:g}",
            "Seeds": int(g["seeds"].max()),
        }
        for m, label in labels.items():
            r = g[g["metric"] == m]
            row[label] = report.fmt(r["mean"].iloc[0], r["half"].iloc[0]) if len(r) else ""
        for col in pag_cols:
            v = g[col].dropna() if col in g else []
            row[col] = f"{v.iloc[0]:.3f}" if len(v) else ""
        rows.append(row)
    shown = pd.DataFrame(rows)
    text = (
        "# Which class score should the PAG loss align? (the grad_of ablation)\n\n"
        + report.note(shown)
        + " Class scores: logit, the paper's Eq. 1 (∇ₓ f_c against g_c); log-softmax, the authors' "
        "code; centred logit, f_c − mean_k f_k against g_c − mean_k g_k (only what the "
        "predictions depend on). PAG scores: the mean over seeds.\n\n" + report.markdown(shown)
    )
    return summary.drop(columns=["base"]), text

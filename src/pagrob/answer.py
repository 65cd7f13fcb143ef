"""The paper's question answered from one run's numbers: a frame of tests, a compact page and
the figure's data (pandas and scipy only: runs in the report environment).

Training runs are the evidence: a recipe's difference to vanilla is taken over its seeds, each
seed paired with vanilla's run of the same seed and evaluated on the same test images, with an
interval that covers both the seeds and the images (``stats.seeds_and_images``). For an image
dataset (``image_answer``):

1. Are the PAG-trained models more robust than vanilla? Per source and threat model, robust
   accuracy minus vanilla's under AutoAttack where every seed got it whole, else under its APGD
   stages (APGD-CE, APGD-T: the cheaper stage the seeds outside eval.autoattack.full_seeds get;
   what the whole version takes off is the masking table's ``later_stages_gain``), else under the
   table's PGD. Secondary lines, labelled and never a verdict: the table's PGD over the seeds, and
   the first seed's whole AutoAttack on the test images alone.
2. Are their gradients more aligned? Per source and instrument (the alignment with each
   independent robust reference, the alignment with an independently seeded denoiser's class
   scores, the tangent-space fraction), the score minus vanilla's.
3. Does alignment rank robustness? Per instrument and threat model, Spearman's rho between the
   models' alignment and their robust accuracy (``stats.clustered_rank_correlation``: a model is
   one point however many seeds it has), with its exact permutation p-value, and beside it the
   same without vanilla (how much of rho is vanilla against the rest).

Models that saw a robust model (``registry.circular``: RIGD students, the teachers, imported
models) answer none of these: they are shown as the ceiling, never tested, never a ranking point
(``ranking`` refuses them). Against the score instrument, the score-based students are circular
too (trained towards a denoiser of its recipe): shown as its ceiling, never one of its points.

Every verdict belongs to the page's family (every row whose role is ``verdict``); the family's
p-values are adjusted by Holm (``stats.holm``) and each verdict follows ``stats.verdict`` from
the adjusted p-value, the one rule; the unadjusted p-values and the 95% intervals stay in the
CSV. For the toy (``toy_answer``), the same over its seeds against its ground truth.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pagrob import pag_report, registry, report, stats

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
    "p_holm",
    "seeds",
    "images",
    "interval",
    "role",
    "verdict",
]
#: a row's role: in the page's family of verdicts; shown as the ceiling (a circular model); the
#: primary measure of a model with one seed (its images alone: shown, never a verdict); a
#: secondary line (another attack, or the first seed's whole AutoAttack alone); a score-based
#: student against the score instrument (circular for it: shown with its model, marked §)
VERDICT, CEILING, ONE_SEED, SECONDARY = "verdict", "ceiling", "one seed", "secondary"
CIRCULAR = "circular"
#: the range of each kind of difference (an interval never leaves it): accuracy in points, a
#: cosine, a fraction
BOUNDS = {
    "accuracy": 100.0,
    "alignment": 2.0,
    "score_alignment": 2.0,
    "tangent_fraction": 1.0,
    "manifold_alignment": 1.0,
}
#: the robustness measures, strongest first: (metric prefix, name)
MEASURES = (
    ("aa_", "AutoAttack"),
    ("apgd_", "AutoAttack's APGD-CE+T"),
    ("", "PGD"),
)
#: the instruments of questions 2 and 3: (score, reference; None: each robust reference)
INSTRUMENTS = (
    ("alignment", None),
    ("score_alignment", "denoiser"),
    ("tangent_fraction", "autoencoder"),
)
NORM_SYMBOLS = report.NORM_SYMBOLS
#: the fewest models a rank correlation is computed over
MIN_MODELS = 3
#: the words of each question's verdict: (higher, lower, none)
WORDS = {
    "robustness": ("more robust", "less robust", "no detectable difference"),
    "alignment": ("more aligned", "less aligned", "no detectable difference"),
    "ranking": ("ranks robustness", "ranks it inversely", "no detectable rank correlation"),
}


# --- the pieces: per-seed per-image values of a model ------------------------------------------


def _key(df: pd.DataFrame, source: str, lam: float) -> pd.DataFrame:
    return df[(df["source"] == source) & (df["lam"].astype(float) == float(lam))]


def flags(metrics: pd.DataFrame, source: str, lam: float, metric: str) -> dict[int, np.ndarray]:
    """seed -> the model's per-image correctness (0/1 floats) under ``metric``, for the seeds
    that recorded it."""
    out = {}
    for _, r in _key(metrics[metrics["metric"] == metric], source, lam).iterrows():
        if isinstance(r["correct"], str) and r["correct"].startswith("x"):
            out[int(r["seed"])] = stats.unpack(r["correct"], int(r["images"])).astype(float)
    return out


def per_image(scores: pd.DataFrame, source: str, lam: float, score, ref) -> dict[int, np.ndarray]:
    """seed -> the model's per-image values of ``score`` against ``ref``."""
    sel = _key(scores[(scores["score"] == score) & (scores["reference"] == ref)], source, lam)
    out = {}
    for _, r in sel.iterrows():
        if isinstance(r["per_image"], str) and r["per_image"]:
            out[int(r["seed"])] = np.array([float(v) for v in r["per_image"].split(";")])
    return out


def students(df: pd.DataFrame) -> list[tuple[str, float]]:
    """The (source, lam) of every model but vanilla and the baselines, in the tables' order."""
    keys = df[~df["source"].isin(("vanilla", *pag_report.BASELINES))][["source", "lam"]]
    pairs = {(s, float(lam)) for s, lam in keys.drop_duplicates().itertuples(index=False)}
    order = {s: i for i, s in enumerate(report.SOURCE_ORDER)}
    return sorted(pairs, key=lambda p: (order.get(p[0].split(".")[0], 99), p[0], p[1]))


def circular_for(source: str, reference: str = "") -> bool:
    """Whether a model of ``source`` saw a robust model (``registry.circular``), or, against the
    score instrument's denoiser, is a score-based student (trained towards a denoiser of its
    recipe): never a verdict nor a ranking point of that instrument."""
    if reference == "denoiser" and source.split(".")[0] in registry.SCORE:
        return True
    return registry.circular(source)


def role_of(source: str, reference: str = "") -> str:
    """CEILING for a model that saw a robust model; CIRCULAR for a score-based student against
    the score instrument; else VERDICT."""
    if registry.circular(source):
        return CEILING
    return CIRCULAR if circular_for(source, reference) else VERDICT


# --- the differences to vanilla -----------------------------------------------------------------


def difference(a: dict, b: dict, bound: float) -> dict | None:
    """``a`` minus ``b`` (seed -> per-image values) over their common seeds (same images):
    with two seeds or more, over seeds and images (``stats.seeds_and_images``); with one, a
    paired bootstrap over its images alone (no verdict: a training seed is the unit)."""
    seeds = [s for s in sorted(set(a) & set(b)) if len(a[s]) == len(b[s])]
    if not seeds:
        return None
    d = np.stack([a[s] - b[s] for s in seeds])
    if len(seeds) > 1:
        r = stats.seeds_and_images(d, bound)
        df = "" if math.isnan(r["df"]) else f", {r['df']:.0f} df"
        text = f"t over {len(seeds)} seeds × {d.shape[1]} images (seeds and images{df})"
        return {**r, "interval": text, "one_seed": False}
    r = stats.paired_mean_difference(a[seeds[0]], b[seeds[0]])
    r = {**r, "ci_low": max(-bound, r["ci_low"]), "ci_high": min(bound, r["ci_high"])}
    text = f"seed {seeds[0]} alone: bootstrap over its {d.shape[1]} test images"
    return {
        **r,
        "p": math.nan,
        "seeds": 1,
        "images": d.shape[1],
        "interval": text,
        "one_seed": True,
    }


def _row(dataset, question, source, lam, measure, reference, norm, r, role) -> dict:
    if r.get("one_seed"):
        role = ONE_SEED if role == VERDICT else role
    return {
        "dataset": dataset,
        "question": question,
        "source": source,
        "lam": lam,
        "measure": measure,
        "reference": reference,
        "norm": norm,
        "estimate": r["diff"],
        "ci_low": r["ci_low"],
        "ci_high": r["ci_high"],
        "p": r.get("p", math.nan),
        "p_holm": math.nan,
        "seeds": r["seeds"],
        "images": r["images"],
        "interval": r["interval"],
        "role": role,
        "verdict": "",
    }


def robust_measure(metrics: pd.DataFrame, norm: str) -> tuple[str, str] | None:
    """(metric, name) of the strongest robustness measure of ``norm`` that vanilla and every
    model that never saw a robust model have on all their seeds (None: no such measure)."""
    seeds = set(metrics[metrics["metric"] == "clean"]["seed"].astype(int))
    models = [("vanilla", 0.0)] + [m for m in students(metrics) if not registry.circular(m[0])]
    for prefix, name in MEASURES:
        metric = prefix + norm
        if all(set(flags(metrics, s, lam, metric)) >= seeds for s, lam in models):
            return metric, name
    return None


def _lines(metrics: pd.DataFrame, source: str, norm: str) -> list[tuple[str, str, str]]:
    """(metric, measure, role) of a model's robustness lines for ``norm``: the primary measure
    (its verdict, or the ceiling), then the secondary ones (the table's PGD; the first seed's
    whole AutoAttack where the seeds got its APGD stages)."""
    found = robust_measure(metrics, norm)
    if found is None:
        return []
    primary, name = found
    lines = [(primary, name, role_of(source))]
    if primary != norm:
        lines.append((norm, "PGD", SECONDARY))
    if primary.startswith("apgd_"):
        lines.append(("aa_" + norm, "AutoAttack", SECONDARY))
    return lines


def robustness_rows(metrics: pd.DataFrame, dataset: str) -> list[dict]:
    """Question 1: each model against vanilla, per threat model, robust accuracy in points."""
    rows = []
    norms = [n for n in NORM_SYMBOLS if (metrics["metric"] == n).any()]

    def points(source, lam, metric):
        return {s: 100.0 * v for s, v in flags(metrics, source, lam, metric).items()}

    for source, lam in students(metrics):
        for norm in norms:
            lines = _lines(metrics, source, norm)
            if lines and not points(source, lam, lines[0][0]):  # e.g. a teacher spared
                lines = [(norm, "PGD", lines[0][2])]  # AutoAttack: its PGD, the one line
            for metric, measure, role in lines:
                a, b = points(source, lam, metric), points("vanilla", 0.0, metric)
                if metric.startswith("aa_") and role == SECONDARY:  # the first seed alone
                    first = sorted(set(a) & set(b))[:1]
                    a, b = {k: a[k] for k in first}, {k: b[k] for k in first}
                r = difference(a, b, BOUNDS["accuracy"])
                if r is not None:
                    rows.append(
                        _row(dataset, "robustness", source, lam, measure, "vanilla", norm, r, role)
                    )
    return rows


def instruments(scores: pd.DataFrame) -> list[tuple[str, str]]:
    """(score, reference) of every instrument the scores hold."""
    present = set(zip(scores["score"], scores["reference"]))
    out = []
    for score, fixed in INSTRUMENTS:
        refs = [fixed] if fixed else pag_report.references(scores["reference"])
        out += [(score, ref) for ref in refs if (score, ref) in present]
    return out


def alignment_rows(scores: pd.DataFrame, dataset: str) -> list[dict]:
    """Question 2: each model's score minus vanilla's, per instrument."""
    rows = []
    for score, ref in instruments(scores):
        b = per_image(scores, "vanilla", 0.0, score, ref)
        for source, lam in students(scores):
            r = difference(per_image(scores, source, lam, score, ref), b, BOUNDS[score])
            if r is not None:
                rows.append(
                    _row(dataset, "alignment", source, lam, score, ref, "", r, role_of(source, ref))
                )
    return rows


# --- does alignment rank robustness? --------------------------------------------------------------


def ranking(points: list[dict]) -> dict:
    """Spearman's rho between the models of ``points`` (each a dict: source, lam, x: per-image
    scores, y: per-image robust flags, one per seed), a model one point
    (``stats.clustered_rank_correlation``). A model that saw a robust model is refused: its
    agreement with robustness is circular (``registry.circular``)."""
    bad = sorted({p["source"] for p in points if registry.circular(p["source"])})
    if bad:
        raise ValueError(
            f"{bad} saw a robust model (registry.circular): never a point of a ranking of "
            "whether PAG implies robustness; they are the ceiling"
        )
    clusters = [(p["source"], float(p["lam"])) for p in points]
    return stats.clustered_rank_correlation(
        [p["x"] for p in points], [p["y"] for p in points], clusters
    )


def ranking_rows(scores: pd.DataFrame, metrics: pd.DataFrame, dataset: str) -> list[dict]:
    """Question 3: per instrument and threat model, rho over the models that never saw a robust
    model (all of them, then without vanilla: a secondary line)."""
    rows = []
    for norm in [n for n in NORM_SYMBOLS if (metrics["metric"] == n).any()]:
        found = robust_measure(metrics, norm)
        if found is None:
            continue
        metric, name = found
        for score, ref in instruments(scores):
            if ref.startswith("teacher_") and ref != f"teacher_{norm}":
                continue  # an alignment ranks the robustness of its reference's threat model
            points = []
            for source, lam in [("vanilla", 0.0), *students(scores)]:
                if circular_for(source, ref):
                    continue
                x = per_image(scores, source, lam, score, ref)
                y = flags(metrics, source, lam, metric)
                points += [
                    {"source": source, "lam": lam, "x": x[s], "y": y[s]} for s in x if s in y
                ]
            for without in (False, True):
                chosen = [p for p in points if not (without and p["source"] == "vanilla")]
                if len({(p["source"], p["lam"]) for p in chosen}) < MIN_MODELS:
                    continue
                r = ranking(chosen)
                text = f"{r['models']} models ({r['points']} runs)" + (
                    ", without vanilla" if without else ""
                )
                r = {**r, "diff": r["rho"], "seeds": r["points"], "images": math.nan}
                row = _row(
                    dataset,
                    "ranking",
                    "without vanilla" if without else "",
                    math.nan,
                    f"{score} vs {name}",
                    ref,
                    norm,
                    {**r, "interval": f"{text}; p cannot fall below {r['p_min']:.3f}"},
                    SECONDARY if without else VERDICT,
                )
                rows.append(row)
    return rows


# --- the family, and the page ---------------------------------------------------------------------


def decide(df: pd.DataFrame) -> pd.DataFrame:
    """Holm over the page's family (its ``verdict`` rows), then each verdict from its adjusted
    p-value (``stats.verdict``); the other rows say what they are."""
    df = df.copy()
    family = df["role"] == VERDICT
    df.loc[family, "p_holm"] = stats.holm(df.loc[family, "p"].astype(float))
    for i, r in df.iterrows():
        if r["role"] == VERDICT:
            df.at[i, "verdict"] = stats.verdict(r["estimate"], r["p_holm"], *WORDS[r["question"]])
        else:
            df.at[i, "verdict"] = {
                CEILING: "ceiling: not tested",
                ONE_SEED: "one seed: not tested",
                CIRCULAR: "circular for this instrument: not tested",
            }.get(r["role"], "secondary")
    return df


def _num(v, digits: int = 1) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.{digits}f}"


def _p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


MARKS = {"more robust": "↑", "more aligned": "↑", "less robust": "↓", "less aligned": "↓"}


def _cell(r, digits: int) -> str:
    mark = MARKS.get(r["verdict"], {VERDICT: "·", CIRCULAR: "§"}.get(r["role"], ""))
    return f"{_num(r['estimate'], digits)} [{_num(r['ci_low'], digits)}, {_num(r['ci_high'], digits)}] {mark}".strip()


#: the toy's instruments, by name: the ground truth and the instrument it validates
TOY_NAMES = {
    "manifold_alignment": "manifold alignment (the truth)",
    "teacher_alignment": "teacher alignment (the instrument)",
    "score_alignment": "score alignment (the score instrument)",
}
#: what each of the toy's scores is measured against
TOY_REFERENCES = {
    "manifold_alignment": "the data's line",
    "teacher_alignment": "the toy reference",
    "score_alignment": "denoiser",
}
#: each measure's unit, for the page's legend
UNITS = {
    "alignment": "an alignment as a cosine",
    "score_alignment": "the score alignment as a cosine",
    "tangent_fraction": "the tangent-space fraction as a fraction",
    "manifold_alignment": "the manifold alignment as |cosine|",
    "teacher_alignment": "the teacher alignment as a cosine",
}


def column(r) -> str:
    """A compact table's (and the figure's) column: the threat model, or the instrument."""
    if r["question"] == "robustness":
        return f"{NORM_SYMBOLS[r['norm']]} robust accuracy"
    if r["dataset"] == "toy" and r["measure"] in TOY_NAMES:
        return TOY_NAMES[r["measure"]]
    return pag_report._column(r["measure"], r["reference"])


def compact(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model, one column per primary measure and instrument: the difference to
    vanilla, its interval and its verdict's mark; the ceiling's rows last."""
    main = df[df["question"].isin(("robustness", "alignment")) & (df["role"] != SECONDARY)]
    tested = main[main["role"] != CEILING]
    primary = dict(zip(tested["norm"], tested["measure"]))  # each threat model's measure
    rows = {}
    for _, r in main.iterrows():
        key = (r["role"] == CEILING, r["source"], r["lam"])
        label = report.method(r["source"]) + {CEILING: " (ceiling)", ONE_SEED: " (one seed)"}.get(
            r["role"], ""
        )
        row = rows.setdefault(key, {"model": label, "λ": f"{r['lam']:g}", "seeds": ""})
        row["seeds"] = str(int(r["seeds"])) if not row["seeds"] else row["seeds"]
        cell = _cell(r, 1 if r["question"] == "robustness" else 3)
        if r["question"] == "robustness" and primary.get(r["norm"], r["measure"]) != r["measure"]:
            cell += f" ({r['measure']})"  # e.g. a teacher's PGD where the models got AutoAttack
        row[column(r)] = cell
    order = sorted(rows, key=lambda k: k[0])  # the ceiling last, the tables' order kept
    return pd.DataFrame([rows[k] for k in order]).fillna("")


def ranking_table(df: pd.DataFrame) -> pd.DataFrame:
    """The rank correlations, each with its twin without vanilla beside it."""
    cor = df[df["question"] == "ranking"]
    verdicts, twins = cor[cor["role"] == VERDICT], cor[cor["role"] == SECONDARY]
    cells = []
    for _, r in verdicts.iterrows():
        twin = twins[
            (twins["measure"] == r["measure"])
            & (twins["reference"] == r["reference"])
            & (twins["norm"] == r["norm"])
        ]
        score, measure = r["measure"].split(" vs ", 1)
        t = twin.iloc[0] if len(twin) else None
        cells.append(
            {
                "instrument": pag_report._column(score, r["reference"]),
                "robustness": f"{NORM_SYMBOLS[r['norm']]} {measure}",
                "models": r["interval"].split(";")[0],
                "ρ [95%]": f"{_num(r['estimate'], 2)} [{_num(r['ci_low'], 2)}, "
                f"{_num(r['ci_high'], 2)}]",
                "p": _p(r["p"]),
                "p (Holm)": _p(r["p_holm"]),
                "verdict": r["verdict"],
                "ρ without vanilla": "n/a"
                if t is None
                else f"{_num(t['estimate'], 2)} (p {_p(t['p'])})",
            }
        )
    return pd.DataFrame(cells)


def stage_gap(metrics: pd.DataFrame) -> str:
    """Where a seed got both AutoAttack's APGD stages and its whole version: how much the rest
    of the version (FAB-T, Square) takes off (the cheaper stage's overestimate), in points."""
    lines = []
    for norm in NORM_SYMBOLS:
        apgd = metrics[metrics["metric"] == f"apgd_{norm}"]
        aa = metrics[metrics["metric"] == f"aa_{norm}"]
        both = apgd.merge(aa, on=["source", "lam", "seed"], suffixes=("", "_aa"))
        if both.empty or set(apgd["seed"]) <= set(aa["seed"]):
            continue  # every seed got the whole version: no cheaper stage to vouch for
        gaps = (both["accuracy"] - both["accuracy_aa"]).tolist()
        seeds = ", ".join(str(s) for s in sorted(both["seed"].unique()))
        span = (
            f"{min(gaps):.2f}" if min(gaps) == max(gaps) else f"{min(gaps):.2f} to {max(gaps):.2f}"
        )
        lines.append(f"{NORM_SYMBOLS[norm]}: {span} points, {len(gaps)} models of seed {seeds}")
    if not lines:
        return ""
    return (
        "- **AutoAttack's cheaper stage.** Seeds outside eval.autoattack.full_seeds get its APGD "
        "stages (APGD-CE, then APGD-T); where a seed got the whole version too, the rest of it "
        "(FAB-T, Square) took off " + "; ".join(lines) + " (the masking table's "
        "later_stages_gain)."
    )


def markdown(df: pd.DataFrame, title: str, figure: str | None, notes=()) -> str:
    """The answer page: the figure, a compact table, the rank correlations, then short words."""
    n = int((df["role"] == VERDICT).sum())
    lines = [f"# {title}", ""]
    if figure:
        lines += [f"![{title}]({figure})", ""]
    table = compact(df)
    tested = df[df["question"].eq("robustness") & df["role"].isin((VERDICT, ONE_SEED))]
    primary = dict(zip(tested["norm"], tested["measure"]))
    if len(table):
        measures = "; ".join(f"{NORM_SYMBOLS[n]} under {m}" for n, m in primary.items())
        units = [f"robust accuracy in points ({measures})"] if primary else []
        units += [UNITS[m] for m in dict.fromkeys(df["measure"]) if m in UNITS]
        lines += [
            report.markdown(table),
            f"Each cell: the model minus vanilla, {', '.join(units)}; [95% interval]; ↑ / ↓ a "
            "decided difference, · none detected"
            + (
                "; § circular for this instrument (a score-based student against the score "
                "instrument's denoiser, of the recipe it learnt from): not tested."
                if (df["role"] == CIRCULAR).any()
                else "."
            ),
            "",
        ]
    ranks = ranking_table(df)
    if len(ranks):
        lines += [
            "Does alignment rank robustness? Spearman's ρ between the models' alignment and "
            "robust accuracy, a model one point (its seeds and images resampled within it).",
            "",
            report.markdown(ranks),
        ]
    whole = df[(df["role"] == SECONDARY) & (df["measure"] == "AutoAttack")]
    if len(whole):  # the first seed's whole AutoAttack, where the seeds got its APGD stages
        first = whole.iloc[0]
        lines += [
            f"A secondary line, no verdict: the whole AutoAttack ({NORM_SYMBOLS[first['norm']]}) "
            f"minus vanilla's, {first['interval']}: "
            + "; ".join(
                f"{report.method(r['source'])} {_num(r['estimate'])} "
                f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]"
                for _, r in whole.iterrows()
            )
            + ".",
            "",
        ]
    lines += [
        "How to read it:",
        "",
        f"- **One rule.** The family is this page's {n} verdicts, their p-values adjusted by "
        "Holm's method (valid whatever their dependence); a verdict is "
        f"{stats.RULE}. The unadjusted p-values and the secondary lines are in the CSV.",
        "- **Seeds are the evidence.** A difference is taken over the training seeds, each "
        "paired with vanilla's run of the same seed on the same test images; its 95% interval "
        "covers both the seeds and the images (a t-interval, Welch–Satterthwaite degrees of "
        "freedom), within the range the difference can take. One seed decides nothing.",
        "- **Circular models are the ceiling.** Models that saw a robust model (RIGD students, "
        "the adversarially trained teachers, imported models) are shown, never tested and "
        "never a point of a ranking.",
        *notes,
    ]
    return "\n".join(lines).rstrip() + "\n"


def image_answer(
    metrics: pd.DataFrame, scores: pd.DataFrame | None, dataset: str, figure: str | None = None
):
    """(frame, markdown) for an image dataset; the page opens on ``figure`` (its path)."""
    rows = robustness_rows(metrics, dataset)
    if scores is not None and len(scores):
        rows += alignment_rows(scores, dataset)
        rows += ranking_rows(scores, metrics, dataset)
    if not rows:
        raise ValueError(
            f"nothing to answer on {dataset}: no vanilla model, or no per-image results "
            "(rebuild the metrics: their 'correct' column)"
        )
    df = decide(pd.DataFrame(rows, columns=COLUMNS))
    notes = [line for line in (stage_gap(metrics),) if line]
    return df, markdown(df, f"The answer on {dataset}", figure, notes)


def toy_answer(metrics: pd.DataFrame, toy_pag: pd.DataFrame, figure: str | None = None):
    """(frame, markdown) for the toy: robustness and the ground truth (manifold alignment), and
    whether the teacher-based instrument and the score instrument (where the table has it) see
    the ground truth's difference, over the seeds."""
    rows = robustness_rows(metrics, "toy")
    models = toy_pag[toy_pag["role"] == "model"]
    for score in TOY_NAMES:
        column_ = f"{score}_per_point"
        if column_ not in models or models[column_].isna().all():
            continue
        values = {
            (s, float(lam), int(seed)): np.array([float(v) for v in str(text).split(";")])
            for s, lam, seed, text in zip(
                models["source"], models["lam"], models["seed"], models[column_]
            )
        }
        b = {seed: v for (s, _, seed), v in values.items() if s == "vanilla"}
        for source, lam in students(models):
            a = {seed: v for (s, l_, seed), v in values.items() if (s, l_) == (source, lam)}
            r = difference(
                a,
                b,
                BOUNDS["manifold_alignment"]
                if score == "manifold_alignment"
                else BOUNDS["alignment"],
            )
            if r is not None:
                ref = TOY_REFERENCES[score]
                role = role_of(source, "denoiser" if score == "score_alignment" else "")
                rows.append(_row("toy", "alignment", source, lam, score, ref, "", r, role))
    df = decide(pd.DataFrame(rows, columns=COLUMNS))
    return df, markdown(df, "The answer on the toy data", figure)

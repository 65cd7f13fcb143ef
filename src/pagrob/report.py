"""Aggregation of the tidy metrics into the paper's tables, with the paper's numbers beside ours.

The reported numbers live in workflow/resources/paper_numbers.csv (columns table, dataset,
source, lam, metric, value, std, where); an empty lam there matches any lambda.
"""

from __future__ import annotations

import math

import pandas as pd

from pagrob import registry

#: The tidy metrics format: one row per model x attack, accuracy in percent. classes_per_step:
#: 0 for a model trained with all C target classes every step (or no PAG term), k for one
#: trained with k random classes per step (an unbiased estimate of the full term).
#: images: how many test images (the first N) the row was measured on (n); ci_low, ci_high: the
#: Clopper-Pearson (exact) 95% interval of the accuracy over those images; correct: which of them
#: the model got right (pagrob.stats.pack's hex string; empty where not recorded).
COLUMNS = [
    "dataset",
    "source",
    "lam",
    "seed",
    "attack",
    "norm",
    "eps",
    "steps",
    "accuracy",
    "classes_per_step",
    "images",
    "ci_low",
    "ci_high",
    "correct",
]

METHOD_NAMES = {name: s.title for name, s in registry.SOURCES.items()}


#: the reference rows of Tables 1-2 (adversarially trained)
TEACHERS = registry.TEACHERS


#: the AutoAttack row that ends its APGD stages (settings.APGD_STAGES: APGD-CE, then APGD-T)
APGD_ROW = "autoattack:apgd-t"


def metric_name(row) -> str | None:
    """What a row is in the tables: 'clean'; the table's PGD by norm ('linf', 'l2'); AutoAttack's
    final accuracy ('aa_linf', 'aa_l2'); its accuracy after the APGD stages, the cheaper stage
    that every seed gets ('apgd_linf', 'apgd_l2'); None for the rows that only the checks and
    curves use (AutoAttack's other stages, the eps curve, the strong PGD)."""
    if row["attack"] == "clean":
        return "clean"
    if row["attack"] == "pgd":
        return row["norm"]
    if row["attack"] == "autoattack":
        return f"aa_{row['norm']}"
    if row["attack"] == APGD_ROW:
        return f"apgd_{row['norm']}"
    return None


def read_metrics(path) -> pd.DataFrame:
    """A tidy metrics CSV with its ``metric`` column, all rows (also those no table shows)."""
    df = pd.read_csv(path)
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"metrics file {path} lacks the columns {sorted(missing)}; rebuild it")
    df["metric"] = df.apply(metric_name, axis=1) if len(df) else pd.Series(dtype=object)
    return df


def table_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The rows that the tables show (clean, PGD, AutoAttack), a metric only where every method
    (source and λ) of the table has it for at least one seed (AutoAttack may run on some seeds
    or experiments only: the column's header then names its seeds). The teachers are reference
    rows and do not count: where the config spares them AutoAttack, their cells stay blank."""
    metrics = metrics[metrics["metric"].notna()]
    methods = lambda rows: set(map(tuple, rows[["source", "lam"]].astype(str).values))  # noqa: E731
    everyone = methods(metrics[~metrics["source"].isin(TEACHERS)])
    complete = [m for m, rows in metrics.groupby("metric") if everyone <= methods(rows)]
    return metrics[metrics["metric"].isin(complete)]


def read_paper(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"table": str, "dataset": str, "source": str, "metric": str})


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per (source, lam, metric): the seeds, their mean and sample std, and a 95% interval: for
    one seed the exact (Clopper-Pearson) interval over its test images, for several the
    t-interval over the seeds (``half``: its half-width; ``interval``: which)."""
    from pagrob import stats

    metrics = table_rows(metrics)
    rows = []
    keys = ["source", "lam", "classes_per_step", "metric"]
    for (source, lam, k, metric), g in metrics.groupby(keys, sort=False):
        g = g.sort_values("seed")
        values = g["accuracy"].tolist()
        if len(values) > 1:
            mean, half = stats.t_interval(values)
            low, high, interval = mean - half, mean + half, "seeds"
        else:
            low, high, interval = float(g["ci_low"].iloc[0]), float(g["ci_high"].iloc[0]), "images"
            mean, half = values[0], (high - low) / 2
        rows.append(
            {
                "source": source,
                "lam": lam,
                "classes_per_step": k,
                "metric": metric,
                "seeds": len(values),
                "mean": mean,
                "std": pd.Series(values).std(ddof=1) if len(values) > 1 else float("nan"),
                "ci_low": low,
                "ci_high": high,
                "half": half,
                "interval": interval,
                "images": ";".join(str(int(n)) for n in sorted(g["images"].unique())),
                "per_seed": ";".join(f"{s}:{v:.2f}" for s, v in zip(g["seed"], values)),
            }
        )
    return pd.DataFrame(rows)


def attach_paper(
    summary: pd.DataFrame, paper: pd.DataFrame, table: str, dataset: str
) -> pd.DataFrame:
    """Add the paper's value (and std) and ours minus the paper's."""
    ref = paper[(paper["table"] == table) & (paper["dataset"] == dataset)]
    values, stds = [], []
    for _, r in summary.iterrows():
        m = ref[(ref["source"] == r["source"]) & (ref["metric"] == r["metric"])]
        m = m[m["lam"].isna() | (m["lam"].astype(float) == float(r["lam"]))]
        values.append(m["value"].iloc[0] if len(m) else float("nan"))
        stds.append(m["std"].iloc[0] if len(m) else float("nan"))
    out = summary.copy()
    out["paper"] = values
    out["paper_std"] = stds
    out["diff"] = out["mean"] - out["paper"]
    return out


def fmt(mean: float, std: float = float("nan"), digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    text = f"{mean:.{digits}f}"
    if not math.isnan(std):
        text += f" ± {std:.{digits}f}"
    return text


def markdown(df: pd.DataFrame) -> str:
    """A GitHub markdown table of string cells (no extra dependency)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(v) for v in r.tolist()) + " |")
    return "\n".join(lines) + "\n"


SOURCE_ORDER = list(METHOD_NAMES)
METRIC_ORDER = ["clean", "linf", "apgd_linf", "aa_linf", "l2", "apgd_l2", "aa_l2"]
NORM_SYMBOLS = {"linf": "L∞", "l2": "L2"}


#: the ``source`` of an imported model (pagrob.steps.import_model): external:<name>
EXTERNAL_PREFIX = "external:"


#: the class scores a PAG term can align (pagrob.pag.GRAD_OF), by name
CLASS_SCORE_NAMES = {"logit": "logit", "log_softmax": "log-softmax", "centred": "centred logit"}


def split_source(source: str) -> tuple[str, str | None]:
    """'class_mean.centred' -> ('class_mean', 'centred'): a model of the grad_of ablation
    trained with another class score than the config's; ('class_mean', None) otherwise."""
    base, _, score = source.partition(".")
    return (base, score) if score in CLASS_SCORE_NAMES else (source, None)


def method(source: str, classes_per_step: int = 0) -> str:
    if source.startswith(EXTERNAL_PREFIX):
        return f"{source.removeprefix(EXTERNAL_PREFIX)} (external)"
    base, score = split_source(source)
    name = METHOD_NAMES.get(base, base)
    if score:
        name += f" ({CLASS_SCORE_NAMES[score]})"
    return f"{name} ({classes_per_step} classes/step)" if classes_per_step else name


def source_rank(source: str) -> tuple[int, str]:
    """The tables' order: SOURCE_ORDER, a source's class-score variants after it."""
    base, score = split_source(source)
    order = SOURCE_ORDER.index(base) if base in SOURCE_ORDER else len(SOURCE_ORDER)
    return order, score or ""


def _method_of(g: pd.DataFrame) -> str:
    return method(g["source"].iloc[0], int(g["classes_per_step"].iloc[0]))


def metric_labels(metrics: pd.DataFrame) -> dict[str, str]:
    """'clean' -> 'Clean (539 images)', 'linf' -> 'PGD-20 L∞ ε=0.031 (539 images)', ... from the
    metrics themselves; a column measured on fewer seeds than the table's clean column names
    its seeds."""
    labels = {}
    students = metrics[~metrics["source"].isin(TEACHERS)]
    all_seeds = sorted(students[students["metric"] == "clean"]["seed"].unique())
    for m in METRIC_ORDER:
        rows = metrics[metrics["metric"] == m]
        if rows.empty:
            continue
        images = ", ".join(str(int(n)) for n in sorted(rows["images"].unique()))
        seeds = sorted(students[students["metric"] == m]["seed"].unique())
        where = f"{images} images" + (
            f", seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
            if seeds != all_seeds
            else ""
        )
        if m == "clean":
            labels[m] = f"Clean ({where})"
            continue
        eps = ", ".join(f"{e:g}" for e in sorted(rows["eps"].unique()))
        norm = NORM_SYMBOLS[m.split("_")[-1]]
        if m.startswith("aa_"):
            labels[m] = f"AutoAttack {norm} ε={eps} ({where})"
        elif m.startswith("apgd_"):
            labels[m] = f"APGD-CE+T {norm} ε={eps} ({where})"
        else:
            steps = ", ".join(str(int(k)) for k in sorted(rows["steps"].unique()))
            labels[m] = f"PGD-{steps} {norm} ε={eps} ({where})"
    return labels


def wide(full: pd.DataFrame, keys: list[str], first: dict, labels: dict[str, str]) -> pd.DataFrame:
    """One row per ``keys`` group: ``first(group)`` columns, then per metric ours / paper / Δ."""
    rows = []
    for _, g in full.groupby(keys, sort=False):
        row = dict(first(g))
        for m, label in labels.items():
            r = g[g["metric"] == m]
            if r.empty:
                continue
            r = r.iloc[0]
            row[f"{label} (ours)"] = fmt(r["mean"], r["half"])
            row[f"{label} (paper)"] = fmt(r["paper"], r["paper_std"])
            row[f"{label} Δ"] = fmt(r["diff"])
        rows.append(row)
    shown = pd.DataFrame(rows).fillna("")  # a reference row without a metric: a blank cell
    # the paper reports no AutoAttack and no digits: leave out columns with nothing in them
    empty = [c for c in shown.columns if c.endswith(("(paper)", "Δ")) and (shown[c] == "").all()]
    return shown.drop(columns=empty)


def _ordered(full: pd.DataFrame) -> pd.DataFrame:
    mord = {m: i for i, m in enumerate(METRIC_ORDER)}
    return full.sort_values(
        ["source", "lam", "metric"],
        key=lambda col: (
            col.map(source_rank)
            if col.name == "source"
            else (col.map(mord) if col.name == "metric" else col)
        ),
        kind="stable",
    )


def per_seed_table(metrics: pd.DataFrame) -> str:
    """One row per model (method, λ, seed), one column per metric: each seed's accuracy."""
    metrics = table_rows(metrics)
    labels = metric_labels(metrics)
    t = metrics.pivot_table(index=["source", "lam", "seed"], columns="metric", values="accuracy")
    order = {s: i for i, s in enumerate(SOURCE_ORDER)}
    t = t.reset_index().sort_values(
        ["source", "lam", "seed"],
        key=lambda c: c.map(order) if c.name == "source" else c,
        kind="stable",
    )
    rows = []
    for _, r in t.iterrows():
        row = {"Method": method(r["source"]), "λ": f"{r['lam']:g}", "Seed": int(r["seed"])}
        for m, label in labels.items():
            row[label] = "" if pd.isna(r.get(m)) else f"{r[m]:.2f}"
        rows.append(row)
    return markdown(pd.DataFrame(rows))


def note(shown: pd.DataFrame, published: str = "") -> str:
    """What the table's cells are, saying only what its columns hold; ``published``: where the
    values of a "(published)" column come from."""
    text = (
        "Accuracy in % on the first n test images (n in each column's header). Ours: for one "
        "seed, the accuracy ± the half-width of its exact (Clopper–Pearson) 95% interval over "
        "the images; for several, the mean over the seeds ± the half-width of the 95% "
        "t-interval over them (the CSV has the std, the interval and each seed's value)."
    )
    if any(str(c).endswith("(paper)") for c in shown.columns):
        text += " The paper's values (± its std where it gives one) beside ours; Δ = ours − paper."
    if any(str(c).endswith("(published)") for c in shown.columns):
        text += f" Published values beside ours ({published}); Δ = ours − published."
    if any(str(c).startswith("AutoAttack") for c in shown.columns):
        reported = any(str(c).endswith(("(paper)", "(published)")) for c in shown.columns)
        text += " The reported values are PGD only;" if reported else ""
        text += " AutoAttack is the standard version."
    return text


def mark_flagged(
    shown: pd.DataFrame, full: pd.DataFrame, flags: dict | None
) -> tuple[pd.DataFrame, str]:
    """Mark the Method of every model that failed a gradient-masking check with a numbered
    footnote naming the checks; ``flags`` maps (source, lam, seed) to the failed checks."""
    if not flags:
        return shown, ""
    notes = []
    shown = shown.copy()
    groups = list(full.groupby(["source", "lam", "classes_per_step"], sort=False))
    for i, ((source, lam, _), g) in enumerate(groups):
        seeds = [int(p.split(":")[0]) for p in g["per_seed"].iloc[0].split(";")]
        failed = sorted({c for seed in seeds for c in flags.get((source, float(lam), seed), [])})
        if failed:
            notes.append(
                f"{len(notes) + 1}. {method(source)} (λ {float(lam):g}): {', '.join(failed)}"
            )
            shown.loc[i, shown.columns[0]] = f"{shown.loc[i, shown.columns[0]]} ⚠{len(notes)}"
    if not notes:
        return shown, ""
    return shown, (
        "\n⚠ Failed a gradient-masking check (results/tables/masking_<dataset>.md); treat its "
        "robust accuracy with care:\n\n" + "\n".join(notes) + "\n"
    )


def toy_table(metrics: pd.DataFrame, paper: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The toy experiment: clean and L2-PGD accuracy (mean ± std over seeds, and each seed)."""
    full = _ordered(attach_paper(summarize(metrics), paper, "toy", "toy"))

    def first(g):
        src = g["source"].iloc[0]
        return {
            "Method": _method_of(g) if src == "vanilla" else f"PAG ({_method_of(g)})",
            "λ": f"{g['lam'].iloc[0]:g}",
            "Seeds": int(g["seeds"].iloc[0]),
        }

    shown = wide(
        full, ["source", "lam", "classes_per_step"], first, metric_labels(table_rows(metrics))
    )
    text = (
        "# Toy experiment (Section 5.1, Fig. 3)\n\n"
        + note(shown)
        + "\n\n"
        + markdown(shown)
        + "\n## Per seed\n\n"
        + per_seed_table(metrics)
    )
    return full, text


def main_table(
    metrics: pd.DataFrame, paper: pd.DataFrame, name: str, dataset: str, flags: dict | None = None
) -> tuple[pd.DataFrame, str]:
    """Tables 1-2: clean, L∞ and L2 accuracy (PGD, AutoAttack) of every source on one dataset;
    models flagged by the gradient-masking checks marked with a footnote."""
    full = _ordered(attach_paper(summarize(metrics), paper, "main", dataset))
    several = bool((full["seeds"] > 1).any())

    def first(g):
        row = {"Method": _method_of(g), "λ": f"{g['lam'].iloc[0]:g}"}
        if several:
            row["Seeds"] = int(g["seeds"].max())
        return row

    shown = wide(
        full, ["source", "lam", "classes_per_step"], first, metric_labels(table_rows(metrics))
    )
    shown, footnotes = mark_flagged(shown, full, flags)
    # reference rows that are not the paper's (it names a place in it: Table 1, Section 5.1,
    # Fig. 5) come from another publication, named in their where column (Fashion-MNIST's)
    ref = paper[(paper["table"] == "main") & (paper["dataset"] == dataset)]
    elsewhere = ref[~ref["where"].astype(str).str.match(r"(Table|Section|Fig\.) ")]
    if len(elsewhere):
        shown.columns = [str(c).replace("(paper)", "(published)") for c in shown.columns]
    published = "; ".join(dict.fromkeys(elsewhere["where"].astype(str)))
    number = name.removeprefix("table")
    text = (
        f"# Table {number}: accuracy on {dataset}\n\n{note(shown, published)}\n\n"
        + markdown(shown)
        + footnotes
    )
    if several:
        text += "\n## Per seed\n\n" + per_seed_table(metrics)
    return full, text


def seeds_table(metrics: pd.DataFrame, paper: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Table 4: one source over several seeds, mean ± std."""
    dataset = metrics["dataset"].iloc[0]
    full = _ordered(attach_paper(summarize(metrics), paper, "seeds", dataset))
    shown = wide(
        full,
        ["source", "lam", "classes_per_step"],
        lambda g: {
            "Method": _method_of(g),
            "λ": f"{g['lam'].iloc[0]:g}",
            "Seeds": int(g["seeds"].iloc[0]),
        },
        metric_labels(table_rows(metrics)),
    )
    text = (
        f"# Table 4: error bars over seeds on {dataset}\n\n{note(shown)}\n\n"
        + markdown(shown)
        + "\n## Per seed\n\n"
        + per_seed_table(metrics)
    )
    return full, text


def ablation_table(metrics: pd.DataFrame, paper: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Fig. 5's numbers: one source for several lambdas."""
    dataset = metrics["dataset"].iloc[0]
    source = next(s for s in metrics["source"] if s != "vanilla")  # vanilla: lambda = 0
    full = attach_paper(summarize(metrics), paper, "ablation", dataset)
    full = full.sort_values("lam", kind="stable")
    shown = wide(
        full,
        ["lam", "classes_per_step"],
        lambda g: {
            "λ": (f"{g['lam'].iloc[0]:g}" if g["source"].iloc[0] != "vanilla" else "0 (vanilla)")
            + (
                f" ({int(g['classes_per_step'].iloc[0])} classes/step)"
                if g["classes_per_step"].iloc[0]
                else ""
            )
        },
        metric_labels(table_rows(metrics)),
    )
    text = f"# Fig. 5: {method(source)} on {dataset} for several λ\n\n{note(shown)}\n\n" + markdown(
        shown
    )
    return full, text


def lambda_table(
    lams: dict[str, dict[str, float]], paper: pd.DataFrame
) -> tuple[pd.DataFrame, str]:
    """Table 3: the lambda of every source per dataset, ours (the config's) beside the paper's."""
    ref = paper[paper["table"] == "lambda"]
    rows, shown = [], []
    sources = [s for s in SOURCE_ORDER if s != "vanilla"]
    for source in sources:
        line = {"Method": method(source)}
        for dataset, by_source in lams.items():
            p = ref[(ref["dataset"] == dataset) & (ref["source"] == source)]["value"]
            ours = by_source.get(source)
            paper_value = p.iloc[0] if len(p) else None
            rows.append({"dataset": dataset, "source": source, "ours": ours, "paper": paper_value})
            line[f"{dataset} (ours)"] = "" if ours is None else f"{ours:g}"
            line[f"{dataset} (paper)"] = "" if paper_value is None else f"{paper_value:g}"
        if any(r["ours"] is not None for r in rows if r["source"] == source):
            shown.append(line)
    shown = pd.DataFrame(shown)
    # the paper reports no λ for some datasets (digits): leave out what holds nothing
    shown = shown.drop(columns=[c for c in shown.columns if (shown[c] == "").all()])
    text = "# Table 3: λ per source and dataset\n\n" + markdown(shown)
    return pd.DataFrame(rows), text


def external_table(
    metrics: pd.DataFrame,
    paper: pd.DataFrame,
    dataset: str,
    externals: dict[str, dict],
    flags: dict | None = None,
) -> tuple[pd.DataFrame, str]:
    """Imported models (``externals``: name -> {claims, lam}) each beside our model of the source
    it claims (when the config trains one on ``dataset``: the rows of ``metrics`` with that
    source) and the paper's row for it. Every metric a row has is shown, also where another row
    lacks it (AutoAttack runs on every external model, on ours only where configured); models
    that failed a gradient-masking check are footnoted."""
    metrics = metrics[metrics["metric"].notna()]
    labels = metric_labels(metrics)
    ref = paper[(paper["table"] == "main") & (paper["dataset"] == dataset)]
    rows, shown, notes = [], [], []
    for name, spec in externals.items():
        claims = spec["claims"]
        for who, label, lam, g in _external_lines(metrics, name, spec):
            shown.append(
                _measured_line(name, claims, who, label, lam, g, labels, flags, rows, notes)
            )
        shown.append(_paper_line(ref, name, claims, labels, rows))
    text = (
        f"# External models on {dataset}, beside ours and the paper's\n\n"
        "Accuracy in % on the test set (ours: mean ± sample std over the seeds trained). Each "
        "imported model is followed by our model of the gradient source it claims to be trained "
        "with (where the config trains one on this dataset) and the paper's numbers for it "
        "(blank where the paper has none). The same evaluation, on the same test images, for all.\n\n"
        + markdown(pd.DataFrame(shown))
    )
    if notes:
        text += (
            "\n⚠ Failed a gradient-masking check (results/tables/masking_<dataset>.md):\n\n"
            + "\n".join(notes)
            + "\n"
        )
    return pd.DataFrame(rows), text


def _external_lines(metrics: pd.DataFrame, name: str, spec: dict) -> list[tuple]:
    """The measured lines of one external model and of ours of the source it claims."""
    claims = spec["claims"]
    theirs = metrics[metrics["source"] == f"{EXTERNAL_PREFIX}{name}"]
    if theirs.empty:
        raise ValueError(f"no metrics of the external model {name!r} among the inputs")
    ours = metrics[metrics["source"] == claims]
    stated = spec.get("lam")
    lines = [("theirs", f"{name} (external)", "" if stated is None else f"{stated:g}", theirs)]
    for lam, g in ours.groupby("lam", sort=True):
        lines.append(("ours", f"{method(claims)} (ours)", f"{lam:g}", g))
    return lines


def _measured_line(name, claims, who, label, lam, g, labels, flags, rows, notes) -> dict:
    """One measured model's shown line, its numbers added to rows, its checks to notes."""
    line = {"Model": label, "Claims": method(claims), "λ": lam}
    for m, column in labels.items():
        v = g[g["metric"] == m]["accuracy"]
        line[column] = (
            fmt(v.mean(), v.std(ddof=1) if len(v) > 1 else float("nan")) if len(v) else ""
        )
        if len(v):
            rows.append(
                {
                    "external": name,
                    "claims": claims,
                    "row": who,
                    "lam": lam,
                    "metric": m,
                    "value": v.mean(),
                    "seeds": len(v),
                }
            )
    failed = sorted(
        {
            c
            for (src, lam_, seed) in set(map(tuple, g[["source", "lam", "seed"]].values))
            for c in (flags or {}).get((src, float(lam_), int(seed)), [])
        }
    )
    if failed:
        notes.append(f"{len(notes) + 1}. {label}: {', '.join(failed)}")
        line["Model"] += f" ⚠{len(notes)}"
    return line


def _paper_line(ref: pd.DataFrame, name: str, claims: str, labels: dict, rows: list) -> dict:
    """The shown line of the paper's numbers for the claimed source, appended to ``rows`` too."""
    p = ref[ref["source"] == claims]
    line = {"Model": f"{method(claims)} (paper)", "Claims": method(claims), "λ": ""}
    for m, column in labels.items():
        v = p[p["metric"] == m]
        line[column] = fmt(v["value"].iloc[0], v["std"].iloc[0]) if len(v) else ""
        if len(v):
            line["λ"] = "" if pd.isna(v["lam"].iloc[0]) else f"{float(v['lam'].iloc[0]):g}"
            rows.append(
                {
                    "external": name,
                    "claims": claims,
                    "row": "paper",
                    "lam": line["λ"],
                    "metric": m,
                    "value": v["value"].iloc[0],
                    "seeds": None,
                }
            )
    return line

"""Aggregation of the tidy metrics into the paper's tables, with the paper's numbers beside ours.

The reported numbers live in workflow/resources/paper_numbers.csv (columns table, dataset,
source, lam, metric, value, std, where); an empty lam there matches any lambda.
"""

from __future__ import annotations

import math

import pandas as pd

#: The tidy metrics format: one row per model x attack, accuracy in percent.
COLUMNS = ["dataset", "source", "lam", "seed", "attack", "norm", "eps", "steps", "accuracy"]

METHOD_NAMES = {
    "vanilla": "Vanilla",
    "one_image": "One Image",
    "class_mean": "Class Mean",
    "nearest_neighbor": "Nearest Neighbor",
    "rigd_linf": "RIGD ℓ∞",
    "rigd_l2": "RIGD ℓ2",
}


def metric_name(row) -> str:
    """'clean' for clean accuracy, else the attack's norm ('linf', 'l2')."""
    return "clean" if row["attack"] == "clean" else row["norm"]


def read_metrics(path) -> pd.DataFrame:
    df = pd.read_csv(path)
    missing = {"dataset", "source", "lam", "seed", "attack", "norm", "accuracy"} - set(df.columns)
    if missing:
        raise ValueError(f"metrics file {path} lacks the columns {sorted(missing)}")
    df["metric"] = df.apply(metric_name, axis=1)
    return df


def read_paper(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"table": str, "dataset": str, "source": str, "metric": str})


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std and per-seed values of each (source, lam, metric) over seeds."""
    rows = []
    for (source, lam, metric), g in metrics.groupby(["source", "lam", "metric"], sort=False):
        g = g.sort_values("seed")
        values = g["accuracy"].tolist()
        rows.append(
            {
                "source": source,
                "lam": lam,
                "metric": metric,
                "seeds": len(values),
                "mean": sum(values) / len(values),
                "std": pd.Series(values).std(ddof=1) if len(values) > 1 else float("nan"),
                "per_seed": ";".join(f"{s}:{v:.2f}" for s, v in zip(g["seed"], values)),
            }
        )
    return pd.DataFrame(rows)


def attach_paper(summary: pd.DataFrame, paper: pd.DataFrame, table: str, dataset: str) -> pd.DataFrame:
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


def toy_table(metrics: pd.DataFrame, paper: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The toy experiment: clean and L2-PGD accuracy (mean ± std over seeds, and each seed)."""
    full = attach_paper(summarize(metrics), paper, "toy", "toy")
    shown = []
    for (source, lam), g in full.groupby(["source", "lam"], sort=False):
        name = METHOD_NAMES.get(source, source)
        row = {
            "Method": name if source == "vanilla" else f"PAG ({name})",
            "λ": f"{lam:g}",
            "Seeds": int(g["seeds"].iloc[0]),
        }
        for _, r in g.iterrows():
            label = "Clean" if r["metric"] == "clean" else f"PGD {r['metric'].upper()}"
            row[f"{label} (ours)"] = fmt(r["mean"], r["std"])
            row[f"{label} (paper)"] = fmt(r["paper"], digits=1)
            row[f"{label} Δ"] = fmt(r["diff"])
        shown.append(row)
    per_seed = metrics.pivot_table(index="seed", columns=["source", "metric"], values="accuracy")
    per_seed = per_seed[sorted(per_seed.columns, key=lambda c: (c[0] != "vanilla", c[1] != "clean"))]
    per_seed.columns = [f"{METHOD_NAMES.get(s, s)} {m}" for s, m in per_seed.columns]
    per_seed = per_seed.map(lambda v: f"{v:.2f}").reset_index()
    text = (
        "# Toy experiment (Section 5.1, Fig. 3)\n\n"
        "Accuracy in % on the 600 test points; mean ± sample std over seeds. "
        "Δ = ours − paper.\n\n"
        + markdown(pd.DataFrame(shown))
        + "\n## Per seed\n\n"
        + markdown(per_seed)
    )
    return full, text

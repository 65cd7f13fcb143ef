"""Can the robustness numbers be trusted? Gradient-masking checks (Carlini et al. 2019; Croce &
Hein 2020) from the tidy metrics of each model, and the accuracy-against-eps curves.

pandas and matplotlib only (no torch): runs in the report environment.

Per model and threat model (norm), each check is a named flag with the number behind it:

- ``robust_above_clean``: the largest robust accuracy minus the clean accuracy of the same images
  (flagged above ``tolerance`` points): an attack must never raise accuracy.
- ``autoattack_gap``: PGD (the table's, on AutoAttack's images) minus AutoAttack, in points:
  how much PGD overestimates robustness (flagged above ``max_gap``); against the APGD stages
  where only they ran (the cheaper stage of the seeds outside eval.autoattack.full_seeds).
- ``later_stages_gain``: AutoAttack after its APGD stages (APGD-CE, APGD-T) minus after all of
  them, in points, where the whole version ran: what the cheaper stage misses (flagged above
  ``tolerance``).
- ``more_steps_gap``: the table's PGD minus a PGD with many more steps and restarts on the same
  images (flagged above ``max_gap``): more effort must find little more.
- ``square_gain``: accuracy after AutoAttack's last white-box stage minus after Square, in
  points: the black-box Square attack must not break an image that the white-box attacks left
  standing (flagged above 0; AutoAttack's own check, at a threshold of one image).
- ``monotone_in_eps``: the largest rise of the PGD accuracy from one eps of the curve to the
  next (flagged above ``tolerance``): accuracy must fall as eps grows.
- ``large_eps_accuracy``: the PGD accuracy at the curve's largest eps (flagged above
  ``zero_at``): an (almost) unbounded attack must win.
- ``autoattack_warnings``: how many warnings AutoAttack's own checks raised (randomness, zero
  gradients, outputs that look like probabilities, ...; flagged above 0), quoted in ``detail``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from pagrob.settings import APGD_STAGES

CHECKS = (
    "robust_above_clean",
    "autoattack_gap",
    "later_stages_gain",
    "more_steps_gap",
    "square_gain",
    "monotone_in_eps",
    "large_eps_accuracy",
    "autoattack_warnings",
)
CHECK_COLUMNS = [
    "dataset",
    "source",
    "lam",
    "seed",
    "norm",
    "check",
    "value",
    "threshold",
    "flagged",
    "detail",
]
MODEL_KEYS = ["dataset", "source", "lam", "seed"]
NORM_LABELS = {"linf": "L∞", "l2": "L2"}


def read_records(paths) -> list[dict]:
    """The JSON records written beside the AutoAttack results (one per model and norm)."""
    records = []
    for path in paths:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(
                f"AutoAttack record {path} cannot be read ({e}); delete it and rerun its job"
            ) from e
        missing = {
            "dataset",
            "source",
            "lam",
            "seed",
            "norm",
            "clean",
            "stages",
            "warnings",
            "pgd_same_images",
        } - set(record)
        if missing:
            raise ValueError(
                f"AutoAttack record {path} lacks {sorted(missing)}; delete it and rerun its job"
            )
        records.append(record)
    return records


def _one(rows: pd.DataFrame, attack: str, norm: str) -> float:
    r = rows[(rows["attack"] == attack) & (rows["norm"] == norm)]
    return float(r["accuracy"].iloc[0]) if len(r) else math.nan


def model_checks(
    rows: pd.DataFrame, record: dict, *, tolerance: float, max_gap: float, zero_at: float
) -> list[dict]:
    """The checks of one model for one norm: ``rows`` are the model's tidy metrics (clean, its
    PGD, ``curve``, ``pgd-<k>x<r>`` and ``autoattack*`` rows), ``record`` the AutoAttack JSON."""
    norm = record["norm"]
    pgd_same = float(record["pgd_same_images"]["accuracy"])
    stages = record["stages"]
    complete = record.get("complete", True)
    # where only the APGD stages ran, the gap is PGD's against them (the last stage run)
    aa = _one(rows, "autoattack", norm) if complete else float(list(stages.values())[-1])
    aa_name = "AutoAttack" if complete else f"AutoAttack's {', '.join(stages)}"
    strong = rows[rows["attack"].str.startswith("pgd-") & (rows["norm"] == norm)]
    curve = rows[(rows["attack"] == "curve") & (rows["norm"] == norm)].sort_values("eps")
    out = []
    clean_all = _one(rows, "clean", "none")
    robust_subset = [pgd_same, aa, *strong["accuracy"], *curve["accuracy"]]
    excess = max(
        _one(rows, "pgd", norm) - clean_all,
        max(robust_subset) - float(record["clean"]),
    )
    out.append(
        _check(
            norm,
            "robust_above_clean",
            excess,
            tolerance,
            f"clean {clean_all:.2f} (all images), {record['clean']:.2f} (AutoAttack's)",
        )
    )
    out.append(
        _check(
            norm,
            "autoattack_gap",
            pgd_same - aa,
            max_gap,
            f"PGD {pgd_same:.2f} vs {aa_name} {aa:.2f} on {record['images']} images",
        )
    )
    out += _stage_checks(norm, stages, complete, aa, strong, pgd_same, tolerance, max_gap)
    out += _curve_checks(norm, curve, tolerance, zero_at)
    warnings = record["warnings"]
    out.append(_check(norm, "autoattack_warnings", float(len(warnings)), 0.0, " | ".join(warnings)))
    return out


def _check(norm: str, check: str, value: float, threshold: float, detail: str = "") -> dict:
    """One check's row: flagged where ``value`` exceeds ``threshold`` (never where it is NaN)."""
    flagged = bool(value > threshold) if not math.isnan(value) else False
    return {
        "norm": norm,
        "check": check,
        "value": value,
        "threshold": threshold,
        "flagged": flagged,
        "detail": detail,
    }


def _stage_checks(
    norm: str,
    stages: dict,
    complete: bool,
    aa: float,
    strong: pd.DataFrame,
    pgd_same: float,
    tolerance: float,
    max_gap: float,
) -> list[dict]:
    """The checks of AutoAttack's later stages, a stronger PGD and Square (where they apply)."""
    out = []
    apgd = APGD_STAGES[-1]
    if complete and apgd in stages and len(stages) > len(APGD_STAGES):
        out.append(
            _check(
                norm,
                "later_stages_gain",
                float(stages[apgd]) - aa,
                tolerance,
                f"after {apgd} {float(stages[apgd]):.2f}, after all stages {aa:.2f}",
            )
        )
    if len(strong):
        s = strong.iloc[0]
        out.append(
            _check(
                norm,
                "more_steps_gap",
                pgd_same - float(s["accuracy"]),
                max_gap,
                f"PGD {pgd_same:.2f} vs {s['attack']} {s['accuracy']:.2f}",
            )
        )
    white_box = [a for a in stages if a != "square"]
    if "square" in stages and white_box:
        last = float(stages[white_box[-1]])
        out.append(
            _check(
                norm,
                "square_gain",
                last - float(stages["square"]),
                0.0,
                f"after {white_box[-1]} {last:.2f}, after square {stages['square']:.2f}",
            )
        )
    return out


def _curve_checks(norm: str, curve: pd.DataFrame, tolerance: float, zero_at: float) -> list[dict]:
    """The checks of the accuracy-vs-eps curve: monotone in eps, near zero at its largest eps."""
    out = []
    if len(curve) > 1:
        acc = curve["accuracy"].tolist()
        rise = max(b - a for a, b in zip(acc, acc[1:]))
        out.append(
            _check(
                norm,
                "monotone_in_eps",
                rise,
                tolerance,
                "; ".join(f"{e:g}: {a:.1f}" for e, a in zip(curve["eps"], acc)),
            )
        )
    if len(curve):
        last = curve.iloc[-1]
        out.append(
            _check(
                norm,
                "large_eps_accuracy",
                float(last["accuracy"]),
                zero_at,
                f"PGD at eps {last['eps']:g}",
            )
        )
    return out


def masking_checks(
    metrics: pd.DataFrame, records: list[dict], *, tolerance: float, max_gap: float, zero_at: float
) -> pd.DataFrame:
    """Tidy check rows (``CHECK_COLUMNS``) for every model and norm that has an AutoAttack record."""
    rows = []
    for record in records:
        key = {k: record[k] for k in MODEL_KEYS}
        mine = metrics
        for k, v in key.items():
            mine = (
                mine[mine[k].astype(str) == str(v)]
                if k != "lam"
                else mine[mine[k].astype(float) == float(v)]
            )
        if mine.empty:
            raise ValueError(
                f"no metrics for the model of AutoAttack record {key}; rebuild its metrics"
            )
        for check in model_checks(
            mine, record, tolerance=tolerance, max_gap=max_gap, zero_at=zero_at
        ):
            rows.append(key | check)
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def flags_by_model(checks: pd.DataFrame) -> dict[tuple, list[str]]:
    """(source, lam, seed) -> the failed checks, e.g. ['autoattack_gap (L2)']."""
    flagged = checks[checks["flagged"].astype(bool)]
    out: dict[tuple, list[str]] = {}
    for _, r in flagged.iterrows():
        key = (r["source"], float(r["lam"]), int(r["seed"]))
        out.setdefault(key, []).append(f"{r['check']} ({NORM_LABELS.get(r['norm'], r['norm'])})")
    return out


def masking_table(checks: pd.DataFrame, method_name) -> str:
    """Markdown: one row per model and norm, each check's number (⚠ when flagged) and a verdict."""
    lines = []
    for (source, lam, seed, norm), g in checks.groupby(
        ["source", "lam", "seed", "norm"], sort=False
    ):
        row = {
            "Method": method_name(source),
            "λ": f"{float(lam):g}",
            "Seed": int(seed),
            "Norm": NORM_LABELS.get(norm, norm),
        }
        for check in CHECKS:
            c = g[g["check"] == check]
            if c.empty:
                row[check] = ""
                continue
            c = c.iloc[0]
            row[check] = f"{c['value']:.2f}" + (" ⚠" if bool(c["flagged"]) else "")
        failed = g[g["flagged"].astype(bool)]["check"].tolist()
        row["verdict"] = "flagged: " + ", ".join(failed) if failed else "ok"
        lines.append(row)
    df = pd.DataFrame(lines)
    thresholds = checks.drop_duplicates("check").set_index("check")["threshold"]
    header = " · ".join(f"{c} > {thresholds[c]:g}" for c in CHECKS if c in thresholds)
    from pagrob.report import markdown

    warnings = checks[(checks["check"] == "autoattack_warnings") & checks["flagged"].astype(bool)]
    text = (
        "# Gradient-masking checks\n\nFlagged (⚠) when: " + header + " (points of accuracy; "
        "warnings: count).\n\n" + markdown(df)
    )
    if len(warnings):
        text += (
            "\n## AutoAttack's warnings\n\n"
            + "\n".join(
                f"- {method_name(r['source'])} (λ {float(r['lam']):g}, seed {int(r['seed'])}, {NORM_LABELS.get(r['norm'], r['norm'])}): {r['detail']}"
                for _, r in warnings.iterrows()
            )
            + "\n"
        )
    return text


def curves_figure(
    metrics: pd.DataFrame, method_name, order: list[str], title: str, png, pdf
) -> None:
    """Robust accuracy against eps, one panel per norm, one line per model (PGD at every eps of
    the curve) with AutoAttack at the table's eps as a star of the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pagrob.plots import save

    curve = metrics[metrics["attack"] == "curve"]
    norms = [n for n in ("linf", "l2") if (curve["norm"] == n).any()]
    if not norms:
        raise ValueError(
            "no accuracy-against-eps rows (attack 'curve') in the metrics; run the sweep jobs"
        )
    fig, axes = plt.subplots(1, len(norms), figsize=(5.2 * len(norms), 4), squeeze=False)
    rank = {s: i for i, s in enumerate(order)}
    models = curve.drop_duplicates(["source", "lam", "seed"])
    models = models.sort_values(
        "source", key=lambda s: s.map(lambda v: rank.get(v, 99)), kind="stable"
    )
    for ax, norm in zip(axes[0], norms):
        for i, (_, m) in enumerate(models.iterrows()):
            sel = (
                (metrics["source"] == m["source"])
                & (metrics["lam"] == m["lam"])
                & (metrics["seed"] == m["seed"])
            )
            c = curve[sel[curve.index] & (curve["norm"] == norm)].sort_values("eps")
            if c.empty:
                continue
            color = f"C{i % 10}"
            label = (
                f"{method_name(m['source'])} (λ {m['lam']:g})"
                if m["lam"]
                else method_name(m["source"])
            )
            ax.plot(c["eps"], c["accuracy"], marker="o", ms=3, color=color, label=label)
            aa = metrics[sel & (metrics["attack"] == "autoattack") & (metrics["norm"] == norm)]
            if len(aa):
                ax.plot(aa["eps"], aa["accuracy"], marker="*", ms=11, color=color, linestyle="none")
        ax.set_xscale("log")
        ticks = sorted(curve[curve["norm"] == norm]["eps"].unique())
        ax.set_xticks(ticks, [f"{e:g}" for e in ticks])
        ax.minorticks_off()
        ax.set_xlabel(f"ε ({NORM_LABELS[norm]})")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(f"{NORM_LABELS[norm]}: PGD (lines), AutoAttack (★)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save(fig, png, pdf)

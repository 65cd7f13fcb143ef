"""A ground-truth PAG score on the toy data, beside the teacher-based one (Section 5.1).

For every model and for the reference: the mean over the test points of the manifold alignment
|cos(grad_x (f_1 - f_0), t)|, t the unit tangent of the data's line x2 = 2 x1 (the ground truth:
aligned gradients point along the data manifold), and of the teacher alignment
cos(grad_x (f_1 - f_0), grad_x (r_1 - r_0)) against the reference r (the instrument to validate);
with --denoiser, --centers and --sigma the score instrument too, cos(grad_x (f_1 - f_0),
s_1 - s_0) against the denoiser's class scores (score_alignment) and against the exact ones
(score_alignment_exact: the instrument's own check, where the score is known); with each model's
clean and PGD accuracy from the metrics. Writes a CSV (columns dataset, source, lam, seed, the
scores, clean, robust, role, and each score's value per test point, for the answer's tests over
seeds and points), and the table as markdown and HTML: each model, then each recipe's mean over
its seeds. The tests (does PAG's model follow the
line more than vanilla's? does the instrument see it?) are the toy's answer page's."""

from __future__ import annotations

import json

import pandas as pd
import torch

from pagrob import data, denoiser, models, pag_report, report, toy_pag
from pagrob.steps import _cli

#: the scores, each a column and a per-point column; the score instrument's two where a
#: denoiser is given
SCORES = ("manifold_alignment", "teacher_alignment", "score_alignment", "score_alignment_exact")
CSV_COLUMNS = [
    "dataset",
    "source",
    "lam",
    "seed",
    *SCORES,
    "clean",
    "robust",
    "role",
    *(f"{k}_per_point" for k in SCORES),
]
#: the table's column of each score
HEADERS = {
    "manifold_alignment": "Manifold alignment",
    "teacher_alignment": "Teacher alignment",
    "score_alignment": "Score alignment",
    "score_alignment_exact": "Score alignment (exact score)",
}


def method(source: str, role: str) -> str:
    """Fig. 3's names: Vanilla, PAG (<method>), an adversarially trained model by its name; the
    reference marked as such."""
    name = report.METHOD_NAMES.get(source, source)
    if role == "reference":
        return f"{name}, the reference"
    if source == "vanilla" or source in report.TEACHERS:
        return name
    return f"PAG ({name})"


def table_cells(rows: pd.DataFrame, methods: list[str], seeds: tuple, attack: str) -> pd.DataFrame:
    """The table's cells of ``rows`` (a model each, or a recipe's means): its method, λ, seed or
    seeds (``seeds``: the header and the values), scores and accuracies."""
    header, values = seeds
    cells = {"Method": methods, "λ": [f"{v:g}" for v in rows["lam"]]}
    cells[header] = [str(v) for v in values]
    for k in SCORES:
        if rows[k].notna().any():
            cells[HEADERS[k]] = [f"{v:.3f}" for v in rows[k]]
    cells["Clean (%)"] = [report.fmt(v) for v in rows["clean"]]
    cells[f"{attack} (%)"] = [report.fmt(v) for v in rows["robust"]]
    return pd.DataFrame(cells)


def model_rows(metrics: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """The metrics rows of the model of ``meta`` (same source, lam and seed)."""
    return metrics[
        (metrics["source"] == meta["source"])
        & (metrics["lam"].astype(float) == float(meta["lam"]))
        & (metrics["seed"].astype(int) == int(meta["seed"]))
    ]


def pgd_rows(rows: pd.DataFrame, norm: str | None) -> pd.DataFrame:
    """The PGD rows (attack "pgd") of one model, of ``norm`` (None: the only norm there is)."""
    pgd = rows[rows["attack"] == "pgd"]
    norms = sorted(pgd["norm"].unique())
    if norm is None and len(norms) > 1:
        raise ValueError(f"the metrics hold PGD with the norms {norms}; choose one with --norm")
    if norm is not None:
        pgd = pgd[pgd["norm"] == norm]
    return pgd


def parser():
    """The step's command-line options."""
    p = _cli.parser(__doc__)
    p.add_argument("--data", required=True, help="prepared toy dataset file")
    p.add_argument("--models", nargs="+", required=True, help="model files to score")
    p.add_argument("--reference", required=True, help="reference model file (teacher alignment)")
    p.add_argument(
        "--metrics",
        nargs="+",
        required=True,
        help="tidy metrics CSVs of the models (clean, PGD accuracy; one or several)",
    )
    p.add_argument(
        "--norm", choices=("linf", "l2"), help="the robust column's PGD (default: the only one)"
    )
    p.add_argument("--batch-size", type=int, default=toy_pag.BATCH_SIZE, help="points per batch")
    p.add_argument("--denoiser", help="the score instrument's denoiser (pagrob.steps.denoiser)")
    p.add_argument("--centers", help="with --denoiser: the toy's mode centres per class (JSON)")
    p.add_argument("--sigma", type=float, help="with --denoiser: the score's noise level")
    _cli.add_table_outputs(p)
    return p


def load(path, ds: data.Dataset, device: str):
    """A model file and its metadata, refused without source, lam, seed or of another dataset."""
    model, meta = models.load_model(path, device)
    missing = [k for k in ("source", "lam", "seed") if k not in meta]
    if missing:
        raise ValueError(f"model file {path} lacks {missing} in its metadata; rebuild it")
    if meta.get("dataset") != ds.name or meta["num_classes"] != ds.num_classes:
        raise ValueError(f"model {path} was trained on {meta.get('dataset')!r}, not {ds.name!r}")
    return model, meta


def accuracies(args, metrics: pd.DataFrame, role: str, path, meta: dict):
    """A model's clean and PGD accuracy rows; a scored model must have one of each."""
    found = model_rows(metrics, meta)
    clean = found[found["attack"] == "clean"]["accuracy"]
    pgd = pgd_rows(found, args.norm)
    if role == "model":
        if clean.empty or pgd.empty:
            raise ValueError(
                f"no clean and PGD accuracy of {path} (source {meta['source']}, "
                f"λ {meta['lam']}, seed {meta['seed']}) in {', '.join(args.metrics)}"
            )
        if len(clean) > 1 or len(pgd) > 1:
            raise ValueError(f"several clean or PGD rows of {path} in {', '.join(args.metrics)}")
    return clean, pgd


def score_models(args, ds: data.Dataset, device: str, metrics: pd.DataFrame, x, fields: dict):
    """Each model's and the reference's row, and the scored models' PGD rows. ``fields``: the
    tangent, the reference and its metadata, and the class-score fields of the score instrument
    (score_alignment: the denoiser's, score_alignment_exact: the exact one; absent without)."""
    reference, ref_meta = fields["reference"]
    rows, used = [], []
    for role, path in [("model", m) for m in args.models] + [("reference", args.reference)]:
        model, meta = (reference, ref_meta) if role == "reference" else load(path, ds, device)
        values = {
            "manifold_alignment": toy_pag.manifold_alignment(
                model, x, fields["tangent"], args.batch_size
            ),
            "teacher_alignment": toy_pag.teacher_alignment(model, reference, x, args.batch_size),
        }
        for k in ("score_alignment", "score_alignment_exact"):
            if k in fields:
                values[k] = toy_pag.score_alignment(model, x, fields[k], args.batch_size)
        points = dict(zip(values, torch.stack(list(values.values())).double().tolist()))
        clean, pgd = accuracies(args, metrics, role, path, meta)
        if role == "model":
            used.append(pgd)
        row = {
            "dataset": ds.name,
            "source": meta["source"],
            "lam": float(meta["lam"]),
            "seed": int(meta["seed"]),
            "clean": float(clean.iloc[0]) if len(clean) == 1 else float("nan"),
            "robust": float(pgd["accuracy"].iloc[0]) if len(pgd) == 1 else float("nan"),
            "role": role,
        }
        for k, v in points.items():  # the one read back per model
            row[k] = sum(v) / len(v)
            row[f"{k}_per_point"] = ";".join(f"{p:.6g}" for p in v)
        rows.append(row)
        _cli.log(f"{path} ({role}): " + ", ".join(f"{k} {row[k]:.3f}" for k in points))
    return rows, used


def shown_and_recipes(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows as shown (models in source order, then the reference) and each recipe's means."""
    order = {s: i for i, s in enumerate(report.SOURCE_ORDER)}
    scored = table[table["role"] == "model"].sort_values(
        ["source", "lam", "seed"],
        key=lambda c: c.map(lambda s: order.get(s, len(order))) if c.name == "source" else c,
        kind="stable",
    )
    shown = pd.concat([scored, table[table["role"] == "reference"]])
    recipes = (
        scored.groupby(["source", "lam"], sort=False)
        .agg(seeds=("seed", "size"), **{k: (k, "mean") for k in (*SCORES, "clean", "robust")})
        .reset_index()
    )
    return shown, recipes


def markdown(table: pd.DataFrame, used: list, ref_meta: dict, points: int) -> str:
    """The table's Markdown page: each model, each recipe's means, and what the columns mean."""
    pgd = pd.concat(used)
    attack = report.metric_labels(pgd)[pgd["norm"].iloc[0]]
    shown, recipes = shown_and_recipes(table)
    cells = table_cells(shown, [method(s, r) for s, r in zip(shown["source"], shown["role"])],
                        ("Seed", shown["seed"]), attack)  # fmt: skip
    means = table_cells(recipes, [method(s, "model") for s in recipes["source"]],
                        ("Seeds", recipes["seeds"]), attack)  # fmt: skip
    name = report.METHOD_NAMES.get(ref_meta["source"], ref_meta["source"])
    reference_name = f"{name}, λ {float(ref_meta['lam']):g}, seed {ref_meta['seed']}"
    return (
        "# Toy: ground-truth PAG (manifold alignment) and the teacher-based score\n\n"
        + report.markdown(cells)
        + "\nEach recipe's mean over its seeds:\n\n"
        + report.markdown(means)
        + "\n"
        f"On the {points} test points. "
        "Manifold alignment (the ground truth): the mean over the test points of "
        "|cos(∇ₓ(f₁ − f₀), t)|, t the unit tangent of the data's line x₂ = 2 x₁: 1 where the "
        "margin's gradient points along the data manifold (perceptually aligned, Section 5.1), "
        "0 where it points across it. Teacher alignment (the instrument): the mean of the signed "
        "cos(∇ₓ(f₁ − f₀), ∇ₓ(r₁ − r₀)), r the reference "
        f"({reference_name}); the reference against itself scores 1. Accuracy in % on the test "
        f'set; the robust column is {attack} (attack "pgd" of the metrics); the reference\'s '
        "cells are blank where the metrics hold none of it. The tests over the seeds are the "
        "toy's answer page's (answer_toy).\n" + score_note(table)
    )


def score_note(table: pd.DataFrame) -> str:
    """What the score instrument's columns are, and its check against the exact score: over the
    models, Spearman's ρ between the denoiser's and the exact score's alignment and their mean
    absolute difference ("" without them)."""
    models = table[table["role"] == "model"]
    if models["score_alignment"].isna().all():
        return ""
    learned, exact = models["score_alignment"], models["score_alignment_exact"]
    rho = pag_report.spearman(learned, exact)
    return (
        "\nScore alignment (the score instrument): the mean of the signed cos(∇ₓ(f₁ − f₀), "
        "s₁ − s₀), s_c = D(x, c, σ) − x the class scores of a denoiser with the references' seed "
        "(for two classes, the centred gradients' alignment with the centred scores); with the "
        "exact score of the smoothed class densities instead: its check where the truth is "
        f"known. Over the {len(models)} models, the denoiser's against the exact: Spearman ρ = "
        + ("n/a" if rho != rho else f"{rho:+.3f}")
        + f", mean |difference| = {(learned - exact).abs().mean():.3f}.\n"
    )


def score_fields(args, ds: data.Dataset, x, device: str) -> dict:
    """The score instrument's class-score fields at ``x`` ([N, 2, 2]): the denoiser's and the
    exact one; {} without --denoiser."""
    given = [args.denoiser is not None, args.centers is not None, args.sigma is not None]
    if not any(given):
        return {}
    if not all(given):
        raise ValueError("--denoiser, --centers and --sigma go together: give all three or none")
    net, meta = denoiser.load(args.denoiser, device)
    if meta.get("dataset") != ds.name:
        raise ValueError(f"denoiser {args.denoiser} was trained on {meta.get('dataset')!r}")
    return {
        "score_alignment": denoiser.score_targets(net, x, args.sigma),
        "score_alignment_exact": data.toy_score(x, json.loads(args.centers), args.sigma),
    }


def main() -> None:
    args = parser().parse_args()
    device = _cli.setup(args, [args.out_csv, args.out_md, args.out_html])
    ds = data.load_prepared(args.data)
    if ds.input_shape != (2,) or ds.num_classes != 2:
        raise ValueError(f"{args.data} is not two-class 2-D data like the toy's ({ds.name!r})")
    metrics = pd.concat([report.read_metrics(m) for m in args.metrics], ignore_index=True)
    x = ds.x_test.to(device)
    reference, ref_meta = load(args.reference, ds, device)
    fields = {"tangent": data.toy_tangent(device), "reference": (reference, ref_meta)}
    fields |= score_fields(args, ds, x, device)
    rows, used = score_models(args, ds, device, metrics, x, fields)
    table = pd.DataFrame(rows, columns=CSV_COLUMNS)
    text = markdown(table, used, ref_meta, len(x))
    _cli.write_table(args, table, text)
    _cli.log(
        f"{len(args.models)} models and the reference -> "
        f"{args.out_csv}, {args.out_md}, {args.out_html}"
    )


if __name__ == "__main__":
    _cli.run(main)

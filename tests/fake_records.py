"""The tidy rows and records the evaluation steps write, made up for the table steps' tests
(shared by tests/unit and tests/workflow, so that each tier runs alone)."""

from __future__ import annotations

import json

import pandas as pd


def with_images(row: dict) -> dict:
    """The row with its per-image correctness (the first round(accuracy) of its 100 images) and
    exact interval, as the steps write them."""
    from pagrob import stats

    right = round(row["accuracy"] * row["images"] / 100)
    low, high = stats.accuracy_interval(right, row["images"])
    return dict(
        row, ci_low=low, ci_high=high, correct=stats.pack([i < right for i in range(row["images"])])
    )


def robustness_files(folder, dataset, source, lam):
    """A checked model's AutoAttack and sweep rows and its AutoAttack records, as the steps write them."""
    from pagrob.report import COLUMNS

    model = dict(dataset=dataset, source=source, lam=lam, seed=0, classes_per_step=0, images=100)
    rows, records = [dict(model, attack="clean", norm="none", eps=0.0, steps=0, accuracy=95.0)], []
    for norm, eps in (("linf", 0.1), ("l2", 0.5)):
        rows += [
            dict(model, attack="pgd", norm=norm, eps=eps, steps=20, accuracy=40.0),
            dict(model, attack="autoattack", norm=norm, eps=eps, steps=0, accuracy=38.0),
            dict(model, attack="autoattack:square", norm=norm, eps=eps, steps=5000, accuracy=38.0),
            dict(model, attack="pgd-100x5", norm=norm, eps=eps, steps=100, accuracy=39.0),
            *[
                dict(model, attack="curve", norm=norm, eps=eps * k, steps=20, accuracy=a)
                for k, a in ((1, 40.0), (5, 0.0))
            ],
        ]
        record = folder / f"{dataset}_{source}_{norm}.json"
        record.write_text(
            json.dumps(
                {
                    "dataset": dataset,
                    "source": source,
                    "lam": lam,
                    "seed": 0,
                    "norm": norm,
                    "images": 100,
                    "clean": 95.0,
                    "stages": {"apgd-ce": 39.0, "apgd-t": 38.0, "fab-t": 38.0, "square": 38.0},
                    "warnings": [],
                    "pgd_same_images": {"steps": 20, "accuracy": 40.0},
                }
            )
        )
        records.append(str(record))
    path = folder / f"{dataset}_{source}_robust.csv"
    pd.DataFrame([with_images(r) for r in rows])[COLUMNS].to_csv(path, index=False)
    return [str(path)], records


def model_record(folder, environment: dict | None) -> None:
    """A model folder's model.json with this environment block (None: a record without one,
    as the autoencoder's), as pagrob.steps.train writes it (only the keys the docs read)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"arch": "small_cnn", "seed": 0}
    if environment is not None:
        record["environment"] = environment
    (folder / "model.json").write_text(json.dumps(record))


def benchmark(path, seconds: float | None) -> None:
    """A Snakemake benchmark file with one job's row of ``seconds`` (None: the header only, as a
    job killed before Snakemake wrote its row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
    rows = [header]
    if seconds is not None:
        rows.append(
            f"{seconds:.2f}\t0:00:00\t694.57\t3423.45\t460.40\t572.63\t0.15\t5.89\t66.40\t1.0"
        )
    path.write_text("\n".join(rows) + "\n")


def page(path, text: str) -> None:
    """A results page (a table's or an answer's markdown)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)

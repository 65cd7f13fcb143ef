"""Clean and PGD accuracy of one model on its dataset's test set, as a tidy CSV
(columns: pagrob.report.COLUMNS: dataset, source, lam, seed, attack, norm, eps, steps, accuracy,
classes_per_step, images)."""

from __future__ import annotations

import argparse
import dataclasses
import time

import pandas as pd

from pagrob import data, io, models
from pagrob.evaluate import evaluate
from pagrob.report import COLUMNS
from pagrob.settings import EvalSettings
from pagrob.steps import _cli


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)


def load_test_set(args, device: str, max_images: int = 0):
    """The model, its metadata, and the (first ``max_images``; 0: all) test images of its
    dataset."""
    ds = data.load_prepared(args.data)
    model, meta = models.load_model(args.model, device)
    if meta.get("dataset") != ds.name:
        raise ValueError(
            f"model {args.model} was trained on {meta.get('dataset')!r}, not {ds.name!r}"
        )
    x, y = ds.x_test, ds.y_test
    if max_images:
        x, y = x[:max_images], y[:max_images]
    return ds, model, meta, x, y


def write_rows(meta: dict, rows: list[dict], images: int, out) -> None:
    """The tidy CSV: the model's identity, then one row per attack, each with its exact 95%
    interval over the images and, where a row has ``flags`` (per-image correctness), them."""
    from pagrob import stats

    ids = {k: meta.get(k) for k in ("dataset", "source", "lam", "seed")}
    ids["classes_per_step"] = (meta.get("settings") or {}).get("classes_per_step") or 0
    ids["images"] = images
    table = []
    for r in rows:
        r = dict(r)
        flags = r.pop("flags", None)
        correct = round(r["accuracy"] * images / 100)
        r["ci_low"], r["ci_high"] = stats.accuracy_interval(correct, images)
        r["correct"] = stats.pack(flags.tolist()) if flags is not None else ""
        table.append(ids | r)
    io.write_text(pd.DataFrame(table, columns=COLUMNS).to_csv(index=False), out)
    for r in rows:
        _cli.log(
            f"{r['attack']} {r['norm']} eps={r['eps']:g} steps={r['steps']}: {r['accuracy']:.2f}%"
        )


def main() -> None:
    p = _cli.parser(__doc__)
    add_model_options(p)
    _cli.add_settings(p, EvalSettings)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    s = _cli.read_settings(args, EvalSettings)
    device = _cli.setup(args, [args.out])
    ds, model, meta, x, y = load_test_set(args, device, s.max_images)
    t0 = time.perf_counter()
    attacks = [dataclasses.replace(a, bounds=ds.bounds) for a in s.attacks]
    rows = evaluate(model, x, y, attacks, s.batch_size, s.seed, device)
    write_rows(meta, rows, len(x), args.out)
    _cli.log(f"evaluated {len(x)} images in {time.perf_counter() - t0:.1f}s -> {args.out}")


if __name__ == "__main__":
    _cli.run(main)

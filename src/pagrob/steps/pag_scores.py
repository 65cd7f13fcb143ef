"""PAG scores of models against robust reference models (tidy CSV, columns: dataset, source,
lam, seed, score, reference, value, circular). Scores: alignment (mean cosine of the logits'
input-gradients, over the first --images test images and all classes), targeted_success and
targeted_prob (the --attack's targeted PGD on the model towards every other class, judged by
the reference). Each reference is named by the source stored in its model file (teacher_linf,
teacher_l2). --baselines adds a floor (a freshly initialised model, source floor) and a
ceiling (each reference against itself, source ceiling)."""

from __future__ import annotations

import dataclasses
import time

import pandas as pd
import torch

from pagrob import data, io, models, pag, pag_scores
from pagrob.pag_report import COLUMNS
from pagrob.steps import _cli
from pagrob.steps.evaluate import attack_spec


def floor_model(arch: str, ds: data.Dataset, seed: int, device: str) -> models.Classifier:
    """``arch`` as training initialises it with ``seed`` (torch.manual_seed, then build): the
    untrained start of that seed's model. The global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = models.build_model(arch, ds.input_shape, ds.num_classes, ds.mean, ds.std)
    return model.to(device).eval()  # cpu: initialised from the seeded CPU RNG as training does, moved once


def main() -> None:
    p = _cli.parser(__doc__)
    p.add_argument("--data", required=True, help="prepared dataset file")
    p.add_argument(
        "--models", "--model", nargs="+", action="extend", default=[], metavar="MODEL",
        help="model files to score (--models A B, or --model A --model B)",
    )
    p.add_argument(
        "--references", "--reference", nargs="+", action="extend", required=True, metavar="REFERENCE",
        help="robust reference model files, e.g. the teacher_linf and teacher_l2 models",
    )
    p.add_argument("--baselines", action="store_true", help="add the floor and ceiling rows")
    p.add_argument(
        "--floor-arch", choices=models.ARCHITECTURES,
        help="the floor's architecture (default: the first --model's, else the first reference's)",
    )
    p.add_argument("--images", type=int, required=True, help="score on the first N test images")
    p.add_argument("--attack", type=attack_spec, required=True, help="targeted attack, e.g. l2:3:60:nostart")
    p.add_argument("--batch-size", type=int, default=500, help="images (or attacked images) per batch")
    p.add_argument("--grad-of", choices=pag.GRAD_OF, default=pag_scores.GRAD_OF, help="alignment's class score")
    p.add_argument("--seed", type=int, default=0, help="attack starts, and the floor's initialisation")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if not args.models and not args.baselines:
        raise ValueError("nothing to score: give --model files or --baselines")
    device = _cli.setup(args, [args.out])
    ds = data.load_prepared(args.data)
    if not 0 < args.images <= len(ds.x_test):
        raise ValueError(f"--images {args.images}: the test set has {len(ds.x_test)} images")
    x = ds.x_test[: args.images].to(device)
    y = ds.y_test[: args.images].to(device)
    attack = dataclasses.replace(args.attack, bounds=ds.bounds)

    def load(path):
        model, meta = models.load_model(path, device)
        if meta.get("dataset") != ds.name or meta["num_classes"] != ds.num_classes:
            raise ValueError(f"model {path} was trained on {meta.get('dataset')!r}, not {ds.name!r}")
        return model, meta

    references = {}
    for path in args.references:
        model, meta = load(path)
        if meta["source"] in references:
            raise ValueError(f"two references are {meta['source']!r}; give one of each")
        references[meta["source"]] = (model, meta)

    scored = [(path, *load(path)) for path in args.models]
    if args.baselines:
        arch = args.floor_arch or (scored[0][2] if scored else next(iter(references.values()))[1])["arch"]
        scored.append(("floor", floor_model(arch, ds, args.seed, device), {"source": "floor", "lam": 0.0, "seed": args.seed}))
        for name, (model, meta) in references.items():
            scored.append((f"ceiling {name}", model, {"source": "ceiling", "lam": 0.0, "seed": meta["seed"], "only": name}))

    rows = []
    for what, model, meta in scored:
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(args.seed)  # cpu: attack starts, the same for every model
        x_adv, targets = pag_scores.targeted_examples(model, x, y, attack, ds.num_classes, args.batch_size, g)
        for name, (reference, _) in references.items():
            if meta.get("only", name) != name:
                continue  # a ceiling is its own reference only
            values = {"alignment": pag_scores.alignment(model, reference, x, args.batch_size, args.grad_of)}
            values |= pag_scores.reference_agreement(reference, x_adv, targets, args.batch_size)
            circular = pag_scores.is_circular(meta["source"], name)
            for score, value in values.items():
                rows.append({
                    "dataset": ds.name, "source": meta["source"], "lam": meta["lam"], "seed": meta["seed"],
                    "score": score, "reference": name, "value": value, "circular": circular,
                })
            _cli.log(
                f"{what} vs {name}: alignment {values['alignment']:.3f}, targeted success "
                f"{values['targeted_success']:.3f}, target prob {values['targeted_prob']:.3f}"
                + (" (circular)" if circular else "")
            )
        _cli.log(f"{what}: {time.perf_counter() - t0:.1f}s")
    io.write_text(pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False), args.out)
    _cli.log(f"{len(rows)} scores on {len(x)} test images -> {args.out}")


if __name__ == "__main__":
    _cli.run(main)

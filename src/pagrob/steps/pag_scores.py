"""PAG scores of models (tidy CSV, columns: dataset, source, lam, seed, score, reference, value,
relation, per_image: the values of the images, whose mean is value), on the first --images test
images.

Against each robust reference (--references: adversarially trained models whose seed no scored
model uses, named by the source stored in their file, teacher_linf and teacher_l2): alignment
(the mean cosine of the centred logits' input-gradients over images and classes: blind to a
function added to every logit, as the predictions are), alignment_log_softmax (the same for
log-softmax), alignment_logit (the raw logits': a diagnostic), targeted_success and
targeted_prob (the settings' attack: targeted PGD on the model towards every other class, judged by the
reference). Without a reference: common_mode (the share of the gradients' energy that all
classes have in common) and, with --autoencoder, tangent_fraction (||P_T g|| / ||g|| of the
centred gradients in the autoencoder's tangent space) and, with --noise, on_manifold_change and
off_manifold_change (the softmax's change under noise of that L2 norm inside and orthogonal to
the tangent space). With --denoiser (a class-conditional denoiser seeded independently of the
score-based sources' own) and --score-sigma: score_alignment against reference "denoiser" (the
mean cosine of the centred class gradients with the denoiser's centred score field), which no
robust model touches; the score-based students are circular for it (relation circular).

--baselines adds a floor (a freshly initialised model, source floor), the self-ceiling (each
reference against itself, source ceiling) and with --autoencoder the random-direction fraction
sqrt(k/d) (source random) and the autoencoder's test reconstruction error (source autoencoder,
score reconstruction_mse)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import pandas as pd
import torch

from pagrob import data, io, models, pag_scores
from pagrob.pag_report import COLUMNS
from pagrob.settings import Attack, PagScoresSettings
from pagrob.steps import _cli


def floor_model(arch: str, ds: data.Dataset, seed: int, device: str) -> models.Classifier:
    """``arch`` as training initialises it with ``seed`` (torch.manual_seed, then build): the
    untrained start of that seed's model. The global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = models.build_model(arch, ds.input_shape, ds.num_classes, ds.mean, ds.std)
    # cpu: initialised from the seeded CPU RNG as training does, moved once
    return model.to(device).eval()


def parser():
    p = _cli.parser(__doc__)
    p.add_argument("--data", required=True, help="prepared dataset file")
    p.add_argument(
        "--models",
        "--model",
        nargs="+",
        action="extend",
        default=[],
        metavar="MODEL",
        help="model files to score (--models A B, or --model A --model B)",
    )
    p.add_argument(
        "--references",
        "--reference",
        nargs="+",
        action="extend",
        default=[],
        metavar="REFERENCE",
        help="robust reference model files (teacher_linf, teacher_l2)",
    )
    p.add_argument("--autoencoder", help="an autoencoder file (pagrob.steps.autoencoder)")
    p.add_argument("--denoiser", help="a class-conditional denoiser (pagrob.steps.denoiser)")
    p.add_argument("--score-sigma", type=float, help="the noise level of --denoiser's score (> 0)")
    p.add_argument("--noise-draws", type=int, default=4, help="noise directions per image")
    p.add_argument("--baselines", action="store_true", help="add the baseline rows")
    p.add_argument(
        "--floor-arch",
        choices=models.ARCHITECTURES,
        help="the floor's architecture (default: the first --model's, else the first reference's)",
    )
    # images: the first N test images; batch_size: images (or attacked images) per batch; seed:
    # attack starts, noise, the floor's initialisation; noise (with --autoencoder): the L2 norm
    # of the on/off-manifold noise
    _cli.add_settings(p, PagScoresSettings)
    p.add_argument("--out", required=True)
    return p


def _check_args(args, s: PagScoresSettings) -> None:
    """Refuse option combinations that leave nothing to score, or noise without an autoencoder."""
    if not args.models and not args.baselines:
        raise ValueError("nothing to score: give --model files or --baselines")
    if not args.references and not args.autoencoder and not args.denoiser:
        raise ValueError(
            "nothing to score against: give --references, --autoencoder and/or --denoiser"
        )
    if bool(args.denoiser) != (args.score_sigma is not None):
        raise ValueError("--denoiser and --score-sigma go together: give both or neither")
    if args.score_sigma is not None and not args.score_sigma > 0:
        raise ValueError(f"--score-sigma must be > 0, not {args.score_sigma}")
    if s.noise is not None and not args.autoencoder:
        raise ValueError(
            "noise needs --autoencoder (the noise lies inside or off its tangent space)"
        )


def _load(path, ds: data.Dataset, device: str):
    """A model file and its metadata, refused if it was trained on another dataset."""
    model, meta = models.load_model(path, device)
    if meta.get("dataset") != ds.name or meta["num_classes"] != ds.num_classes:
        raise ValueError(f"model {path} was trained on {meta.get('dataset')!r}, not {ds.name!r}")
    return model, meta


def _load_references(paths, ds: data.Dataset, device: str) -> dict:
    """The reference models by their source -> (model, meta); one of each source."""
    references = {}
    for path in paths:
        model, meta = _load(path, ds, device)
        if meta["source"] in references:
            raise ValueError(f"two references are {meta['source']!r}; give one of each")
        references[meta["source"]] = (model, meta)
    return references


def _load_autoencoder(path, ds: data.Dataset, device: str):
    """The autoencoder and its metadata (None, {} without one), refused if of another dataset."""
    autoencoder, ae_meta = None, {}
    if path:
        from pagrob import autoencoder as ae_lib

        autoencoder, ae_meta = ae_lib.load(path, device)
        if ae_meta.get("dataset") != ds.name:
            raise ValueError(
                f"autoencoder {path} was trained on {ae_meta.get('dataset')!r}, not {ds.name!r}"
            )
    return autoencoder, ae_meta


def _load_denoiser(args, ds: data.Dataset, device: str):
    """(denoiser, noise level) of the score instrument, or None; refused if of another dataset."""
    if not args.denoiser:
        return None
    from pagrob import denoiser

    net, meta = denoiser.load(args.denoiser, device)
    if meta.get("dataset") != ds.name or meta["num_classes"] != ds.num_classes:
        raise ValueError(
            f"denoiser {args.denoiser} was trained on {meta.get('dataset')!r}, not {ds.name!r}"
        )
    return net, args.score_sigma


@dataclasses.dataclass
class _Scoring:
    """What every model is scored on, and the tidy rows collected so far."""

    args: argparse.Namespace
    s: PagScoresSettings
    ds: data.Dataset
    x: torch.Tensor
    y: torch.Tensor
    attack: Attack
    references: dict
    autoencoder: object
    ae_meta: dict
    score: tuple | None = None
    rows: list = dataclasses.field(default_factory=list)

    def add(self, meta, score, reference, value) -> None:
        """One tidy row; ``value`` a number, or the per-image values (the row holds their mean
        and them, for the paired comparisons)."""
        per_image = value if isinstance(value, list) else None
        self.rows.append(
            {
                "dataset": self.ds.name,
                "source": meta["source"],
                "lam": meta["lam"],
                "seed": meta["seed"],
                "score": score,
                "reference": reference,
                "value": sum(per_image) / len(per_image) if per_image else value,
                "relation": pag_scores.relation(meta["source"], reference)
                if reference.startswith("teacher_") or reference == pag_scores.DENOISER
                else pag_scores.INDEPENDENT,
                "per_image": ";".join(f"{v:.6g}" for v in per_image) if per_image else "",
            }
        )


def _baselines(run: _Scoring, device: str, scored: list) -> None:
    """Add the floor model to ``scored`` and the baselines' rows (random, autoencoder, ceiling)."""
    args, s, ds, x, y, attack = run.args, run.s, run.ds, run.x, run.y, run.attack
    add, autoencoder, ae_meta = run.add, run.autoencoder, run.ae_meta
    first = scored[0][2] if scored else next(iter(run.references.values()))[1]
    arch = args.floor_arch or first["arch"]
    floor = floor_model(arch, ds, s.seed, device)
    scored.append(("floor", floor, {"source": "floor", "lam": 0.0, "seed": s.seed}))
    if autoencoder is not None:
        from pagrob import autoencoder as ae_lib

        base = {"lam": 0.0, "seed": ae_meta.get("seed", 0)}
        k, d = autoencoder.latent, math.prod(ds.input_shape)
        add(
            {"source": "random", **base},
            "tangent_fraction",
            "autoencoder",
            ae_lib.random_baseline(k, d),
        )
        add(
            {"source": "autoencoder", **base},
            "reconstruction_mse",
            "autoencoder",
            ae_meta["test_mse"],
        )
    for name, (model, meta) in run.references.items():
        ceiling = {"source": "ceiling", "lam": 0.0, "seed": meta["seed"]}
        values = pag_scores.gradient_scores(model, x, s.batch_size, {name: model})
        for (score, ref), value in values.items():
            if ref == name:
                add(ceiling, score, ref, value)
        g = torch.Generator().manual_seed(s.seed)  # cpu: attack starts, as for the models
        x_adv, targets = pag_scores.targeted_examples(
            model, x, y, attack, ds.num_classes, s.batch_size, g
        )
        agree = pag_scores.reference_agreement(
            model, x_adv, targets, s.batch_size, ds.num_classes - 1
        )
        for score, value in agree["per_image"].items():
            add(ceiling, score, name, value)


def _model_values(run: _Scoring, model) -> dict:
    """One model's scores: (score, reference) -> its per-image values."""
    s, ds, x, y, attack, references = run.s, run.ds, run.x, run.y, run.attack, run.references
    noise_g = torch.Generator().manual_seed(s.seed)  # cpu: noise draws, moved per batch
    values = pag_scores.gradient_scores(
        model,
        x,
        s.batch_size,
        {n: r for n, (r, _) in references.items()},
        run.autoencoder,
        s.noise,
        run.args.noise_draws,
        noise_g,
        run.score,
    )
    if references:
        g = torch.Generator().manual_seed(s.seed)  # cpu: attack starts, same per model
        x_adv, targets = pag_scores.targeted_examples(
            model, x, y, attack, ds.num_classes, s.batch_size, g
        )
        for name, (reference, _) in references.items():
            agree = pag_scores.reference_agreement(
                reference, x_adv, targets, s.batch_size, ds.num_classes - 1
            )
            values |= {(score, name): v for score, v in agree["per_image"].items()}
    return values


def main() -> None:
    args = parser().parse_args()
    s = _cli.read_settings(args, PagScoresSettings)
    _check_args(args, s)
    device = _cli.setup(args, [args.out])
    ds = data.load_prepared(args.data)
    if not 0 < s.images <= len(ds.x_test):
        raise ValueError(f"images {s.images}: the test set has {len(ds.x_test)} images")
    x = ds.x_test[: s.images].to(device)
    y = ds.y_test[: s.images].to(device)
    attack = dataclasses.replace(s.attack, bounds=ds.bounds)
    references = _load_references(args.references, ds, device)
    autoencoder, ae_meta = _load_autoencoder(args.autoencoder, ds, device)

    scored = [(path, *_load(path, ds, device)) for path in args.models]
    score = _load_denoiser(args, ds, device)
    run = _Scoring(args, s, ds, x, y, attack, references, autoencoder, ae_meta, score)
    if args.baselines:
        _baselines(run, device, scored)

    for what, model, meta in scored:
        t0 = time.perf_counter()
        values = _model_values(run, model)
        for (score, ref), value in values.items():
            run.add(meta, score, ref, value)
        summary = ", ".join(f"{s} vs {r} {sum(v) / len(v):.3f}" for (s, r), v in values.items())
        _cli.log(f"{what}: {summary} ({time.perf_counter() - t0:.1f}s)")
    rows = run.rows
    io.write_text(pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False), args.out)
    _cli.log(f"{len(rows)} scores on {len(x)} test images -> {args.out}")


if __name__ == "__main__":
    _cli.run(main)

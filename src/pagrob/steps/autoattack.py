"""AutoAttack (the original code, version ``standard``) on one model for one threat model, as tidy
rows: ``autoattack`` (the final robust accuracy, where every stage ran) and ``autoattack:<stage>``
(the accuracy after each stage run, each with its per-image results: the settings' ``stages``
may stop after the APGD stages, the cheaper stage of the seeds outside
eval.autoattack.full_seeds), with a JSON record beside it (settings, seed, warnings of AutoAttack's checks,
PGD on the same images, timings). A killed run resumes from its state file when rerun
(``--state``, default ``<out>.state.json``; removed once the result is written).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from pagrob import autoattack, io, stats
from pagrob.evaluate import robust_flags
from pagrob.settings import AutoAttackSettings
from pagrob.steps import _cli
from pagrob.steps.evaluate import add_model_options, load_test_set, write_rows


def parser():
    """The step's command-line options."""
    p = _cli.parser(__doc__)
    add_model_options(p)
    _cli.add_settings(p, AutoAttackSettings)  # images: AutoAttack on the first N test images
    p.add_argument("--state", help="resumable state (default: <out>.state.json beside --out)")
    p.add_argument("--out", required=True, help="tidy CSV")
    p.add_argument("--out-json", required=True, help="settings, warnings, PGD on the same images")
    return p


def run_settings(s: AutoAttackSettings, images: int) -> dict:
    """The run's settings as the record and the resume fingerprint hold them."""
    return {
        "version": s.version,
        "norm": s.pgd.norm,
        "eps": s.pgd.eps,
        "seed": s.seed,
        "batch_size": s.batch_size,
        "images": images,
        "stages": list(s.stages or autoattack.STAGES[s.version]),
    }


def tidy_rows(result, norm: str, eps: float) -> list[dict]:
    """The tidy rows of a run: the final accuracy where every stage ran, then each stage's."""
    common = {"norm": norm, "eps": eps}
    rows = []
    if result.complete:
        flags = torch.tensor(result.robust_flags)  # cpu: AutoAttack's per-image result, host
        rows.append(
            common | {"attack": "autoattack", "steps": 0, "accuracy": result.robust, "flags": flags}
        )
    for stage, acc in result.stages.items():
        steps = autoattack.STAGE_STEPS[stage]
        flags = torch.tensor(result.stage_flags[stage])  # cpu: the host's per-image flags
        rows.append(
            common
            | {"attack": f"autoattack:{stage}", "steps": steps, "accuracy": acc, "flags": flags}
        )
    return rows


def json_record(meta, settings, s, result, pgd_attack, pgd_flags, pgd_same, seconds, device):
    """The JSON record beside the rows: model, settings, results, PGD and environment."""
    model_ids = {k: meta.get(k) for k in ("dataset", "source", "lam", "seed")}
    return {
        **model_ids,
        **{k: v for k, v in settings.items() if k != "seed"},
        "autoattack_seed": s.seed,
        "library": "pyautoattack " + _version("pyautoattack"),
        "clean": result.clean,
        "robust": result.robust,
        "complete": result.complete,
        "stages": result.stages,
        "warnings": result.warnings,
        "pgd_same_images": {
            "steps": pgd_attack.steps,
            "accuracy": pgd_same,
            "correct": stats.pack(pgd_flags.tolist()),
        },
        "resumed": result.resumed,
        "seconds": seconds,
        "device": device,
        "environment": io.environment(),
    }


def main() -> None:
    args = parser().parse_args()
    s = _cli.read_settings(args, AutoAttackSettings)
    norm, eps = s.pgd.norm, s.pgd.eps
    if s.version not in autoattack.VERSIONS:
        raise ValueError(f"version {s.version!r}: one of {autoattack.VERSIONS}")
    device = _cli.setup(args, [args.out, args.out_json])
    out = Path(args.out)
    state = Path(args.state) if args.state else out.with_name(f"{out.stem}.state.json")
    ds, model, meta, x, y = load_test_set(args, device, s.images)
    if ds.bounds != (0.0, 1.0) or ds.num_classes < 4:
        raise ValueError(
            f"AutoAttack needs images in [0, 1] and at least 4 classes; {ds.name} has bounds "
            f"{ds.bounds} and {ds.num_classes} classes. Leave eval.autoattack out for this dataset."
        )
    settings = run_settings(s, len(x))
    t0 = time.perf_counter()
    result = autoattack.run(
        model,
        x,
        y,
        norm,
        eps,
        state_path=state,
        fingerprint=autoattack.fingerprint(args.model, args.data, **settings),
        version=s.version,
        seed=s.seed,
        batch_size=s.batch_size,
        device=device,
        log=_cli.log,
        stages=s.stages,
    )
    seconds = time.perf_counter() - t0
    pgd_attack = dataclasses.replace(s.pgd, bounds=ds.bounds)
    pgd_flags = robust_flags(model, x, y, pgd_attack, s.batch_size, s.pgd_seed, device).cpu()
    pgd_same = 100.0 * pgd_flags.sum().item() / len(x)

    rows = tidy_rows(result, norm, eps)
    record = json_record(
        meta, settings, s, result, pgd_attack, pgd_flags, pgd_same, seconds, device
    )
    io.write_text(json.dumps(record, indent=1), args.out_json)
    write_rows(meta, rows, len(x), args.out)
    state.unlink(missing_ok=True)
    _cli.log(
        f"AutoAttack {s.version}{'' if result.complete else ' (' + ', '.join(result.stages) + ')'} "
        f"{norm} eps={eps:g} on {len(x)} images: clean "
        f"{result.clean:.2f}%, robust {result.robust:.2f}% (PGD-{pgd_attack.steps} on the same "
        f"images {pgd_same:.2f}%) in {seconds:.1f}s"
    )
    for w in result.warnings:
        _cli.log(f"warning: {w}")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    _cli.run(main)

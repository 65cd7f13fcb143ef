"""The GPU check's checks of the jobs that attack a trained model (bench/gpu_check.py): the
evaluation (clean and PGD per norm), the masking checks' sweep, AutoAttack in its worst case
with the model's bare passes, the PAG scores, and the figures' targeted attacks and drawing.
Each runs the library's own function of that job on the check's synthetic test images and
returns what the projection (gpu_projection.py) scales to the real run.
"""

from __future__ import annotations

import dataclasses

import torch
from gpu_timing import NUM_CLASSES, timed

from pagrob import autoattack, evaluate, figures, pag_scores
from pagrob.attacks import Attack, frozen_eval, predict

#: the worst-case AutoAttack's radius: small enough that no attack succeeds, so every stage runs
#: all its iterations and queries on every image
AA_WORST_EPS = 1e-6


def picture_attack(dc: dict, a: dict | None = None) -> Attack:
    """The figures' (and PAG scores') large-eps targeted L2 attack, no random start."""
    a = a or dc["pictures"]["attack"]
    return Attack("l2", a["eps"], a["steps"], a.get("step_size"), random_start=False)


def eval_attacks(dc: dict, bounds) -> list[Attack]:
    return [
        Attack(n, a["eps"], a["steps"], a.get("step_size"), a.get("random_start", True), bounds)
        for n, a in dc["eval"]["attacks"].items()
    ]


# --- Evaluation and the masking checks' sweep ----------------------------------------------------


def eval_sizes(dc: dict, args) -> tuple[int, int]:
    """(the test images of the evaluation and the sweep, their batch size): --eval-images, or
    one evaluation batch of the config."""
    eval_batch = args.batch_size or dc["eval"]["batch_size"]
    return args.eval_images or eval_batch, eval_batch


def evaluate_check(dc, args, model, ds, device, log) -> dict:
    """The evaluate step: clean and PGD-20 per norm on the first n_eval test images (kept on
    the CPU, as that step keeps them)."""
    n_eval, eval_batch = eval_sizes(dc, args)
    x, y = ds.x_test[:n_eval], ds.y_test[:n_eval]
    seed = dc["eval"].get("seed", 0)
    attacks = eval_attacks(dc, ds.bounds)
    predict(model.to(device), x[:eval_batch].to(device))  # warm-up of the eval-mode kernels
    rows, t_eval = timed(
        lambda: evaluate.evaluate(model, x, y, attacks, eval_batch, seed, str(device)), device
    )
    log(
        f"{ds.name}: evaluate (clean + PGD-{attacks[0].steps} x {len(attacks)} norms) on {n_eval} images: {t_eval:.2f}s"
    )
    return {
        "seconds": t_eval,
        "images": n_eval,
        "accuracy": {f"{r['attack']}:{r['norm']}": r["accuracy"] for r in rows},
    }


def pgd_steps(curve, strong, restarts: int) -> int:
    """The sweep's PGD steps per image: the curves' attacks, and the strong attack's restarts."""
    return sum(a.steps for a in curve) + restarts * sum(a.steps for a in strong)


def scaled(a: Attack, scale: float) -> Attack:
    """--sweep-scale: fewer steps per attack, the same attacks (quick runs)."""
    return dataclasses.replace(a, steps=max(1, round(a.steps * scale)))


def sweep_check(dc, args, model, ds, device, log) -> dict:
    """The sweep step (the gradient-masking checks' PGD: the curves over eps and the strong
    attack's restarts) on the evaluation's test images (kept on the CPU, as that step keeps
    them), its steps times --sweep-scale."""
    n_eval, eval_batch = eval_sizes(dc, args)
    x, y = ds.x_test[:n_eval], ds.y_test[:n_eval]
    seed = dc["eval"].get("seed", 0)
    attacks = eval_attacks(dc, ds.bounds)
    checks = dc["eval"]["checks"]
    curve = [
        dataclasses.replace(a, eps=e, step_size=None)
        for a in attacks
        for e in checks["curves"].get(a.norm, [])
    ]
    strong = [dataclasses.replace(a, steps=checks["steps"], step_size=None) for a in attacks]
    run_curve = [scaled(a, args.sweep_scale) for a in curve]
    run_strong = [scaled(a, args.sweep_scale) for a in strong]
    _, t_sweep = timed(
        lambda: evaluate.sweep(
            model, x, y, run_curve, run_strong, checks["restarts"], eval_batch, seed, str(device)
        ),
        device,
    )
    out = {
        "seconds": t_sweep,
        "images": n_eval,
        "pgd_steps": pgd_steps(run_curve, run_strong, checks["restarts"]),
        "config_pgd_steps": pgd_steps(curve, strong, checks["restarts"]),
    }
    log(
        f"{ds.name}: sweep ({out['pgd_steps']} PGD steps per image; the config's {out['config_pgd_steps']}) "
        f"on {n_eval} images: {t_sweep:.2f}s"
    )
    return out


# --- AutoAttack ----------------------------------------------------------------------------------


def square_l2_fits(side: int) -> bool:
    """Whether pyautoattack's L2 Square attack can start on ``side`` px images: its initial
    perturbation adds side // 5 px squares from a centred offset, side // (side // 5) times per
    axis, and fails on a shape error where a square is cut by the border (24 or 12 px; 32, 96,
    16 and 8 px are fine: 1 px squares broadcast into an empty slice)."""
    s = side // 5
    if s == 0:
        return False
    offset = (side - 5 * s) // 2
    cut = [min(side, offset + k * s + s) - min(side, offset + k * s) for k in range(side // s)]
    return s == 1 or all(n == s for n in cut)


def autoattack_check(dc, args, model, ds, device, work, log) -> dict:
    """AutoAttack through the resumable driver (``autoattack.run``, the config's version) per
    norm, in its worst case: on --aa-images images labelled with the model's own predictions,
    at eps 1e-6, so that every image stands through every stage and each stage runs all its
    iterations and queries (an untrained model's cost at the config's eps depends on how many
    of its images happen to survive). The model's bare forward and gradient passes are timed
    at that batch and at the config's AutoAttack batch size, for the projection."""
    aa = dc["eval"]["autoattack"]
    aa_batch = args.batch_size or aa["batch_size"]
    n = args.aa_images
    out = {
        "batch_size": aa_batch,
        "version": aa["version"],
        "images": n,
        "eps": AA_WORST_EPS,
        "norms": {},
    }
    model.eval()
    if n:
        xw = ds.x_test[:n]
        yw = predict(model, xw.to(device)).cpu()  # every image classified correctly
        for norm in dc["eval"]["attacks"]:
            r = autoattack_worst_case(model, xw, yw, norm, aa, ds.name, device, work, log)
            out["norms"][norm] = r
            log(
                f"{ds.name}: AutoAttack {aa['version']} {norm}, worst case on {n} images: {r['seconds']:.2f}s "
                f"(robust {r['robust']:.0f}% after {', '.join(r['stages'])})"
            )
    out["passes"] = {
        b: bare_passes(model, ds.x_test, b, device) for b in sorted({aa_batch, n} - {0})
    }
    return out


def autoattack_worst_case(model, xw, yw, norm, aa, name, device, work, log) -> dict:
    """One norm's worst-case AutoAttack run on all of ``xw`` (of dataset ``name``) in one batch
    (labels ``yw``: the model's own predictions), at eps 1e-6, its state file removed after."""
    state = work / f"aa_{name}_{norm}.json"
    result, seconds = timed(
        lambda: autoattack.run(
            model,
            xw,
            yw,
            norm,
            AA_WORST_EPS,
            state_path=state,
            fingerprint={"check": "worst case", "norm": norm},
            version=aa["version"],
            seed=aa["seed"],
            batch_size=len(xw),
            device=str(device),
            log=log.library,
        ),
        device,
    )
    state.unlink(missing_ok=True)
    return {
        "seconds": seconds,
        "clean": result.clean,
        "robust": result.robust,
        "stages": result.stages,
        "warnings": result.warnings,
    }


def bare_passes(model, x_all, b: int, device, repeats: int = 5) -> dict:
    """Seconds of one forward (no grad) and one input-gradient of the CE (params frozen) at batch ``b``."""
    n = len(x_all)
    x = x_all[torch.arange(b) % n].to(
        device
    )  # cpu: host-side row picks of the test set, moved once
    y = torch.zeros(b, dtype=torch.long, device=device)

    def forward():
        with torch.no_grad():
            model(x)

    def gradient():
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad():
            torch.autograd.grad(
                torch.nn.functional.cross_entropy(model(xg), y, reduction="sum"), xg
            )

    out = {}
    with frozen_eval(model):
        for name, fn in (("forward_s", forward), ("gradient_s", gradient)):
            out[name] = time_repeats(fn, device, repeats)
    return out


def time_repeats(fn, device, repeats: int) -> float:
    """Seconds of one call of ``fn``: one warm-up call, then ``repeats`` calls timed together."""
    fn()
    _, seconds = timed(lambda: [fn() for _ in range(repeats)], device)
    return seconds / repeats


# --- PAG scores and the figures ------------------------------------------------------------------


def pag_scores_check(dc, args, model, teachers, ds, device, log, ae=None) -> dict:
    """The pag_scores step for one model against both teachers (and the autoencoder's tangent
    space, where configured), timed by part."""
    cfg = dc["pag_scores"]
    n = min(args.pag_images or cfg["images"], len(ds.x_test))
    batch = args.batch_size or cfg["batch_size"]
    x, y = ds.x_test[:n].to(device), ds.y_test[:n].to(device)
    attack = dataclasses.replace(picture_attack(dc, cfg.get("attack")), bounds=ds.bounds)
    g = torch.Generator().manual_seed(cfg["seed"])  # cpu: attack starts, as the step draws them
    (x_adv, targets), t_targeted = timed(
        lambda: pag_scores.targeted_examples(model, x, y, attack, NUM_CLASSES, batch, g), device
    )
    t_align = t_agree = 0.0
    values = {}
    for name, reference in teachers.items():
        align, agree, t_a, t_g = reference_scores(
            model, reference, x, x_adv, targets, batch, device
        )
        values[f"alignment:{name}"] = align
        t_align += t_a
        values[f"targeted_success:{name}"] = agree["targeted_success"]
        t_agree += t_g
    t_tangent = 0.0
    if ae is not None:
        values["tangent_fraction"], t_tangent = tangent_score(dc, cfg, model, x, batch, ae, device)
    log(
        f"{ds.name}: PAG scores on {n} images: targeted {t_targeted:.2f}s, alignment {t_align:.2f}s, "
        f"agreement {t_agree:.2f}s ({len(teachers)} references), tangent space {t_tangent:.2f}s"
    )
    return {
        "images": n,
        "targeted_s": t_targeted,
        "per_reference_s": (t_align + t_agree) / len(teachers),
        "references": len(teachers),
        "tangent_s": t_tangent,
        "values": values,
    }


def reference_scores(model, reference, x, x_adv, targets, batch, device):
    """The scores against one reference: (alignment, agreement, the seconds of each)."""
    align, t_align = timed(lambda: pag_scores.alignment(model, reference, x, batch), device)
    agree, t_agree = timed(
        lambda: pag_scores.reference_agreement(reference, x_adv, targets, batch), device
    )
    return align, agree, t_align, t_agree


def tangent_score(dc, cfg, model, x, batch, ae, device) -> tuple[float, float]:
    """The mean fraction of the gradients in the autoencoder's tangent space, and its seconds."""
    noise = (dc.get("autoencoder") or {}).get("noise")
    g = torch.Generator().manual_seed(cfg["seed"])  # cpu: the noise draws, as the step draws them
    tangent, seconds = timed(
        lambda: pag_scores.gradient_scores(model, x, batch, None, ae, noise, 4, g), device
    )
    per_image = tangent[("tangent_fraction", "autoencoder")]
    return sum(per_image) / len(per_image), seconds


def figure_check(dc, model, ds, device, work, log) -> dict:
    """Fig. 4's targeted attacks of one model on the pictures' images, and drawing their rows."""
    index = dc["pictures"]["images"]
    x = ds.x_test[index].to(device)
    attack = dataclasses.replace(picture_attack(dc), bounds=ds.bounds)
    g = torch.Generator().manual_seed(0)  # cpu: attack starts, as the figure step draws them
    grid_, t_attack = timed(
        lambda: figures.targeted_towards_every_class(model, x, NUM_CLASSES, attack, g), device
    )
    rows = [(f"test #{i}", x[k], grid_[k]) for k, i in enumerate(index)]
    png = work / f"{ds.name}_fig.png"
    _, t_draw = timed(
        lambda: figures.attack_grid(rows, ds.classes, "gpu check", png, None), torch.device("cpu")
    )
    png.unlink(missing_ok=True)
    log(
        f"{ds.name}: figure: targeted attacks of {len(index)} images {t_attack:.2f}s, drawn in {t_draw:.2f}s"
    )
    return {"images": len(index), "attack_s": t_attack, "draw_s": t_draw}

"""Evaluation: clean accuracy, PGD robust accuracy and the PGD sweeps of the gradient-masking
checks, as tidy rows (one per model x attack)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pagrob.attacks import Attack, pgd, predict


def robust_flags(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Attack,
    batch_size: int,
    seed: int = 0,
    device: str = "cpu",
    restarts: int = 1,
) -> Tensor:
    """[n] bool on ``device``: whether each image of ``x`` is still classified correctly after
    the attack (final PGD iterate). With ``restarts`` > 1 an image counts as robust only if
    every restart (each from its own random start) fails on it: the worst case over restarts,
    as in Madry et al.'s evaluation."""
    g = torch.Generator().manual_seed(seed)  # cpu: seeded starts, the same on every device
    out = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        robust = torch.ones_like(yb, dtype=torch.bool)
        for _ in range(restarts):
            robust &= predict(model, pgd(model, xb, yb, attack, generator=g)) == yb
        out.append(robust)
    return torch.cat(out)


def robust_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Attack,
    batch_size: int,
    seed: int = 0,
    device: str = "cpu",
    restarts: int = 1,
) -> float:
    """Percentage of ``x`` still classified correctly after the attack (:func:`robust_flags`)."""
    flags = robust_flags(model, x, y, attack, batch_size, seed, device, restarts)
    return 100.0 * flags.sum().item() / len(x)


def sweep(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    curve: list[Attack],
    strong: list[Attack],
    restarts: int,
    batch_size: int,
    seed: int = 0,
    device: str = "cpu",
) -> list[dict]:
    """The gradient-masking evidence from PGD: ``curve`` rows (accuracy against eps) and
    ``pgd-<steps>x<restarts>`` rows (a much stronger PGD at the table's eps)."""
    rows = []
    for a in curve:
        acc = robust_accuracy(model, x, y, a, batch_size, seed, device)
        rows.append(
            {"attack": "curve", "norm": a.norm, "eps": a.eps, "steps": a.steps, "accuracy": acc}
        )
    for a in strong:
        acc = robust_accuracy(model, x, y, a, batch_size, seed, device, restarts)
        rows.append(
            {
                "attack": f"pgd-{a.steps}x{restarts}",
                "norm": a.norm,
                "eps": a.eps,
                "steps": a.steps,
                "accuracy": acc,
            }
        )
    return rows


def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attacks: list[Attack],
    batch_size: int,
    seed: int = 0,
    device: str = "cpu",
) -> list[dict]:
    """Rows ``attack, norm, eps, steps, accuracy, flags``: one clean row, then one per attack;
    ``flags`` is the per-image correctness (a bool tensor on the CPU, read back once a row)."""
    clean = (predict(model, x.to(device)) == y.to(device)).cpu()
    rows = [{"attack": "clean", "norm": "none", "eps": 0.0, "steps": 0, "flags": clean}]
    for a in attacks:
        flags = robust_flags(model, x, y, a, batch_size, seed, device).cpu()
        rows.append(
            {"attack": "pgd", "norm": a.norm, "eps": a.eps, "steps": a.steps, "flags": flags}
        )
    for r in rows:
        r["accuracy"] = 100.0 * r["flags"].sum().item() / len(x)
    return rows

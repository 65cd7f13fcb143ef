"""Evaluation: clean accuracy and PGD robust accuracy as tidy rows (one per model x attack)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pagrob.attacks import Attack, pgd, predict


def robust_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Attack,
    batch_size: int,
    seed: int = 0,
    device: str = "cpu",
) -> float:
    """Percentage of ``x`` still classified correctly after the attack (final PGD iterate)."""
    g = torch.Generator().manual_seed(seed)
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        x_adv = pgd(model, xb, yb, attack, generator=g)
        correct += (predict(model, x_adv) == yb).sum().item()
    return 100.0 * correct / len(x)


def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attacks: list[Attack],
    batch_size: int,
    seed: int = 0,
    device: str = "cpu",
) -> list[dict]:
    """Rows ``attack, norm, eps, steps, accuracy``: one clean row, then one per attack."""
    clean = 100.0 * (predict(model, x.to(device)) == y.to(device)).float().mean().item()
    rows = [{"attack": "clean", "norm": "none", "eps": 0.0, "steps": 0, "accuracy": clean}]
    for a in attacks:
        acc = robust_accuracy(model, x, y, a, batch_size, seed, device)
        rows.append({"attack": "pgd", "norm": a.norm, "eps": a.eps, "steps": a.steps, "accuracy": acc})
    return rows

"""Projected gradient descent (Algorithm 1) with the TRADES evaluation conventions:

- the model is in eval mode and its parameters are frozen; gradients are taken with respect to
  the perturbation only;
- optional random start (L-inf: uniform in [-eps, eps]; L2: uniform in the eps-ball);
- each step moves by ``step_size`` along sign(grad) (L-inf) or grad / |grad| (L2), then projects
  onto the eps-ball around x and onto the input domain (the image box [0, 1]; none for the toy
  data);
- the final iterate is returned (no best-iterate selection).

Untargeted attacks ascend the cross-entropy of the true label; targeted attacks descend the
cross-entropy of the target label.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("linf", "l2")


@dataclass(frozen=True)
class Attack:
    norm: str
    eps: float
    steps: int
    step_size: float | None = None  # None: 2 * eps / steps, as in the paper
    random_start: bool = True
    bounds: tuple[float, float] | None = (0.0, 1.0)  # the input domain (None: unbounded)

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"attack norm must be one of {NORMS}, not {self.norm!r}")
        if self.eps < 0 or self.steps < 0:
            raise ValueError(f"attack eps and steps must be >= 0 (got {self.eps}, {self.steps})")

    @property
    def alpha(self) -> float:
        if self.step_size is not None:
            return self.step_size
        return 2 * self.eps / self.steps if self.steps else 0.0


@contextlib.contextmanager
def frozen_eval(model: nn.Module):
    """Eval mode and no parameter gradients inside; the previous state restored after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _per_sample_norm(t: Tensor) -> Tensor:
    return torch.linalg.vector_norm(t.flatten(1), dim=1).view((-1,) + (1,) * (t.dim() - 1))


def project(delta: Tensor, x: Tensor, norm: str, eps: float, bounds=(0.0, 1.0)) -> Tensor:
    """Onto the eps-ball, then so that x + delta lies in ``bounds`` (for x inside the bounds this
    keeps delta in the ball: clamping only shrinks each coordinate of delta)."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _per_sample_norm(delta).clamp(min=1e-12)).clamp(max=1.0)
    if bounds is None:
        return delta
    return (x + delta).clamp(*bounds) - x


def random_start(x: Tensor, attack: Attack, generator: torch.Generator | None) -> Tensor:
    """Drawn on the CPU (with ``generator``) so that a seed gives the same start on any device."""
    norm, eps = attack.norm, attack.eps
    if norm == "linf":
        delta = (2 * torch.rand(x.shape, generator=generator) - 1) * eps
    else:
        d = torch.randn(x.shape, generator=generator)
        r = torch.rand(x.shape[0], generator=generator) ** (1 / x[0].numel())
        delta = d / _per_sample_norm(d).clamp(min=1e-12) * (eps * r).view((-1,) + (1,) * (x.dim() - 1))
    return project(delta.to(x), x, norm, eps, attack.bounds)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Attack,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Return adversarial examples x + delta (detached): delta in the eps-ball, x + delta within
    ``attack.bounds``.

    With ``target`` given, a targeted attack towards those labels; else untargeted on ``y``.
    """
    x = x.detach()
    with frozen_eval(model):
        if attack.random_start and attack.eps > 0:
            delta = random_start(x, attack, generator)
        else:
            delta = torch.zeros_like(x)
        for _ in range(attack.steps):
            delta.requires_grad_(True)
            with torch.enable_grad():
                logits = model(x + delta)
                if target is None:
                    loss = F.cross_entropy(logits, y, reduction="sum")
                else:
                    loss = -F.cross_entropy(logits, target, reduction="sum")
                (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                if attack.norm == "linf":
                    step = grad.sign()
                else:
                    step = grad / _per_sample_norm(grad).clamp(min=1e-12)
                delta = project(delta + attack.alpha * step, x, attack.norm, attack.eps, attack.bounds)
    return (x + delta).detach()


def predict(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    with frozen_eval(model), torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])

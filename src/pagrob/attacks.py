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
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# the attack's settings (pure Python, built from the config): pagrob.settings
from pagrob.settings import NORMS, Attack  # noqa: F401


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


def draw_start(shape, attack: Attack, generator: torch.Generator | None) -> Tensor:
    """A random start for a batch of ``shape`` before the projection onto the input domain:
    L-inf uniform in [-eps, eps], L2 uniform in the eps-ball, per row. Drawn from ``generator``
    on that generator's device (the CPU for ``None``, torch's global generator), so that a seed
    gives the same start on any device; the caller moves it once."""
    norm, eps = attack.norm, attack.eps
    dev = generator.device if generator is not None else torch.device("cpu")
    if norm == "linf":
        return (2 * torch.rand(shape, generator=generator, device=dev) - 1) * eps
    d = torch.randn(shape, generator=generator, device=dev)
    r = torch.rand(shape[0], generator=generator, device=dev) ** (1 / math.prod(shape[1:]))
    return (
        d / _per_sample_norm(d).clamp(min=1e-12) * (eps * r).view((-1,) + (1,) * (len(shape) - 1))
    )


def random_start(x: Tensor, attack: Attack, generator: torch.Generator | None) -> Tensor:
    """A random start for ``x``, drawn with ``generator`` (see :func:`draw_start`), moved to
    ``x``'s device once and projected."""
    delta = draw_start(x.shape, attack, generator).to(x)  # the seeded draw, moved on purpose
    return project(delta, x, attack.norm, attack.eps, attack.bounds)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Attack,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    start: Tensor | None = None,
    autocast: torch.dtype | None = None,
) -> Tensor:
    """Return adversarial examples x + delta (detached): delta in the eps-ball, x + delta within
    ``attack.bounds``.

    With ``target`` given, a targeted attack towards those labels; else untargeted on ``y``.
    The random start (if ``attack.random_start``) is ``start`` when given (a :func:`draw_start`
    draw already on ``x``'s device: training draws an epoch's starts at once), else drawn with
    ``generator``. ``autocast`` (e.g. ``torch.bfloat16``): the forward passes run under
    ``torch.autocast`` with that dtype.
    """
    x = x.detach()
    with frozen_eval(model):
        if not (attack.random_start and attack.eps > 0):
            delta = torch.zeros_like(x)
        elif start is not None:
            delta = project(start, x, attack.norm, attack.eps, attack.bounds)
        else:
            delta = random_start(x, attack, generator)
        for _ in range(attack.steps):
            delta.requires_grad_(True)
            with torch.enable_grad():
                logits = _forward(model, x + delta, autocast)
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
                delta = project(
                    delta + attack.alpha * step, x, attack.norm, attack.eps, attack.bounds
                )
    return (x + delta).detach()


def _forward(model: nn.Module, x: Tensor, autocast: torch.dtype | None) -> Tensor:
    if autocast is None:
        return model(x)
    with torch.autocast(x.device.type, dtype=autocast):
        return model(x).float()


def predict(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    with frozen_eval(model), torch.no_grad():
        return torch.cat(
            [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
        )

"""A number for PAG: how perceptually aligned a model's input-gradients are, measured against an
independent adversarially trained reference model (the paper says no such number exists; see
``pagrob.pag_report`` for the tables and the circularity rule).

- :func:`alignment`: mean cosine between the model's and the reference's input-gradients of
  each class score, over test images and all C classes;
- :func:`targeted_success`: Fig. 4's large-eps targeted L2 PGD on the model, from each test
  image towards every class other than its label; how often the reference agrees that the
  result is the target class, and its mean probability for the target;
- :func:`spearman`: rank correlation (ties averaged), for the score against robust accuracy.

Both models are frozen and in eval mode throughout. Every tensor is made on the data's device,
and results are read back from it once per call.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pagrob.attacks import Attack, frozen_eval, pgd
from pagrob.pag import cosine_loss
from pagrob.pag_report import spearman  # noqa: F401  (one implementation, torch-free)
from pagrob.sources import TEACHER_SOURCES, teacher_gradients

#: the gradients compared: the raw logits' (the score is then unchanged by scaling the logits)
GRAD_OF = "logit"
#: cosine's denominator floor: a zero gradient has cosine 0 with anything
COS_EPS = 1e-30


def alignment(
    model: nn.Module, reference: nn.Module, x: Tensor, batch_size: int, grad_of: str = GRAD_OF
) -> float:
    """Mean over the images ``x`` and all C classes of cos(grad_x s(x)_c, grad_x s_ref(x)_c),
    with s the raw logit (``grad_of="logit"``) or the log-softmax."""
    return alignment_on_device(model, reference, x, batch_size, grad_of).item()


def alignment_on_device(
    model: nn.Module, reference: nn.Module, x: Tensor, batch_size: int, grad_of: str = GRAD_OF
) -> Tensor:
    """:func:`alignment` as a 0-d float64 tensor on ``x``'s device (nothing read back)."""
    total = torch.zeros((), device=x.device, dtype=torch.float64)
    count = 0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        g = teacher_gradients(model, xb, grad_of)  # [C, B, ...], frozen and in eval mode
        r = teacher_gradients(reference, xb, grad_of)
        if g.shape != r.shape:
            raise ValueError(
                f"model and reference disagree on the classes: gradients {tuple(g.shape)} and "
                f"{tuple(r.shape)}"
            )
        cos = 1 - cosine_loss(g.flatten(0, 1), r.flatten(0, 1), COS_EPS)
        total += cos.double().sum()
        count += cos.numel()
    return total / count


def targeted_examples(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Attack,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Fig. 4's targeted PGD on ``model`` from every image towards every class but its label
    ``y``: returns the attacked images [n * (C - 1), ...] (image by image, targets in
    increasing order) and their targets. The same attack as
    ``figures.targeted_towards_every_class``, batched over images."""
    others = (y[:, None] + torch.arange(1, num_classes, device=y.device)) % num_classes  # [n, C-1]
    targets = others.sort(1).values.flatten()
    images = torch.arange(len(x), device=x.device).repeat_interleave(num_classes - 1)
    out = []
    for start in range(0, len(targets), batch_size):
        t = targets[start : start + batch_size]
        out.append(pgd(model, x[images[start : start + batch_size]], t, attack, target=t, generator=generator))
    return torch.cat(out), targets


def reference_agreement(reference: nn.Module, x_adv: Tensor, targets: Tensor, batch_size: int) -> dict:
    """``targeted_success``: the fraction of ``x_adv`` the reference classifies as ``targets``;
    ``targeted_prob``: the reference's mean softmax probability of the target."""
    values = agreement_on_device(reference, x_adv, targets, batch_size).tolist()
    return {"targeted_success": values[0], "targeted_prob": values[1]}


def agreement_on_device(reference: nn.Module, x_adv: Tensor, targets: Tensor, batch_size: int) -> Tensor:
    """:func:`reference_agreement`'s two values as a float64 tensor on the data's device."""
    hits = torch.zeros((), device=x_adv.device, dtype=torch.float64)
    prob = torch.zeros((), device=x_adv.device, dtype=torch.float64)
    with frozen_eval(reference), torch.no_grad():
        for start in range(0, len(x_adv), batch_size):
            p = reference(x_adv[start : start + batch_size]).softmax(1)
            t = targets[start : start + batch_size]
            hits += (p.argmax(1) == t).sum()
            prob += p.gather(1, t[:, None]).double().sum()
    return torch.stack([hits, prob]) / len(x_adv)


def targeted_success(
    model: nn.Module,
    reference: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Attack,
    num_classes: int,
    batch_size: int = 500,
    generator: torch.Generator | None = None,
) -> dict:
    """The large-eps targeted attacks of :func:`targeted_examples`, judged by the reference
    (:func:`reference_agreement`)."""
    x_adv, targets = targeted_examples(model, x, y, attack, num_classes, batch_size, generator)
    return reference_agreement(reference, x_adv, targets, batch_size)


def is_circular(source: str, reference: str) -> bool:
    """A RIGD student against its own teacher (rigd_linf vs teacher_linf, rigd_l2 vs
    teacher_l2), or a model against itself (the ceiling, a teacher against itself)."""
    if source in TEACHER_SOURCES:
        return reference == f"teacher_{TEACHER_SOURCES[source]}"
    return source in ("ceiling", reference)

"""A ground-truth PAG score on the toy data (Section 5.1), where the data manifold is known.

The toy data lie on the line x2 = 2 x1 (``pagrob.data.TOY_DIRECTION``). There, a model's
gradients are perceptually aligned when they are faithful to the data manifold: the input-
gradient of the margin f_1 - f_0 points along the line, not across it (vanilla models'
gradients point across, orthogonally to the manifold). This module measures that directly
(:func:`manifold_alignment`), and the teacher-based PAG instrument's counterpart against a
reference model (:func:`teacher_alignment`) and the score instrument's counterpart against a
class-score field (:func:`score_alignment`: a denoiser's, or the exact one), so that the
instruments can be checked where the truth is known.

Every function takes two-class models on 2-D inputs, freezes them and puts them in eval mode
(restored after), makes every tensor on ``x``'s device and reads nothing back.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pagrob.attacks import frozen_eval

#: cosine's denominator floor: a zero gradient has cosine 0 with anything (never NaN)
COS_EPS = 1e-30
#: points per forward/backward pass
BATCH_SIZE = 4096


def margin_gradients(model: nn.Module, x: Tensor, batch_size: int = BATCH_SIZE) -> Tensor:
    """grad_x (f_1(x) - f_0(x)) for every point of ``x`` [N, 2]: [N, 2] on ``x``'s device.

    The points of a batch are independent (eval mode), so the gradient of the batch's summed
    margin is every point's own."""
    out = []
    with frozen_eval(model):
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].detach().clone().requires_grad_(True)
            with torch.enable_grad():
                logits = model(xb)
                if logits.shape[1:] != (2,):
                    raise ValueError(
                        f"a two-class model is needed; its logits are {tuple(logits.shape)}"
                    )
                margin = (logits[:, 1] - logits[:, 0]).sum()
                grad = None
                if margin.requires_grad:  # else a margin that ignores x: gradient 0
                    (grad,) = torch.autograd.grad(margin, xb, allow_unused=True)
            out.append(torch.zeros_like(xb) if grad is None else grad.detach())
    if not out:
        return torch.zeros_like(x)
    return torch.cat(out)


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine of [N, D] tensors; 0 where either row is 0."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    norms = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
    return ((a * b).sum(1) / norms.clamp(min=COS_EPS)).float()


def manifold_alignment(
    model: nn.Module, x: Tensor, tangent: Tensor, batch_size: int = BATCH_SIZE
) -> Tensor:
    """|cos(grad_x (f_1 - f_0)(x), t)| per point [N]: 1 where the margin's gradient points along
    the data's line (tangent ``t``, e.g. ``pagrob.data.toy_tangent``), 0 where it points across
    it; 0 where the gradient is 0."""
    g = margin_gradients(model, x, batch_size)
    t = tangent.to(device=g.device, dtype=g.dtype).reshape(1, -1).expand_as(g)
    return _cosine(g, t).abs()


def teacher_alignment(
    model: nn.Module, reference: nn.Module, x: Tensor, batch_size: int = BATCH_SIZE
) -> Tensor:
    """cos(grad_x (f_1 - f_0)(x), grad_x (r_1 - r_0)(x)) per point [N], signed: the model's margin
    gradient against the reference's (0 where either is 0).

    For two classes this equals the mean over both classes c of the cosine between the
    gradients of the centred logits, f_c - mean_k f_k and r_c - mean_k r_k: these are
    +-(f_1 - f_0) / 2 and +-(r_1 - r_0) / 2, the same sign for both models, so both classes'
    cosines are this one. (``pagrob.pag_scores.alignment`` compares the raw logits' gradients,
    which for two classes also carry the part of the logits common to both classes.)"""
    g = margin_gradients(model, x, batch_size)
    return _cosine(g, margin_gradients(reference, x, batch_size))


def score_alignment(
    model: nn.Module, x: Tensor, score: Tensor, batch_size: int = BATCH_SIZE
) -> Tensor:
    """cos(grad_x (f_1 - f_0)(x), s_1(x) - s_0(x)) per point [N], signed: the model's margin
    gradient against the difference of a class-score field ``score`` [N, 2, 2] (a denoiser's
    D(x, c, sigma) - x, or ``pagrob.data.toy_score``'s exact one); 0 where either is 0.

    For two classes this is ``pagrob.pag_scores``' score alignment: the centred class gradients
    and the centred scores are +-half of these differences, the same sign for both classes."""
    g = margin_gradients(model, x, batch_size)
    return _cosine(g, (score[:, 1] - score[:, 0]).to(g))

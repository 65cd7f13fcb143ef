"""The PAG objective, Eq. (1)-(2) of the paper:

    L(x, y) = CE(f(x), y) + lam * sum_{c=1..C} L_cos(grad_x f(x)_c, g(x, c)),
    L_cos(v, u) = 1 - v.u / max(|v| |u|, eps),

with the cosine taken per sample over all input dimensions and the sum over classes averaged
over the batch.

The input-gradient of class c is the gradient of sum_i s(x_i)_c over the batch *as it is*: in
train mode BatchNorm uses the real batch's statistics, and the gradient includes their
dependence on every image. ``s`` is the raw logit f(x)_c (the paper's formula, ``grad_of =
"logit"``) or log_softmax(f(x))_c (what the authors' released code differentiates, ``grad_of =
"log_softmax"``).

All strategies compute exactly the same loss and parameter gradients (tests/test_pag.py checks
them against a plain per-class ``autograd.grad`` in float64, in train and eval mode); they differ
in speed and memory:

- ``loop``: the reference. One ``autograd.grad(create_graph=True)`` per class, then one
  backward through all C double-backward graphs at once (holds all of them in memory).
- ``accumulate``: builds each class's term and backpropagates it at once, accumulating the
  parameter gradients, so only one class's double-backward graph is alive at a time.
- ``batched``: all classes' input-gradients in one vectorised ``autograd.grad`` call
  (``is_grads_batched=True``), then one backward.
- ``segmented``: ``loop``'s arithmetic with ``accumulate``'s memory. The forward graph is cut
  into segments at the inputs of the BatchNorm layers and of the residual blocks (each input is
  replaced by a leaf that stands in for it). Each class's term is built through the segments and backpropagated at once,
  stopping at those leaves, so its double-backward graph is freed before the next class; only
  BatchNorm's double backward depends on the forward activations (``models.relu`` keeps ReLU's
  out of the forward graph; convolutions, linear layers and pooling depend on the weights
  only). At the end the forward graph is backpropagated once, segment by segment from the top,
  with every class's contributions gathered at the cuts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GRAD_OF = ("logit", "log_softmax")
STRATEGIES = ("loop", "accumulate", "batched", "segmented")

#: where ``segmented`` cuts the forward graph: at the input of every BatchNorm (whose double
#: backward reads it), and of every module flagged ``pag_cut = True`` (the residual blocks:
#: there the input feeds two paths, and a cut keeps each segment from walking the other's)
CUT_AT = (nn.modules.batchnorm._BatchNorm,)


def _is_cut(module: nn.Module) -> bool:
    return isinstance(module, CUT_AT) or getattr(module, "pag_cut", False)

#: g(x, c) for the current batch: class index -> tensor shaped like the batch.
Targets = Callable[[int], Tensor]


def cosine_loss(v: Tensor, u: Tensor, eps: float) -> Tensor:
    """Eq. (2) per sample: 1 - v.u / max(|v| |u|, eps), over all dimensions but the first.

    A zero ``v`` (or ``u``) gives loss 1 and finite gradients (no NaN): the norm's gradient at 0
    is taken as 0 and the denominator is ``eps``.
    """
    v, u = v.flatten(1), u.flatten(1)
    denom = torch.linalg.vector_norm(v, dim=1) * torch.linalg.vector_norm(u, dim=1)
    return 1 - (v * u).sum(1) / denom.clamp(min=eps)


def class_scores(logits: Tensor, grad_of: str) -> Tensor:
    if grad_of == "logit":
        return logits
    if grad_of == "log_softmax":
        return logits.log_softmax(dim=1)
    raise ValueError(f"grad_of must be one of {GRAD_OF}, not {grad_of!r}")


def input_gradient(scores: Tensor, x: Tensor, c: int, create_graph: bool) -> Tensor:
    """grad_x of sum_i scores[i, c]: the batch's input-gradients of class c."""
    (g,) = torch.autograd.grad(
        scores[:, c].sum(), x, create_graph=create_graph, retain_graph=True
    )
    return g


@dataclass
class StepLosses:
    """What one step computed; ``pag`` is sum over classes of the batch-mean cosine loss."""

    logits: Tensor  # detached
    ce: Tensor  # detached scalars
    pag: Tensor


def pag_backward(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    targets: Targets | None,
    lam: float,
    *,
    grad_of: str = "logit",
    strategy: str = "accumulate",
    eps: float = 1e-8,
    classes: Sequence[int] | None = None,
    ce_input: Tensor | None = None,
) -> StepLosses:
    """Forward ``x``, compute CE + lam * PAG and backpropagate into the parameters' ``.grad``.

    ``classes`` restricts the sum to a subset of target classes; the term is then scaled by
    C / len(classes) so that it stays an unbiased estimate of the full sum when the subset is
    drawn at random. ``ce_input`` (default ``x``) is what the cross-entropy is computed on; the
    PAG term is always on ``x``. The caller zeroes gradients and steps the optimiser.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if lam == 0 or targets is None:
        logits = model(x if ce_input is None else ce_input)
        ce = F.cross_entropy(logits, y)
        ce.backward()
        zero = torch.zeros((), device=x.device)
        return StepLosses(logits.detach(), ce.detach(), zero)

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    x = x.detach().requires_grad_(True)
    if strategy == "segmented":
        return _segmented(model, x, y, targets, lam, grad_of, eps, classes, ce_input)
    logits = model(x)
    num_classes = logits.shape[1]
    classes = list(range(num_classes)) if classes is None else list(classes)
    scale = num_classes / len(classes)
    scores = class_scores(logits, grad_of)
    if ce_input is None:
        ce = F.cross_entropy(logits, y)
        ce_logits = logits
    else:
        ce_logits = model(ce_input)
        ce = F.cross_entropy(ce_logits, y)

    if strategy == "accumulate":
        pag = torch.zeros((), device=x.device, dtype=logits.dtype)
        for c in classes:
            g = input_gradient(scores, x, c, create_graph=True)
            term = scale * cosine_loss(g, targets(c), eps).mean()
            torch.autograd.backward(lam * term, inputs=params, retain_graph=True)
            pag += term.detach()
        torch.autograd.backward(ce, inputs=params)
        return StepLosses(ce_logits.detach(), ce.detach(), pag)

    if strategy == "loop":
        grads = [input_gradient(scores, x, c, create_graph=True) for c in classes]
    else:  # batched
        onehots = torch.zeros((len(classes),) + tuple(scores.shape), device=x.device, dtype=scores.dtype)
        for k, c in enumerate(classes):
            onehots[k, :, c] = 1
        (stacked,) = torch.autograd.grad(
            scores, x, grad_outputs=onehots, is_grads_batched=True, create_graph=True
        )
        grads = list(stacked)
    pag = scale * sum(cosine_loss(g, targets(c), eps).mean() for g, c in zip(grads, classes))
    torch.autograd.backward(ce + lam * pag, inputs=params)
    return StepLosses(ce_logits.detach(), ce.detach(), pag.detach())


@contextlib.contextmanager
def _cut_inputs(model: nn.Module):
    """Inside, the inputs of the cut layers are replaced by leaves; yields the list of
    (input in the forward graph, leaf standing in for it), in forward order."""
    cuts: list[tuple[Tensor, Tensor]] = []

    def hook(module, args):
        leaf = args[0].detach().requires_grad_(True)
        cuts.append((args[0], leaf))
        return (leaf, *args[1:])

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if _is_cut(m)]
    try:
        yield cuts
    finally:
        for h in handles:
            h.remove()


def _input_gradient_through_cuts(top: Tensor, x: Tensor, cuts) -> Tensor:
    """grad_x of the scalar ``top`` (with create_graph) in a graph cut at ``cuts``:
    backpropagate to the leaves, then from each cut's input with its leaf's gathered gradient,
    top-down (a cut made later in the forward pass can only feed into earlier ones)."""
    leaves = [leaf for _, leaf in cuts]
    gathered: dict[int, Tensor] = {}

    def push(outputs, grad_outputs, below: int) -> None:
        inputs = leaves[:below] + [x]
        grads = torch.autograd.grad(
            outputs, inputs, grad_outputs, create_graph=True, retain_graph=True, allow_unused=True
        )
        for key, g in zip([*range(below), -1], grads):  # -1: x itself
            if g is not None:
                gathered[key] = gathered[key] + g if key in gathered else g

    push(top, None, len(leaves))
    for k in reversed(range(len(cuts))):
        if k in gathered:
            push(cuts[k][0], gathered.pop(k), k)
    return gathered[-1]


def _segmented(model, x, y, targets, lam, grad_of, eps, classes, ce_input) -> StepLosses:
    with _cut_inputs(model) as cuts:
        logits = model(x)
    leaves = [leaf for _, leaf in cuts]
    num_classes = logits.shape[1]
    classes = list(range(num_classes)) if classes is None else list(classes)
    scale = num_classes / len(classes)
    scores = class_scores(logits, grad_of)
    pag = torch.zeros((), device=x.device, dtype=logits.dtype)
    for c in classes:
        g = _input_gradient_through_cuts(scores[:, c].sum(), x, cuts)
        term = scale * cosine_loss(g, targets(c), eps).mean()
        # stops at the leaves: the class's double-backward graph only, then it is freed
        (lam * term).backward(retain_graph=True)
        pag += term.detach()
    if ce_input is None:
        ce_logits = logits
    else:
        ce_logits = model(ce_input)
    ce = F.cross_entropy(ce_logits, y)
    # the forward graph once: CE down to the top cuts, then every cut with what it gathered
    ce.backward(retain_graph=True)
    for k in reversed(range(len(cuts))):
        grad, leaves[k].grad = leaves[k].grad, None  # complete now; freed once passed on
        if grad is not None:
            cuts[k][0].backward(grad, retain_graph=True)
    return StepLosses(ce_logits.detach(), ce.detach(), pag)

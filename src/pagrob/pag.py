"""The PAG objective, Eq. (1)-(2) of the paper:

    L(x, y) = CE(f(x), y) + lam * sum_{c=1..C} L_cos(grad_x f(x)_c, g(x, c)),
    L_cos(v, u) = 1 - v.u / max(|v| |u|, eps),

with the cosine taken per sample over all input dimensions and the sum over classes averaged
over the batch.

BatchNorm (``batchnorm``): in train mode a BatchNorm layer normalises with the statistics of the
batch, so the input-gradient of class c, the gradient of sum_i s(x_i)_c, depends on every image
of the batch. ``batch`` takes that gradient as it is (the batch's summed score, the statistics'
dependence on every image included: what the authors' code computes); ``frozen`` takes each
image's own gradient, the batch's statistics held as constants in the PAG term (the per-image
reading of Eq. 1: the gradient an eval-mode model has when its running statistics equal the
batch's). In ``frozen`` the PAG term's forward leaves the running statistics alone and the
cross-entropy takes its own plain forward (the usual training's, statistics and all), which
updates them once. Models without BatchNorm (and eval mode) compute the same in both.

``s`` is the raw logit f(x)_c (the paper's formula, ``grad_of =
"logit"``), log_softmax(f(x))_c (what the authors' released code differentiates, ``grad_of =
"log_softmax"``), or the centred logit f(x)_c - (1/C) sum_k f(x)_k against the centred targets
g(x, c) - (1/C) sum_k g(x, k) (``grad_of = "centred"``: only the part of both that the
predictions depend on; a function added to every logit changes neither).

All strategies compute exactly the same loss and parameter gradients (tests/unit/test_pag.py checks
them against a plain per-class ``autograd.grad`` in float64, in train and eval mode); they differ
in speed and memory. Each is one short function, dispatched from ``_STRATEGIES``:

- ``loop``: the reference. One ``autograd.grad(create_graph=True)`` per class, then one
  backward through all C double-backward graphs at once (holds all of them in memory).
- ``accumulate``: builds each class's term and backpropagates it at once, accumulating the
  parameter gradients, so only one class's double-backward graph is alive at a time.
- ``batched``: all classes' input-gradients in one vectorised ``autograd.grad`` call
  (``is_grads_batched=True``), then one backward.
- ``segmented``: ``loop``'s arithmetic with ``accumulate``'s memory. The forward graph is cut
  into segments at the inputs of the BatchNorm layers and of the residual blocks (each input is
  replaced by a leaf that stands in for it). Each class's term is built through the segments and
  backpropagated at once, stopping at those leaves, so its double-backward graph is freed before
  the next class; only BatchNorm's double backward depends on the forward activations
  (``models.relu`` keeps ReLU's out of the forward graph; convolutions, linear layers and pooling
  depend on the weights only). At the end the forward graph is backpropagated once, segment by
  segment from the top, with every class's contributions gathered at the cuts.
- ``replicated``: few large kernels, for GPUs. The batch is stacked C times (B*C rows, copy j
  for class j) and all C input-gradients come from one forward, one ``autograd.grad`` and one
  backward. Unlike the authors' stacked batch, every BatchNorm normalises each copy with that
  copy's own statistics (the real batch's), so no copy sees another, and the running statistics
  are updated once, exactly as one forward of the batch updates them. Exact for models whose
  only layers that mix the images of a batch are BatchNorm (all of ``models.py``'s).

``pag_backward(..., autocast=torch.bfloat16)`` runs the forward passes under autocast (mixed
precision); the logits are taken in float32 and the cosine is computed in float32 at least.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# the class scores (GRAD_OF), the strategies' names, their default and ``auto`` (train.py times
# every exact strategy at the start of a run and keeps the fastest): pagrob.settings, pure Python
from pagrob import settings
from pagrob.settings import (  # noqa: F401
    AUTO,
    BATCHNORM,
    DEFAULT_BATCHNORM,
    DEFAULT_STRATEGY,
    GRAD_OF,
)

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

    Computed in float32 at least (float64 stays float64), whatever precision ``v`` and ``u``
    come in. A zero ``v`` (or ``u``) gives loss 1 and finite gradients (no NaN): the norm's
    gradient at 0 is taken as 0 and the denominator is ``eps``.
    """
    dtype = torch.promote_types(torch.promote_types(v.dtype, u.dtype), torch.float32)
    v, u = v.flatten(1).to(dtype), u.flatten(1).to(dtype)
    denom = torch.linalg.vector_norm(v, dim=1) * torch.linalg.vector_norm(u, dim=1)
    return 1 - (v * u).sum(1) / denom.clamp(min=eps)


def class_scores(logits: Tensor, grad_of: str) -> Tensor:
    if grad_of == "logit":
        return logits
    if grad_of == "log_softmax":
        return logits.log_softmax(dim=1)
    if grad_of == "centred":
        return logits - logits.mean(dim=1, keepdim=True)
    raise ValueError(f"grad_of must be one of {GRAD_OF}, not {grad_of!r}")


def input_gradient(scores: Tensor, x: Tensor, c: int, create_graph: bool) -> Tensor:
    """grad_x of sum_i scores[i, c]: the batch's input-gradients of class c."""
    (g,) = torch.autograd.grad(scores[:, c].sum(), x, create_graph=create_graph, retain_graph=True)
    return g


@dataclass
class StepLosses:
    """What one step computed; ``pag`` is sum over classes of the batch-mean cosine loss."""

    logits: Tensor  # detached
    ce: Tensor  # detached scalars
    pag: Tensor


@dataclass
class _Step:
    """One PAG step's inputs, shared by the strategies. ``x`` is a leaf that requires grad;
    ``classes`` is None for all C classes (resolved by ``resolve`` once C is known)."""

    model: nn.Module
    x: Tensor
    y: Tensor
    targets: Targets
    lam: float
    grad_of: str
    eps: float
    classes: list[int] | None
    ce_input: Tensor | None
    autocast: torch.dtype | None
    view: Callable[[Tensor], Tensor] | None = None
    batchnorm: str = DEFAULT_BATCHNORM  # one of settings.BATCHNORM (the module's docstring)
    num_classes: int | None = None  # C, once resolve() knows it
    _target_mean: Tensor | None = None  # centred: mean_k g_k, computed once per step

    @property
    def params(self) -> list[Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def forward(self, inp: Tensor) -> Tensor:
        """The logits the PAG term differentiates: the model's at ``view(inp)`` (at ``inp``
        without a view), so that input-gradients are taken with respect to ``inp`` through the
        view."""
        return self.logits(inp if self.view is None else self.view(inp))

    @property
    def frozen(self) -> bool:
        """Whether the PAG term holds batch statistics as constants (``batchnorm: frozen``) in a
        model that has them (a BatchNorm layer in train mode)."""
        return self.batchnorm == "frozen" and bool(_batch_statistics(self.model))

    def pag_forward(self, inp: Tensor) -> Tensor:
        """``forward`` for the PAG term: with ``batchnorm: frozen``, every BatchNorm normalises
        with the batch's statistics taken as constants, its running statistics untouched."""
        with _frozen_batchnorm(self.model) if self.frozen else contextlib.nullcontext():
            return self.forward(inp)

    def logits(self, inp: Tensor) -> Tensor:
        """The model's logits at ``inp`` (in float32 under autocast)."""
        if self.autocast is None:
            return self.model(inp)
        with torch.autocast(inp.device.type, dtype=self.autocast):
            return self.model(inp).float()

    def resolve(self, num_classes: int) -> tuple[list[int], float]:
        """The classes of the sum and the factor C / k that keeps a subset's sum unbiased."""
        self.num_classes = num_classes
        classes = list(range(num_classes)) if self.classes is None else self.classes
        return classes, num_classes / len(classes)

    def target(self, c: int) -> Tensor:
        """g(x, c), centred over all C classes (g_c - mean_k g_k) for ``grad_of = "centred"``,
        as the centred scores' gradients are (also when the sum runs over a subset)."""
        if self.grad_of != "centred":
            return self.targets(c)
        if self._target_mean is None:
            self._target_mean = (
                sum(self.targets(k) for k in range(self.num_classes)) / self.num_classes
            )
        return self.targets(c) - self._target_mean

    def cross_entropy(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """(logits the CE is taken on, CE): ``logits`` themselves, or a forward of ``ce_input``;
        with frozen batch statistics a plain forward of the batch (the PAG term's ``logits``
        hold the statistics as constants, the cross-entropy's must not)."""
        if self.ce_input is not None:
            ce_logits = self.logits(self.ce_input)
        elif self.frozen:
            ce_logits = self.forward(self.x.detach())
        else:
            ce_logits = logits
        return ce_logits, F.cross_entropy(ce_logits, self.y)

    def pag_sum(self, grads: Sequence[Tensor], classes: list[int], scale: float) -> Tensor:
        return scale * sum(
            cosine_loss(g, self.target(c), self.eps).mean() for g, c in zip(grads, classes)
        )


def class_input_gradients(
    model: nn.Module,
    x: Tensor,
    grad_of: str = "logit",
    batchnorm: str = DEFAULT_BATCHNORM,
    classes: Sequence[int] | None = None,
) -> Tensor:
    """[k, B, ...]: the input-gradients that the PAG term aligns, one per class of ``classes``
    (default: all), for the batch ``x`` in the model's current mode, as a training step with
    ``batchnorm`` takes them (no graph kept; the running statistics are left as they were)."""
    step = _Step(
        model,
        x.detach().requires_grad_(True),
        None,
        None,
        0.0,
        grad_of,
        1e-8,
        None,
        None,
        None,
        batchnorm=batchnorm,
    )
    saved = [b.clone() for b in model.buffers()]
    try:
        scores = class_scores(step.pag_forward(step.x), grad_of)
        picked = range(scores.shape[1]) if classes is None else classes
        return torch.stack([input_gradient(scores, step.x, c, create_graph=False) for c in picked])
    finally:
        with torch.no_grad():
            for b, v in zip(model.buffers(), saved):
                b.copy_(v)


def pag_backward(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    targets: Targets | None,
    lam: float,
    *,
    grad_of: str = "logit",
    strategy: str = DEFAULT_STRATEGY,
    eps: float = 1e-8,
    classes: Sequence[int] | None = None,
    ce_input: Tensor | None = None,
    autocast: torch.dtype | None = None,
    view: Callable[[Tensor], Tensor] | None = None,
    batchnorm: str = DEFAULT_BATCHNORM,
) -> StepLosses:
    """Forward ``x``, compute CE + lam * PAG and backpropagate into the parameters' ``.grad``.

    ``classes`` restricts the sum to a subset of target classes; the term is then scaled by
    C / len(classes) so that it stays an unbiased estimate of the full sum when the subset is
    drawn at random. ``ce_input`` (default ``x``) is what the cross-entropy is computed on; the
    PAG term is always on ``x``. ``autocast`` (e.g. ``torch.bfloat16``): the forward passes run
    under ``torch.autocast`` with that dtype. The caller zeroes gradients and steps the optimiser.

    ``view`` (default: none) is a differentiable map applied to ``x`` before the model, for the
    PAG term (and for the CE when there is no ``ce_input``): the input-gradients are then
    grad_x s(f(view(x)))_c, taken with respect to ``x`` *through* the view, as the authors'
    training takes them through a random crop and flip of the un-augmented image
    (``train.PAG_VARIANTS``). Every strategy applies it to what it forwards (``replicated`` to
    the B x k stacked copies, so a view must treat rows alike, as a one-row ``CropFlip`` does).

    ``batchnorm``: ``batch`` or ``frozen``, how the PAG term meets BatchNorm's batch statistics
    (the module's docstring).
    """
    if batchnorm not in BATCHNORM:
        raise ValueError(f"batchnorm must be one of {BATCHNORM}, not {batchnorm!r}")
    if lam == 0 or targets is None:
        step = _Step(model, x, y, None, lam, grad_of, eps, None, ce_input, autocast, view)
        ce_logits, ce = step.cross_entropy(step.forward(x) if ce_input is None else None)
        ce.backward()
        zero = torch.zeros((), device=x.device)
        return StepLosses(ce_logits.detach(), ce.detach(), zero)
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    step = _Step(
        model,
        x.detach().requires_grad_(True),
        y,
        targets,
        lam,
        grad_of,
        eps,
        None if classes is None else list(classes),
        ce_input,
        autocast,
        view,
        batchnorm,
    )
    return _STRATEGIES[strategy](step)


# --- loop, accumulate, batched ----------------------------------------------------------------------


def _loop(s: _Step) -> StepLosses:
    logits = s.pag_forward(s.x)
    classes, scale = s.resolve(logits.shape[1])
    scores = class_scores(logits, s.grad_of)
    grads = [input_gradient(scores, s.x, c, create_graph=True) for c in classes]
    return _one_backward(s, logits, grads, classes, scale)


def _batched(s: _Step) -> StepLosses:
    logits = s.pag_forward(s.x)
    classes, scale = s.resolve(logits.shape[1])
    scores = class_scores(logits, s.grad_of)
    onehots = _onehots(classes, scores)[:, None, :].expand(len(classes), *scores.shape)
    (stacked,) = torch.autograd.grad(
        scores, s.x, grad_outputs=onehots, is_grads_batched=True, create_graph=True
    )
    return _one_backward(s, logits, list(stacked), classes, scale)


def _onehots(classes: list[int], scores: Tensor) -> Tensor:
    """[k, C]: row j the one-hot of classes[j], made on the device (rows of an identity picked by
    host integers: no index tensor copied from the host)."""
    eye = torch.eye(scores.shape[-1], device=scores.device, dtype=scores.dtype)
    return eye if classes == list(range(len(eye))) else torch.stack([eye[c] for c in classes])


def _one_backward(s: _Step, logits: Tensor, grads, classes, scale) -> StepLosses:
    """CE + lam * (sum of the classes' terms), backpropagated at once."""
    ce_logits, ce = s.cross_entropy(logits)
    pag = s.pag_sum(grads, classes, scale)
    torch.autograd.backward(ce + s.lam * pag, inputs=s.params)
    return StepLosses(ce_logits.detach(), ce.detach(), pag.detach())


def _accumulate(s: _Step) -> StepLosses:
    logits = s.pag_forward(s.x)
    classes, scale = s.resolve(logits.shape[1])
    scores = class_scores(logits, s.grad_of)
    ce_logits, ce = s.cross_entropy(logits)
    pag = torch.zeros((), device=s.x.device, dtype=logits.dtype)
    for c in classes:
        term = s.pag_sum([input_gradient(scores, s.x, c, create_graph=True)], [c], scale)
        torch.autograd.backward(s.lam * term, inputs=s.params, retain_graph=True)
        pag += term.detach()
    torch.autograd.backward(ce, inputs=s.params)
    return StepLosses(ce_logits.detach(), ce.detach(), pag)


# --- segmented -----------------------------------------------------------------------------------


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


def _segmented(s: _Step) -> StepLosses:
    with _cut_inputs(s.model) as cuts:
        logits = s.pag_forward(s.x)
    leaves = [leaf for _, leaf in cuts]
    classes, scale = s.resolve(logits.shape[1])
    scores = class_scores(logits, s.grad_of)
    pag = torch.zeros((), device=s.x.device, dtype=logits.dtype)
    for c in classes:
        g = _input_gradient_through_cuts(scores[:, c].sum(), s.x, cuts)
        term = s.pag_sum([g], [c], scale)
        # stops at the leaves: the class's double-backward graph only, then it is freed
        (s.lam * term).backward(retain_graph=True)
        pag += term.detach()
    ce_logits, ce = s.cross_entropy(logits)
    # the forward graph once: CE down to the top cuts, then every cut with what it gathered
    ce.backward(retain_graph=True)
    for k in reversed(range(len(cuts))):
        grad, leaves[k].grad = leaves[k].grad, None  # complete now; freed once passed on
        if grad is not None:
            cuts[k][0].backward(grad, retain_graph=True)
    return StepLosses(ce_logits.detach(), ce.detach(), pag)


# --- replicated ----------------------------------------------------------------------------------


def _batch_statistics(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that normalise with the batch's statistics (train mode,
    or no running statistics)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or m.running_mean is None)
    ]


def _normalise(
    bn: nn.modules.batchnorm._BatchNorm, inp: Tensor, groups: int, frozen: bool
) -> Tensor:
    """BatchNorm of ``inp`` (``groups`` stacked copies of a batch, each normalised with its own
    statistics), in float32 at least; the statistics held as constants when ``frozen``."""
    n = inp.shape[0] // groups
    work = torch.promote_types(inp.dtype, torch.float32)  # statistics in float32 at least
    copies = inp.unflatten(0, (groups, n)).to(work)  # [groups, n, C, ...]
    dims = (1,) + tuple(range(3, copies.dim()))
    with torch.no_grad() if frozen else contextlib.nullcontext():
        var, mean = torch.var_mean(copies, dim=dims, correction=0, keepdim=True)
    out = (copies - mean) * torch.rsqrt(var + bn.eps)
    if bn.affine:
        shape = (1, 1, -1) + (1,) * (copies.dim() - 3)
        out = out * bn.weight.view(shape) + bn.bias.view(shape)
    return out.flatten(0, 1).to(inp.dtype)


def _grouped_batchnorm_forward(
    bn: nn.modules.batchnorm._BatchNorm, groups: int, frozen: bool = False
):
    """A forward for ``bn`` on a batch of ``groups`` stacked copies: each copy is normalised
    with its own batch statistics (as if it were alone), and the running statistics are updated
    once, by the module's own forward of the first copy (no graph); with ``frozen`` the
    statistics are constants and the running statistics are left to the cross-entropy's forward.
    """
    plain = type(bn).forward

    def forward(inp: Tensor) -> Tensor:
        if not bn.training and bn.running_mean is not None:  # eval mode: no statistics of the batch
            return plain(bn, inp)
        if bn.training and bn.track_running_stats and not frozen:
            with torch.no_grad():
                plain(bn, inp[: inp.shape[0] // groups])  # updates the running statistics once
        return _normalise(bn, inp, groups, frozen)

    return forward


@contextlib.contextmanager
def _grouped_batchnorm(model: nn.Module, groups: int, frozen: bool = False):
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.forward = _grouped_batchnorm_forward(bn, groups, frozen)
    try:
        yield
    finally:
        for bn in bns:
            del bn.forward


def _frozen_batchnorm(model: nn.Module):
    """Inside, every BatchNorm that normalises with the batch's statistics holds them as
    constants and leaves its running statistics alone (``batchnorm: frozen``)."""
    return _grouped_batchnorm(model, 1, frozen=True)


def _num_classes(model: nn.Module) -> int:
    """C before the forward: the model's ``num_classes``, else its last linear layer's outputs."""
    n = getattr(model, "num_classes", None)
    if n is None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(
                "strategy 'replicated' needs classes=... or a model with a num_classes attribute"
            )
        n = linears[-1].out_features
    return n


def _replicated(s: _Step) -> StepLosses:
    num_classes = _num_classes(s.model)
    classes, scale = s.resolve(num_classes)
    k, b = len(classes), len(s.x)
    # copy j of the batch stands for class classes[j]; its own leaf, so its gradient is its own
    stacked = s.x.detach().repeat(k, *([1] * (s.x.dim() - 1)))
    if s.x.dim() == 4 and s.x.is_contiguous(memory_format=torch.channels_last):
        stacked = stacked.contiguous(memory_format=torch.channels_last)
    stacked.requires_grad_(True)
    with _grouped_batchnorm(s.model, k, frozen=s.frozen):
        logits = s.forward(stacked)  # [k * B, C]
    if logits.shape[1] != num_classes:
        raise ValueError(
            f"the model has {logits.shape[1]} outputs, not the {num_classes} its last linear layer says"
        )
    scores = class_scores(logits, s.grad_of).unflatten(0, (k, b))
    onehot = _onehots(classes, scores)  # copy j: class classes[j]
    (g,) = torch.autograd.grad((scores * onehot[:, None, :]).sum(), stacked, create_graph=True)
    u = torch.stack([s.target(c) for c in classes]).flatten(0, 1)
    pag = scale * cosine_loss(g, u, s.eps).view(k, b).mean(1).sum()
    ce_logits, ce = s.cross_entropy(logits[:b])  # copy 0 is the batch's own forward (batch)
    torch.autograd.backward(ce + s.lam * pag, inputs=s.params)
    return StepLosses(ce_logits.detach(), ce.detach(), pag.detach())


_STRATEGIES: dict[str, Callable[[_Step], StepLosses]] = {
    "loop": _loop,
    "accumulate": _accumulate,
    "batched": _batched,
    "segmented": _segmented,
    "replicated": _replicated,
}
#: the exact strategies: every one computes the same loss and gradients (tests/unit/test_pag.py)
STRATEGIES = tuple(_STRATEGIES)
assert STRATEGIES == settings.STRATEGIES, "pagrob.settings.STRATEGIES names these strategies"
#: what a run may ask for: one of them, or ``auto``
STRATEGY_CHOICES = settings.STRATEGY_CHOICES
assert DEFAULT_STRATEGY in STRATEGIES

"""A number for PAG: how perceptually aligned a model's input-gradients are, measured against an
independently seeded adversarially trained reference model, and against the data manifold as an
autoencoder sees it (the paper says no such number exists; see ``pagrob.pag_report`` for the
tables and the rule that marks a score as not independent).

Shift invariance. Adding one function h(x) to every logit changes no prediction, no softmax and
no loss, yet it changes every raw logit input-gradient by grad h. A score that a classifier's
decisions cannot see must not depend on it, so the default compares the gradients of the
**centred** logits f_c - (1/C) sum_k f_k (the raw gradients minus their mean over the classes);
the log-softmax gradients (grad f_c - sum_k p_k grad f_k, equally blind to h) give a second
score, and the raw logits' a diagnostic, beside the model's **common-mode fraction**
||mean_c grad f_c||^2 / mean_c ||grad f_c||^2 (0: no part of the gradients is shared by all
classes; 1: all of it is).

- :func:`gradient_scores`: per image, the mean over the C classes of the cosine between the
  model's and each reference's gradients of each kind (``GRADIENTS``), the common-mode fraction,
  and with an autoencoder the tangent-space fraction ||P_T g|| / ||g|| of the centred gradients
  (Bordt et al. 2023; Srinivas, Bordt & Lakkaraju 2023) and the change of the softmax under
  noise inside and orthogonal to the tangent space (on- and off-manifold robustness);
- with a class-conditional denoiser (``pagrob.denoiser``, seeded independently of the
  score-based sources' own), ``score_alignment``: the mean over the C classes of the cosine
  between the model's centred class gradients and the denoiser's centred score field
  (:func:`score_field`; Srinivas, Bordt & Lakkaraju 2023 measure PAG against a diffusion model's
  score). A classifier whose logits are log p(x | c) + log p(c) (the Bayes classifier) scores 1:
  its centred gradients are the centred class scores. No robust model is involved;
- :func:`targeted_success`: Fig. 4's large-eps targeted L2 PGD on the model, from each test
  image towards every class other than its label; how often the reference agrees that the
  result is the target class, and its mean probability for the target.

Models are frozen and in eval mode throughout. Every tensor is made on the data's device, and
results are read back from it once per call.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pagrob import registry
from pagrob.attacks import Attack, frozen_eval, pgd
from pagrob.pag import cosine_loss
from pagrob.sources import TEACHER_SOURCES

#: the gradients compared, and the name of each one's alignment score; the first is the default
GRADIENTS = {
    "centred": "alignment",
    "log_softmax": "alignment_log_softmax",
    "logit": "alignment_logit",
}
#: cosine's denominator floor: a zero gradient has cosine 0 with anything
COS_EPS = 1e-30

#: how a scored model relates to a reference (``relation``): an independent model; one of the
#: reference's own recipe (an adversarially trained model of its threat model with another seed,
#: or a RIGD student of such a teacher), whose agreement is expected by construction; another
#: model that saw a robust model (a RIGD student of the other threat model's teacher, the other
#: teacher, an imported model: ``registry.circular``), whose agreement with any robust reference
#: is no evidence either; the reference itself (the self-ceiling, 1 by construction for the
#: alignments)
INDEPENDENT, SAME_RECIPE, CIRCULAR, SELF = "independent", "same_recipe", "circular", "self"
#: the reference of the score instrument's rows (score ``score_alignment``)
DENOISER = "denoiser"


def class_gradients(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(logits [B, C], grads [C, B, ...]): the raw logits at ``x`` and the input-gradient of every
    class's logit, the model frozen and in eval mode."""
    with frozen_eval(model), torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        logits = model(xg)
        grads = [
            torch.autograd.grad(logits[:, c].sum(), xg, retain_graph=True)[0]
            for c in range(logits.shape[1])
        ]
    return logits.detach(), torch.stack(grads)


def shift_invariant(grads: Tensor, logits: Tensor, kind: str) -> Tensor:
    """The class gradients of one kind from the raw logit gradients ``grads`` [C, B, ...]:
    ``centred`` grad(f_c - mean_k f_k), ``log_softmax`` grad log softmax(f)_c, ``logit`` the raw
    ones. The first two are unchanged when one function of x is added to every logit."""
    if kind == "logit":
        return grads
    if kind == "centred":
        return grads - grads.mean(0, keepdim=True)
    if kind == "log_softmax":
        p = logits.softmax(1).T.to(grads.dtype)  # [C, B]
        p = p.view(*p.shape, *([1] * (grads.dim() - 2)))
        return grads - (p * grads).sum(0, keepdim=True)
    raise ValueError(f"gradient kind must be one of {tuple(GRADIENTS)}, not {kind!r}")


def common_mode_fraction(grads: Tensor) -> Tensor:
    """[B]: ||mean_c g_c||^2 / mean_c ||g_c||^2 per image for the class gradients [C, B, ...]
    (0 where every class gradient is 0)."""
    flat = grads.flatten(2).double()
    shared = (flat.mean(0) ** 2).sum(-1)
    energy = (flat**2).sum(-1).mean(0)
    return torch.where(energy > 0, shared / energy.clamp(min=1e-300), torch.zeros_like(energy))


def class_cosines(g: Tensor, r: Tensor) -> Tensor:
    """[B]: the mean over classes of cos(g_c, r_c) per image, for [C, B, ...] gradients."""
    if g.shape != r.shape:
        raise ValueError(
            f"model and reference disagree on the classes: gradients {tuple(g.shape)} and "
            f"{tuple(r.shape)}"
        )
    cos = 1 - cosine_loss(g.flatten(0, 1), r.flatten(0, 1), COS_EPS)
    return cos.view(g.shape[:2]).double().mean(0)


def score_field(net: nn.Module, x: Tensor, sigma: float) -> Tensor:
    """[C, B, ...]: a class-conditional denoiser's score field at ``x``, D(x, c, sigma) - x for
    every class c (sigma^2 times the score of class c's density smoothed at ``sigma``), centred
    over the classes. Centring leaves grad log p(c | x) - mean_k grad log p(k | x), since
    log p(x | c) = log p(c | x) + log p(x) - log p(c): what a classifier's centred logit
    gradients are compared with."""
    from pagrob.denoiser import score_targets

    s = score_targets(net, x, sigma, batch_size=len(x)).transpose(0, 1)
    return s - s.mean(0, keepdim=True)


def gradient_scores(
    model: nn.Module,
    x: Tensor,
    batch_size: int,
    references: dict[str, nn.Module] | None = None,
    autoencoder: nn.Module | None = None,
    noise: float | None = None,
    noise_draws: int = 4,
    generator: torch.Generator | None = None,
    score: tuple[nn.Module, float] | None = None,
) -> dict[tuple[str, str], list[float]]:
    """Every gradient score of ``model`` on the images ``x``, per image:
    ``(score, reference) -> [value of each image]`` (the score is their mean). The model's class
    gradients are computed once per batch; the values are read back once.

    - against each ``references[name]``: one alignment per kind of ``GRADIENTS`` (the mean over
      the classes of the cosine);
    - with ``score`` (a denoiser and its noise level): ``("score_alignment", DENOISER)``, the
      mean over the classes of the cosine between the centred gradients and
      :func:`score_field`;
    - ``("common_mode", "none")``: the model's common-mode fraction;
    - with ``autoencoder`` (``pagrob.autoencoder``): ``("tangent_fraction", "autoencoder")``, the
      mean over the classes of ||P_T g|| / ||g|| for the centred gradients g, and with
      ``noise`` (an L2 radius) ``on_manifold_change`` and ``off_manifold_change``: the mean
      total-variation change of the softmax under random noise of that norm inside T and
      orthogonal to it (``noise_draws`` directions per image, drawn from ``generator``).
    """
    references = references or {}
    keys = [(kind, name) for name in references for kind in GRADIENTS.values()]
    if score is not None:
        keys.append(("score_alignment", DENOISER))
    keys.append(("common_mode", "none"))
    if autoencoder is not None:
        keys.append(("tangent_fraction", "autoencoder"))
        if noise:
            keys += [("on_manifold_change", "autoencoder"), ("off_manifold_change", "autoencoder")]
    batches = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        logits, grads = class_gradients(model, xb)
        values = []
        for reference in references.values():
            ref_logits, ref_grads = class_gradients(reference, xb)
            for kind in GRADIENTS:
                g = shift_invariant(grads, logits, kind)
                r = shift_invariant(ref_grads, ref_logits, kind)
                values.append(class_cosines(g, r))
        if score is not None:
            net, sigma = score
            centred = shift_invariant(grads, logits, "centred")
            values.append(class_cosines(centred, score_field(net, xb, sigma).to(centred.dtype)))
        values.append(common_mode_fraction(grads))
        if autoencoder is not None:
            from pagrob import autoencoder as ae_lib

            basis = ae_lib.tangent_basis(autoencoder, xb)
            centred = shift_invariant(grads, logits, "centred")
            values.append(ae_lib.tangent_fraction(centred, basis).double().mean(0))
            if noise:
                on, off = ae_lib.manifold_noise_change(
                    model, xb, basis, noise, noise_draws, generator
                )
                values += [on.double(), off.double()]
        batches.append(torch.stack(values))  # [keys, B]
    return dict(zip(keys, torch.cat(batches, 1).tolist()))


def alignment(
    model: nn.Module, reference: nn.Module, x: Tensor, batch_size: int, kind: str = "centred"
) -> float:
    """The mean over the images ``x`` and all C classes of the cosine between the model's and the
    reference's class gradients of one kind (``GRADIENTS``; default: the centred logits')."""
    return alignment_on_device(model, reference, x, batch_size, kind).item()


def alignment_on_device(
    model: nn.Module, reference: nn.Module, x: Tensor, batch_size: int, kind: str = "centred"
) -> Tensor:
    """:func:`alignment` as a 0-d float64 tensor on ``x``'s device (nothing read back)."""
    total = torch.zeros((), device=x.device, dtype=torch.float64)
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        logits, grads = class_gradients(model, xb)
        ref_logits, ref_grads = class_gradients(reference, xb)
        g, r = shift_invariant(grads, logits, kind), shift_invariant(ref_grads, ref_logits, kind)
        total += class_cosines(g, r).sum()
    return total / len(x)


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
        xb = x[images[start : start + batch_size]]
        out.append(pgd(model, xb, t, attack, target=t, generator=generator))
    return torch.cat(out), targets


def reference_agreement(
    reference: nn.Module, x_adv: Tensor, targets: Tensor, batch_size: int, per: int = 1
) -> dict:
    """``targeted_success``: the fraction of ``x_adv`` the reference classifies as ``targets``;
    ``targeted_prob``: the reference's mean softmax probability of the target. With ``per`` > 1
    (the C - 1 attacks of each image of :func:`targeted_examples`) also ``per_image``: each
    score's mean over every image's ``per`` attacks (lists of floats)."""
    values = agreement_on_device(reference, x_adv, targets, batch_size, per)
    hits, prob = values.tolist()
    out = {"targeted_success": sum(hits) / len(hits), "targeted_prob": sum(prob) / len(prob)}
    out["per_image"] = {"targeted_success": hits, "targeted_prob": prob}
    return out


def agreement_on_device(
    reference: nn.Module, x_adv: Tensor, targets: Tensor, batch_size: int, per: int = 1
) -> Tensor:
    """[2, n / per] float64 on the data's device: per image (the mean over its ``per`` attacks),
    whether the reference classifies the attack as its target, and its probability of it."""
    hits, prob = [], []
    with frozen_eval(reference), torch.no_grad():
        for start in range(0, len(x_adv), batch_size):
            p = reference(x_adv[start : start + batch_size]).softmax(1)
            t = targets[start : start + batch_size]
            hits.append((p.argmax(1) == t).double())
            prob.append(p.gather(1, t[:, None]).squeeze(1).double())
    return torch.stack([torch.cat(hits), torch.cat(prob)]).view(2, -1, per).mean(2)


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
    return reference_agreement(reference, x_adv, targets, batch_size, num_classes - 1)


def relation(source: str, reference: str) -> str:
    """How a model of ``source`` relates to the reference ``teacher_<norm>`` (an adversarially
    trained model with a seed no scored model uses): ``self`` for the reference against itself
    (source ``ceiling``); ``same_recipe`` for an adversarially trained model of the same threat
    model (another seed: the realistic ceiling) and for a RIGD student of such a teacher;
    ``circular`` for any other model that saw a robust model (robust models agree with each
    other across threat models); ``independent`` for the models that never saw one (the
    baselines of pag_report.BASELINES among them). Against the score instrument's denoiser
    (``DENOISER``): ``circular`` for the score-based sources (trained towards a denoiser of
    its recipe), else ``independent``."""
    if source == "ceiling":
        return SELF
    if reference == DENOISER:  # the score-based students learnt a denoiser of its recipe
        return CIRCULAR if source.split(".")[0] in registry.SCORE else INDEPENDENT
    norm = reference.removeprefix("teacher_")
    if source == reference or TEACHER_SOURCES.get(source.split(".")[0]) == norm:
        return SAME_RECIPE
    if source not in ("floor", "random", "autoencoder") and registry.circular(source):
        return CIRCULAR
    return INDEPENDENT

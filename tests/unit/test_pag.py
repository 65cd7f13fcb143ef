"""The PAG loss: every strategy equals a plain per-class autograd.grad reference (float64, train
and eval mode), the epsilon of Eq. (2), and no NaN for zero input-gradients."""

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pagrob import models, pag
from pagrob.pag import STRATEGIES, cosine_loss, pag_backward


def small_cnn(num_classes=4):
    """Convolutions with BatchNorm (whose train-mode statistics couple the images of a batch)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )
    return models.Classifier(net, torch.tensor([0.4, 0.5]), torch.tensor([0.2, 0.3])).double()


def batch(num_classes=4, b=6):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(b, 2, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(num_classes, (b,), generator=g)
    targets = torch.randn(4, b, 2, 8, 8, generator=g, dtype=torch.float64)[:num_classes]
    return x, y, targets


def reference(model, x, y, targets, lam, grad_of, eps, classes=None, ce_input=None):
    """Eq. (1)-(2) written out: one autograd.grad(create_graph=True) per class, one backward.
    The cross-entropy on ``ce_input`` when given (a second forward, after the one of ``x``)."""
    x = x.clone().requires_grad_(True)
    logits = model(x)
    scores = {
        "logit": logits,
        "log_softmax": logits.log_softmax(1),
        "centred": logits - logits.mean(1, keepdim=True),
    }[grad_of]
    num_classes = logits.shape[1]
    classes = range(num_classes) if classes is None else classes
    if grad_of == "centred":  # the targets centred over all classes, as the scores are
        targets = targets - targets.mean(0, keepdim=True)
    total = F.cross_entropy(logits if ce_input is None else model(ce_input), y)
    for c in classes:
        (g,) = torch.autograd.grad(scores[:, c].sum(), x, create_graph=True)
        v, u = g.flatten(1), targets[c].flatten(1)
        cos = (v * u).sum(1) / torch.clamp(v.norm(dim=1) * u.norm(dim=1), min=eps)
        total = total + lam * num_classes / len(classes) * (1 - cos).mean()
    return torch.autograd.grad(total, list(model.parameters())), total.detach()


def assert_same_step(model, out, ref, lam, ref_model):
    """Loss, parameter gradients and buffers (BatchNorm running statistics, batches seen) of a
    strategy's step against the reference's (which ran on ``ref_model``, a copy)."""
    ref_grads, ref_loss = ref
    torch.testing.assert_close(out.ce + lam * out.pag, ref_loss, rtol=1e-10, atol=1e-12)
    for p, r in zip(model.parameters(), ref_grads):
        torch.testing.assert_close(p.grad, r, rtol=1e-9, atol=1e-11)
    for (name, b), r in zip(model.named_buffers(), ref_model.buffers()):
        torch.testing.assert_close(b, r, rtol=1e-12, atol=1e-14, msg=f"buffer {name}")


@pytest.mark.parametrize("batchnorm", ["batch", "frozen"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("grad_of", ["logit", "log_softmax", "centred"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_equals_reference(strategy, grad_of, mode, batchnorm):
    """Each strategy against Eq. (1)-(2) written out: the batch's summed score through its
    BatchNorm statistics (``batch``), or each image's own gradient with them held as constants
    (``frozen``; in eval mode both are the running statistics' plain gradient)."""
    model = small_cnn()
    model.train(mode == "train")
    ref_model = copy.deepcopy(model)
    x, y, targets = batch()
    frozen = batchnorm == "frozen" and mode == "train"
    ref = (frozen_reference if frozen else reference)(ref_model, x, y, targets, 0.7, grad_of, 1e-8)
    out = pag_backward(
        model,
        x,
        y,
        lambda c: targets[c],
        0.7,
        grad_of=grad_of,
        strategy=strategy,
        eps=1e-8,
        batchnorm=batchnorm,
    )
    assert_same_step(model, out, ref, 0.7, ref_model)
    if frozen:  # not the coupled step: with the statistics' dependence the step is another one
        coupled, _ = reference(
            copy.deepcopy(small_cnn().train()), x, y, targets, 0.7, grad_of, 1e-8
        )
        assert any(
            not torch.allclose(p.grad, r, rtol=1e-6) for p, r in zip(model.parameters(), coupled)
        )


@pytest.mark.parametrize("batchnorm", ["batch", "frozen"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cross_entropy_on_other_inputs_with_pag(strategy, mode, batchnorm):
    """``ce_input`` with lam > 0: the PAG term on x, the CE on ce_input (its own forward), with
    either reading of Eq. 1 under BatchNorm."""
    model = small_cnn()
    model.train(mode == "train")
    ref_model, fresh = copy.deepcopy(model), copy.deepcopy(model)
    x, y, targets = batch()
    ce_input = (
        x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    ).clamp(0, 1)
    expected = reference if batchnorm == "batch" or mode == "eval" else frozen_reference
    ref = expected(ref_model, x, y, targets, 0.6, "logit", 1e-8, ce_input=ce_input)
    out = pag_backward(
        model,
        x,
        y,
        lambda c: targets[c],
        0.6,
        strategy=strategy,
        ce_input=ce_input,
        batchnorm=batchnorm,
    )
    assert_same_step(model, out, ref, 0.6, ref_model)
    with torch.no_grad():
        torch.testing.assert_close(out.logits, fresh(ce_input))  # the logits the CE was taken on


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_class_subset_is_scaled(strategy):
    model = small_cnn().train()
    x, y, targets = batch()
    ref_grads, _ = reference(model, x, y, targets, 0.5, "logit", 1e-8, classes=[1, 3])
    model.zero_grad()
    pag_backward(
        model, x, y, lambda c: targets[c], 0.5, strategy=strategy, classes=[1, 3], batchnorm="batch"
    )
    for p, r in zip(model.parameters(), ref_grads):
        torch.testing.assert_close(p.grad, r, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_centred_subset_centres_the_targets_over_all_classes(strategy):
    model = small_cnn().train()
    x, y, targets = batch()
    ref_grads, _ = reference(model, x, y, targets, 0.5, "centred", 1e-8, classes=[1, 3])
    model.zero_grad()
    pag_backward(
        model,
        x,
        y,
        lambda c: targets[c],
        0.5,
        grad_of="centred",
        strategy=strategy,
        classes=[1, 3],
        batchnorm="batch",
    )
    for p, r in zip(model.parameters(), ref_grads):
        torch.testing.assert_close(p.grad, r, rtol=1e-9, atol=1e-11)


class PlusShared(torch.nn.Module):
    """The model's logits plus one function of x added to every logit (a random linear map and
    its square): no prediction, softmax or cross-entropy changes."""

    def __init__(self, model, d):
        super().__init__()
        self.model = model
        self.w = torch.randn(d, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def forward(self, x):
        h = x.flatten(1) @ self.w
        return self.model(x) + (h + 0.1 * h**2)[:, None]


@pytest.mark.parametrize("strategy", ["loop", "segmented"])
def test_centred_loss_ignores_a_function_added_to_every_logit(strategy):
    """The centred PAG term is the same for f and f + h (h the same for every class); the raw
    logit's is not."""
    model = small_cnn().eval()
    x, y, targets = batch()
    shifted = PlusShared(model, x[0].numel())
    for grad_of, same in (("centred", True), ("logit", False)):
        terms = []
        for m in (model, shifted):
            m.zero_grad()
            out = pag_backward(
                m,
                x,
                y,
                lambda c: targets[c],
                0.7,
                grad_of=grad_of,
                strategy=strategy,
                batchnorm="batch",
            )
            terms.append((out.ce, out.pag))
        assert torch.allclose(terms[0][0], terms[1][0])  # the same cross-entropy either way
        assert torch.allclose(terms[0][1], terms[1][1], rtol=1e-9, atol=1e-12) == same, grad_of


@pytest.mark.parametrize("arch", ["mlp", "small_cnn", "resnet50"])
def test_real_architectures_in_train_mode(arch):
    """The other models the workflow trains, against the reference (a class subset)."""
    torch.manual_seed(0)
    model = (
        models.build_model(arch, (2, 8, 8), 4, torch.tensor([0.4, 0.5]), torch.tensor([0.2, 0.3]))
        .double()
        .train()
    )
    x, y, targets = batch(b=4)
    ref_grads, _ = reference(model, x, y, targets, 0.4, "logit", 1e-8, classes=[0, 2])
    model.zero_grad()
    pag_backward(
        model,
        x,
        y,
        lambda c: targets[c],
        0.4,
        strategy="segmented",
        classes=[0, 2],
        batchnorm="batch",
    )
    for p, r in zip(model.parameters(), ref_grads):
        torch.testing.assert_close(p.grad, r, rtol=1e-9, atol=1e-11)


def test_batch_gradient_is_per_sample_gradient_in_eval_mode():
    """In eval mode the gradient of sum_i f(x_i)_c is each image's own input-gradient."""
    model = small_cnn().eval()
    x, _, _ = batch()
    xb = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xb)[:, 2].sum(), xb)
    for i in range(len(x)):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (gi,) = torch.autograd.grad(model(xi)[0, 2], xi)
        torch.testing.assert_close(g[i : i + 1], gi)


# --- batchnorm: frozen, each image's own gradient with the batch statistics held as constants ---


@contextlib.contextmanager
def constant_statistics(model):
    """Every BatchNorm normalises with its batch's (biased) statistics, detached: F.batch_norm
    in eval form, handed the statistics (an implementation of its own, not pagrob.pag's)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    def frozen(bn):
        def forward(inp):
            var, mean = torch.var_mean(inp.detach(), dim=(0, 2, 3), correction=0)
            return F.batch_norm(inp, mean, var, bn.weight, bn.bias, False, 0.0, bn.eps)

        return forward

    for bn in bns:
        bn.forward = frozen(bn)
    try:
        yield
    finally:
        for bn in bns:
            del bn.forward


def frozen_reference(model, x, y, targets, lam, grad_of, eps, ce_input=None):
    """Eq. (1)-(2) with the PAG term's batch statistics held as constants, the cross-entropy on
    a plain forward (statistics and all: it alone updates the running statistics)."""
    xg = x.clone().requires_grad_(True)
    with constant_statistics(model):
        logits = model(xg)
    scores = {
        "logit": logits,
        "log_softmax": logits.log_softmax(1),
        "centred": logits - logits.mean(1, keepdim=True),
    }[grad_of]
    if grad_of == "centred":
        targets = targets - targets.mean(0, keepdim=True)
    total = F.cross_entropy(model(x if ce_input is None else ce_input), y)
    for c in range(logits.shape[1]):
        (g,) = torch.autograd.grad(scores[:, c].sum(), xg, create_graph=True)
        v, u = g.flatten(1), targets[c].flatten(1)
        cos = (v * u).sum(1) / torch.clamp(v.norm(dim=1) * u.norm(dim=1), min=eps)
        total = total + lam * (1 - cos).mean()
    return torch.autograd.grad(total, list(model.parameters())), total.detach()


def test_frozen_equals_the_eval_mode_gradient_when_running_statistics_are_the_batchs():
    """``frozen``'s input-gradients are each image's own: those of the eval-mode model whose
    running statistics are the batch's (biased) ones; the coupled ``batch`` ones are not."""
    model = small_cnn().train()
    x, _, _ = batch()
    frozen = pag.class_input_gradients(model, x, batchnorm="frozen")
    coupled = pag.class_input_gradients(model, x, batchnorm="batch")
    # the running statistics := the batch's, layer by layer (each BatchNorm's own input)
    stats = {}
    hooks = [
        bn.register_forward_pre_hook(
            lambda m, a: stats.__setitem__(m, torch.var_mean(a[0], dim=(0, 2, 3), correction=0))
        )
        for bn in model.modules()
        if isinstance(bn, nn.BatchNorm2d)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for bn, (var, mean) in stats.items():
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    evaluated = pag.class_input_gradients(model.eval(), x)
    torch.testing.assert_close(frozen, evaluated, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(coupled, evaluated, rtol=1e-3)
    # the running statistics untouched by the measurement
    for bn, (var, mean) in stats.items():
        torch.testing.assert_close(bn.running_mean, mean)
        torch.testing.assert_close(bn.running_var, var)


def test_frozen_is_batch_without_batchnorm():
    """A model without BatchNorm computes the same step either way (no extra forward)."""
    torch.manual_seed(0)
    model = models.build_model(
        "small_cnn", (2, 8, 8), 4, torch.tensor([0.4, 0.5]), torch.tensor([0.2, 0.3])
    ).double()
    x, y, targets = batch()
    steps = []
    for mode in ("batch", "frozen"):
        m = copy.deepcopy(model).train()
        out = pag_backward(m, x, y, lambda c: targets[c], 0.5, batchnorm=mode)
        steps.append((out.pag, [p.grad for p in m.parameters()]))
    assert torch.equal(steps[0][0], steps[1][0])
    assert all(torch.equal(a, b) for a, b in zip(steps[0][1], steps[1][1]))
    with pytest.raises(ValueError, match="batchnorm must be one of"):
        pag_backward(model, x, y, lambda c: targets[c], 0.5, batchnorm="running")


def test_stacked_copies_differ_in_train_mode():
    """Why the authors' B x C stacked forward is not used: with BatchNorm in train mode it
    changes the batch statistics, hence the parameter gradients."""
    model = small_cnn().train()
    x, y, targets = batch()
    ref_grads, _ = reference(model, x, y, targets, 1.0, "logit", 1e-8)
    num_classes, b = targets.shape[:2]
    stacked = x.repeat(num_classes, 1, 1, 1).requires_grad_(True)
    cls = torch.arange(num_classes).repeat_interleave(b)
    (g,) = torch.autograd.grad(
        model(stacked).gather(1, cls[:, None]).sum(), stacked, create_graph=True
    )
    pag = (
        cosine_loss(g, targets.reshape(num_classes * b, 2, 8, 8), 1e-8)
        .view(num_classes, b)
        .sum(0)
        .mean()
    )
    total = F.cross_entropy(model(x), y) + pag
    grads = torch.autograd.grad(total, list(model.parameters()))
    assert any(not torch.allclose(a, r, rtol=1e-6) for a, r in zip(grads, ref_grads))


def test_cosine_loss_epsilon():
    v = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    u = torch.tensor([[4.0, 3.0]], dtype=torch.float64)
    # |v||u| = 25 > eps: the plain cosine
    assert cosine_loss(v, u, 1e-8).item() == pytest.approx(1 - 24 / 25)
    # |v||u| = 25 < eps = 100: the denominator is eps
    assert cosine_loss(v, u, 100.0).item() == pytest.approx(1 - 24 / 100)
    # direction only: scaling v changes nothing
    assert cosine_loss(7 * v, u, 1e-8).item() == pytest.approx(1 - 24 / 25)


def test_zero_gradients_give_no_nan():
    v = torch.zeros(3, 5, requires_grad=True)
    u = torch.randn(3, 5)
    loss = cosine_loss(v, u, 1e-8)
    loss.sum().backward()
    assert torch.equal(loss, torch.ones(3))
    assert torch.isfinite(v.grad).all()
    # a zero target too
    v2 = torch.randn(3, 5, requires_grad=True)
    cosine_loss(v2, torch.zeros(3, 5), 1e-8).sum().backward()
    assert torch.isfinite(v2.grad).all()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_model_with_zero_input_gradient(strategy):
    """A network whose output ignores x (all ReLUs dead): loss 1 per class, finite gradients."""
    net = models.MLP(2, 3, hidden=4)
    with torch.no_grad():
        net.fc1.weight.zero_()
        net.fc1.bias.fill_(-1.0)
    model = models.Classifier(net, torch.zeros(2), torch.ones(2))
    x = torch.randn(5, 2)
    out = pag_backward(
        model,
        x,
        torch.zeros(5, dtype=torch.long),
        lambda c: torch.randn(5, 2),
        1.0,
        strategy=strategy,
        batchnorm="batch",
    )
    assert out.pag.item() == pytest.approx(3.0)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_vanilla_is_plain_cross_entropy():
    model = small_cnn().train()
    x, y, _ = batch()
    ref = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    model.zero_grad()
    out = pag_backward(model, x, y, None, 0.0, batchnorm="batch")
    assert out.pag.item() == 0
    for p, r in zip(model.parameters(), ref):
        torch.testing.assert_close(p.grad, r)


def small_resnet18(num_classes=4):
    """ResNet-18's form (BatchNorm, residual blocks with and without projection shortcuts:
    where segmented cuts the graph and replicated groups the statistics), narrow stages."""
    torch.manual_seed(0)
    net = models.ResNet(models.BasicBlock, [2, 2, 2, 2], 2, num_classes, widths=(4, 8, 8, 8))
    return models.Classifier(net, torch.tensor([0.4, 0.5]), torch.tensor([0.2, 0.3])).double()


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_resnet18_every_strategy(strategy, mode):
    model = small_resnet18()
    model.train(mode == "train")
    if mode == "eval":  # running statistics that are not the initial 0 and 1
        with torch.no_grad():
            model.train()(torch.rand(8, 2, 8, 8, dtype=torch.float64))
            model.eval()
    ref_model = copy.deepcopy(model)
    x, y, targets = batch(b=3)
    ref = reference(ref_model, x, y, targets, 0.4, "log_softmax", 1e-8)
    out = pag_backward(
        model,
        x,
        y,
        lambda c: targets[c],
        0.4,
        grad_of="log_softmax",
        strategy=strategy,
        batchnorm="batch",
    )
    assert_same_step(model, out, ref, 0.4, ref_model)


def test_full_width_resnet18_replicated():
    """The paper's ResNet-18 itself (64 to 512 channels), replicated against the reference."""
    torch.manual_seed(0)
    model = (
        models.build_model(
            "resnet18", (2, 8, 8), 4, torch.tensor([0.4, 0.5]), torch.tensor([0.2, 0.3])
        )
        .double()
        .train()
    )
    ref_model = copy.deepcopy(model)
    x, y, targets = batch(b=3)
    ref = reference(ref_model, x, y, targets, 0.4, "logit", 1e-8, classes=[1, 2])
    out = pag_backward(
        model,
        x,
        y,
        lambda c: targets[c],
        0.4,
        strategy="replicated",
        classes=[1, 2],
        batchnorm="batch",
    )
    assert_same_step(model, out, ref, 0.4, ref_model)


def test_replicated_keeps_the_copies_statistics_apart():
    """With the copies' BatchNorm statistics pooled (the authors' stacked batch) the step is not
    the reference's: the grouping is what makes replicated exact."""
    model = small_resnet18().train()
    ref_model = copy.deepcopy(model)
    x, y, targets = batch(b=3)
    ref_grads, _ = reference(ref_model, x, y, targets, 1.0, "logit", 1e-8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pag, "_grouped_batchnorm", lambda *a, **k: contextlib.nullcontext())
        pag_backward(
            model, x, y, lambda c: targets[c], 1.0, strategy="replicated", batchnorm="batch"
        )
    assert any(
        not torch.allclose(p.grad, r, rtol=1e-6) for p, r in zip(model.parameters(), ref_grads)
    )


def test_custom_relu_and_pooling_match_torch():
    from pagrob.models import avg_pool2, relu

    x = torch.randn(3, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(relu(x), F.relu(x))
    torch.testing.assert_close(avg_pool2(x), F.avg_pool2d(x, 2))
    for ours, theirs in ((relu, F.relu), (avg_pool2, lambda t: F.avg_pool2d(t, 2))):
        u = torch.randn_like(theirs(x))
        (g1,) = torch.autograd.grad((ours(x) * u).sum(), x)
        (g2,) = torch.autograd.grad((theirs(x) * u).sum(), x)
        torch.testing.assert_close(g1, g2)
    assert torch.autograd.gradcheck(
        relu, (x[:1, :1, :3, :3].detach().abs().add(0.1).requires_grad_(),)
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_autocast_step(strategy):
    """Mixed precision (bfloat16 autocast; on the CPU here, CUDA in training runs): logits,
    losses and cosine in float32, and the step close to the float32 one."""
    model = small_cnn().float().train()
    ref_model = copy.deepcopy(model)
    x, y, targets = (t.float() if t.is_floating_point() else t for t in batch())
    ref = pag_backward(
        ref_model, x, y, lambda c: targets[c], 0.7, strategy=strategy, batchnorm="batch"
    )
    out = pag_backward(
        model,
        x,
        y,
        lambda c: targets[c],
        0.7,
        strategy=strategy,
        autocast=torch.bfloat16,
        batchnorm="batch",
    )
    assert out.logits.dtype == out.ce.dtype == out.pag.dtype == torch.float32
    assert not torch.equal(out.pag, ref.pag)  # bfloat16 did run
    torch.testing.assert_close(out.ce + 0.7 * out.pag, ref.ce + 0.7 * ref.pag, rtol=1e-2, atol=0)
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    ref_grads = torch.cat([p.grad.flatten() for p in ref_model.parameters()])
    assert torch.linalg.vector_norm(grads - ref_grads) < 0.05 * torch.linalg.vector_norm(ref_grads)


def test_cosine_of_low_precision_gradients_in_float32():
    g = torch.Generator().manual_seed(0)
    v, u = (
        torch.randn(4, 300, generator=g, dtype=torch.float64),
        torch.randn(4, 300, generator=g, dtype=torch.float64),
    )
    low = cosine_loss(v.bfloat16(), u.bfloat16(), 1e-8)
    assert low.dtype == torch.float32
    torch.testing.assert_close(
        low.double(),
        cosine_loss(v.bfloat16().double(), u.bfloat16().double(), 1e-8),
        rtol=1e-6,
        atol=1e-6,
    )
    assert cosine_loss(v, u, 1e-8).dtype == torch.float64  # float64 stays float64

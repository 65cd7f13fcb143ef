"""PGD: results lie in the eps-ball and the input box, targeted attacks raise the target's
probability, exact answers on a linear model, the attack runs in eval mode with frozen parameters
and leaves the model as it was, and the random starts have the stated distributions."""

import pytest
import torch
from torch import nn

from pagrob import models
from pagrob.attacks import Attack, pgd


def cnn():
    torch.manual_seed(0)
    return models.Classifier(
        models.SmallCNN(1, 5, width=4), torch.tensor([0.5]), torch.tensor([0.25])
    )


def images(n=8):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(5, (n,), generator=g)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.8)])
@pytest.mark.parametrize("random_start", [True, False])
@pytest.mark.parametrize("targeted", [True, False])
def test_result_in_ball_and_box(norm, eps, random_start, targeted):
    model = cnn()
    x, y = images()
    # images touching the box edges make the clamp matter
    x[:, :, 0, :] = 0.0
    x[:, :, -1, :] = 1.0
    target = (y + 1) % 5 if targeted else None
    x_adv = pgd(
        model,
        x,
        y,
        Attack(norm, eps, 10, None, random_start),
        target,
        torch.Generator().manual_seed(1),
    )
    delta = (x_adv - x).flatten(1)
    size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps * (1 + 1e-5)).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (size > 0).all()


def test_targeted_attack_raises_target_probability():
    model = cnn().eval()
    x, y = images(16)
    target = (y + 2) % 5
    with torch.no_grad():
        before = model(x).softmax(1).gather(1, target[:, None])
    x_adv = pgd(model, x, y, Attack("l2", 2.0, 20), target, torch.Generator().manual_seed(0))
    with torch.no_grad():
        after = model(x_adv).softmax(1).gather(1, target[:, None])
    assert (after > before).all()


def test_untargeted_attack_lowers_true_class_probability():
    model = cnn().eval()
    x, y = images(16)
    with torch.no_grad():
        before = model(x).softmax(1).gather(1, y[:, None])
    x_adv = pgd(model, x, y, Attack("linf", 0.1, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        after = model(x_adv).softmax(1).gather(1, y[:, None])
    assert (after < before).all()


class Linear2(nn.Module):
    """Two logits: [0, w.x]. For label 0 the cross-entropy grows along +w."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        z = x.flatten(1) @ self.w
        return torch.stack([torch.zeros_like(z), z], 1)


def test_known_answer_on_linear_model():
    w = torch.tensor([0.5, -2.0, 1.0, 0.0])
    model = Linear2(w)
    x = torch.full((1, 4), 0.5)
    y = torch.tensor([0])
    # L-inf: every step moves by sign(w); after clamping, x + eps * sign(w)
    x_adv = pgd(model, x, y, Attack("linf", 0.1, 5, step_size=0.05, random_start=False))
    torch.testing.assert_close(x_adv, x + 0.1 * w.sign())
    # L2: steps along w / |w| until the ball's edge: x + eps * w / |w|
    x_adv = pgd(model, x, y, Attack("l2", 0.2, 5, step_size=0.1, random_start=False))
    torch.testing.assert_close(x_adv, x + 0.2 * w / w.norm())
    # targeted towards class 0 on an image of class 1 moves along -w
    x_adv = pgd(
        model, x, torch.tensor([1]), Attack("l2", 0.2, 5, 0.1, False), target=torch.tensor([0])
    )
    torch.testing.assert_close(x_adv, x - 0.2 * w / w.norm())


def test_unbounded_domain_for_toy_data():
    model = Linear2(torch.tensor([0.01, 0.02]))
    x = torch.tensor([[-50.0, -100.0]])
    x_adv = pgd(model, x, torch.tensor([0]), Attack("l2", 15.0, 10, 2.0, False, bounds=None))
    torch.testing.assert_close(x_adv, x + 15.0 * torch.tensor([1.0, 2.0]) / 5**0.5)


def bn_model():
    """A small CNN with BatchNorm: in train mode its forward pass updates the running statistics."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 5),
    )
    return models.Classifier(net, torch.tensor([0.5]), torch.tensor([0.25]))


def watch_forward(model):
    """Records, at every forward pass, the modules in train mode and the parameters requiring grad."""
    seen = []

    def hook(module, args, output):
        seen.append(
            (
                [name for name, m in model.named_modules() if m.training],
                [name for name, p in model.named_parameters() if p.requires_grad],
            )
        )

    model.register_forward_hook(hook)
    return seen


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_attack_runs_in_eval_mode_with_frozen_parameters(norm, targeted):
    model = bn_model().train()
    model.net[0].weight.requires_grad_(False)  # a parameter frozen by the caller stays frozen
    x, y = images()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert any(k.endswith("num_batches_tracked") for k in state)
    seen = watch_forward(model)
    eps = 0.05 if norm == "linf" else 0.5
    pgd(
        model,
        x,
        y,
        Attack(norm, eps, 3),
        (y + 1) % 5 if targeted else None,
        torch.Generator().manual_seed(0),
    )
    # inside the attack: every module in eval mode, no parameter requiring grad
    assert len(seen) == 3
    assert all(training == [] and grads == [] for training, grads in seen), seen
    # BatchNorm's running mean and variance and num_batches_tracked (and the weights) untouched
    after = model.state_dict()
    for k, v in state.items():
        assert torch.equal(v, after[k]), k
    # the caller's mode and requires_grad flags restored; no .grad filled
    assert all(m.training for m in model.modules())
    assert not model.net[0].weight.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "net.0.weight")
    assert all(p.grad is None for p in model.parameters())


def test_model_in_eval_mode_stays_in_eval_mode():
    model = bn_model().eval()
    x, y = images()
    pgd(model, x, y, Attack("l2", 0.5, 2), generator=torch.Generator().manual_seed(0))
    assert not any(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_model_state_restored_when_the_attack_fails():
    model = bn_model().train()
    x, y = images()
    with pytest.raises(IndexError):
        pgd(model, x, y + 10, Attack("linf", 0.05, 2))  # labels out of range: cross_entropy raises
    assert model.training and all(p.requires_grad for p in model.parameters())


# --- Random starts -------------------------------------------------------------------------------


def start(norm, eps, shape, n=20000, seed=0):
    """The random starts alone: PGD with 0 steps in an unbounded domain."""
    x = torch.zeros(n, *shape)
    attack = Attack(norm, eps, 0, random_start=True, bounds=None)
    return pgd(
        nn.Identity(),
        x,
        torch.zeros(n, dtype=torch.long),
        attack,
        generator=torch.Generator().manual_seed(seed),
    )


def ks_to_uniform(u: torch.Tensor) -> float:
    """Kolmogorov-Smirnov distance between the empirical CDF of ``u`` and U(0, 1)."""
    u = u.double().sort().values
    n = len(u)
    upper = torch.arange(1, n + 1, dtype=torch.float64) / n
    lower = torch.arange(0, n, dtype=torch.float64) / n
    return max((upper - u).max().item(), (u - lower).max().item())


@pytest.mark.parametrize("shape", [(3,), (1, 4, 4)], ids=["d=3", "d=16"])
def test_l2_random_start_is_uniform_in_the_ball(shape):
    eps, n = 0.7, 20000
    delta = start("l2", eps, shape, n).flatten(1).double()
    d = delta.shape[1]
    norm = delta.norm(dim=1)
    assert (norm <= eps * (1 + 1e-6)).all()
    # uniform in the ball: P(|delta| <= r) = (r / eps)^d, so (|delta| / eps)^d is U(0, 1)
    # (the KS distance of 20000 true uniforms exceeds 0.02 with probability 2 exp(-2 n 0.02^2) < 1e-6;
    # without the d-th root, r = eps * U, it is 0.38 for d = 3)
    assert ks_to_uniform((norm / eps) ** d) < 0.02
    # isotropic directions: mean direction 0, second moment I / d
    u = delta / norm[:, None]
    assert u.mean(0).abs().max() < 5 / (d * n) ** 0.5
    torch.testing.assert_close(
        u.T @ u / n, torch.eye(d, dtype=torch.float64) / d, atol=0.03 / d**0.5, rtol=0
    )


def test_linf_random_start_is_uniform_in_the_cube():
    eps, n = 0.1, 5000
    delta = start("linf", eps, (1, 2, 2), n).flatten(1)
    assert delta.abs().max() <= eps
    for j in range(delta.shape[1]):  # each coordinate U(-eps, eps)
        assert ks_to_uniform((delta[:, j] / eps + 1) / 2) < 0.035  # P(exceeded) < 1e-5
    assert delta.mean(0).abs().max() < 5 * eps / (3 * n) ** 0.5
    # independent coordinates
    corr = torch.corrcoef(delta.T)
    assert (corr - torch.eye(4)).abs().max() < 0.06


def test_step_size_default_is_two_eps_over_k():
    assert Attack("linf", 0.031, 20).alpha == pytest.approx(2 * 0.031 / 20)
    with pytest.raises(ValueError, match="norm"):
        Attack("l1", 0.1, 10)

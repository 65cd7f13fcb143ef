"""PGD: results lie in the eps-ball and the input box, targeted attacks raise the target's
probability, exact answers on a linear model, and the model is left as it was."""

import pytest
import torch
from torch import nn

from pagrob import models
from pagrob.attacks import Attack, pgd


def cnn():
    torch.manual_seed(0)
    return models.Classifier(models.SmallCNN(1, 5, width=4), torch.tensor([0.5]), torch.tensor([0.25]))


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
    x_adv = pgd(model, x, y, Attack(norm, eps, 10, None, random_start), target, torch.Generator().manual_seed(1))
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
    x_adv = pgd(model, x, torch.tensor([1]), Attack("l2", 0.2, 5, 0.1, False), target=torch.tensor([0]))
    torch.testing.assert_close(x_adv, x - 0.2 * w / w.norm())


def test_unbounded_domain_for_toy_data():
    model = Linear2(torch.tensor([0.01, 0.02]))
    x = torch.tensor([[-50.0, -100.0]])
    x_adv = pgd(model, x, torch.tensor([0]), Attack("l2", 15.0, 10, 2.0, False, bounds=None))
    torch.testing.assert_close(x_adv, x + 15.0 * torch.tensor([1.0, 2.0]) / 5**0.5)


def test_model_state_restored_and_parameters_untouched():
    model = cnn().train()
    x, y = images()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    pgd(model, x, y, Attack("linf", 0.05, 3), generator=torch.Generator().manual_seed(0))
    assert model.training
    # eval mode during the attack: BatchNorm running statistics unchanged
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_step_size_default_is_two_eps_over_k():
    assert Attack("linf", 0.031, 20).alpha == pytest.approx(2 * 0.031 / 20)
    with pytest.raises(ValueError, match="norm"):
        Attack("l1", 0.1, 10)

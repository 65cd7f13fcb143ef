"""Robust teachers (RIGD): adversarial training helps, teacher targets are the teacher's
input-gradients, and foreign checkpoints import safely or fail with a clear error."""

import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from pagrob import models, sources
from pagrob.attacks import Attack
from pagrob.data import make_toy
from pagrob.datasets import load_digits
from pagrob.evaluate import robust_accuracy
from pagrob.train import TrainSettings, fit


def test_adversarial_training_raises_pgd_accuracy(tmp_path):
    ds = load_digits(0.3, seed=0)
    keep = ds.y_train < 4  # a tiny 4-class problem
    ds.x_train, ds.y_train = ds.x_train[keep], ds.y_train[keep]
    test = ds.y_test < 4
    x_test, y_test = ds.x_test[test], ds.y_test[test]
    ds.classes = ds.classes[:4]
    attack = Attack("linf", 0.15, 10)
    accuracy = {}
    for name, adversarial in (
        ("vanilla", None),
        ("madry", {"norm": "linf", "eps": 0.15, "steps": 5, "step_size": 0.06}),
    ):
        torch.manual_seed(0)
        model = models.build_model("small_cnn", (1, 8, 8), 4, ds.mean, ds.std)
        s = TrainSettings(epochs=6, batch_size=32, lr=0.05, seed=0, adversarial=adversarial)
        fit(model, ds, None, s, tmp_path / f"{name}.pt", log=lambda m: None)
        accuracy[name] = robust_accuracy(model, x_test, y_test, attack, 500)
    assert accuracy["madry"] > accuracy["vanilla"] + 20, accuracy


@pytest.mark.parametrize("grad_of", ["logit", "log_softmax"])
def test_teacher_targets_are_teacher_input_gradients(grad_of):
    torch.manual_seed(0)
    teacher = models.build_model(
        "resnet18", (3, 8, 8), 5, torch.full((3,), 0.5), torch.full((3,), 0.25)
    ).train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    x = torch.rand(4, 3, 8, 8)
    targets = sources.TeacherGradients(teacher, grad_of).for_batch(x, torch.arange(4), None)
    assert teacher.training  # left as it was
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())  # eval-mode BN
    teacher.eval()
    for c in range(5):
        xg = x.clone().requires_grad_(True)
        out = teacher(xg)
        score = out if grad_of == "logit" else out.log_softmax(1)
        (expected,) = torch.autograd.grad(score[:, c].sum(), xg)
        torch.testing.assert_close(targets(c), expected)


def madrylab_checkpoint(model):
    """A checkpoint laid out as MadryLab's robustness library saves it."""
    sd = {}
    for k, v in model.net.state_dict().items():
        sd[f"module.model.{k}"] = v.clone()
        sd[f"module.attacker.model.{k}"] = v.clone()
    for prefix in ("module.normalizer", "module.attacker.normalize"):
        sd[f"{prefix}.new_mean"] = model.normalize.mean.view(3, 1, 1).clone()
        sd[f"{prefix}.new_std"] = model.normalize.std.view(3, 1, 1).clone()
    return {
        "model": sd,
        "optimizer": {"state": {}, "param_groups": []},
        "schedule": None,
        "epoch": 150,
    }


MEAN, STD = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2023, 0.1994, 0.2010])


def test_madrylab_checkpoint_imports_with_its_normalisation():
    torch.manual_seed(0)
    original = models.build_model("resnet50", (3, 32, 32), 10, MEAN, STD).eval()
    imported = models.import_state_dict(
        madrylab_checkpoint(original), "resnet50", (3, 32, 32), 10, MEAN, STD, "ckpt"
    ).eval()
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(imported(x), original(x))


def test_checkpoint_of_another_architecture_names_the_keys():
    torch.manual_seed(0)
    resnet18 = models.build_model("resnet18", (3, 32, 32), 10, MEAN, STD)
    with pytest.raises(ValueError) as e:
        models.import_state_dict(
            madrylab_checkpoint(resnet18),
            "resnet50",
            (3, 32, 32),
            10,
            MEAN,
            STD,
            "teacher checkpoint x.pt",
        )
    message = str(e.value)
    assert "teacher checkpoint x.pt does not fit architecture 'resnet50'" in message
    assert "missing keys [net.layer1.0.bn3.bias" in message and "(+" in message
    assert "shape mismatches [net.layer1.0.conv1.weight" in message


def test_unexpected_key_and_wrong_normalisation():
    torch.manual_seed(0)
    model = models.build_model("resnet18", (3, 32, 32), 10, MEAN, STD)
    ckpt = madrylab_checkpoint(model)
    ckpt["model"]["module.model.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected keys \[net.extra.weight\]"):
        models.import_state_dict(ckpt, "resnet18", (3, 32, 32), 10, MEAN, STD, "ckpt")
    with pytest.raises(ValueError, match=r"normalises with mean .* but the config declares"):
        models.import_state_dict(
            madrylab_checkpoint(model), "resnet18", (3, 32, 32), 10, torch.zeros(3), STD, "ckpt"
        )


def test_not_a_state_dict():
    with pytest.raises(ValueError, match="is not a state dict"):
        models.import_state_dict(
            {"epoch": 3, "model": [1, 2]}, "resnet18", (3, 32, 32), 10, MEAN, STD, "ckpt"
        )


def import_teacher(tmp_path, checkpoint):
    """Run the teacher step importing ``checkpoint`` as an MLP teacher on a small toy set."""
    from pagrob.data import save_prepared

    save_prepared(make_toy([[-50, -10, 30], [-30, 10, 50]], 10, 6, seed=0), tmp_path / "data.pt")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pagrob.steps.teacher",
            "--data",
            str(tmp_path / "data.pt"),
            "--norm",
            "l2",
            "--seed",
            "0",
            "--import-state-dict",
            str(checkpoint),
            "--import-arch",
            "mlp",
            "--import-mean",
            "0 0",
            "--import-std",
            "1 1",
            "--out",
            str(tmp_path / "t.pt"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_pickled_module_is_refused_not_executed(tmp_path):
    """A whole pickled nn.Module (not a state dict) is refused by the step: weights_only=True."""
    torch.save(models.MLP(2, 2), tmp_path / "module.pt")  # pickles the class
    proc = import_teacher(tmp_path, tmp_path / "module.pt")
    assert proc.returncode == 2, proc.stderr
    assert "cannot be read safely" in proc.stderr and "pickles a Python object" in proc.stderr
    assert not (tmp_path / "t.pt").exists()


def test_imported_teacher_step_writes_a_model_file(tmp_path):
    torch.manual_seed(0)
    mlp = models.MLP(2, 2)
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in mlp.state_dict().items()}}, tmp_path / "sd.pt"
    )
    proc = import_teacher(tmp_path, tmp_path / "sd.pt")
    assert proc.returncode == 0, proc.stderr
    model, meta = models.load_model(tmp_path / "t.pt")
    assert meta["source"] == "teacher_l2" and meta["imported_from"].endswith("sd.pt")
    x = torch.randn(3, 2)
    torch.testing.assert_close(model(x), mlp(x))

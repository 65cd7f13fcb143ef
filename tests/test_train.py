"""Training: resuming from a checkpoint gives the same weights as an uninterrupted run, a
checkpoint of other settings is refused, and a diverging run stops with the epoch and batch."""

import pytest
import torch

from pagrob import models, sources
from pagrob.data import make_toy
from pagrob.train import TrainSettings, TrainingDiverged, fit


@pytest.fixture(scope="module")
def toy():
    return make_toy([[-50, -10, 30], [-30, 10, 50]], n_per_mode=100, n_test=60, seed=0)


def nn_source(ds):
    built = sources.build("nearest_neighbor", ds, seed=0, nn_sample_size=20)
    return sources.NearestNeighbors(ds.x_train, built["nn_index"])


def new_model(ds, seed=0):
    torch.manual_seed(seed)
    return models.build_model("mlp", ds.input_shape, ds.num_classes, ds.mean, ds.std)


SETTINGS = dict(epochs=4, batch_size=32, optimizer="adam", lr=0.01, lam=1.0, seed=3)


class Interrupt(Exception):
    pass


def test_resume_gives_identical_weights(toy, tmp_path):
    s = TrainSettings(**SETTINGS)
    straight = new_model(toy)
    fit(straight, toy, nn_source(toy), s, tmp_path / "a.pt", log=lambda m: None)

    def stop_after_two(message):
        if message.startswith("epoch 3/"):
            raise Interrupt

    interrupted = new_model(toy)
    with pytest.raises(Interrupt):
        fit(interrupted, toy, nn_source(toy), s, tmp_path / "b.pt", log=stop_after_two)
    resumed = new_model(toy, seed=99)  # a fresh process would build a new model
    messages = []
    history = fit(resumed, toy, nn_source(toy), s, tmp_path / "b.pt", log=messages.append)
    assert messages[0].startswith("resumed from")
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_of_other_settings_is_refused(toy, tmp_path):
    fit(new_model(toy), toy, nn_source(toy), TrainSettings(**SETTINGS), tmp_path / "c.pt", log=lambda m: None)
    other = TrainSettings(**(SETTINGS | {"lam": 0.5, "epochs": 5}))
    with pytest.raises(ValueError, match=r"other settings .*'lam': \(1.0, 0.5\)"):
        fit(new_model(toy), toy, nn_source(toy), other, tmp_path / "c.pt", log=lambda m: None)


class NaNTargets(sources.TargetSource):
    def __init__(self, bad_batch):
        self.calls = 0
        self.bad_batch = bad_batch

    def for_batch(self, x, index, aug):
        self.calls += 1
        bad = self.calls == self.bad_batch
        return lambda c: torch.full_like(x, float("nan")) if bad else torch.ones_like(x)


def test_divergence_names_epoch_and_batch_and_keeps_checkpoint(toy, tmp_path):
    s = TrainSettings(**SETTINGS)
    steps = len(toy.x_train) // s.batch_size  # 18 per epoch
    ckpt = tmp_path / "d.pt"
    with pytest.raises(TrainingDiverged, match=r"epoch 2, batch 5/18"):
        fit(new_model(toy), toy, NaNTargets(steps + 5), s, ckpt, log=lambda m: None)
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_learning_rate_schedule():
    s = TrainSettings(epochs=100, batch_size=64, lr=0.01, milestones=[50, 75], gamma=0.1)
    assert s.lr_at(1) == pytest.approx(0.01)
    assert s.lr_at(49) == pytest.approx(0.01)
    assert s.lr_at(50) == pytest.approx(0.001)
    assert s.lr_at(75) == pytest.approx(0.0001)


def test_resume_with_augmentation_on_images(tmp_path):
    """The same on images, with crop + flip and nearest-neighbour targets: resuming from an
    interrupted run ends with exactly the weights of an uninterrupted one (CPU)."""
    from pagrob.data import Dataset

    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 8, 8, generator=g)
    y = torch.arange(96) % 4
    ds = Dataset("img", x, y, x[:8], y[:8], list("abcd"), torch.tensor([0.5]), torch.tensor([0.3]))
    built = sources.build("nearest_neighbor", ds, seed=0, nn_sample_size=8)
    source = sources.NearestNeighbors(x, built["nn_index"])
    s = TrainSettings(epochs=3, batch_size=16, lr=0.05, lam=0.5, crop_padding=1, flip=True,
                      milestones=[2], seed=1, weight_decay=1e-4)

    def cnn(seed):
        torch.manual_seed(seed)
        return models.build_model("small_cnn", (1, 8, 8), 4, ds.mean, ds.std)

    straight = cnn(0)
    fit(straight, ds, source, s, tmp_path / "a.pt", log=lambda m: None)
    interrupted = cnn(0)

    def stop(message):
        if message.startswith("epoch 2/"):
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(interrupted, ds, source, s, tmp_path / "b.pt", log=stop)
    resumed = cnn(5)
    fit(resumed, ds, source, s, tmp_path / "b.pt", log=lambda m: None)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)

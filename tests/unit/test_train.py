"""Training: resuming from a checkpoint gives the same weights as an uninterrupted run, a
checkpoint of other settings is refused, a diverging run stops with the epoch and batch, the
target source sees the augmented batch, the learning-rate schedule reaches the optimiser,
``strategy: auto`` changes nothing but the speed, and the strategy default is defined once."""

import argparse
import json

import pytest
import torch

from pagrob import models, pag, sources, train
from pagrob.data import Dataset, make_toy
from pagrob.train import TrainingDiverged, TrainSettings, fit


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
    fit(
        new_model(toy),
        toy,
        nn_source(toy),
        TrainSettings(**SETTINGS),
        tmp_path / "c.pt",
        log=lambda m: None,
    )
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


def image_ds(n=96):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = torch.arange(n) % 4
    return Dataset(
        "img", x, y, x[:8], y[:8], list("abcd"), torch.tensor([0.5]), torch.tensor([0.3])
    )


def image_nn_source(ds):
    built = sources.build("nearest_neighbor", ds, seed=0, nn_sample_size=8)
    return sources.NearestNeighbors(ds.x_train, built["nn_index"])


def cnn(ds, seed=0):
    torch.manual_seed(seed)
    return models.build_model("small_cnn", (1, 8, 8), 4, ds.mean, ds.std)


def equal_weights(a, b) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))


RESUMED_RUNS = {
    "pag, crop, flip, class subsets": dict(lam=0.5, crop_padding=1, flip=True, classes_per_step=2),
    "madry adversarial training": dict(
        adversarial={"norm": "l2", "eps": 0.5, "steps": 2}, flip=True
    ),
}


@pytest.mark.parametrize("run", RESUMED_RUNS)
def test_resume_on_images(tmp_path, run):
    """The same on images, with everything an epoch draws (batch order, crops and flips, target
    classes, PGD starts): resuming an interrupted run ends with exactly the weights of an
    uninterrupted one (CPU)."""
    ds = image_ds()
    source = image_nn_source(ds) if RESUMED_RUNS[run].get("lam") else None
    s = TrainSettings(
        epochs=3,
        batch_size=16,
        lr=0.05,
        milestones=[2],
        seed=1,
        weight_decay=1e-4,
        **RESUMED_RUNS[run],
    )
    straight = cnn(ds, 0)
    fit(straight, ds, source, s, tmp_path / "a.pt", log=lambda m: None)
    again = cnn(ds, 0)
    fit(again, ds, source, s, tmp_path / "again.pt", log=lambda m: None)
    assert equal_weights(straight, again)  # same seed, same weights

    def stop(message):
        if message.startswith("epoch 2/"):
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(cnn(ds, 0), ds, source, s, tmp_path / "b.pt", log=stop)
    resumed = cnn(ds, 5)
    fit(resumed, ds, source, s, tmp_path / "b.pt", log=lambda m: None)
    assert equal_weights(straight, resumed)


class Spy(sources.TargetSource):
    """Records what fit hands to the target source, then delegates."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def for_batch(self, x, index, aug):
        self.calls.append((x.clone(), index.clone(), aug))
        return self.inner.for_batch(x, index, aug)


def test_targets_follow_the_augmented_batch(tmp_path):
    """for_batch(x, index, aug) gets the batch as the student sees it (augmented) and the very
    draw that augmented it, so that a representative can follow its image through it."""
    ds = image_ds(64)
    spy = Spy(image_nn_source(ds))
    s = TrainSettings(epochs=1, batch_size=16, lam=0.5, crop_padding=1, flip=True, seed=2)
    fit(cnn(ds), ds, spy, s, tmp_path / "a.pt", log=lambda m: None)
    assert len(spy.calls) == 4
    for x, index, aug in spy.calls:
        assert aug is not None
        assert torch.equal(x, aug(ds.x_train[index]))
        assert not torch.equal(x, ds.x_train[index])


def test_learning_rate_schedule_reaches_the_optimiser(tmp_path, monkeypatch):
    """The rate each optimiser step uses (read from its param_groups), through a resume."""
    seen = []

    def recording_optimizer(model, s):
        opt = make_optimizer(model, s)
        opt.register_step_pre_hook(lambda opt, args, kwargs: seen.append(opt.param_groups[0]["lr"]))
        return opt

    make_optimizer = train.make_optimizer
    monkeypatch.setattr(train, "make_optimizer", recording_optimizer)
    ds = image_ds(64)
    s = TrainSettings(epochs=4, batch_size=16, lr=0.1, gamma=0.5, milestones=[2, 3], seed=0)

    def stop(message):
        if message.startswith("epoch 2/"):
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(cnn(ds), ds, None, s, tmp_path / "a.pt", log=stop)
    fit(cnn(ds), ds, None, s, tmp_path / "a.pt", log=lambda m: None)  # resumes after epoch 1
    epochs = [1, 2] + [2, 3, 4]
    assert seen == pytest.approx([s.lr_at(e) for e in epochs for _ in range(4)])
    assert s.lr_at(2) == pytest.approx(0.05) and s.lr_at(3) == pytest.approx(0.025)


def test_divergence_is_found_within_check_every_batches(toy, tmp_path, monkeypatch):
    """The flag is read every CHECK_EVERY batches: the run stops there, not at the epoch's end,
    naming the batch where it happened."""
    monkeypatch.setattr(train, "CHECK_EVERY", 3)
    s = TrainSettings(**SETTINGS)
    source = NaNTargets(5)
    with pytest.raises(
        TrainingDiverged, match=r"epoch 1, batch 5/18 .*found at the check after batch 6"
    ):
        fit(new_model(toy), toy, source, s, tmp_path / "d.pt", log=lambda m: None)
    assert source.calls == 6


def test_amp_is_refused_on_the_cpu(toy, tmp_path):
    with pytest.raises(ValueError, match="amp .* CUDA"):
        fit(
            new_model(toy),
            toy,
            None,
            TrainSettings(**(SETTINGS | {"amp": True})),
            tmp_path / "a.pt",
            log=lambda m: None,
        )


def test_channels_last_trains_the_same_model(tmp_path):
    """channels_last changes the memory layout only (the same weights up to rounding)."""
    ds = image_ds(64)
    s = TrainSettings(epochs=1, batch_size=16, lam=0.5, seed=0)
    plain, last = cnn(ds), cnn(ds)
    fit(plain, ds, image_nn_source(ds), s, tmp_path / "a.pt", log=lambda m: None)
    fit(
        last,
        ds,
        image_nn_source(ds),
        TrainSettings(**(vars(s) | {"channels_last": True})),
        tmp_path / "b.pt",
        log=lambda m: None,
    )
    assert last.net.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(plain.parameters(), last.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_auto_strategy_is_recorded_and_changes_nothing(tmp_path, capsys):
    """auto times every exact strategy on the real model and batches, restores everything, keeps
    the fastest, records request and choice apart (settings: auto; strategy_used: the choice),
    and trains exactly the weights of a run with the choice fixed; a resumed run goes on with
    the recorded choice (no new probe, no refusal of its settings)."""
    from pagrob.steps.train import train_and_save

    ds = image_ds(64)
    source = image_nn_source(ds)
    s = TrainSettings(epochs=2, batch_size=16, lr=0.05, lam=0.5, crop_padding=1, flip=True, seed=4)
    auto = TrainSettings(**(vars(s) | {"strategy": "auto"}))
    messages = []

    def stop(message):
        messages.append(message)
        if message.startswith("epoch 2/"):
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(cnn(ds), ds, source, auto, tmp_path / "m.checkpoint.pt", log=stop)
    probe = [m for m in messages if m.startswith("strategy auto:")]
    assert len(probe) == 1 and all(name in probe[0] for name in pag.STRATEGIES), messages
    chosen = probe[0].rsplit("chose ", 1)[1]
    assert chosen in pag.STRATEGIES
    record = torch.load(tmp_path / "m.checkpoint.pt", weights_only=True)["strategy"]
    assert record["requested"] == "auto" and record["chosen"] == chosen
    assert set(record["seconds_per_step"]) == set(pag.STRATEGIES)
    # the choice is part of the result, and the log and record say so
    assert f"set pag.strategy: {chosen} to reproduce" in record["note"]
    assert any("is part of this result" in m for m in messages)

    # the train step resumes it and writes the model file
    capsys.readouterr()
    args = argparse.Namespace(
        out=str(tmp_path / "m.pt"), checkpoint=None, seed=4, arch="small_cnn", data=None
    )
    train_and_save(args, ds, auto, source, "cpu", source="nearest_neighbor")
    log = capsys.readouterr().out
    assert "resumed from" in log and "strategy auto:" not in log
    info = json.loads((tmp_path / "m.json").read_text())
    assert info["settings"]["strategy"] == "auto" and info["strategy_used"] == chosen
    assert f"pag.strategy: {chosen}" in info["strategy_note"]
    assert [h["strategy"] for h in info["history"]] == [chosen, chosen]

    fixed = cnn(ds)
    fit(
        fixed,
        ds,
        source,
        TrainSettings(**(vars(s) | {"strategy": chosen})),
        tmp_path / "f.pt",
        log=lambda m: None,
    )
    assert equal_weights(fixed, models.load_model(tmp_path / "m.pt")[0])


def test_strategy_default_is_defined_once():
    assert pag.DEFAULT_STRATEGY in pag.STRATEGIES
    assert TrainSettings(epochs=1, batch_size=1).strategy == pag.DEFAULT_STRATEGY
    s = TrainSettings.from_config({"epochs": 1, "batch_size": 1}, {}, lam=0, seed=0)
    assert s.strategy == pag.DEFAULT_STRATEGY
    assert set(pag.STRATEGY_CHOICES) == set(pag.STRATEGIES) | {"auto"}
    with pytest.raises(ValueError, match="strategy must be one of"):
        TrainSettings(epochs=1, batch_size=1, strategy="fastest")

"""pag_variant: ``authors`` (the released training script's) beside ``follow`` (ours).

authors: the CE on one view of the batch, the PAG input-gradient with respect to the
un-augmented batch through a second view, each view ONE crop and flip per step shared by the
batch, against un-augmented targets. The step equals that computation written out with
autograd in float64 for every strategy; follow draws exactly what it drew before the variants
existed."""

import copy

import pytest
import torch
import torch.nn.functional as F
from test_pag import small_cnn as bn_cnn  # convolutions with BatchNorm, float64

from conftest import settings_json
from pagrob import io, models, sources, train
from pagrob.data import CropFlip, Dataset
from pagrob.pag import STRATEGIES, cosine_loss
from pagrob.train import (
    AUTHORS,
    FOLLOW,
    EpochDraws,
    TrainSettings,
    epoch_generator,
    fit,
    train_step,
)


class Stored(sources.TargetSource):
    """Fixed targets per training image and class, following ``aug`` when given (as the file
    and nearest-neighbour sources do); records what it was handed."""

    def __init__(self, targets):
        self.targets, self.calls = targets, []

    def for_batch(self, x, index, aug):
        self.calls.append((x.detach().clone(), index.clone(), aug))
        return lambda c: aug(self.targets[index, c]) if aug is not None else self.targets[index, c]


def data(n=12, num_classes=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 2, 8, 8, generator=g, dtype=dtype)
    y = torch.arange(n) % num_classes
    targets = torch.randn(n, num_classes, 2, 8, 8, generator=g, dtype=dtype)
    return x, y, targets


SETTINGS = dict(
    epochs=1, batch_size=6, lam=0.7, crop_padding=1, flip=True, grad_of="log_softmax", seed=0
)


def authors_batch(x, y, classes_per_step=None):
    """Step 0 of an authors epoch, its two views checked to be real and different."""
    # the batch's summed score through its BatchNorm statistics, as the authors' code takes it
    # (``direct`` computes that; pag.batchnorm's other reading is test_pag.py's)
    s = TrainSettings(
        **SETTINGS, pag_variant=AUTHORS, classes_per_step=classes_per_step, batchnorm="batch"
    )
    draws = EpochDraws.draw(s, 1, len(x), x.shape[1:], 4, len(x) // s.batch_size, None, "cpu")
    batch = draws.batch(0, x, y)
    ce, view = batch.aug, batch.view
    assert len(ce.dy) == len(view.dy) == 1  # one draw per view and step
    drawn = lambda a: (int(a.dy), int(a.dx), bool(a.flip))  # noqa: E731
    assert drawn(ce) != drawn(view) and (1, 1, False) not in (drawn(ce), drawn(view))
    return s, batch


def direct(model, batch, targets, lam, grad_of, classes):
    """sum_c mean_b cosine_loss(grad_x0 s(model(aug2(x0)))[:, c].sum(), target_c(x0)) * C/k
    + CE(model(aug1(x0))), written out with one autograd.grad per class; its parameter
    gradients and value. The PAG forward first, then the CE's (as the strategies do), so that
    the BatchNorm running statistics end up the same too."""
    x0 = batch.x.clone().requires_grad_(True)
    logits = model(batch.view(x0))
    scores = logits if grad_of == "logit" else logits.log_softmax(1)
    num_classes = logits.shape[1]
    classes = range(num_classes) if classes is None else classes
    total = F.cross_entropy(model(batch.aug(batch.x)), batch.y)
    for c in classes:
        (g,) = torch.autograd.grad(scores[:, c].sum(), x0, create_graph=True)
        total = (
            total
            + lam
            * num_classes
            / len(classes)
            * cosine_loss(g, targets[batch.index, c], 1e-8).mean()
        )
    return torch.autograd.grad(total, list(model.parameters())), total.detach()


@pytest.mark.parametrize("classes_per_step", [None, 2])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_authors_step_equals_the_direct_computation(strategy, classes_per_step):
    """train_step in the authors' variant: loss, parameter gradients and BatchNorm buffers equal
    the per-class autograd computation through the SAME crop and flip (float64)."""
    x, y, targets = data()
    s, batch = authors_batch(x, y, classes_per_step)
    model = bn_cnn().train()
    ref_model = copy.deepcopy(model)
    ref_grads, ref_loss = direct(ref_model, batch, targets, s.lam, s.grad_of, batch.classes)
    source = Stored(targets)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the step leaves .grad, changes nothing
    out = train_step(model, opt, batch, source, s, None, strategy)
    torch.testing.assert_close(out.ce + s.lam * out.pag, ref_loss, rtol=1e-10, atol=1e-12)
    for p, r in zip(model.parameters(), ref_grads):
        torch.testing.assert_close(p.grad, r, rtol=1e-9, atol=1e-11)
    for (name, b), r in zip(model.named_buffers(), ref_model.buffers()):
        torch.testing.assert_close(b, r, rtol=1e-12, atol=1e-14, msg=f"buffer {name}")
    # the targets were asked for the un-augmented batch, without a draw to follow
    ((seen, index, aug),) = source.calls
    assert aug is None and torch.equal(seen, batch.x) and torch.equal(index, batch.index)
    with torch.no_grad():  # the logits returned (accuracy) are the CE view's
        torch.testing.assert_close(
            out.logits, copy.deepcopy(ref_model)(batch.aug(batch.x)), rtol=1e-9, atol=1e-9
        )


def test_authors_draws_one_crop_and_flip_per_view_and_step(tmp_path):
    """An authors epoch: every forward the model sees is the step's batch under ONE crop and
    flip (all images alike), the CE's view and the PAG term's view are different draws, and the
    draws vary from step to step."""
    x, y, targets = data(n=48, dtype=torch.float32)
    ds = Dataset(
        "img", x, y, x[:8], y[:8], list("abcd"), torch.tensor([0.4, 0.5]), torch.tensor([0.2, 0.3])
    )
    s = TrainSettings(
        **(SETTINGS | {"batch_size": 8, "crop_padding": 2}), pag_variant=AUTHORS, strategy="loop"
    )
    steps = len(x) // s.batch_size
    draws = EpochDraws.draw(s, 1, len(x), x.shape[1:], 4, steps, None, "cpu")
    assert len(draws.aug.dy) == len(draws.view.dy) == steps
    views = {
        (int(a.dy[b]), int(a.dx[b]), bool(a.flip[b]))
        for a in (draws.aug, draws.view)
        for b in range(steps)
    }
    assert len(views) > 3  # not one draw for the whole epoch
    assert any(
        (draws.aug.dy[b], draws.aug.dx[b], draws.aug.flip[b])
        != (draws.view.dy[b], draws.view.dx[b], draws.view.flip[b])
        for b in range(steps)
    )

    torch.manual_seed(0)
    model = models.build_model("small_cnn", (2, 8, 8), 4, ds.mean, ds.std)
    inputs = []
    model.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach().clone()))
    source = Stored(targets.float())
    fit(model, ds, source, s, tmp_path / "a.pt", log=lambda m: None)
    assert len(inputs) == 2 * steps  # loop: the PAG view's forward, then the CE view's
    for b in range(steps):
        x0 = x[draws.order[b * s.batch_size : (b + 1) * s.batch_size]]
        pag_in, ce_in = inputs[2 * b], inputs[2 * b + 1]
        for seen, a in ((pag_in, draws.view), (ce_in, draws.aug)):
            dy, dx, flip = int(a.dy[b]), int(a.dx[b]), bool(a.flip[b])
            crop = F.pad(x0, (2, 2, 2, 2))[:, :, dy : dy + 8, dx : dx + 8]  # one crop for all
            assert torch.equal(seen, crop.flip(3) if flip else crop), b
        seen_x, index, aug = source.calls[b]
        assert aug is None and torch.equal(seen_x, x0)  # un-augmented targets


def test_follow_draws_as_before():
    """follow's draws come from the epoch generator in the order they always did (batch order,
    a crop and flip per image, class subsets, attack starts), so existing runs are reproduced
    bit for bit (tests/test_train.py checks that runs and resumed runs agree)."""
    s = TrainSettings(epochs=1, batch_size=8, crop_padding=2, flip=True, classes_per_step=2, seed=5)
    draws = EpochDraws.draw(s, 3, 40, (1, 8, 8), 4, 5, None, "cpu")
    g = epoch_generator(5, 3)
    order = torch.randperm(40, generator=g)[:40]
    aug = CropFlip.sample(40, 2, True, g)
    classes = torch.rand(5, 4, generator=g).argsort(1)[:, :2].tolist()
    assert torch.equal(draws.order, order) and draws.classes == classes and draws.view is None
    assert all(torch.equal(getattr(draws.aug, k), getattr(aug, k)) for k in ("dy", "dx", "flip"))
    batch = draws.batch(1, torch.rand(40, 1, 8, 8), torch.zeros(40, dtype=torch.long))
    assert len(batch.aug.dy) == 8 and torch.equal(batch.aug.dy, aug.dy[8:16]) and batch.view is None


def test_follow_step_is_unchanged_by_the_variant_code(monkeypatch):
    """follow hands pag_backward the augmented batch, the targets following the draw, no view."""
    x, y, targets = data()
    s = TrainSettings(**SETTINGS)
    draws = EpochDraws.draw(s, 1, len(x), x.shape[1:], 4, 2, None, "cpu")
    batch = draws.batch(0, x, y)
    seen = {}
    monkeypatch.setattr(
        train,
        "pag_backward",
        lambda model, xb, yb, t, lam, **kw: seen.update(x=xb, kw=kw) or _losses(xb),
    )
    source = Stored(targets)
    model = bn_cnn()
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), batch, source, s, None, "loop")
    assert torch.equal(seen["x"], batch.aug(batch.x))
    assert seen["kw"].get("view") is None and seen["kw"]["ce_input"] is None
    assert source.calls[0][2] is batch.aug


def _losses(x):
    from pagrob.pag import StepLosses

    zero = torch.zeros((), dtype=x.dtype)
    return StepLosses(torch.zeros(len(x), 4), zero, zero)


def test_variant_settings():
    assert train.PAG_VARIANTS == (FOLLOW, AUTHORS) and train.DEFAULT_PAG_VARIANT == FOLLOW
    assert TrainSettings(epochs=1, batch_size=1).pag_variant == train.DEFAULT_PAG_VARIANT
    with pytest.raises(
        ValueError, match=r"pag_variant must be one of \('follow', 'authors'\), not 'theirs'"
    ):
        TrainSettings(epochs=1, batch_size=1, pag_variant="theirs")
    with pytest.raises(ValueError, match="adversarial training .* 'follow'"):
        TrainSettings(
            epochs=1,
            batch_size=1,
            pag_variant=AUTHORS,
            adversarial={"norm": "l2", "eps": 0.5, "steps": 2},
        )


def test_train_settings_default_to_the_constant():
    s = TrainSettings.from_config({"epochs": 1, "batch_size": 1}, {}, lam=0, seed=0)
    assert s.pag_variant == train.DEFAULT_PAG_VARIANT
    with pytest.raises(ValueError, match="pag_variant must be one of"):
        TrainSettings(epochs=1, batch_size=1, pag_variant="both")


def test_checkpoints_and_the_variant(tmp_path):
    """A checkpoint written before the setting existed resumes as follow; one of the other
    variant is refused."""
    x, y, _ = data(n=32, dtype=torch.float32)
    ds = Dataset(
        "img", x, y, x[:8], y[:8], list("abcd"), torch.tensor([0.4, 0.5]), torch.tensor([0.2, 0.3])
    )
    s = TrainSettings(epochs=2, batch_size=16, lr=0.05, crop_padding=1, flip=True, seed=0)

    def model():
        torch.manual_seed(0)
        return models.build_model("small_cnn", (2, 8, 8), 4, ds.mean, ds.std)

    fit(
        model(),
        ds,
        None,
        TrainSettings(**(vars(s) | {"epochs": 1})),
        tmp_path / "a.pt",
        log=lambda m: None,
    )
    state = torch.load(tmp_path / "a.pt", weights_only=True)
    assert state["settings"]["pag_variant"] == FOLLOW
    del state["settings"]["pag_variant"]
    state["settings"]["epochs"] = 2
    torch.save(state, tmp_path / "a.pt")
    messages = []
    fit(model(), ds, None, s, tmp_path / "a.pt", log=messages.append)
    assert messages[0].startswith("resumed from")
    with pytest.raises(
        ValueError, match=r"other settings .*'pag_variant': \('follow', 'authors'\)"
    ):
        fit(
            model(),
            ds,
            None,
            TrainSettings(**(vars(s) | {"pag_variant": AUTHORS})),
            tmp_path / "a.pt",
            log=lambda m: None,
        )


def test_authors_step_on_another_device(monkeypatch):
    """The authors' step on the meta device (and CUDA under sync debug mode where present):
    its per-step draws on the device, nothing read back, nothing copied from the host."""
    from test_devices import DEVICES, device_run, two_steps

    for device in [d if isinstance(d, str) else d.values[0] for d in DEVICES]:
        if device == "cuda" and not torch.cuda.is_available():
            continue
        for strategy in STRATEGIES:
            s = TrainSettings(
                epochs=1,
                batch_size=16,
                lam=0.5,
                crop_padding=1,
                flip=True,
                classes_per_step=2,
                seed=1,
                pag_variant=AUTHORS,
            )
            run = device_run(
                device, s, "resnet18" if strategy in ("segmented", "replicated") else "small_cnn"
            )
            two_steps(run, strategy, monkeypatch)
            batch = run.draws(1).batch(0, run.x_train, run.y_train)
            assert batch.view.dy.device == run.device and len(batch.view.dy) == 1


def test_authors_cli_trains(tmp_path, monkeypatch):
    """pag_variant reaches the settings saved with the model."""
    from pagrob.data import save_prepared
    from pagrob.steps import train as step

    x, y, _ = data(n=32, dtype=torch.float32)
    x = (x * 255).round() / 255
    save_prepared(
        Dataset(
            "img",
            x,
            y,
            x[:8],
            y[:8],
            list("abcd"),
            torch.tensor([0.4, 0.5]),
            torch.tensor([0.2, 0.3]),
        ),
        tmp_path / "d.pt",
    )
    built = sources.build(
        "class_mean",
        Dataset("img", x, y, x, y, list("abcd"), torch.zeros(2), torch.ones(2)),
        seed=0,
    )
    io.save(built, tmp_path / "t.pt")
    settings = settings_json(
        epochs=1, batch_size=16, lr=0.05, crop_padding=1, flip=True, lam=1, pag_variant="authors"
    )
    argv = f"train --data {tmp_path}/d.pt --arch small_cnn --source class_mean --targets {tmp_path}/t.pt --device cpu --out {tmp_path}/m.pt"
    monkeypatch.setattr("sys.argv", [*argv.split(), "--settings", settings])
    step.main()
    _, meta = models.load_model(tmp_path / "m.pt")
    assert meta["settings"]["pag_variant"] == AUTHORS

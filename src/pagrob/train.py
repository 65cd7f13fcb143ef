"""Training: cross-entropy + lam * PAG (Eq. 1), or Madry adversarial training for teachers.

Reproducible and resumable: every epoch draws its batch order, augmentations, target-class
subsets and attack starts at once from its own CPU generator, seeded by (seed, epoch), and moves
them to the device once (``EpochDraws``), so an epoch computes the same thing whether the run
started from scratch or resumed from the checkpoint written after the previous epoch, and the
data order is the same on every device. The checkpoint (model, optimiser, history, settings) is
written atomically after every epoch.

No step waits for the host (``train_step``): the losses, the correct predictions and the first
non-finite batch are tallied on the device (``EpochTally``) and read once per epoch, and the
divergence flag every ``CHECK_EVERY`` batches.

How the PAG term meets the augmentation (``TrainSettings.pag_variant``, ``PAG_VARIANTS``):

- ``follow`` (ours, the default): one crop-and-flip draw per image and step; the CE and the PAG
  term are both on the augmented batch x_aug, the input-gradients are taken with respect to
  x_aug, and the targets follow each image through its own crop and flip
  (``source.for_batch(x_aug, index, aug)``).
- ``authors`` (TRAIN_CIFAR10.py of the paper's code): two independent views, each ONE crop and
  ONE flip per step shared by the whole batch (torchvision's transforms applied to a batched
  tensor draw once per call). The CE is on the first view, aug1(x0); the PAG input-gradient is
  taken with respect to the un-augmented batch x0 *through* the second view,
  grad_x0 s(f(aug2(x0)))_c, against the un-augmented targets (``source.for_batch(x0, index,
  None)``). Their score is log-softmax (``grad_of``, a separate setting), and their
  10 * (1 - mean cosine) is our sum over classes of the batch-mean cosine loss, so lambda is the
  same. Adversarial training (teachers) is always ``follow``.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from pagrob import io
from pagrob.attacks import Attack, draw_start, pgd
from pagrob.data import CropFlip, Dataset
from pagrob.pag import (
    AUTO,
    DEFAULT_STRATEGY,
    STRATEGIES,
    StepLosses,
    pag_backward,
)

# a run's settings and the PAG variants (pure Python, built from the config): pagrob.settings
from pagrob.settings import (  # noqa: F401
    AUTHORS,
    DEFAULT_PAG_VARIANT,
    FOLLOW,
    PAG_VARIANTS,
    TrainSettings,
)
from pagrob.sources import TargetSource

#: ``amp``: the autocast dtype (bfloat16 needs no loss scaling)
AMP_DTYPE = torch.bfloat16
#: batches between two reads of the divergence flag (one host synchronisation each)
CHECK_EVERY = 50
#: ``strategy: auto``: steps timed per strategy (the first is a warm-up, the median of the rest counts)
PROBE_STEPS = 3

#: what ``strategy: auto`` says in its record and log: the choice is part of the result
AUTO_NOTE = (
    "pag.strategy auto chose {strategy} by timing on this machine; the strategies differ in "
    "float32 rounding, so the choice is part of this result: set pag.strategy: {strategy} to "
    "reproduce it"
)

#: steps timed at the start of a run before a ``time_limit_s`` projection is made
PROJECT_AFTER = 3


class TooLong(RuntimeError):
    """The run's first steps project more time than ``fit``'s ``time_limit_s``."""


class TrainingDiverged(FloatingPointError):
    pass


def make_optimizer(model: nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
        )
    if s.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', not {s.optimizer!r}")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


# --- One step ------------------------------------------------------------------------------------


@dataclass
class Batch:
    """One step's share of an epoch's draws: its tensors already on the device, its target
    classes as host integers (drawn on the CPU, so reading them waits for nothing)."""

    x: Tensor  # not yet augmented
    y: Tensor
    index: Tensor  # positions in the training set
    aug: CropFlip | None  # follow: the batch's augmentation; authors: the CE's view (one row)
    classes: list[int] | None  # the target classes of the PAG sum (None: all)
    start: Tensor | None  # the training attack's random start
    view: CropFlip | None = None  # authors: the PAG term's view of x (one row); follow: None


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    batch: Batch,
    source: TargetSource | None,
    s: TrainSettings,
    attack: Attack | None,
    strategy: str,
) -> StepLosses:
    """One optimiser step on ``batch``, with no host synchronisation."""
    if s.pag_variant == AUTHORS:
        return _authors_step(model, opt, batch, source, s, strategy)
    x = batch.aug(batch.x) if batch.aug is not None else batch.x
    if s.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    amp = AMP_DTYPE if s.amp else None
    ce_input = pgd(model, x, batch.y, attack, start=batch.start, autocast=amp) if attack else None
    # the targets follow the image: the augmented batch, and the same draw for its representatives
    targets = source.for_batch(x, batch.index, batch.aug) if source is not None and s.lam else None
    opt.zero_grad(set_to_none=True)
    out = pag_backward(
        model,
        x,
        batch.y,
        targets,
        s.lam,
        grad_of=s.grad_of,
        strategy=strategy,
        eps=s.pag_eps,
        classes=batch.classes,
        ce_input=ce_input,
        autocast=amp,
        batchnorm=s.batchnorm,
    )
    opt.step()
    return out


def _authors_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    batch: Batch,
    source: TargetSource | None,
    s: TrainSettings,
    strategy: str,
) -> StepLosses:
    """``pag_variant: authors``: the CE on the view aug1(x0), the PAG input-gradients with respect
    to the un-augmented x0 through the view aug2 (``pag_backward``'s ``view``: every strategy
    forwards aug2 of what it differentiates), against the un-augmented targets."""

    def layout(t: Tensor) -> Tensor:
        return (
            t.contiguous(memory_format=torch.channels_last)
            if s.channels_last and t.dim() == 4
            else t
        )

    x0 = layout(batch.x)
    ce_input = layout(batch.aug(x0)) if batch.aug is not None else x0
    pag_view = batch.view
    view = None if pag_view is None else (lambda t: layout(pag_view(t)))
    targets = source.for_batch(x0, batch.index, None) if source is not None and s.lam else None
    opt.zero_grad(set_to_none=True)
    out = pag_backward(
        model,
        x0,
        batch.y,
        targets,
        s.lam,
        grad_of=s.grad_of,
        strategy=strategy,
        eps=s.pag_eps,
        classes=batch.classes,
        ce_input=ce_input,
        autocast=AMP_DTYPE if s.amp else None,
        view=view,
        batchnorm=s.batchnorm,
    )
    opt.step()
    return out


# --- An epoch's random numbers, and its tally ------------------------------------------------------


@dataclass
class EpochDraws:
    """Every random number of one epoch, drawn at once from the epoch's seeded CPU generator
    (the same on every device) and moved to the device once; a step only slices them. The
    training attack's starts (teachers) take as much memory as the training set, which lives on
    the device already; the rest is a few numbers per image.

    ``follow`` draws a crop and flip per image; ``authors`` draws two per step (the CE's view,
    then the PAG term's), each shared by the step's images. The draws come in this order from
    the generator: batch order, crops and flips, target classes, attack starts (``follow``'s
    order is the one of the runs before the variants existed, so they are reproduced exactly).
    """

    order: Tensor  # [steps * B] training-set indices, on the device
    aug: CropFlip | None  # follow: [steps * B] crops and flips; authors: [steps] the CE's views
    classes: list[list[int]] | None  # per step: the target classes (host integers)
    starts: Tensor | None  # [steps * B, *input] the training attack's random starts, on the device
    batch_size: int
    view: CropFlip | None = None  # authors: [steps] the PAG term's views; follow: None
    per_step: bool = False  # aug (and view) hold one draw per step, not per image

    @classmethod
    def draw(
        cls,
        s: TrainSettings,
        epoch: int,
        n_train: int,
        input_shape,
        num_classes: int,
        steps: int,
        attack: Attack | None,
        device,
    ) -> EpochDraws:
        g = epoch_generator(s.seed, epoch)
        n = steps * s.batch_size
        order = torch.randperm(n_train, generator=g)[:n].to(device)  # cpu: seeded draw, moved once
        augment, per_step = bool(s.crop_padding or s.flip), s.pag_variant == AUTHORS
        # authors: one draw per step and view, shared by the batch (torchvision on a batch tensor)
        aug = (
            CropFlip.sample(steps if per_step else n, s.crop_padding, s.flip, g, device)
            if augment
            else None
        )
        view = (
            CropFlip.sample(steps, s.crop_padding, s.flip, g, device)
            if augment and per_step
            else None
        )
        classes = None
        if s.classes_per_step:  # a random permutation per step (argsort of iid keys), its first k
            keys = torch.rand(
                steps, num_classes, generator=g
            )  # cpu: seeded draw, read as host ints
            classes = keys.argsort(1)[:, : s.classes_per_step].tolist()
        starts = None
        if attack is not None and attack.random_start and attack.eps > 0:
            starts = draw_start((n, *input_shape), attack, g).to(device)  # seeded draw, moved once
        return cls(order, aug, classes, starts, s.batch_size, view, per_step)

    def batch(self, b: int, x_train: Tensor, y_train: Tensor) -> Batch:
        rows = slice(b * self.batch_size, (b + 1) * self.batch_size)
        aug_rows = slice(b, b + 1) if self.per_step else rows
        index = self.order[rows]
        return Batch(
            x_train[index],
            y_train[index],
            index,
            self.aug[aug_rows] if self.aug is not None else None,
            self.classes[b] if self.classes is not None else None,
            self.starts[rows] if self.starts is not None else None,
            self.view[aug_rows] if self.view is not None else None,
        )


class EpochTally:
    """Sums of CE, PAG term and correct predictions, and the first non-finite batch with its
    losses, all kept on the device: adding a step never waits for it."""

    def __init__(self, steps: int, device):
        self.steps = steps
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)
        self.first_bad = torch.full((), steps, dtype=torch.long, device=device)  # steps: none yet
        self.bad_losses = torch.zeros(2, dtype=torch.float64, device=device)

    def add(self, b: int, out: StepLosses, y: Tensor) -> None:
        correct = (out.logits.argmax(1) == y).sum()
        losses = torch.stack([out.ce.double(), out.pag.double()])
        self.sums += torch.cat([losses, correct.double()[None]])
        first = torch.isfinite(losses).all().logical_not() & (self.first_bad == self.steps)
        self.first_bad = torch.where(first, b, self.first_bad)
        self.bad_losses = torch.where(first, losses, self.bad_losses)

    def check(self, epoch: int, seen: int, checkpoint: Path) -> None:
        """Stop if a step so far had a non-finite loss (reads one flag from the device)."""
        bad = int(self.first_bad)
        if bad < self.steps:
            ce, pag = self.bad_losses.tolist()
            raise TrainingDiverged(
                f"non-finite loss at epoch {epoch}, batch {bad + 1}/{self.steps} (CE {ce}, PAG {pag}; "
                f"found at the check after batch {seen}, one every {CHECK_EVERY}); the last good "
                f"checkpoint (after epoch {epoch - 1}) is kept at {checkpoint}. Lower the learning "
                "rate or lambda."
            )


# --- A run -----------------------------------------------------------------------------------------


@dataclass
class Run:
    """What every epoch of one ``fit`` shares."""

    model: nn.Module
    opt: torch.optim.Optimizer
    x_train: Tensor
    y_train: Tensor
    source: TargetSource | None
    s: TrainSettings
    attack: Attack | None
    steps: int
    num_classes: int
    device: torch.device
    time_limit_s: float | None = None

    @property
    def has_pag(self) -> bool:
        return self.source is not None and self.s.lam != 0

    def draws(self, epoch: int) -> EpochDraws:
        return EpochDraws.draw(
            self.s,
            epoch,
            len(self.x_train),
            self.x_train.shape[1:],
            self.num_classes,
            self.steps,
            self.attack,
            self.device,
        )

    def step(self, draws: EpochDraws, b: int, strategy: str) -> tuple[Batch, StepLosses]:
        batch = draws.batch(b, self.x_train, self.y_train)
        return batch, train_step(
            self.model, self.opt, batch, self.source, self.s, self.attack, strategy
        )

    def epoch(self, epoch: int, strategy: str, checkpoint: Path) -> dict:
        """Train one epoch; its statistics (read from the device once)."""
        for group in self.opt.param_groups:
            group["lr"] = self.s.lr_at(epoch)
        draws = self.draws(epoch)
        self.model.train()
        tally = EpochTally(self.steps, self.device)
        t0 = time.perf_counter()
        for b in range(self.steps):
            batch, out = self.step(draws, b, strategy)
            tally.add(b, out, batch.y)
            if self.time_limit_s is not None and b + 1 == min(PROJECT_AFTER, self.steps):
                self.check_time(epoch, (time.perf_counter() - t0) / (b + 1), b + 1)
            if (b + 1) % CHECK_EVERY == 0 or b + 1 == self.steps:
                tally.check(epoch, b + 1, checkpoint)
        ce, pag, correct = tally.sums.tolist()
        seconds = time.perf_counter() - t0
        n = self.steps * self.s.batch_size
        return {
            "epoch": epoch,
            "lr": self.s.lr_at(epoch),
            "ce": ce / self.steps,
            "pag": pag / self.steps,
            "train_acc": 100 * correct / n,
            "images_per_s": n / seconds,
            "seconds": seconds,
            "strategy": strategy if self.has_pag else None,
        }

    def check_time(self, epoch: int, per_step: float, timed: int) -> None:
        """Refuse to go on when the rest of the run, projected from the first steps of this
        epoch, exceeds ``time_limit_s`` (the first epoch's check comes before any checkpoint)."""
        epochs = self.s.epochs - epoch + 1
        projected = per_step * self.steps * epochs
        if projected > self.time_limit_s:
            raise TooLong(
                f"this training is projected to take {projected / 3600:.1f} h on {self.device} "
                f"({epochs} epochs x {self.steps} steps x {per_step:.3f} s a step, timed on the "
                f"first {timed} steps), more than the {self.time_limit_s / 3600:g} h allowed"
            )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def choose_strategy(run: Run, epoch: int, log: Callable[[str], None]) -> tuple[str, dict]:
    """``strategy: auto``: time every exact strategy for ``PROBE_STEPS`` real steps (the model,
    the batches of ``epoch``), then restore the model, the optimiser and the random number
    generators exactly, so that the run does not depend on the probe. Returns the fastest and
    the seconds per step of each (None: out of memory)."""
    model_state = {k: v.clone() for k, v in run.model.state_dict().items()}
    opt_state = copy.deepcopy(run.opt.state_dict())
    draws = run.draws(epoch)
    run.model.train()
    timings: dict[str, float | None] = {}
    cuda = [run.device] if run.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        for name in STRATEGIES:
            seconds = []
            try:
                for i in range(PROBE_STEPS):
                    _synchronize(run.device)
                    t0 = time.perf_counter()
                    run.step(draws, i % run.steps, name)
                    _synchronize(run.device)
                    seconds.append(time.perf_counter() - t0)
                timings[name] = statistics.median(seconds[1:] or seconds)
            except torch.OutOfMemoryError:
                timings[name] = None
                if cuda:
                    torch.cuda.empty_cache()
            finally:
                run.model.load_state_dict(model_state)
                run.opt.load_state_dict(copy.deepcopy(opt_state))  # load keeps the tensors it gets
    run.opt.zero_grad(set_to_none=True)
    fit_in_memory = {k: v for k, v in timings.items() if v is not None}
    if not fit_in_memory:
        raise RuntimeError(
            "strategy auto: every PAG strategy ran out of memory; lower the batch size"
        )
    chosen = min(fit_in_memory, key=fit_in_memory.get)
    shown = ", ".join(
        f"{k} {'out of memory' if v is None else f'{v:.3f}s'}" for k, v in timings.items()
    )
    log(f"strategy auto: seconds per step {shown}; chose {chosen}")
    return chosen, timings


# --- fit -------------------------------------------------------------------------------------------


def _resume(
    checkpoint: Path, run: Run, inputs: dict[str, str], log: Callable[[str], None]
) -> tuple[int, list[dict], dict]:
    """(epochs done, history, strategy record) from ``checkpoint``, after checking it was
    written with the same settings and from the same input files; (0, [], {}) when there is
    none."""
    if not checkpoint.exists():
        return 0, [], {}
    state = io.load(checkpoint, "training checkpoint", ("model", "optimizer", "epoch", "settings"))
    if "inputs" not in state:  # written before checkpoints recorded their inputs
        log(
            f"checkpoint {checkpoint} predates input fingerprints: resuming without checking its inputs"
        )
    saved_inputs = state.get("inputs", inputs)
    changed = [
        name
        for name in sorted(set(inputs) | set(saved_inputs))
        if saved_inputs.get(name) != inputs.get(name)
    ]
    if changed:
        raise ValueError(
            f"checkpoint {checkpoint} was trained from other input files: {', '.join(changed)} "
            "changed since (compared by content). Delete the checkpoint to train this model over "
            "from the new inputs, or restore the old files."
        )
    defaults = {f.name: f.default for f in fields(TrainSettings) if f.default is not MISSING}
    saved, now = {**defaults, **state["settings"]}, asdict(run.s)  # settings added since: defaults
    if saved != now:
        diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
        raise ValueError(
            f"checkpoint {checkpoint} was written with other settings {diff} "
            "(checkpoint, now). Delete it to start this model over, or restore the settings."
        )
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    log(f"resumed from {checkpoint} after epoch {state['epoch']}")
    return state["epoch"], list(state["history"]), state.get("strategy", {})


def fit(
    model: nn.Module,
    ds: Dataset,
    source: TargetSource | None,
    s: TrainSettings,
    checkpoint: Path,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    inputs: dict[str, str] | None = None,
    time_limit_s: float | None = None,
) -> list[dict]:
    """Train ``model`` in place; returns one dict of statistics per epoch (with the PAG strategy
    that computed it: ``auto``'s choice is made once per run, before its first epoch, and kept
    in the checkpoint, so a resumed run goes on with it).

    Resumes from ``checkpoint`` if it exists (after checking it was written with the same
    settings and the same ``inputs``: name -> fingerprint of every input file, e.g. the
    dataset, targets and teacher files' digests); writes it after every epoch.

    With ``time_limit_s``, raises ``TooLong`` when the first steps of an epoch project the rest
    of the run beyond it (the caller's guard against hours of training on the wrong device).
    """
    inputs = dict(inputs or {})
    checkpoint, device = Path(checkpoint), torch.device(device)
    run = _new_run(model, ds, source, s, device, time_limit_s)
    start, history, record = _resume(checkpoint, run, inputs, log)
    strategy = record.get("chosen") or (s.strategy if s.strategy != AUTO else None)

    for epoch in range(start + 1, s.epochs + 1):
        if strategy is None:  # auto, at the start of the run
            strategy, record = _auto_strategy(run, epoch, record, log)
        stats = run.epoch(epoch, strategy, checkpoint)
        history.append(stats)
        log(
            f"epoch {epoch}/{s.epochs} lr {stats['lr']:.4g} CE {stats['ce']:.4f} "
            f"PAG {stats['pag']:.4f} train-acc {stats['train_acc']:.2f}% "
            f"{stats['images_per_s']:.0f} img/s ({stats['seconds']:.1f}s)"
        )
        _save_checkpoint(checkpoint, run, epoch, history, record, inputs)
    return history


def _new_run(
    model: nn.Module,
    ds: Dataset,
    source: TargetSource | None,
    s: TrainSettings,
    device: torch.device,
    time_limit_s: float | None,
) -> Run:
    """The run: model and training data on ``device``, optimiser and attack, checked."""
    if s.amp and device.type != "cuda":
        raise ValueError(
            f"amp (bfloat16 autocast) is for CUDA runs, and this one is on {device}: "
            "set the train setting amp to false (or run on a GPU)"
        )
    model.to(device)
    if s.channels_last:
        model.to(memory_format=torch.channels_last)
    x_train, y_train = ds.x_train.to(device), ds.y_train.to(device)
    steps = len(x_train) // s.batch_size  # drop_last
    if steps == 0:
        raise ValueError(f"batch_size {s.batch_size} exceeds the {len(x_train)} training examples")
    attack = Attack(**s.adversarial, bounds=ds.bounds) if s.adversarial else None
    return Run(
        model,
        make_optimizer(model, s),
        x_train,
        y_train,
        source,
        s,
        attack,
        steps,
        ds.num_classes,
        device,
        time_limit_s,
    )


def _auto_strategy(run: Run, epoch: int, record: dict, log: Callable[[str], None]):
    """``auto``'s choice of PAG strategy and its record (without a PAG term: the default)."""
    if run.has_pag:
        strategy, timings = choose_strategy(run, epoch, log)
        record = {
            "requested": AUTO,
            "chosen": strategy,
            "seconds_per_step": timings,
            "note": AUTO_NOTE.format(strategy=strategy),
        }
        log(record["note"])
    else:
        strategy = DEFAULT_STRATEGY  # no PAG term: no strategy is ever used
    return strategy, record


def _save_checkpoint(
    checkpoint: Path, run: Run, epoch: int, history: list, record: dict, inputs: dict
) -> None:
    """The checkpoint after ``epoch``: model, optimiser, history, settings, strategy, inputs."""
    io.save(
        {
            "model": run.model.state_dict(),
            "optimizer": run.opt.state_dict(),
            "epoch": epoch,
            "history": history,
            "settings": asdict(run.s),
            "strategy": record,
            "inputs": inputs,
        },
        checkpoint,
    )

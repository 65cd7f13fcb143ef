"""Training: cross-entropy + lam * PAG (Eq. 1), or Madry adversarial training for teachers.

Reproducible and resumable: every epoch draws its batch order, augmentations and attack starts
from its own generator, seeded by (seed, epoch), so an epoch computes the same thing whether the
run started from scratch or resumed from the checkpoint written after the previous epoch. The
checkpoint (model, optimiser, history, settings) is written atomically after every epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pagrob import io
from pagrob.attacks import Attack, pgd
from pagrob.data import CropFlip, Dataset
from pagrob.pag import pag_backward
from pagrob.sources import TargetSource


@dataclass
class TrainSettings:
    epochs: int
    batch_size: int
    optimizer: str = "sgd"  # "sgd" or "adam"
    lr: float = 0.01
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    milestones: list[int] = field(default_factory=list)  # 1-based epochs where lr *= gamma
    gamma: float = 0.1
    crop_padding: int = 0  # random crop with this zero padding (0: no crop)
    flip: bool = False  # random horizontal flip
    lam: float = 0.0
    grad_of: str = "logit"
    strategy: str = "accumulate"
    pag_eps: float = 1e-8
    classes_per_step: int | None = None  # None: all C classes every step
    seed: int = 0
    # Madry adversarial training (teachers): Attack fields (norm, eps, steps, step_size,
    # random_start); the cross-entropy is taken on PGD examples made in eval mode.
    adversarial: dict | None = None

    def lr_at(self, epoch: int) -> float:
        """Learning rate for 1-based ``epoch``."""
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)


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


def fit(
    model: nn.Module,
    ds: Dataset,
    source: TargetSource | None,
    s: TrainSettings,
    checkpoint: Path,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train ``model`` in place; returns one dict of statistics per epoch.

    Resumes from ``checkpoint`` if it exists (after checking it was written with the same
    settings); writes it after every epoch.
    """
    checkpoint = Path(checkpoint)
    model.to(device)
    opt = make_optimizer(model, s)
    history: list[dict] = []
    start = 0
    if checkpoint.exists():
        state = io.load(checkpoint, "training checkpoint", ("model", "optimizer", "epoch", "settings"))
        if state["settings"] != asdict(s):
            diff = {
                k: (state["settings"].get(k), v)
                for k, v in asdict(s).items()
                if state["settings"].get(k) != v
            }
            raise ValueError(
                f"checkpoint {checkpoint} was written with other settings {diff} "
                "(checkpoint, now). Delete it to start this model over, or restore the settings."
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, history = state["epoch"], list(state["history"])
        log(f"resumed from {checkpoint} after epoch {start}")

    x_train = ds.x_train.to(device)
    y_train = ds.y_train.to(device)
    attack = Attack(**s.adversarial, bounds=ds.bounds) if s.adversarial else None
    steps_per_epoch = len(x_train) // s.batch_size  # drop_last
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {s.batch_size} exceeds the {len(x_train)} training examples")

    for epoch in range(start + 1, s.epochs + 1):
        for group in opt.param_groups:
            group["lr"] = s.lr_at(epoch)
        g = epoch_generator(s.seed, epoch)
        order = torch.randperm(len(x_train), generator=g).to(device)
        model.train()
        sums = {"ce": 0.0, "pag": 0.0, "correct": 0.0}
        t0 = time.perf_counter()
        for b in range(steps_per_epoch):
            index = order[b * s.batch_size : (b + 1) * s.batch_size]
            x, y = x_train[index], y_train[index]
            aug = None
            if s.crop_padding or s.flip:
                aug = CropFlip.sample(len(x), s.crop_padding, s.flip, g, device)
            if aug is not None:
                x = aug(x)
            ce_input = pgd(model, x, y, attack, generator=g) if attack else None
            targets = source.for_batch(x, index, aug) if source is not None and s.lam else None
            classes = None
            if s.classes_per_step:
                classes = torch.randperm(ds.num_classes, generator=g)[: s.classes_per_step].tolist()
            opt.zero_grad(set_to_none=True)
            out = pag_backward(
                model, x, y, targets, s.lam, grad_of=s.grad_of, strategy=s.strategy,
                eps=s.pag_eps, classes=classes, ce_input=ce_input,
            )
            ce, pag = out.ce.item(), out.pag.item()
            if not (math.isfinite(ce) and math.isfinite(pag)):
                raise TrainingDiverged(
                    f"non-finite loss at epoch {epoch}, batch {b + 1}/{steps_per_epoch} "
                    f"(CE {ce}, PAG {pag}); the last good checkpoint (after epoch {epoch - 1}) "
                    f"is kept at {checkpoint}. Lower the learning rate or lambda."
                )
            opt.step()
            sums["ce"] += ce
            sums["pag"] += pag
            sums["correct"] += (out.logits.argmax(1) == y).sum().item()
        seconds = time.perf_counter() - t0
        n = steps_per_epoch * s.batch_size
        stats = {
            "epoch": epoch,
            "lr": s.lr_at(epoch),
            "ce": sums["ce"] / steps_per_epoch,
            "pag": sums["pag"] / steps_per_epoch,
            "train_acc": 100 * sums["correct"] / n,
            "images_per_s": n / seconds,
            "seconds": seconds,
        }
        history.append(stats)
        log(
            f"epoch {epoch}/{s.epochs} lr {stats['lr']:.4g} CE {stats['ce']:.4f} "
            f"PAG {stats['pag']:.4f} train-acc {stats['train_acc']:.2f}% "
            f"{stats['images_per_s']:.0f} img/s ({seconds:.1f}s)"
        )
        io.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch,
                "history": history,
                "settings": asdict(s),
            },
            checkpoint,
        )
    return history

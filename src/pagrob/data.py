"""Datasets as in-memory tensors, and the training augmentation.

Every dataset is prepared once into one file (``save_prepared``) holding the train and test
splits. Images are kept in [0, 1] (stored as uint8 where the source is 8-bit); normalisation
belongs to the model. The whole training set lives on the training device and batches are cut
from it by index, so a batch's position in the training set (``index``) is always known: the
gradient sources use it to find an image's precomputed representatives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pagrob import io


@dataclass
class Dataset:
    name: str
    x_train: Tensor  # [N, *shape] float32 in [0, 1] for images
    y_train: Tensor  # [N] int64
    x_test: Tensor
    y_test: Tensor
    classes: list[str]
    mean: Tensor  # per-channel (or per-feature) statistics the model normalises with
    std: Tensor
    bounds: tuple[float, float] | None = (0.0, 1.0)  # input domain; attacks stay inside it

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def save_prepared(ds: Dataset, path) -> None:
    def pack(x: Tensor) -> Tensor:
        # 8-bit images stay 8-bit on disk (4x smaller); anything else as float32.
        if x.dtype == torch.float32 and x.dim() == 4 and torch.equal((x * 255).round() / 255, x):
            return (x * 255).round().to(torch.uint8)
        return x

    io.save(
        {
            "name": ds.name,
            "x_train": pack(ds.x_train),
            "y_train": ds.y_train,
            "x_test": pack(ds.x_test),
            "y_test": ds.y_test,
            "classes": list(ds.classes),
            "mean": ds.mean,
            "std": ds.std,
            "bounds": list(ds.bounds) if ds.bounds is not None else None,
        },
        path,
    )


def load_prepared(path) -> Dataset:
    d = io.load(
        path,
        "prepared dataset",
        ("name", "x_train", "y_train", "x_test", "y_test", "classes", "mean", "std", "bounds"),
    )

    def unpack(x: Tensor) -> Tensor:
        return x.float() / 255 if x.dtype == torch.uint8 else x.float()

    return Dataset(
        name=d["name"],
        x_train=unpack(d["x_train"]),
        y_train=d["y_train"].long(),
        x_test=unpack(d["x_test"]),
        y_test=d["y_test"].long(),
        classes=list(d["classes"]),
        mean=d["mean"].float(),
        std=d["std"].float(),
        bounds=tuple(d["bounds"]) if d["bounds"] is not None else None,
    )


def class_balanced_pick(y: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """Sorted indices of ``size`` of the labels ``y``, each class's share of them as in ``y``
    (rounded by largest remainder), drawn at random within each class."""
    classes, counts = torch.unique(y, return_counts=True)
    exact = counts.double() * size / len(y)
    per_class = exact.floor().long()
    short = size - int(per_class.sum())
    per_class[torch.argsort(exact - per_class, descending=True, stable=True)[:short]] += 1
    picked = []
    for c, k in zip(classes.tolist(), per_class.tolist(), strict=True):
        idx = (y == c).nonzero().flatten()
        order = torch.randperm(len(idx), generator=generator)  # cpu: the data step's host labels
        picked.append(idx[order[:k]])
    return torch.cat(picked).sort().values


def subset(ds: Dataset, train: int, seed: int) -> Dataset:
    """A fixed class-balanced subset of ``train`` training images (0: all of them), drawn with
    ``seed``; the normalisation statistics are the subset's. (The test images a job uses are
    its own setting: eval.max_images, autoattack.images, pag_scores.images.)"""
    if train > len(ds.y_train):
        raise ValueError(
            f"{ds.name} has {len(ds.y_train)} training images; a subset of {train} cannot be "
            f"drawn (set datasets.{ds.name}.data.train_size to at most {len(ds.y_train)}, or 0: "
            "all)"
        )
    if train in (0, len(ds.y_train)):
        return ds
    keep = class_balanced_pick(ds.y_train, train, torch.Generator().manual_seed(seed))
    x_train = ds.x_train[keep]
    stats = (0, *range(2, x_train.dim())) if x_train.dim() > 2 else (0,)
    return dataclasses.replace(
        ds,
        x_train=x_train,
        y_train=ds.y_train[keep],
        mean=x_train.mean(stats),
        std=x_train.std(stats),
    )


# --- The toy dataset (Section 5.1, Appendix C.1) ------------------------------------------------

#: the toy data's line x2 = 2 x1, as a direction (x1, x2) = x1 * TOY_DIRECTION
TOY_DIRECTION = (1.0, 2.0)


def toy_tangent(device="cpu") -> Tensor:
    """The unit tangent of the toy data's line, TOY_DIRECTION / |TOY_DIRECTION|: float32 [2]."""
    t = torch.tensor(TOY_DIRECTION, dtype=torch.float64, device=device)
    return (t / torch.linalg.vector_norm(t)).float()


def toy_points(
    n_per_mode: int, centers: list[list[float]], generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Points on the line x2 = 2 x1 (``TOY_DIRECTION``) with x1 ~ N(c, 1); ``centers[k]`` are
    class k's mode centres."""
    xs, ys = [], []
    for label, class_centers in enumerate(centers):
        for c in class_centers:
            x1 = torch.randn(n_per_mode, generator=generator, dtype=torch.float64)  # cpu: data prep
            x1 = x1 + c
            xs.append(torch.stack([d * x1 for d in TOY_DIRECTION], dim=1))
            labels = torch.full((n_per_mode,), label, dtype=torch.long)  # cpu: dataset preparation
            ys.append(labels)
    return torch.cat(xs).float(), torch.cat(ys)


def toy_score(x: Tensor, centers: list[list[float]], sigma: float) -> Tensor:
    """[N, K, 2] the exact score grad_x log p_sigma(x | k) of each class k's density smoothed
    by N(0, sigma^2 I), in float64: class k is an equal mixture over its modes c of points
    x1 * TOY_DIRECTION with x1 ~ N(c, 1), so along the line's unit tangent u the coordinate
    s = x . u is N(c |d|, |d|^2) and across it 0; smoothed, N(c |d|, |d|^2 + sigma^2) along u
    and N(0, sigma^2) across."""
    x = x.double()
    d = torch.tensor(TOY_DIRECTION, dtype=torch.float64, device=x.device)
    norm = torch.linalg.vector_norm(d)
    u = d / norm
    s = x @ u  # [N]
    across = x - s[:, None] * u  # the part off the line
    var = norm**2 + sigma**2
    out = []
    for class_centers in centers:
        means = torch.tensor(class_centers, dtype=torch.float64, device=x.device) * norm  # [M]
        w = torch.softmax(-((s[:, None] - means) ** 2) / (2 * var), dim=1)  # responsibilities
        along = -(w * (s[:, None] - means)).sum(1) / var
        out.append(along[:, None] * u - across / sigma**2)
    return torch.stack(out, dim=1)


def make_toy(centers: list[list[float]], n_per_mode: int, n_test: int, seed: int) -> Dataset:
    """The paper's 2-D, two-class dataset: ``n_per_mode`` training points per mode and ``n_test``
    test points drawn from the same distribution (equally many per mode)."""
    g = torch.Generator().manual_seed(seed)
    x_train, y_train = toy_points(n_per_mode, centers, g)
    modes = sum(len(c) for c in centers)
    if n_test % modes:
        raise ValueError(f"toy n_test={n_test} must be a multiple of the number of modes ({modes})")
    x_test, y_test = toy_points(n_test // modes, centers, g)
    return Dataset(
        name="toy",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        classes=[f"class {k}" for k in range(len(centers))],
        # The paper trains the toy MLP on raw coordinates: no normalisation.
        mean=torch.zeros(2),  # cpu: model statistics, moved with the model
        std=torch.ones(2),  # cpu: model statistics, moved with the model
        bounds=None,  # points on a line in R^2: attacks are not clipped to a box
    )


# --- Augmentation: random crop with zero padding, and horizontal flip ----------------------------


@dataclass
class CropFlip:
    """One draw of the standard augmentation for a batch: random crop with zero padding and
    random horizontal flip (probability 1/2), offsets and flips per image.

    The same draw can be applied to several tensors (an image and its representatives), so that a
    gradient target built from the original image follows the image through the augmentation.
    Training draws a whole epoch's at once (``sample``, one move to the device) and slices one
    batch's from it (``draw[start:stop]``), so that no step waits for the host.

    A draw of one row applies one crop and one flip to every image of a batch of any size: what
    torchvision's ``RandomCrop`` and ``RandomHorizontalFlip`` do to a batched tensor (one draw
    per call), hence what the authors' training does. Training in their variant samples one row
    per step (``sample(steps, ...)``) and gives step b the row ``draw[b : b + 1]``.
    """

    dy: Tensor  # [B] row offset into the padded image, in [0, 2 * padding]
    dx: Tensor  # [B]
    flip: Tensor  # [B] bool
    padding: int

    @staticmethod
    def sample(
        n: int, padding: int, flip: bool, generator: torch.Generator, device="cpu"
    ) -> CropFlip:
        """``n`` draws from the seeded CPU ``generator`` (the same on any device), moved to
        ``device`` once: one per image of an epoch, or one per step (each shared by the step's
        images, see above)."""
        shifts = 2 * padding + 1
        dy = torch.randint(0, shifts, (n,), generator=generator)  # cpu: seeded, moved once below
        dx = torch.randint(0, shifts, (n,), generator=generator)  # cpu: seeded, moved once below
        flips = torch.rand(n, generator=generator) < 0.5  # cpu: seeded draw, moved once below
        if not flip:
            flips = torch.zeros_like(flips)
        return CropFlip(dy.to(device), dx.to(device), flips.to(device), padding)

    def __getitem__(self, rows: slice) -> CropFlip:
        """The draws of ``rows`` (views on the same device)."""
        return CropFlip(self.dy[rows], self.dx[rows], self.flip[rows], self.padding)

    def __call__(self, x: Tensor) -> Tensor:
        """Apply to a batch [B, C, H, W]; extra leading dims after B are not allowed. A draw of
        B rows crops and flips image i with row i; a draw of one row, every image alike."""
        b, _, h, w = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p))
        rows = (self.dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (self.dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        out = padded[batch, chans, rows, cols]
        return torch.where(self.flip[:, None, None, None], out.flip(3), out)

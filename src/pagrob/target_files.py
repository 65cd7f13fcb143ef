"""The ``file`` gradient source: target gradients g(x, c) that someone else computed, read from a
tensor file (e.g. the score-based targets the authors released for CIFAR-10).

Two layouts of one floating-point tensor are accepted (``read`` tells them apart by its shape,
given the dataset's image shape and number of classes C):

- ``images``, the authors' ``c10_sbg_data.pt``: N x (1 + C) x image. Row i holds a training image
  (index 0) and its target gradient for every class (indices 1..C). The rows may come in any
  order: ``match`` finds each of our training images among them. The labels come in a separate
  file of N integers (``c10_sbg_label.pt``), optional; given, they are checked against ours.
- ``aligned``: N x C x image, row i the targets of *our* training image i (no images inside, so
  it must have exactly as many rows as the training set; a labels file, if given, is checked).

Value range. Our images are in [0, 1]. The authors' training feeds the stored images straight
to a network that normalises test images with mean = std = 0.5, so theirs are probably in
[-1, 1]: v = (x - 0.5) / 0.5. ``match`` accepts either and detects which from the images
(a minimum below ``SYMMETRIC_BELOW`` means [-1, 1], pixel x = 0.5 v + 0.5). A gradient with
respect to v is then converted to one with respect to the pixel x by the chain rule,
d/dx = d/dv * dv/dx = 2 d/dv (``PIXEL_SCALE``): a uniform factor that leaves the cosine of the
PAG loss unchanged, applied so that the targets mean what they say. The aligned layout has no
images to tell: its targets are taken as gradients with respect to our [0, 1] pixels.

Matching (``match``) is exact: both sides are quantised to 8 bits, round(255 x), and compared
by their bytes (a dict from bytes to file rows), duplicates as multisets. A file that does not
fit the training set (row count, image shape, number of classes, a label, an image) is refused
with a ``io.BadFileError`` that says what differs, before anything is trained.

What is stored (``results/<dataset>/targets/file.pt``) is a compact record: for every training
image the file row that holds its targets (``order``), the layout, the range, and the file's
path and SHA-256 digest; never the N x C x image tensor again (6.1 GB for CIFAR-10).

Training (``load`` -> ``FileTargets``) re-checks the file's digest against the record and reads
the file memory-mapped (``torch.load(mmap=True)``: nothing is copied until a batch asks for its
rows). For a CUDA run the whole gradient tensor is copied to the device once, in chunks, so that
a step indexes it with the batch's device indices without waiting for the host; that costs
rows x C x image x 4 bytes of device memory for float32 (CIFAR-10: 50,000 x 10 x 3,072 x 4 B =
6.1 GB, 5.7 GiB). On the CPU the memory-mapped tensor is indexed directly (the page cache holds
what was read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pagrob import io
from pagrob.data import CropFlip, Dataset
from pagrob.pag import Targets
from pagrob.sources import FILE, TargetSource

#: the two layouts (module docstring)
IMAGES, ALIGNED = "images", "aligned"
LAYOUTS = (IMAGES, ALIGNED)
#: the two value ranges of the stored images
UNIT, SYMMETRIC = "[0, 1]", "[-1, 1]"
RANGES = (UNIT, SYMMETRIC)
#: images whose minimum is below this are in [-1, 1]
SYMMETRIC_BELOW = -0.01
#: how far outside its range an image value may stray (rounding) before the file is refused
RANGE_SLACK = 0.01
#: gradient with respect to our [0, 1] pixels = PIXEL_SCALE[range] x stored gradient
PIXEL_SCALE = {UNIT: 1.0, SYMMETRIC: 2.0}
#: rows read (and converted) at a time while matching or copying to a device
CHUNK = 1024
#: what a record must hold
RECORD_KEYS = (
    "source",
    "dataset",
    "num_train",
    "num_classes",
    "input_shape",
    "order",
    "layout",
    "range",
    "path",
    "digest",
    "file_rows",
)


@dataclass
class TargetFile:
    """A targets file as read by ``read``: its tensor (memory-mapped) and labels, not yet
    matched to a training set."""

    path: Path
    data: Tensor  # as stored: [N, 1 + C, *image] (images) or [N, C, *image] (aligned)
    layout: str
    num_classes: int
    labels: Tensor | None  # [N] int64, or None
    labels_path: Path | None = None

    @property
    def rows(self) -> int:
        return self.data.shape[0]

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[2:])

    @property
    def images(self) -> Tensor | None:
        """[N, *image] the stored images (a view), or None for the aligned layout."""
        return self.data[:, 0] if self.layout == IMAGES else None

    @property
    def gradients(self) -> Tensor:
        """[N, C, *image] the stored targets (a view, in the file's space)."""
        return self.data[:, 1:] if self.layout == IMAGES else self.data

    def describe(self) -> str:
        per_row = self.data.shape[1]
        if self.layout == IMAGES:
            how = f"the authors' layout: an image and {self.num_classes} targets per row ({per_row} = 1 + C entries"
        else:
            how = f"aligned with the training set: {self.num_classes} targets per row ({per_row} = C entries"
        shape = " x ".join(map(str, self.image_shape))
        labels = f", labels from {self.labels_path}" if self.labels is not None else ", no labels"
        return (
            f"{self.path}: {self.rows:,} rows of {shape} {str(self.data.dtype).removeprefix('torch.')}, "
            f"{how}, read with the dataset's C = {self.num_classes}){labels}"
        )


def shape_text(shape) -> str:
    """3 x 32 x 32: a shape as error messages write it."""
    return " x ".join(map(str, shape))


def _load_tensor(path: Path, what: str, mmap: bool) -> Tensor:
    if not path.is_file():
        raise io.BadFileError(f"{what} {path} does not exist.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # legacy (non-zip) format, a pickled object, random bytes...
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        hint = "It is truncated, corrupt, or not a plain tensor file."
        if mmap and "zip" in str(e).lower():
            hint = (
                "It is in torch's legacy (non-zip) format, which cannot be memory-mapped: re-save "
                "it with torch.save (the default format since torch 1.6)."
            )
        raise io.BadFileError(f"{what} {path} cannot be read safely ({reason}). {hint}") from e
    if not isinstance(obj, Tensor):
        raise io.BadFileError(f"{what} {path} holds a {type(obj).__name__}, not a tensor.")
    return obj


def read(
    path: str | Path,
    labels_path: str | Path | None = None,
    *,
    image_shape: tuple[int, ...],
    num_classes: int,
) -> TargetFile:
    """Open a targets file memory-mapped and tell its layout from its shape.

    ``image_shape`` and ``num_classes`` are the dataset's. A row of 1 + C entries is the
    authors' layout (an image and C targets), a row of C entries the aligned one; which is
    decided by the *dataset's* C (a file made for C + 1 classes would read as the authors'
    layout, and ``match`` would then find no images in it). ``labels_path``: a file of N
    integer labels, checked by ``match``.
    """
    path = Path(path)
    data = _load_tensor(path, "targets file", mmap=True)
    layout = _layout(path, data, tuple(image_shape), num_classes)
    labels = None
    if labels_path is not None:
        labels_path = Path(labels_path)
        labels = _read_labels(labels_path, path, len(data), num_classes)
    return TargetFile(path, data, layout, num_classes, labels, labels_path)


def _layout(path: Path, data: Tensor, image_shape: tuple[int, ...], num_classes: int) -> str:
    """The targets file's layout (IMAGES or ALIGNED) from its shape, refused if neither fits."""
    expected = (
        f"N x {num_classes + 1} x {shape_text(image_shape)} (an image and a target per class, the "
        f"authors' layout) or N x {num_classes} x {shape_text(image_shape)} (a target per class for each "
        f"training image, in training-set order), for this dataset's {num_classes} classes"
    )
    if not data.is_floating_point():
        raise io.BadFileError(
            f"targets file {path} holds {data.dtype} values, not floating-point ones."
        )
    if data.dim() != 2 + len(image_shape):
        raise io.BadFileError(
            f"targets file {path} is a {data.dim()}-dimensional tensor ({shape_text(data.shape)}); "
            f"expected {expected}."
        )
    if tuple(data.shape[2:]) != image_shape:
        raise io.BadFileError(
            f"targets file {path} holds {shape_text(data.shape[2:])} images and targets, the dataset "
            f"{shape_text(image_shape)} ones (its shape is {shape_text(data.shape)}; expected {expected})."
        )
    if data.shape[1] == num_classes + 1:
        layout = IMAGES
    elif data.shape[1] == num_classes:
        layout = ALIGNED
    else:
        raise io.BadFileError(
            f"targets file {path} has {data.shape[1]} entries per row ({shape_text(data.shape)}), "
            f"neither 1 + C = {num_classes + 1} nor C = {num_classes} for the dataset's C = "
            f"{num_classes} classes (expected {expected}): it was made for another number of classes."
        )
    return layout


def _read_labels(labels_path: Path, path: Path, rows: int, num_classes: int) -> Tensor:
    """The labels file's labels, one per targets-file row, checked against the classes."""
    raw = _load_tensor(labels_path, "labels file", mmap=False)
    if raw.is_floating_point() or raw.is_complex() or raw.dtype == torch.bool or raw.dim() != 1:
        raise io.BadFileError(
            f"labels file {labels_path} holds a {shape_text(raw.shape) or 'scalar'} {raw.dtype} "
            "tensor, not one integer label per row."
        )
    if len(raw) != rows:
        raise io.BadFileError(
            f"labels file {labels_path} has {len(raw):,} labels, the targets file {path} "
            f"{rows:,} rows."
        )
    labels = raw.long()
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise io.BadFileError(
            f"labels file {labels_path} has labels from {int(labels.min())} to "
            f"{int(labels.max())}; the dataset's classes are 0 to {num_classes - 1}."
        )
    return labels


def _chunks(n: int):
    for start in range(0, n, CHUNK):
        yield start, min(start + CHUNK, n)


def image_range(file: TargetFile) -> str:
    """``UNIT`` or ``SYMMETRIC``: the range of the file's images (read in chunks); a file whose
    images fit neither is refused."""
    lo, hi = math.inf, -math.inf
    for start, stop in _chunks(file.rows):
        chunk = file.images[start:stop].float()
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    found = SYMMETRIC if lo < SYMMETRIC_BELOW else UNIT
    low = -1.0 if found == SYMMETRIC else 0.0
    if lo < low - RANGE_SLACK or hi > 1.0 + RANGE_SLACK:
        raise io.BadFileError(
            f"targets file {file.path}: its images span [{lo:.4g}, {hi:.4g}], neither [0, 1] nor "
            "[-1, 1]; they cannot be matched to the training images."
        )
    return found


def quantise(x: Tensor) -> np.ndarray:
    """[n, D] uint8: images in [0, 1] as 8-bit values, round(255 x), one row per image."""
    return (x.float().flatten(1) * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def _match_images(file: TargetFile, ds: Dataset, found: str) -> tuple[Tensor, list[str], int]:
    """(order, problems, training images matched): each training image's file row, by the
    exact bytes of both sides quantised to 8 bits. With labels, a row of the same label is
    preferred among identical images, so that duplicates of different classes pair up right."""
    rows_of: dict[bytes, list[int]] = {}
    for start, stop in _chunks(file.rows):
        pixels = file.images[start:stop].float()
        if found == SYMMETRIC:
            pixels = 0.5 * pixels + 0.5
        for i, row in enumerate(quantise(pixels), start):
            rows_of.setdefault(row.tobytes(), []).append(i)
    file_labels = file.labels.tolist() if file.labels is not None else None
    y = ds.y_train.tolist()
    n = len(y)
    keys = [row.tobytes() for start, stop in _chunks(n) for row in quantise(ds.x_train[start:stop])]
    order = [-1] * n
    if file_labels is not None:  # first the rows of the same image and label
        for i, key in enumerate(keys):
            rows = rows_of.get(key)
            same = (
                next((j for j, r in enumerate(rows) if file_labels[r] == y[i]), None)
                if rows
                else None
            )
            if same is not None:
                order[i] = rows.pop(same)
    missing, relabelled = [], []
    for i, key in enumerate(keys):
        if order[i] >= 0:
            continue
        rows = rows_of.get(key)
        if rows:
            order[i] = rows.pop(0)
            if file_labels is not None:  # the first pass found no row of its label
                relabelled.append(i)
        else:
            missing.append(i)
    unused = sorted(r for rows in rows_of.values() for r in rows)

    problems = []
    if file.rows != n:
        problems.append(f"the file has {file.rows:,} rows, the training set {n:,} images")
    if missing:
        problems.append(
            f"{len(missing):,} of the {n:,} training images {'is' if len(missing) == 1 else 'are'} not "
            f"in the file (first: training image {missing[0]})"
        )
    if unused:
        problems.append(
            f"{len(unused):,} file row{'s match' if len(unused) > 1 else ' matches'} no training "
            f"image (first: file row {unused[0]})"
        )
    if relabelled:
        i = relabelled[0]
        problems.append(
            f"{len(relabelled):,} training image{'s are' if len(relabelled) > 1 else ' is'} in the "
            f"file under another label (first: training image {i}, label {y[i]} here, "
            f"{file_labels[order[i]]} in file row {order[i]})"
        )
    return torch.tensor(order, dtype=torch.long), problems, n - len(missing)  # cpu: the record


def _match_aligned(file: TargetFile, ds: Dataset) -> tuple[Tensor, list[str], int]:
    """(order, problems, matched) of the aligned layout: row i is training image i's."""
    n = len(ds.x_train)
    problems, matched = [], n  # (matched only counts when nothing differs)
    order = torch.arange(n)  # cpu: the record
    if file.rows != n:
        problems.append(
            f"the file has {file.rows:,} rows, the training set {n:,} images (the aligned layout "
            "holds row i's targets for training image i)"
        )
    elif file.labels is not None:
        differ = (file.labels != ds.y_train.cpu()).nonzero().flatten()
        if len(differ):
            i = int(differ[0])
            problems.append(
                f"{len(differ):,} of the {n:,} labels differ from the training set's (first: row "
                f"{i}, label {int(file.labels[i])} in the file, {int(ds.y_train[i])} here)"
            )
    return order, problems, matched


def match(file: TargetFile, ds: Dataset) -> dict:
    """Match ``file``'s rows to ``ds``'s training images; the record ``load`` trains from.

    Authors' layout: every training image must be in the file (after undoing the [-1, 1]
    normalisation, compared as 8-bit values) and every file row must be one of them, with the
    same label where the file has labels; duplicates are matched as multisets. Aligned layout:
    as many rows as training images, and the same labels if given. Anything else raises a
    ``io.BadFileError`` naming every difference found.

    The record: ``order`` [N_train] (the file row of each training image), ``layout``,
    ``range``, ``num_train``, ``num_classes``, ``input_shape``, the file's ``path`` (as given:
    a relative path is relative to the working directory, the project root in the workflow) and
    SHA-256 ``digest`` (and the labels file's), ``file_rows``, ``matched`` (training images found).

    Cost: the file's images are read twice, ``CHUNK`` rows at a time (the range, then the
    bytes), and the whole file once more for its digest; in memory, the 8-bit bytes of the
    file's images and of the training images (CIFAR-10: 2 x 50,000 x 3,072 B = 2 x 150 MB).
    """
    n, shape = len(ds.x_train), tuple(ds.x_train.shape[1:])
    if file.image_shape != shape or file.num_classes != ds.num_classes:
        raise io.BadFileError(
            f"targets file {file.path} was read for {file.num_classes} classes of "
            f"{shape_text(file.image_shape)} images; {ds.name!r} has {ds.num_classes} of {shape_text(shape)}."
        )
    if file.layout == IMAGES:
        found = image_range(file)
        order, problems, matched = _match_images(file, ds, found)
    else:
        found = UNIT
        order, problems, matched = _match_aligned(file, ds)
    if problems:
        raise io.BadFileError(
            f"targets file {file.path} ({file.layout} layout) does not match the training set of "
            f"{ds.name!r}: " + "; ".join(problems) + ". Nothing was trained; check that the file "
            "(and its labels file) belong to this dataset."
        )
    return {
        "source": FILE,
        "dataset": ds.name,
        "num_train": n,
        "num_classes": ds.num_classes,
        "input_shape": list(shape),
        "order": order,
        "layout": file.layout,
        "range": found,
        "matched": matched,
        "path": str(file.path),
        "digest": io.file_digest(file.path),
        "file_rows": file.rows,
        "file_shape": list(file.data.shape),
        "file_dtype": str(file.data.dtype),
        "labels_path": None if file.labels_path is None else str(file.labels_path),
        "labels_digest": None if file.labels_path is None else io.file_digest(file.labels_path),
    }


class FileTargets(TargetSource):
    """Targets read from a file: g(x_i, c) = PIXEL_SCALE x stored[order[i], c], converted to
    pixel space, on the batch's device and dtype.

    With ``aug`` (``pag_variant: follow``) each target goes through its image's crop and flip,
    as ``NearestNeighbors`` does with a representative (crop-with-zero-padding and flip are
    linear: this is the augmented g(x, c)); without it (``authors``), the stored target itself.
    ``gradients`` [rows, C, *image] and ``order`` [N_train] live on one device; a batch's
    ``index`` on that device is used as it is (no host synchronisation)."""

    def __init__(self, gradients: Tensor, order: Tensor, scale: float = 1.0):
        self.gradients = gradients
        self.order = order.to(gradients.device)
        self.scale = scale

    def for_batch(self, x: Tensor, index: Tensor, aug: CropFlip | None) -> Targets:
        rows = self.order[index.to(self.order.device)]

        def target(c: int) -> Tensor:
            g = self.gradients[rows, c].to(x.device, x.dtype) * self.scale
            return aug(g) if aug is not None else g

        return target


def to_device(t: Tensor, device) -> Tensor:
    """A copy of (memory-mapped) ``t`` on ``device``, made ``CHUNK`` rows at a time so that the
    host never holds more than a chunk of it."""
    try:
        out = torch.empty(t.shape, dtype=t.dtype, device=device)
    except torch.OutOfMemoryError as e:
        size = t.numel() * t.element_size() / 2**30
        raise RuntimeError(
            f"the file's targets ({shape_text(t.shape)} {t.dtype}, {size:.1f} GiB) do not fit on {device}; "
            "train on a device with more memory, or on the CPU."
        ) from e
    for start, stop in _chunks(len(t)):
        out[start:stop].copy_(t[start:stop])
    return out


def load(record_path: str | Path, ds: Dataset, device="cpu") -> FileTargets:
    """The ``file`` source for training on ``ds``: its record (built by ``match``) checked
    against the dataset, the targets file's digest checked against the record (a file changed
    since is refused: rebuild the record), the gradients memory-mapped, and on a non-CPU
    ``device`` copied there once (module docstring: the memory it takes)."""
    record_path = Path(record_path)
    rec = io.load(record_path, "file targets record", RECORD_KEYS)
    want = {
        "source": FILE,
        "dataset": ds.name,
        "num_train": len(ds.x_train),
        "num_classes": ds.num_classes,
        "input_shape": list(ds.input_shape),
    }
    differ = {k: (rec[k], v) for k, v in want.items() if rec[k] != v}
    if differ:
        raise io.BadFileError(
            f"targets record {record_path} was not built for this training set: {differ} (record, "
            "now); rebuild it with make_targets --source file."
        )
    path = Path(rec["path"])
    if not path.is_file():
        raise io.BadFileError(
            f"targets file {path}, which record {record_path} was built from, does not exist."
        )
    digest = io.file_digest(path)
    if digest != rec["digest"]:
        raise io.BadFileError(
            f"targets file {path} changed since the record {record_path} was built (SHA-256 "
            f"{rec['digest'][:12]}... then, {digest[:12]}... now); rebuild the record with "
            "make_targets --source file, which matches the file to the training set again."
        )
    file = read(path, image_shape=ds.input_shape, num_classes=ds.num_classes)
    if file.layout != rec["layout"] or file.rows != rec["file_rows"]:  # same bytes: cannot happen
        raise io.BadFileError(
            f"targets file {path} no longer reads as the record {record_path} says; rebuild it."
        )
    gradients = file.gradients
    if torch.device(device).type != "cpu":
        gradients = to_device(gradients, device)
    return FileTargets(gradients, rec["order"], PIXEL_SCALE[rec["range"]])

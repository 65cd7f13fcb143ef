"""The real datasets: CIFAR-10 and STL-10 through torchvision's dataset classes and on-disk
formats, and scikit-learn's bundled handwritten digits (the offline demo).

``root`` is a folder holding either the extracted dataset (``cifar-10-batches-py/``,
``stl10_binary/``), or its archive (``cifar-10-python.tar.gz``, ``stl10_binary.tar.gz``), which
is checked and extracted; with ``download=True`` a missing archive is fetched first. Every file
is checked against torchvision's MD5 sums before it is read (the CIFAR batches are pickles, so
nothing unverified is ever unpickled). Downloads and extractions go to a temporary name first:
an interrupted one leaves nothing that looks complete.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets as tv
from torchvision.datasets.utils import check_integrity, download_url, extract_archive

from pagrob import registry
from pagrob.data import Dataset
from pagrob.io import BadFileError


class DatasetUnavailable(BadFileError):
    """The dataset is not on disk (or is damaged) and cannot be fetched."""


@dataclass(frozen=True)
class Archive:
    title: str
    cls: type  # the torchvision dataset class (its attributes name files and MD5 sums)

    @property
    def folder(self) -> str:
        return self.cls.base_folder

    @property
    def archive(self) -> str:
        return self.cls.filename

    def files(self) -> list[tuple[str, str]]:
        files = list(self.cls.train_list) + list(self.cls.test_list)
        meta = getattr(self.cls, "meta", None)
        if meta:
            files.append([meta["filename"], meta["md5"]])
        return files

    def damaged(self, root: Path) -> list[str]:
        """Names of the extracted files that are missing or fail their MD5 sum."""
        return [
            name
            for name, md5 in self.files()
            if not check_integrity(str(root / self.folder / name), md5)
        ]


ARCHIVES = {
    name: Archive(d.title, getattr(tv, d.torchvision))
    for name, d in registry.DATASETS.items()
    if d.torchvision
}


def ensure_extracted(name: str, root, download: bool) -> Path:
    """Make sure ``root/<folder>`` holds the verified dataset; return ``root``."""
    spec = ARCHIVES[name]
    root = Path(root)
    damaged = spec.damaged(root)
    if not damaged:
        return root
    folder = root / spec.folder
    archive = root / spec.archive
    how = (
        f"Put {spec.archive} ({spec.cls.url}, MD5 {spec.cls.tgz_md5}) into {root}/, or its "
        f"extracted folder {spec.folder}/ there"
    )
    if folder.exists() and len(damaged) < len(spec.files()):
        raise DatasetUnavailable(
            f"{spec.title} in {folder} is incomplete or corrupt: {', '.join(damaged)} missing or "
            f"failing their MD5 sums. Delete {folder} and extract the archive again. {how}."
        )
    if not archive.exists():
        if not download:
            raise DatasetUnavailable(
                f"{spec.title} is not in {root} and downloading is off. {how}, or set "
                f"datasets.{name}.data.download: true where there is network."
            )
        _download(spec, root, how)
    if not check_integrity(str(archive), spec.cls.tgz_md5):
        raise DatasetUnavailable(
            f"{archive} is truncated or corrupt (its MD5 is not {spec.cls.tgz_md5}). "
            f"Delete it and download it again. {how}."
        )
    _extract(spec, archive, root)
    damaged = spec.damaged(root)
    if damaged:
        raise DatasetUnavailable(
            f"{archive} extracted, but {', '.join(damaged)} fail their MD5 sums; delete {folder} "
            f"and {archive} and download again."
        )
    return root


def _download(spec: Archive, root: Path, how: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        try:
            download_url(spec.cls.url, tmp, filename=spec.archive, md5=spec.cls.tgz_md5)
        except Exception as e:  # no network, HTTP errors, MD5 mismatch
            raise DatasetUnavailable(
                f"downloading {spec.title} from {spec.cls.url} failed ({type(e).__name__}: {e}). "
                f"{how}."
            ) from e
        Path(tmp, spec.archive).replace(root / spec.archive)


def _extract(spec: Archive, archive: Path, root: Path) -> None:
    with tempfile.TemporaryDirectory(dir=root, prefix=".extract-") as tmp:
        extract_archive(str(archive), tmp)
        extracted = Path(tmp) / spec.folder
        if not extracted.is_dir():
            raise DatasetUnavailable(f"{archive} does not contain the folder {spec.folder}/")
        target = root / spec.folder
        if target.exists():
            shutil.rmtree(target)
        extracted.replace(target)


SHAPES = {name: d.shape for name, d in registry.DATASETS.items()}


def check_arrays(name: str, where, x_train, y_train, x_test, y_test, classes) -> None:
    """Shapes, label ranges and counts of a loaded dataset, each failure named."""
    expected = SHAPES[name]
    problems = []
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if tuple(x.shape[1:]) != expected:
            problems.append(f"{split} images have shape {tuple(x.shape[1:])}, not {expected}")
        if len(x) != len(y):
            problems.append(f"{split} has {len(x)} images but {len(y)} labels")
        if len(y) and (min(y) < 0 or max(y) >= len(classes)):
            problems.append(f"{split} labels outside 0..{len(classes) - 1}")
        if len(x) == 0:
            problems.append(f"{split} is empty")
    if problems:
        raise DatasetUnavailable(
            f"{ARCHIVES[name].title} in {where} is not the expected dataset: {'; '.join(problems)}. "
            "Delete the extracted folder and its archive and download them again."
        )


def _from_uint8(name, x_train, y_train, x_test, y_test, classes) -> Dataset:
    """uint8 [N, C, H, W] arrays -> a Dataset in [0, 1] with per-channel statistics."""
    x_train = torch.from_numpy(np.ascontiguousarray(x_train)).float() / 255
    x_test = torch.from_numpy(np.ascontiguousarray(x_test)).float() / 255
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=torch.as_tensor(np.asarray(y_train), dtype=torch.long),
        x_test=x_test,
        y_test=torch.as_tensor(np.asarray(y_test), dtype=torch.long),
        classes=list(classes),
        mean=x_train.mean((0, 2, 3)),
        std=x_train.std((0, 2, 3)),
    )


def load_cifar(name: str, root, download: bool = False) -> Dataset:
    """CIFAR-10 or CIFAR-100 (its 100 fine labels): torchvision's pickled batches."""
    root = ensure_extracted(name, root, download)
    spec = ARCHIVES[name]
    try:
        train = spec.cls(str(root), train=True, download=False)
        test = spec.cls(str(root), train=False, download=False)
    except ValueError as e:  # e.g. batches whose size is not a whole number of images
        raise DatasetUnavailable(
            f"{spec.title} in {root} cannot be read ({e}); delete it and download it again"
        ) from e
    arrays = (
        train.data.transpose(0, 3, 1, 2),
        train.targets,
        test.data.transpose(0, 3, 1, 2),
        test.targets,
    )
    check_arrays(name, root, *arrays, train.classes)
    return _from_uint8(name, *arrays, train.classes)


def load_cifar10(root, download: bool = False) -> Dataset:
    return load_cifar("cifar10", root, download)


def load_stl10(root, download: bool = False) -> Dataset:
    """The labelled splits: 5,000 training and 8,000 test images of 96x96."""
    root = ensure_extracted("stl10", root, download)
    try:
        train = tv.STL10(str(root), split="train", download=False)
        test = tv.STL10(str(root), split="test", download=False)
    except ValueError as e:  # e.g. a file whose size is not a whole number of 96x96 images
        raise DatasetUnavailable(
            f"STL-10 in {root} cannot be read ({e}); delete it and download it again"
        ) from e
    arrays = (train.data, train.labels, test.data, test.labels)
    check_arrays("stl10", root, *arrays, train.classes)
    return _from_uint8("stl10", *arrays, train.classes)


#: the loader of each of the registry's torchvision datasets: (root, download) -> Dataset
LOADERS = {
    "cifar10": load_cifar10,
    "cifar100": lambda root, download=False: load_cifar("cifar100", root, download),
    "stl10": load_stl10,
}


def load_digits(test_fraction: float, seed: int) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), pixels scaled from 0..16
    to [0, 1], split per class with a fixed seed (stratified)."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.from_numpy(d.images).float().unsqueeze(1) / 16.0
    y = torch.from_numpy(d.target).long()
    g = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = round(test_fraction * len(idx))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train_idx, test_idx = torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values
    x_train = x[train_idx]
    return Dataset(
        name="digits",
        x_train=x_train,
        y_train=y[train_idx],
        x_test=x[test_idx],
        y_test=y[test_idx],
        classes=[str(c) for c in range(10)],
        mean=x_train.mean((0, 2, 3)),
        std=x_train.std((0, 2, 3)),
    )

"""The real datasets: CIFAR-10, STL-10 and Fashion-MNIST through torchvision's dataset classes
and on-disk formats, and scikit-learn's bundled handwritten digits (the offline demo).

``root`` is a folder holding either the extracted dataset (``cifar-10-batches-py/``,
``stl10_binary/``), or its archive (``cifar-10-python.tar.gz``, ``stl10_binary.tar.gz``), which
is checked and extracted; with ``download=True`` a missing archive is fetched first. Every file
is checked against torchvision's MD5 sums before it is read (the CIFAR batches are pickles, so
nothing unverified is ever unpickled). Downloads and extractions go to a temporary name first:
an interrupted one leaves nothing that looks complete.

Fashion-MNIST is its four original files (``train-images-idx3-ubyte.gz`` and the rest, gz or
not), found in this order: in ``root`` (flat, or torchvision's ``FashionMNIST/raw`` layout),
torchvision's download into ``root`` where ``download`` is on and the network allows it, then
the files Debian's package ``dataset-fashion-mnist`` installs (``SYSTEM_FASHION_MNIST``).
"""

from __future__ import annotations

import gzip
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


#: where Debian's package dataset-fashion-mnist puts the four gz files
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Fashion-MNIST's four files (without .gz) and the MD5 sums of their uncompressed contents.
#: torchvision publishes the gz files' sums (tv.FashionMNIST.resources), which only hold for the
#: original gz: Debian's package recompresses them with a normalised gzip header (its build's
#: strip-nondeterminism), so the gz bytes differ while the contents, which the gzip CRC also
#: checks, do not. These sums are of those contents (dataset-fashion-mnist
#: 0.0~git20200523.55506a9-1, the upstream repository's files), and hold for every copy.
FASHION_MNIST_FILES = (
    ("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    ("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9"),
    ("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a"),
    ("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965"),
)
#: (training, test) images of the original files
FASHION_MNIST_SIZES = registry.DATASETS["fashion_mnist"].sizes


def _fashion_mnist_ways(root) -> str:
    files = ", ".join(f"{name}.gz" for name, _ in FASHION_MNIST_FILES)
    return (
        f"Supply it in one of three ways: (1) put its four files ({files}; gz or not) into "
        f"{root}/ or {root}/FashionMNIST/raw/ (datasets.fashion_mnist.data.root); (2) set "
        "datasets.fashion_mnist.data.download: true where there is network (torchvision downloads "
        "them into that root); (3) install Debian's package: apt-get install "
        f"dataset-fashion-mnist (its files land in {SYSTEM_FASHION_MNIST}/)."
    )


def find_fashion_mnist_files(folder) -> dict[str, Path] | None:
    """The four files in ``folder`` (flat) or ``folder/FashionMNIST/raw``, each uncompressed or
    gz (the uncompressed one first), as {name without .gz: path}; None where any is missing."""
    for where in (Path(folder), Path(folder) / "FashionMNIST" / "raw"):
        found = {}
        for name, _ in FASHION_MNIST_FILES:
            for candidate in (where / name, where / f"{name}.gz"):
                if candidate.is_file():
                    found[name] = candidate
                    break
        if len(found) == len(FASHION_MNIST_FILES):
            return found
    return None


def _read_fashion_mnist(files: dict[str, Path], ways: str) -> Dataset:
    """Uncompress the files into a temporary FashionMNIST/raw folder, check each content's MD5
    sum, then read them through torchvision's FashionMNIST."""
    sums = dict(FASHION_MNIST_FILES)
    with tempfile.TemporaryDirectory(prefix="fashion-mnist-") as tmp:
        raw = Path(tmp) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for name, path in files.items():
            if path.suffix == ".gz":
                try:
                    with gzip.open(path, "rb") as src, open(raw / name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                except (OSError, EOFError) as e:  # not gzip, truncated, CRC mismatch
                    raise DatasetUnavailable(
                        f"{path} is truncated or corrupt ({type(e).__name__}: {e}). Delete it. "
                        f"{ways}"
                    ) from e
            else:
                (raw / name).symlink_to(path.resolve())
            if not check_integrity(str(raw / name), sums[name]):
                raise DatasetUnavailable(
                    f"{path} is not Fashion-MNIST's {name}: the MD5 of its contents is not "
                    f"{sums[name]} (damaged, truncated or another dataset). Delete it. {ways}"
                )
        train = tv.FashionMNIST(tmp, train=True, download=False)
        test = tv.FashionMNIST(tmp, train=False, download=False)
    arrays = (
        train.data.unsqueeze(1).numpy(),
        train.targets,
        test.data.unsqueeze(1).numpy(),
        test.targets,
    )
    where = files[FASHION_MNIST_FILES[0][0]].parent
    check_arrays("fashion_mnist", where, *arrays, train.classes)
    sizes = FASHION_MNIST_SIZES
    if (len(arrays[0]), len(arrays[2])) != sizes:
        raise DatasetUnavailable(
            f"Fashion-MNIST in {where} has {len(arrays[0])} training and {len(arrays[2])} test "
            f"images, not {sizes[0]} and {sizes[1]}: not the original files. {ways}"
        )
    return _from_uint8("fashion_mnist", *arrays, train.classes)


def load_fashion_mnist(
    root, download: bool = False, system=SYSTEM_FASHION_MNIST
) -> tuple[Dataset, Path]:
    """Fashion-MNIST from the first place that has it (the module's docstring); returns the
    dataset and the folder its files came from."""
    ways = _fashion_mnist_ways(root)
    files = find_fashion_mnist_files(root)
    failed = ""
    if files is None and download:
        try:
            tv.FashionMNIST(str(root), train=True, download=True)
            files = find_fashion_mnist_files(root)
        except Exception as e:  # no network, HTTP errors, MD5 mismatch
            failed = f" Downloading it failed ({type(e).__name__}: {e})."
    if files is None:
        files = find_fashion_mnist_files(system)
    if files is None:
        raise DatasetUnavailable(
            f"Fashion-MNIST is not in {root} (nor in {root}/FashionMNIST/raw), downloading is "
            f"{'on' if download else 'off'} and Debian's package is not installed "
            f"({system} has no such files).{failed} {ways}"
        )
    return _read_fashion_mnist(files, ways), files[FASHION_MNIST_FILES[0][0]].parent


#: the loader of each of the registry's torchvision datasets: (root, download) -> Dataset
LOADERS = {
    "cifar10": load_cifar10,
    "cifar100": lambda root, download=False: load_cifar("cifar100", root, download),
    "stl10": load_stl10,
    "fashion_mnist": lambda root, download=False: load_fashion_mnist(root, download)[0],
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

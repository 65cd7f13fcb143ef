"""Tiny CIFAR-10 and STL-10 copies in the real on-disk formats, and the MD5 sums that make
torchvision accept them (tests patch its classes' checksum lists with these)."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from torchvision import datasets as tv


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_cifar10(folder: Path, per_batch: int = 20, n_test: int = 30, seed: int = 0) -> dict:
    """cifar-10-batches-py/: five training batches, a test batch, batches.meta (pickles)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sums, images = {}, {}

    def batch(name, n):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        labels[:10] = list(range(10))  # every class present
        with open(folder / name, "wb") as f:
            pickle.dump(
                {"batch_label": name, "labels": labels, "data": data, "filenames": []},
                f,
                protocol=2,
            )
        sums[name] = md5(folder / name)
        images[name] = (data, labels)

    for i in range(1, 6):
        batch(f"data_batch_{i}", per_batch)
    batch("test_batch", n_test)
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch}, f, protocol=2)
    sums["batches.meta"] = md5(folder / "batches.meta")
    return {"sums": sums, "images": images}


def make_cifar100(folder: Path, n_train: int = 120, n_test: int = 110, seed: int = 0) -> dict:
    """cifar-100-python/: train and test pickles with fine and coarse labels, and meta."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sums, images = {}, {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        fine[:100] = list(range(100))  # every class present
        with open(folder / name, "wb") as f:
            pickle.dump(
                {
                    "filenames": [],
                    "batch_label": name,
                    "fine_labels": fine,
                    "coarse_labels": [v // 5 for v in fine],
                    "data": data,
                },
                f,
                protocol=2,
            )
        sums[name] = md5(folder / name)
        images[name] = (data, fine)
    with open(folder / "meta", "wb") as f:
        pickle.dump(
            {
                "fine_label_names": [f"class_{i}" for i in range(100)],
                "coarse_label_names": [f"super_{i}" for i in range(20)],
            },
            f,
            protocol=2,
        )
    sums["meta"] = md5(folder / "meta")
    return {"sums": sums, "images": images}


def accept_cifar100(monkeypatch: pytest.MonkeyPatch, sums: dict) -> None:
    monkeypatch.setattr(tv.CIFAR100, "train_list", [["train", sums["train"]]])
    monkeypatch.setattr(tv.CIFAR100, "test_list", [["test", sums["test"]]])
    monkeypatch.setattr(
        tv.CIFAR100, "meta", {"filename": "meta", "key": "fine_label_names", "md5": sums["meta"]}
    )


def make_stl10(folder: Path, n_train: int = 20, n_test: int = 30, seed: int = 0) -> dict:
    """stl10_binary/: column-major uint8 images, 1-based uint8 labels, class names, folds."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sums, images = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        y = rng.integers(1, 11, n).astype(np.uint8)
        y[:10] = np.arange(1, 11)
        np.transpose(x, (0, 1, 3, 2)).tofile(folder / f"{split}_X.bin")  # stored column-major
        y.tofile(folder / f"{split}_y.bin")
        images[split] = (x, y - 1)
    rng.integers(0, 256, (2, 3, 96, 96), dtype=np.uint8).tofile(folder / "unlabeled_X.bin")
    for name in ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin"):
        sums[name] = md5(folder / name)
    classes = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(classes) + "\n")
    (folder / "fold_indices.txt").write_text(
        "\n".join(" ".join(map(str, range(n_train))) for _ in range(10))
    )
    return {"sums": sums, "images": images}


def tar_gz(folder: Path, archive: Path) -> str:
    with tarfile.open(archive, "w:gz") as t:
        t.add(folder, arcname=folder.name)
    return md5(archive)


def accept_cifar10(
    monkeypatch: pytest.MonkeyPatch, sums: dict, archive_md5: str | None = None
) -> None:
    monkeypatch.setattr(
        tv.CIFAR10,
        "train_list",
        [[f"data_batch_{i}", sums[f"data_batch_{i}"]] for i in range(1, 6)],
    )
    monkeypatch.setattr(tv.CIFAR10, "test_list", [["test_batch", sums["test_batch"]]])
    monkeypatch.setattr(
        tv.CIFAR10,
        "meta",
        {"filename": "batches.meta", "key": "label_names", "md5": sums["batches.meta"]},
    )
    if archive_md5:
        monkeypatch.setattr(tv.CIFAR10, "tgz_md5", archive_md5)


def accept_stl10(
    monkeypatch: pytest.MonkeyPatch, sums: dict, archive_md5: str | None = None
) -> None:
    monkeypatch.setattr(
        tv.STL10,
        "train_list",
        [[n, sums[n]] for n in ("train_X.bin", "train_y.bin", "unlabeled_X.bin")],
    )
    monkeypatch.setattr(tv.STL10, "test_list", [[n, sums[n]] for n in ("test_X.bin", "test_y.bin")])
    if archive_md5:
        monkeypatch.setattr(tv.STL10, "tgz_md5", archive_md5)


def make_fashion_mnist(
    folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True, seed: int = 0
) -> dict:
    """Fashion-MNIST's four files in the idx format (big-endian magic and sizes, then uint8),
    gz-compressed (the originals) or not, in ``folder``; each class present in both splits."""
    import gzip
    import hashlib
    import struct

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sums, arrays = {}, {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(y)
        arrays[prefix] = (x, y)
        for kind, body, head in (
            ("images-idx3-ubyte", x, struct.pack(">IIII", 0x803, n, 28, 28)),
            ("labels-idx1-ubyte", y, struct.pack(">II", 0x801, n)),
        ):
            raw = head + body.tobytes()
            name = f"{prefix}-{kind}"
            path = folder / (f"{name}.gz" if gz else name)
            path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
            sums[name] = hashlib.md5(raw).hexdigest()  # of the contents, as the loader checks
    return {"sums": sums, "arrays": arrays}


def accept_fashion_mnist(monkeypatch: pytest.MonkeyPatch, fake: dict) -> None:
    """Let the loader take the generated files: their contents' MD5 sums and their sizes for the
    originals'."""
    from pagrob import datasets

    names = [name for name, _ in datasets.FASHION_MNIST_FILES]
    monkeypatch.setattr(datasets, "FASHION_MNIST_FILES", tuple((n, fake["sums"][n]) for n in names))
    sizes = (len(fake["arrays"]["train"][1]), len(fake["arrays"]["t10k"][1]))
    monkeypatch.setattr(datasets, "FASHION_MNIST_SIZES", sizes)

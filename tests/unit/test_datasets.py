"""CIFAR-10, STL-10 and Fashion-MNIST loading through torchvision's classes on generated files
in the real formats; archives, damaged files and the offline error; the digits split; the
Fashion-MNIST subsets."""

import subprocess
import sys
import urllib.error

import pytest
import torch

from conftest import ROOT
from fake_datasets import (
    accept_cifar10,
    accept_cifar100,
    accept_fashion_mnist,
    accept_stl10,
    make_cifar10,
    make_cifar100,
    make_fashion_mnist,
    make_stl10,
    tar_gz,
)
from pagrob import datasets
from pagrob.datasets import DatasetUnavailable


def test_cifar10_loads_real_format(tmp_path, monkeypatch):
    fake = make_cifar10(tmp_path / "cifar-10-batches-py")
    accept_cifar10(monkeypatch, fake["sums"])
    ds = datasets.load_cifar10(tmp_path)
    assert ds.x_train.shape == (100, 3, 32, 32) and ds.x_test.shape == (30, 3, 32, 32)
    assert ds.classes[0] == "airplane" and ds.num_classes == 10
    data, labels = fake["images"]["data_batch_1"]
    # CIFAR rows are channel-major: the first 1024 bytes are the red plane
    expected = torch.from_numpy(data[0].reshape(3, 32, 32)).float() / 255
    torch.testing.assert_close(ds.x_train[0], expected)
    assert ds.y_train[:20].tolist() == labels
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    torch.testing.assert_close(ds.mean, ds.x_train.mean((0, 2, 3)))


def test_cifar100_loads_real_format_through_the_data_step(tmp_path, monkeypatch):
    """CIFAR-100's pickles (fine and coarse labels, meta), read by the registry's loader: 100
    classes named by the fine labels; the data step prepares it as the workflow runs it."""
    fake = make_cifar100(tmp_path / "cifar-100-python")
    accept_cifar100(monkeypatch, fake["sums"])
    ds = datasets.LOADERS["cifar100"](tmp_path)
    assert ds.x_train.shape == (120, 3, 32, 32) and ds.x_test.shape == (110, 3, 32, 32)
    assert ds.num_classes == 100 and ds.classes[:2] == ["class_0", "class_1"]
    data, fine = fake["images"]["train"]
    torch.testing.assert_close(ds.x_train[0], torch.from_numpy(data[0].reshape(3, 32, 32)) / 255)
    assert ds.y_train.tolist() == fine  # the fine labels, not the 20 coarse ones
    assert ds.y_test.max() == 99
    # the data step: as the rule calls it (prepare_data --dataset cifar100 --root ...)
    from pagrob import data
    from pagrob.steps import prepare_data

    out = tmp_path / "data.pt"
    argv = ["prepare_data", "--dataset", "cifar100", "--root", str(tmp_path), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    prepare_data.main()
    assert data.load_prepared(out).num_classes == 100


def test_stl10_loads_real_format(tmp_path, monkeypatch):
    fake = make_stl10(tmp_path / "stl10_binary")
    accept_stl10(monkeypatch, fake["sums"])
    ds = datasets.load_stl10(tmp_path)
    assert ds.x_train.shape == (20, 3, 96, 96) and ds.x_test.shape == (30, 3, 96, 96)
    x, y = fake["images"]["train"]
    torch.testing.assert_close(ds.x_train[3], torch.from_numpy(x[3]).float() / 255)
    assert ds.y_train.tolist() == y.tolist()
    assert ds.classes[2] == "car"


def test_archive_is_checked_and_extracted(tmp_path, monkeypatch):
    src = tmp_path / "src"
    fake = make_cifar10(src / "cifar-10-batches-py")
    root = tmp_path / "root"
    root.mkdir()
    archive_md5 = tar_gz(src / "cifar-10-batches-py", root / "cifar-10-python.tar.gz")
    accept_cifar10(monkeypatch, fake["sums"], archive_md5)
    ds = datasets.load_cifar10(root)
    assert len(ds.x_train) == 100
    assert (root / "cifar-10-batches-py" / "data_batch_3").exists()
    assert not list(root.glob(".extract-*"))  # no temporary folder left


def test_truncated_archive_is_a_named_error(tmp_path, monkeypatch):
    src = tmp_path / "src"
    fake = make_stl10(src / "stl10_binary")
    root = tmp_path / "root"
    root.mkdir()
    archive = root / "stl10_binary.tar.gz"
    archive_md5 = tar_gz(src / "stl10_binary", archive)
    accept_stl10(monkeypatch, fake["sums"], archive_md5)
    archive.write_bytes(archive.read_bytes()[:1000])
    with pytest.raises(
        DatasetUnavailable, match=r"stl10_binary.tar.gz is truncated or corrupt .*Delete it"
    ):
        datasets.load_stl10(root)
    assert not (root / "stl10_binary").exists()  # nothing partial left behind


def test_damaged_extracted_file_is_named(tmp_path, monkeypatch):
    fake = make_cifar10(tmp_path / "cifar-10-batches-py")
    accept_cifar10(monkeypatch, fake["sums"])
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DatasetUnavailable, match=r"incomplete or corrupt: data_batch_2"):
        datasets.load_cifar10(tmp_path)


def test_offline_and_absent_says_where_to_put_which_archive(tmp_path):
    with pytest.raises(DatasetUnavailable) as e:
        datasets.load_cifar10(tmp_path / "nowhere", download=False)
    message = str(e.value)
    assert "cifar-10-python.tar.gz" in message and str(tmp_path / "nowhere") in message
    assert "download: true" in message


def test_failed_download_says_where_to_put_which_archive(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(datasets, "download_url", no_network)
    with pytest.raises(
        DatasetUnavailable, match=r"downloading STL-10 .* failed .*Put stl10_binary.tar.gz"
    ):
        datasets.load_stl10(tmp_path, download=True)
    assert (
        not list(tmp_path.glob(".download-*")) and not (tmp_path / "stl10_binary.tar.gz").exists()
    )


def test_prepare_data_step_fails_cleanly_offline(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pagrob.steps.prepare_data",
            "--dataset",
            "stl10",
            "--root",
            str(tmp_path / "stl"),
            "--download",
            "false",
            "--out",
            str(tmp_path / "data.pt"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: STL-10 is not in")
    assert "stl10_binary.tar.gz" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data.pt").exists()


def test_digits_split_is_stratified_and_fixed():
    ds = datasets.load_digits(0.3, seed=0)
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.x_train.max() == 1.0 and ds.x_train.min() == 0.0
    for c in range(10):
        n_test, n_train = (ds.y_test == c).sum().item(), (ds.y_train == c).sum().item()
        assert abs(n_test / (n_test + n_train) - 0.3) < 0.01
    again = datasets.load_digits(0.3, seed=0)
    assert torch.equal(ds.x_test, again.x_test)
    # no image is in both splits
    train = {tuple(v.tolist()) for v in ds.x_train.flatten(1)}
    overlap = sum(tuple(v.tolist()) in train for v in ds.x_test.flatten(1))
    assert overlap < 5  # the digits data has a few exact duplicates across different samples


@pytest.mark.parametrize(
    "layout, gz", [(".", True), ("FashionMNIST/raw", False), ("FashionMNIST/raw", True)]
)
def test_fashion_mnist_reads_its_files_flat_or_in_torchvisions_layout(
    tmp_path, monkeypatch, layout, gz
):
    fake = make_fashion_mnist(tmp_path / "root" / layout, gz=gz)
    accept_fashion_mnist(monkeypatch, fake)
    ds, where = datasets.load_fashion_mnist(tmp_path / "root", system=tmp_path / "none")
    assert where == tmp_path / "root" / layout
    for split, (x, y) in (("train", fake["arrays"]["train"]), ("test", fake["arrays"]["t10k"])):
        assert getattr(ds, f"x_{split}").shape == (len(y), 1, 28, 28)
        torch.testing.assert_close(getattr(ds, f"x_{split}")[:, 0], torch.from_numpy(x) / 255)
        assert getattr(ds, f"y_{split}").tolist() == y.tolist()
    assert ds.classes[0] == "T-shirt/top" and ds.num_classes == 10
    torch.testing.assert_close(ds.mean, ds.x_train.mean((0, 2, 3)))


def test_fashion_mnist_is_taken_from_root_then_download_then_debians_package(tmp_path, monkeypatch):
    system = make_fashion_mnist(tmp_path / "debian", seed=1)
    accept_fashion_mnist(monkeypatch, system)
    tried = []

    def offline(self):
        tried.append(self.root)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets.tv.FashionMNIST, "download", offline)
    # nothing in the root, the download fails: Debian's files, after the download was tried
    ds, where = datasets.load_fashion_mnist(tmp_path / "root", True, system=tmp_path / "debian")
    assert where == tmp_path / "debian" and tried == [str(tmp_path / "root")]
    assert ds.y_train.tolist() == system["arrays"]["train"][1].tolist()
    # the root's own files come first, and no download is tried
    own = make_fashion_mnist(tmp_path / "root", seed=2)
    monkeypatch.setattr(
        datasets,
        "FASHION_MNIST_FILES",
        tuple((name, own["sums"][name]) for name, _ in datasets.FASHION_MNIST_FILES),
    )
    ds, where = datasets.load_fashion_mnist(tmp_path / "root", True, system=tmp_path / "debian")
    assert where == tmp_path / "root" and len(tried) == 1
    assert ds.y_train.tolist() == own["arrays"]["train"][1].tolist()


def test_missing_fashion_mnist_names_the_three_ways_to_supply_it(tmp_path):
    with pytest.raises(DatasetUnavailable) as e:
        datasets.load_fashion_mnist(tmp_path / "root", False, system=tmp_path / "none")
    msg = str(e.value)
    assert f"not in {tmp_path / 'root'}" in msg and "downloading is off" in msg
    assert "datasets.fashion_mnist.data.root" in msg  # (1) the files in the root
    assert "train-images-idx3-ubyte.gz" in msg and "FashionMNIST/raw" in msg
    assert "datasets.fashion_mnist.data.download: true" in msg  # (2) the download
    assert "apt-get install dataset-fashion-mnist" in msg  # (3) Debian's package
    assert str(datasets.SYSTEM_FASHION_MNIST) in msg


def test_damaged_fashion_mnist_files_are_named_not_read(tmp_path, monkeypatch):
    fake = make_fashion_mnist(tmp_path)
    accept_fashion_mnist(monkeypatch, fake)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-5])  # truncated: gzip finds it
    with pytest.raises(DatasetUnavailable, match="t10k-labels-idx1-ubyte.gz is truncated or co"):
        datasets.load_fashion_mnist(tmp_path, system=tmp_path / "none")
    # an uncompressed file with other contents (one pixel changed): its contents' MD5 fails
    fake = make_fashion_mnist(tmp_path / "raw", gz=False)
    accept_fashion_mnist(monkeypatch, fake)
    images = tmp_path / "raw" / "train-images-idx3-ubyte"
    body = bytearray(images.read_bytes())
    body[-1] ^= 1
    images.write_bytes(bytes(body))
    with pytest.raises(DatasetUnavailable, match="is not Fashion-MNIST's train-images-idx3-ubyte"):
        datasets.load_fashion_mnist(tmp_path / "raw", system=tmp_path / "none")


def test_fashion_mnist_subset_is_class_balanced_fixed_and_through_the_data_step(
    tmp_path, monkeypatch
):
    from pagrob import data
    from pagrob.steps import prepare_data

    fake = make_fashion_mnist(tmp_path / "root", n_train=60, n_test=30)
    accept_fashion_mnist(monkeypatch, fake)
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST", tmp_path / "none")
    out = tmp_path / "data.pt"
    argv = ["prepare_data", "--dataset", "fashion_mnist", "--root", str(tmp_path / "root")]
    argv += ["--train-size", "20", "--seed", "3", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    prepare_data.main()
    ds = data.load_prepared(out)
    assert len(ds.y_train) == 20 and torch.bincount(ds.y_train).tolist() == [2] * 10
    assert ds.y_test.tolist() == fake["arrays"]["t10k"][1].tolist()  # the test set whole
    full, _ = datasets.load_fashion_mnist(tmp_path / "root")
    again = data.subset(full, 20, seed=3)
    assert torch.equal(again.x_train, ds.x_train)  # fixed by its seed
    kept = {tuple(v.tolist()) for v in full.x_train.flatten(1)}
    assert all(tuple(v.tolist()) in kept for v in ds.x_train.flatten(1))
    torch.testing.assert_close(ds.mean, ds.x_train.mean((0, 2, 3)))  # the subset's statistics
    assert not torch.equal(data.subset(full, 20, seed=4).x_train, ds.x_train)
    assert data.subset(full, 0, seed=3) is full  # 0: all
    with pytest.raises(ValueError, match="train_size to at most 60"):
        data.subset(full, 61, seed=3)

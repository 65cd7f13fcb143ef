"""The file source: targets someone else computed, in the authors' layout (N x (1 + C) x image,
rows in any order, images in [-1, 1], labels apart) or aligned with our training set (N x C x
image). make_targets matches the file to the training images and writes a record; training
reads the targets through it (pixel space, following the augmentation or not); a file that does
not fit is refused naming what differs."""

import pytest
import torch

from conftest import settings_json
from pagrob import io, models, sources, target_files
from pagrob.data import CropFlip, Dataset, save_prepared
from pagrob.io import BadFileError
from pagrob.target_files import FileTargets, match, read

N, C, SHAPE = 48, 4, (3, 8, 8)


@pytest.fixture(scope="module")
def ds():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (N, *SHAPE), generator=g).float() / 255
    y = torch.arange(N) % C
    x[7] = x[3]  # a duplicate image, as real datasets have: matched as a multiset
    x[19] = x[3]  # ... and one of another class (3 vs 19: classes 3 and 3; 7: class 3)
    y[19] = 2
    return Dataset(
        "img", x, y, x[:8], y[:8], list("abcd"), torch.full((3,), 0.5), torch.full((3,), 0.25)
    )


@pytest.fixture(scope="module")
def grads():
    """The pixel-space targets of each training image and class."""
    return torch.randn(N, C, *SHAPE, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def perm():
    return torch.randperm(N, generator=torch.Generator().manual_seed(2))


def authors_file(tmp_path, ds, grads, perm, symmetric=True, labels=True):
    """The released format: row i = (image perm[i], its targets), images in [-1, 1] with the
    targets as gradients with respect to them (half the pixel-space ones)."""
    x = ds.x_train[perm]
    images, targets = (2 * x - 1, grads[perm] / 2) if symmetric else (x, grads[perm])
    data = torch.cat([images[:, None], targets], 1)
    torch.save(data, tmp_path / "sbg_data.pt")
    if labels:
        torch.save(ds.y_train[perm], tmp_path / "sbg_label.pt")
    return tmp_path / "sbg_data.pt", (tmp_path / "sbg_label.pt" if labels else None)


def source_of(record, perm, ds, labels=True):
    """The training image whose targets sit in each training image's matched row: the image
    itself, or an identical copy (3 and 7 are interchangeable; 19, of another class, only
    without labels)."""
    got = perm[record["order"]]
    assert sorted(got.tolist()) == list(range(N))  # every row used once
    assert torch.equal(ds.x_train[got], ds.x_train)
    if labels:
        assert torch.equal(ds.y_train[got], ds.y_train)
    return got


def read_for(path, labels=None):
    return read(path, labels, image_shape=SHAPE, num_classes=C)


def run_step(module, argv, monkeypatch):
    monkeypatch.setattr("sys.argv", [module.__name__, *map(str, argv)])
    module.main()


def spy_on_loaded_targets(monkeypatch) -> list:
    """Every for_batch call of the source the train step loads: (x, index, aug, targets)."""
    calls, real = [], target_files.load

    def spying(*args, **kwargs):
        src = real(*args, **kwargs)
        inner = src.for_batch

        def for_batch(x, index, aug):
            t = inner(x, index, aug)
            calls.append((x.clone(), index.clone(), aug, [t(c).clone() for c in range(C)]))
            return t

        src.for_batch = for_batch
        return src

    monkeypatch.setattr(target_files, "load", spying)
    return calls


def train(tmp_path, monkeypatch, record, variant, out="m.pt", epochs=2):
    from pagrob.steps import train as step

    run_step(
        step,
        [
            "--data",
            tmp_path / "d.pt",
            "--arch",
            "small_cnn",
            "--settings",
            settings_json(
                epochs=epochs,
                batch_size=16,
                lr=0.05,
                crop_padding=1,
                flip=True,
                lam=1,
                pag_variant=variant,
            ),
            "--source",
            "file",
            "--targets",
            record,
            "--device",
            "cpu",
            "--out",
            tmp_path / out,
        ],
        monkeypatch,
    )
    return models.load_model(tmp_path / out)[1]


def make_record(tmp_path, monkeypatch, data, labels=None, out="file.pt"):
    from pagrob.steps import make_targets

    argv = [
        "--data",
        tmp_path / "d.pt",
        "--source",
        "file",
        "--file",
        data,
        "--device",
        "cpu",
        "--out",
        tmp_path / out,
    ]
    run_step(make_targets, argv + (["--labels", labels] if labels else []), monkeypatch)
    return tmp_path / out


@pytest.mark.parametrize("variant", ["follow", "authors"])
def test_authors_layout_shuffled_in_symmetric_range_trains_on_its_targets(
    tmp_path, monkeypatch, capsys, ds, grads, perm, variant
):
    save_prepared(ds, tmp_path / "d.pt")
    data, labels = authors_file(tmp_path, ds, grads, perm)
    record_path = make_record(tmp_path, monkeypatch, data, labels)
    log = capsys.readouterr().out
    assert "layout images, images in [-1, 1]" in log and "48 of 48 training images matched" in log
    record = io.load(record_path, "record")
    assert record["layout"] == "images" and record["range"] == "[-1, 1]"
    source = source_of(record, perm, ds)  # row order[i] holds training image i (or a copy)
    assert record["digest"] == io.file_digest(data) and "order" in record and "data" not in record

    calls = spy_on_loaded_targets(monkeypatch)
    meta = train(tmp_path, monkeypatch, record_path, variant)
    assert meta["source"] == "file" and meta["settings"]["pag_variant"] == variant
    assert len(calls) == 2 * 3  # epochs x steps
    for x, index, aug, targets in calls:  # grads[index]: the pixel-space targets of these images
        if variant == "follow":  # the augmented batch; targets through the same draw
            assert aug is not None and torch.equal(x, aug(ds.x_train[index]))
            for c in range(C):
                torch.testing.assert_close(targets[c], aug(grads[source[index], c]))
        else:  # the un-augmented batch and targets
            assert aug is None and torch.equal(x, ds.x_train[index])
            for c in range(C):
                torch.testing.assert_close(targets[c], grads[source[index], c])


def test_aligned_layout_in_unit_range_trains(tmp_path, monkeypatch, capsys, ds, grads):
    save_prepared(ds, tmp_path / "d.pt")
    torch.save(grads.clone(), tmp_path / "aligned.pt")
    record_path = make_record(tmp_path, monkeypatch, tmp_path / "aligned.pt")
    assert "layout aligned, images in [0, 1]" in capsys.readouterr().out
    record = io.load(record_path, "record")
    assert torch.equal(record["order"], torch.arange(N)) and record["range"] == "[0, 1]"
    calls = spy_on_loaded_targets(monkeypatch)
    train(tmp_path, monkeypatch, record_path, "follow", epochs=1)
    for _x, index, aug, targets in calls:
        for c in range(C):
            torch.testing.assert_close(targets[c], aug(grads[index, c]))


def test_authors_layout_in_unit_range_without_labels(tmp_path, ds, grads, perm):
    data, _ = authors_file(tmp_path, ds, grads, perm, symmetric=False, labels=False)
    record = match(read_for(data), ds)
    assert record["range"] == "[0, 1]" and record["labels_path"] is None
    source = source_of(record, perm, ds, labels=False)
    src = FileTargets(
        read_for(data).gradients, record["order"], target_files.PIXEL_SCALE[record["range"]]
    )
    index = torch.tensor([5, 0, 19, 7])
    for c in range(C):
        torch.testing.assert_close(
            src.for_batch(ds.x_train[index], index, None)(c), grads[source[index], c]
        )


def test_duplicates_pair_up_by_label(tmp_path, ds, grads, perm):
    """Training images 3, 7 (class 3) and 19 (class 2) are the same image: each gets a row of its
    own, and 19 the one labelled 2."""
    data, labels = authors_file(tmp_path, ds, grads, perm)
    source = source_of(match(read_for(data, labels), ds), perm, ds)
    assert source[19] == 19 and {int(source[3]), int(source[7])} == {3, 7}


def test_file_targets_follow_a_draw_in_float64(ds, grads):
    aug = CropFlip.sample(4, 1, True, torch.Generator().manual_seed(3))
    index = torch.tensor([1, 2, 3, 40])
    src = FileTargets(grads / 2, torch.arange(N), scale=2.0)
    x = aug(ds.x_train[index]).double()
    t = src.for_batch(x, index, aug)
    assert t(1).dtype == torch.float64
    torch.testing.assert_close(t(1), aug(grads[index, 1]).double())


# --- files that do not fit ------------------------------------------------------------------------


def refused(fn, *patterns):
    with pytest.raises(BadFileError) as e:
        fn()
    for p in patterns:
        assert p in str(e.value), f"{p!r} not in: {e.value}"
    return str(e.value)


def test_wrong_count(tmp_path, ds, grads, perm):
    data, labels = authors_file(tmp_path, ds, grads, perm[:-1])
    refused(
        lambda: match(read_for(data, labels), ds),
        "the file has 47 rows, the training set 48 images",
        f"1 of the 48 training images is not in the file (first: training image {int(perm[-1])})",
    )
    data, _ = authors_file(tmp_path, ds, grads, torch.cat([perm, perm[:1]]), labels=False)
    refused(
        lambda: match(read_for(data), ds),
        "the file has 49 rows",
        "1 file row matches no training image (first: file row",
    )
    torch.save(grads[:-1].clone(), tmp_path / "aligned.pt")
    refused(
        lambda: match(read_for(tmp_path / "aligned.pt"), ds),
        "the file has 47 rows, the training set 48 images (the aligned layout",
    )


def test_wrong_image_shape(tmp_path):
    torch.save(torch.zeros(N, C + 1, 3, 7, 7), tmp_path / "f.pt")
    refused(
        lambda: read_for(tmp_path / "f.pt"),
        "holds 3 x 7 x 7 images and targets, the dataset 3 x 8 x 8 ones",
    )
    torch.save(torch.zeros(N, C + 1, 192), tmp_path / "f.pt")
    refused(
        lambda: read_for(tmp_path / "f.pt"),
        "is a 3-dimensional tensor (48 x 5 x 192)",
        "N x 5 x 3 x 8 x 8",
    )


def test_wrong_number_of_classes(tmp_path):
    torch.save(torch.zeros(N, C + 3, *SHAPE), tmp_path / "f.pt")
    refused(
        lambda: read_for(tmp_path / "f.pt"),
        "7 entries per row",
        "neither 1 + C = 5 nor C = 4",
        "another number of classes",
    )
    torch.save(torch.arange(N) % (C + 1), tmp_path / "labels.pt")
    torch.save(torch.zeros(N, C + 1, *SHAPE), tmp_path / "f.pt")
    refused(
        lambda: read_for(tmp_path / "f.pt", tmp_path / "labels.pt"),
        "labels from 0 to 4; the dataset's classes are 0 to 3",
    )


def test_wrong_label(tmp_path, ds, grads, perm):
    data, labels = authors_file(tmp_path, ds, grads, perm)
    bad = ds.y_train[perm].clone()
    row = next(i for i in range(N) if int(perm[i]) not in (3, 7, 19))
    bad[row] = (bad[row] + 1) % C
    torch.save(bad, labels)
    i = int(perm[row])
    refused(
        lambda: match(read_for(data, labels), ds),
        f"1 training image is in the file under another label (first: training image {i}, label "
        f"{int(ds.y_train[i])} here, {int(bad[row])} in file row {row})",
    )
    torch.save(grads.clone(), tmp_path / "aligned.pt")
    wrong = ds.y_train.clone()
    wrong[11] = (wrong[11] + 1) % C
    torch.save(wrong, tmp_path / "aligned_labels.pt")
    refused(
        lambda: match(read_for(tmp_path / "aligned.pt", tmp_path / "aligned_labels.pt"), ds),
        "1 of the 48 labels differ",
        "first: row 11",
    )
    torch.save(ds.y_train[:-1].clone(), tmp_path / "short.pt")
    refused(
        lambda: read_for(data, tmp_path / "short.pt"), "has 47 labels, the targets file", "48 rows"
    )


def test_image_not_in_the_training_set(tmp_path, ds, grads, perm):
    data, labels = authors_file(tmp_path, ds, grads, perm)
    stored = torch.load(data)
    row = next(i for i in range(N) if int(perm[i]) not in (3, 7, 19))
    stored[row, 0, 1, 2, 3] = 1.0 if stored[row, 0, 1, 2, 3] < 0 else -1.0  # one pixel of one image
    torch.save(stored, data)
    refused(
        lambda: match(read_for(data, labels), ds),
        f"1 of the 48 training images is not in the file (first: training image {int(perm[row])})",
        f"1 file row matches no training image (first: file row {row})",
    )


def test_not_a_tensor_and_outside_both_ranges(tmp_path, ds):
    torch.save({"data": torch.zeros(3)}, tmp_path / "d.pt")
    refused(lambda: read_for(tmp_path / "d.pt"), "holds a dict, not a tensor")
    refused(lambda: read_for(tmp_path / "none.pt"), "does not exist")
    torch.save(torch.full((N, C + 1, *SHAPE), 3.0), tmp_path / "f.pt")
    refused(
        lambda: match(read_for(tmp_path / "f.pt"), ds), "span [3, 3], neither [0, 1] nor [-1, 1]"
    )


def test_a_file_changed_after_its_record_is_refused(tmp_path, monkeypatch, ds, grads, perm):
    save_prepared(ds, tmp_path / "d.pt")
    data, labels = authors_file(tmp_path, ds, grads, perm)
    record_path = make_record(tmp_path, monkeypatch, data, labels)
    stored = torch.load(data)
    stored[0, 1] += 1  # one target changed, images and shape the same
    torch.save(stored, data)
    refused(
        lambda: train(tmp_path, monkeypatch, record_path, "follow"),
        f"targets file {data} changed since the record",
        "rebuild the record",
    )
    assert not (tmp_path / "m.pt").exists()


def test_a_record_of_another_training_set_is_refused(tmp_path, ds, grads):
    torch.save(grads.clone(), tmp_path / "aligned.pt")
    record = match(read_for(tmp_path / "aligned.pt"), ds)
    io.save(record | {"num_train": 50}, tmp_path / "r.pt")
    refused(lambda: target_files.load(tmp_path / "r.pt", ds), "'num_train': (50, 48)", "rebuild it")


def test_step_options(tmp_path, monkeypatch, ds):
    from pagrob.steps import make_targets

    save_prepared(ds, tmp_path / "d.pt")
    with pytest.raises(ValueError, match="--source file, which needs --file"):
        run_step(
            make_targets,
            ["--data", tmp_path / "d.pt", "--source", "file", "--out", tmp_path / "r.pt"],
            monkeypatch,
        )
    assert sources.FILE in sources.SOURCES
    assert sources.SOURCES.index(sources.FILE) > sources.SOURCES.index(sources.REPRESENTATIVES[-1])


@pytest.mark.parametrize(
    "device",
    [
        "meta",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
        ),
    ],
)
def test_for_batch_on_another_device(device, grads):
    """On the device: the batch's indices index order and targets there (no host read; meta
    tensors have none to read, CUDA runs under sync debug mode 'error')."""
    src = FileTargets(grads.to(device), torch.arange(N).flip(0), 2.0)
    aug = CropFlip.sample(4, 1, True, torch.Generator().manual_seed(0), device)
    index = torch.tensor([1, 5, 9, 2], device=device)
    x = torch.rand(4, *SHAPE, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        out = [src.for_batch(x, index, a)(c) for a in (aug, None) for c in range(C)]
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    assert all(t.device == x.device and t.shape == x.shape for t in out)
    if device == "cuda":
        torch.testing.assert_close(out[C].cpu(), 2 * grads[N - 1 - index.cpu(), 0])


def test_load_copies_to_the_device_in_chunks(tmp_path, monkeypatch, ds, grads, perm):
    """A non-CPU device gets the whole gradient tensor once (here meta, CHUNK rows at a time)."""
    data, labels = authors_file(tmp_path, ds, grads, perm)
    io.save(match(read_for(data, labels), ds), tmp_path / "r.pt")
    monkeypatch.setattr(target_files, "CHUNK", 10)
    src = target_files.load(tmp_path / "r.pt", ds, "meta")
    assert src.gradients.device.type == "meta" and src.gradients.shape == (N, C, *SHAPE)
    assert src.order.device.type == "meta" and src.scale == 2.0
    cpu = target_files.load(tmp_path / "r.pt", ds, "cpu")
    source = source_of(io.load(tmp_path / "r.pt", "record"), perm, ds)
    index = torch.tensor([0, 3, 7, 19])
    for c in range(C):
        torch.testing.assert_close(
            cpu.for_batch(ds.x_train[index], index, None)(c), grads[source[index], c]
        )


@pytest.mark.parametrize("variant", ["follow", "authors"])
def test_training_steps_with_file_targets_on_another_device(variant, monkeypatch):
    """Two real training steps with file targets on the meta device (and CUDA under sync debug
    mode where present): nothing read back, nothing copied from the host inside a step."""
    from test_devices import DEVICES, device_run, two_steps

    from pagrob.train import TrainSettings

    for device in [d if isinstance(d, str) else d.values[0] for d in DEVICES]:
        if device == "cuda" and not torch.cuda.is_available():
            continue
        s = TrainSettings(
            epochs=1, batch_size=16, lam=0.5, crop_padding=1, flip=True, seed=1, pag_variant=variant
        )
        run = device_run(device, s)
        run.source = FileTargets(
            torch.randn(48, 4, 1, 8, 8, device=device), torch.randperm(48, device=device), 2.0
        )
        two_steps(run, "segmented", monkeypatch)

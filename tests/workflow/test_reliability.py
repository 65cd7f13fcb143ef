"""Reliability: interrupted runs resume to the same numbers, every bad input is a clear error,
nothing computed is lost or half-written."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import BIN, ROOT, TOY_EPOCHS, copy_run, copy_workflow, settings_json, snakemake
from pagrob import io, models, sources
from pagrob.data import make_toy, save_prepared
from pagrob.train import TrainSettings, fit

MODEL = Path("results/demo/toy/nearest_neighbor/lam1/seed0")  # demo.yaml's results root


def step(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def train_args(data, out, settings, source="vanilla", arch="mlp") -> list:
    """The train step's arguments by hand (``settings``: its --settings, JSON or a file)."""
    return [
        "pagrob.steps.train",
        "--data",
        data,
        "--arch",
        arch,
        "--settings",
        settings,
        "--source",
        source,
        "--out",
        out,
    ]


# --- Interrupted training, through Snakemake ----------------------------------------------------


def pids(fragment: str, cwd: Path) -> list[int]:
    """Processes whose command line holds ``fragment`` and whose working folder is ``cwd``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if fragment in cmd and Path(os.readlink(proc / "cwd")) == cwd:
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def wait_for_epoch(log: Path, epoch: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists() and f"epoch {epoch}/" in log.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(
        f"epoch {epoch} never reached: {log.read_text() if log.exists() else 'no log'}"
    )


# the config of the session's toy run (tests/conftest.py's toy_run), the uninterrupted run
TARGET = ["results/demo/tables/toy.md", "--cores", "1", "--configfile", "toy.yaml"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL the training job", "SIGTERM the whole run"])
def test_killed_training_resumes_to_identical_weights_and_metrics(toy_run, tmp_path, how):
    uninterrupted = toy_run
    # the finished run without the PAG recipe's folder (its models, their metrics, its logs) and
    # what the table is made of after it: the target trains that recipe again from its first
    # epoch (its data and targets are there, the vanilla recipe's models too)
    where = copy_run(uninterrupted, tmp_path / "w")
    shutil.rmtree(where / MODEL.parent)
    shutil.rmtree(where / "results/demo/tables")
    (where / "results/demo/toy/metrics.csv").unlink()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.Popen(
        [str(BIN / "snakemake"), *TARGET],
        cwd=where,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # the toy's recipe trains its seeds in one job, logged beside them (workflow/rules/toy.smk)
        wait_for_epoch(where / MODEL.parent / "train.log", TOY_EPOCHS // 4)
        if how.startswith("SIGKILL"):
            for pid in pids("pagrob.steps.train", where):
                os.kill(pid, signal.SIGKILL)
        else:
            os.killpg(run.pid, signal.SIGTERM)
        run.wait(timeout=120)
    finally:
        if run.poll() is None:  # the test failed before the run ended: end it
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode != 0
    assert not (where / MODEL / "model.pt").exists()  # nothing half-done taken for finished
    checkpoint = torch.load(where / MODEL / "model.checkpoint.pt", weights_only=True)
    assert 1 <= checkpoint["epoch"] < TOY_EPOCHS

    snakemake(TARGET, where)  # the rerun resumes
    log = (where / MODEL.parent / "train.log").read_text()
    assert (
        "resumed from results/demo/toy/nearest_neighbor/lam1/seed0/model.checkpoint.pt after epoch"
        in log
    )
    assert not (where / MODEL / "model.checkpoint.pt").exists()
    # exactly the weights of the uninterrupted run (the README's promise), and so the same numbers
    models_written = sorted(  # the classifiers (not the score-based source's denoiser)
        p.relative_to(where) for p in (where / "results/demo/toy").glob("*/lam*/seed*/model.pt")
    )
    assert Path(MODEL, "model.pt") in models_written
    for name in models_written:
        resumed = models.load_model(where / name)[0].state_dict()
        straight = models.load_model(uninterrupted / name)[0].state_dict()
        assert resumed.keys() == straight.keys(), name
        different = [k for k in straight if not torch.equal(resumed[k], straight[k])]
        assert not different, f"{name}: {different} differ from the uninterrupted run's"
    for name in (
        "results/demo/toy/metrics.csv",
        f"{MODEL}/metrics.csv",
        "results/demo/tables/toy.csv",
    ):
        assert (where / name).read_text() == (uninterrupted / name).read_text(), name


def test_same_seed_twice_gives_identical_models_and_records_provenance(tmp_path):
    ds = make_toy([[-50, -10, 30], [-30, 10, 50]], 40, 12, seed=0)
    save_prepared(ds, tmp_path / "data.pt")
    for name in ("a", "b"):
        settings = settings_json(seed=3, epochs=3, batch_size=16, optimizer="adam", lr=0.02)
        proc = step(*train_args(tmp_path / "data.pt", tmp_path / name / "model.pt", settings))
        assert proc.returncode == 0, proc.stderr
    a, b = (torch.load(tmp_path / n / "model.pt", weights_only=True) for n in "ab")
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    info = json.loads((tmp_path / "a" / "model.json").read_text())
    assert info["seed"] == 3 and info["settings"]["seed"] == 3
    assert info["versions"]["torch"] == str(torch.__version__) and "python" in info["versions"]
    assert len(info["history"]) == 3
    # its recorded settings, handed back as a file, train the same model again (README)
    (tmp_path / "settings.json").write_text(json.dumps(info["settings"]))
    settings = tmp_path / "settings.json"
    out = tmp_path / "c" / "model.pt"
    proc = step(*train_args(tmp_path / "data.pt", out, settings, info["source"], info["arch"]))
    assert proc.returncode == 0, proc.stderr
    c = torch.load(tmp_path / "c" / "model.pt", weights_only=True)
    assert all(torch.equal(a["state_dict"][k], c["state_dict"][k]) for k in a["state_dict"])


# --- Checkpoints and half-written files ----------------------------------------------------------

SLOW_WRITER = """
import sys, time
from pagrob import io
def write(tmp):
    with open(tmp, "wb") as f:
        f.write(b"x" * 1000)
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
io.atomic_write(sys.argv[1], write)
"""


def test_kill_while_writing_leaves_the_previous_file(tmp_path):
    target = tmp_path / "model.checkpoint.pt"
    io.save({"epoch": 3}, target)
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(target)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "writing"
    writer.kill()
    writer.wait()
    assert io.load(target, "checkpoint")["epoch"] == 3  # the complete previous one
    assert list(tmp_path.glob(".model.checkpoint.pt.*.tmp"))  # the killed writer's temp file...
    io.save({"epoch": 4}, target)
    assert not list(tmp_path.glob("*.tmp")) and not list(
        tmp_path.glob(".*.tmp")
    )  # ...cleaned by the next
    assert io.load(target, "checkpoint")["epoch"] == 4


def test_truncated_checkpoint_is_refused_by_name(tmp_path):
    ds = make_toy([[-50, -10, 30], [-30, 10, 50]], 20, 6, seed=0)
    s = TrainSettings(epochs=2, batch_size=16, optimizer="adam", lr=0.01)
    ckpt = tmp_path / "model.checkpoint.pt"
    torch.manual_seed(0)
    model = models.build_model("mlp", (2,), 2, ds.mean, ds.std)
    fit(model, ds, None, TrainSettings(**(vars(s) | {"epochs": 1})), ckpt, log=lambda m: None)
    ckpt.write_bytes(ckpt.read_bytes()[:300])
    with pytest.raises(
        io.BadFileError, match=rf"training checkpoint {ckpt} cannot be read safely .*Delete it"
    ):
        fit(model, ds, None, s, ckpt, log=lambda m: None)


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_in_a_model_file_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save(
        {"state_dict": Exploit(marker), "arch": "mlp", "input_shape": [2], "num_classes": 2},
        tmp_path / "m.pt",
    )
    with pytest.raises(io.BadFileError, match="pickles a Python object"):
        models.load_model(tmp_path / "m.pt")
    assert not marker.exists()


def toy_files(tmp_path):
    ds = make_toy([[-50, -10, 30], [-30, 10, 50]], 20, 6, seed=0)
    save_prepared(ds, tmp_path / "data.pt")
    torch.manual_seed(0)
    model = models.build_model("mlp", (2,), 2, ds.mean, ds.std)
    models.save_model(
        tmp_path / "model.pt",
        model,
        "mlp",
        (2,),
        2,
        dataset="toy",
        source="vanilla",
        lam=0.0,
        seed=0,
    )
    return tmp_path / "data.pt", tmp_path / "model.pt"


def evaluate(data, model, out):
    return step(
        "pagrob.steps.evaluate",
        "--data",
        data,
        "--model",
        model,
        "--settings",
        json.dumps({"attacks": [{"norm": "l2", "eps": 15, "steps": 2}]}),
        "--out",
        out,
    )


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "cannot be read safely"),
        (
            lambda p: torch.save(
                {"state_dict": [1, 2], "arch": "mlp", "input_shape": [2], "num_classes": 2}, p
            ),
            "has no normalisation statistics",
        ),
        (lambda p: torch.save(["not", "a", "dict"], p), "holds a list, not a dict"),
        (
            lambda p: torch.save(
                {**torch.load(p, weights_only=True), "arch": "small_cnn", "input_shape": [1, 8, 8]},
                p,
            ),
            "does not fit architecture 'small_cnn': missing keys [net.conv1.bias",
        ),
    ],
    ids=["truncated", "not a state dict", "not a dict", "another architecture"],
)
def test_bad_model_files_are_named_errors(tmp_path, damage, message):
    data, model = toy_files(tmp_path)
    damage(model)
    proc = evaluate(data, model, tmp_path / "m.csv")
    assert proc.returncode == 2, proc.stderr
    assert (
        proc.stderr.startswith("error: ")
        and message in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert str(model) in proc.stderr
    assert not (tmp_path / "m.csv").exists()


def test_truncated_prepared_dataset_is_a_named_error(tmp_path):
    data, model = toy_files(tmp_path)
    data.write_bytes(data.read_bytes()[:500])
    proc = evaluate(data, model, tmp_path / "m.csv")
    assert proc.returncode == 2 and f"prepared dataset {data} cannot be read safely" in proc.stderr


# --- Data ----------------------------------------------------------------------------------------


def test_wrong_image_shape_is_a_named_error_and_leaves_no_dataset(tmp_path, monkeypatch, capsys):
    import pickle

    from fake_datasets import accept_cifar10, make_cifar10, md5
    from pagrob import datasets

    fake = make_cifar10(tmp_path / "cifar-10-batches-py")
    # a batch of 31x31 images: 20 rows of 2883 bytes
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    entry = pickle.loads(path.read_bytes())
    entry["data"] = entry["data"][:, :2883]
    path.write_bytes(pickle.dumps(entry, protocol=2))
    fake["sums"]["data_batch_1"] = md5(path)
    accept_cifar10(monkeypatch, fake["sums"])
    with pytest.raises(datasets.DatasetUnavailable, match=r"CIFAR-10 in .* cannot be read"):
        datasets.load_cifar10(tmp_path)
    # through the data step: one error line, no prepared dataset written
    from pagrob.steps import _cli, prepare_data

    out = tmp_path / "results" / "cifar10" / "data.pt"
    monkeypatch.setattr(
        sys,
        "argv",
        ["prepare_data", "--dataset", "cifar10", "--root", str(tmp_path), "--out", str(out)],
    )
    with pytest.raises(SystemExit) as e:
        _cli.run(prepare_data.main)
    assert e.value.code == 2 and "cannot be read" in capsys.readouterr().err
    assert not out.exists() and not list(out.parent.glob("*"))


def test_wrong_labels_are_named(tmp_path, monkeypatch):
    from fake_datasets import accept_stl10, make_stl10, md5
    from pagrob import datasets

    fake = make_stl10(tmp_path / "stl10_binary")
    labels = tmp_path / "stl10_binary" / "test_y.bin"
    labels.write_bytes(bytes([12] * 30))  # label 12 of 10 classes
    fake["sums"]["test_y.bin"] = md5(labels)
    accept_stl10(monkeypatch, fake["sums"])
    with pytest.raises(datasets.DatasetUnavailable, match=r"test labels outside 0..9"):
        datasets.load_stl10(tmp_path)


# --- Disk full, unwritable folders ----------------------------------------------------------------


def test_disk_full_while_saving_keeps_the_previous_file(tmp_path):
    target = tmp_path / "metrics.csv"
    io.write_text("the previous result\n", target)

    def full(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(
        OSError,
        match=r"cannot write .*metrics.csv: No space left on device.* earlier outputs are unchanged",
    ):
        io.atomic_write(target, full)
    assert target.read_text() == "the previous result\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary file left


def test_unwritable_output_folder_fails_before_training(tmp_path):
    ds = make_toy([[-50, -10, 30], [-30, 10, 50]], 20, 6, seed=0)
    save_prepared(ds, tmp_path / "data.pt")
    (tmp_path / "results").write_text("a file where a folder should be")
    settings = settings_json(epochs=500, batch_size=16, lr=0.01)
    proc = step(*train_args(tmp_path / "data.pt", tmp_path / "results/m/model.pt", settings))
    assert proc.returncode == 2
    assert "cannot write into" in proc.stderr and "training" not in proc.stdout


def test_non_finite_loss_stops_the_step_naming_epoch_and_batch(tmp_path):
    ds = make_toy([[-50, -10, 30], [-30, 10, 50]], 20, 6, seed=0)
    ds.x_train[5] = float("nan")
    save_prepared(ds, tmp_path / "data.pt")
    settings = settings_json(epochs=3, batch_size=16, lr=0.01, optimizer="adam")
    proc = step(*train_args(tmp_path / "data.pt", tmp_path / "model.pt", settings))
    assert proc.returncode == 2
    assert (
        "error: non-finite loss at epoch 1, batch" in proc.stderr and "Traceback" not in proc.stderr
    )
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the guard is for machines without CUDA")
def test_device_auto_without_cuda_refuses_a_long_cpu_training(tmp_path):
    """device: auto on a machine without CUDA: a training that its first steps project beyond
    --cpu-hours-limit is refused before any checkpoint, naming the fix; device: cpu trains."""
    ds = make_toy([[-50, -10, 30], [-30, 10, 50]], 20, 6, seed=0)
    save_prepared(ds, tmp_path / "data.pt")

    def args(epochs):
        settings = settings_json(epochs=epochs, batch_size=16, lr=0.01)
        return train_args(tmp_path / "data.pt", tmp_path / "model.pt", settings)

    proc = step(*args(10000000), "--device", "auto")
    assert proc.returncode == 2, proc.stderr
    assert "device: auto found no CUDA device" in proc.stderr and "set device: cpu" in proc.stderr
    assert "more than the 3 h allowed" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("model*"))  # refused after its first steps: no checkpoint
    # the same training within the limit runs
    assert step(*args(2), "--device", "auto").returncode == 0
    (tmp_path / "model.pt").unlink()
    (tmp_path / "model.json").unlink()
    # and asked for the CPU by name, a long one is not refused (killed here after its first epoch)
    cmd = [sys.executable, "-m", *map(str, args(10000000)), "--device", "cpu"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as run:
        try:
            line = ""
            for line in run.stdout:
                if "epoch 1/10000000" in line:
                    break
            assert "epoch 1/10000000" in line
        finally:
            run.kill()


# --- Paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "results/../outside/toy/vanilla/lam0/seed0/model.pt",
        "results/toy/../../../tmp/vanilla/lam0/seed0/model.pt",
        "results/toy/vanilla/lam0/seed0/../../../../../evil/model.pt",
        "results/toy/vanilla/lam0/seed0/sub/model.pt",
        "/tmp/results/toy/vanilla/lam0/seed0/model.pt",
        "results/toy/vanilla/lam../seed0/model.pt",
    ],
)
def test_no_wildcard_builds_outside_results(tmp_path, target):
    copy_workflow(tmp_path)
    proc = snakemake(["-n", target], tmp_path, check=False)
    assert proc.returncode != 0
    assert "MissingRuleException" in proc.stdout + proc.stderr


def test_no_two_jobs_write_the_same_file(tmp_path):
    import re

    copy_workflow(tmp_path)
    runs = {}
    for configfile, root in (("config.yaml", "results/"), ("demo.yaml", "results/demo/")):
        dry = snakemake(["-n", "--forceall", "--configfile", configfile], tmp_path).stdout
        written = []
        for kind in ("output", "log", "benchmark"):
            for files in re.findall(rf"^    {kind}: (.*)$", dry, re.M):
                written += [f.strip() for f in files.split(",")]
        assert written and len(written) == len(set(written)), "a file written by two jobs"
        assert all(f.startswith(root) for f in written)
        runs[configfile] = set(written)
    # each config under its own results root: no file of one is a file of the other
    assert not runs["config.yaml"] & runs["demo.yaml"]


# --- A rerun after an input changed never resumes the old run ------------------------------------


def interrupted_training(tmp_path, source="vanilla", extra=(), lam=0):
    """The train step on toy data, killed after its second epoch: its checkpoint stays."""
    settings = settings_json(epochs=500, batch_size=8, optimizer="adam", lr=0.01, lam=lam)
    cmd = [
        sys.executable,
        "-m",
        *train_args(tmp_path / "data.pt", tmp_path / "model.pt", settings, source),
        *extra,
    ]
    proc = subprocess.Popen(
        list(map(str, cmd)), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in proc.stdout:
        if "epoch 2/500" in line:
            break
    proc.kill()
    proc.wait()
    assert (tmp_path / "model.checkpoint.pt").exists()
    return list(map(str, cmd))


@pytest.mark.parametrize("changed", ["data", "targets"])
def test_checkpoint_of_changed_input_files_is_refused(tmp_path, changed):
    ds = make_toy([[-50, -10, 30], [-30, 10, 50]], 40, 6, seed=0)
    save_prepared(ds, tmp_path / "data.pt")
    targets = tmp_path / "targets.pt"
    io.save(sources.build("nearest_neighbor", ds, seed=0, nn_sample_size=10), targets)
    cmd = interrupted_training(tmp_path, "nearest_neighbor", ["--targets", targets], lam=1)
    if changed == "data":  # the same shapes, other points: a regenerated dataset
        other = make_toy([[-50, -10, 30], [-30, 10, 50]], 40, 6, seed=1)
        save_prepared(other, tmp_path / "data.pt")
    else:
        io.save(sources.build("nearest_neighbor", ds, seed=1, nn_sample_size=10), targets)
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 2, rerun.stdout + rerun.stderr
    assert f"trained from other input files: {changed} changed since" in rerun.stderr
    assert "Delete the checkpoint" in rerun.stderr
    assert (tmp_path / "model.checkpoint.pt").exists() and not (tmp_path / "model.pt").exists()


def test_checkpoint_of_the_same_input_files_resumes(tmp_path):
    save_prepared(make_toy([[-50, -10, 30], [-30, 10, 50]], 40, 6, seed=0), tmp_path / "data.pt")
    cmd = interrupted_training(tmp_path)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first = proc.stdout.readline() + proc.stdout.readline()
    proc.kill()
    proc.wait()
    assert "resumed from" in first, first

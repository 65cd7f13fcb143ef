"""Device correctness without a GPU (design.md, "Writing for CUDA on a CPU-only machine").

Two guards that run on a CPU-only machine:

- a scan of src/: every call of a torch tensor factory (``torch.arange``, ``zeros``, ``rand``,
  ``tensor``, ...) names its ``device=``, or its line says why the CPU is meant, with a comment
  ``# cpu: <reason>`` (a seeded CPU generator's draw that is moved on purpose, data loading);
- the real code paths run with the model and the data on PyTorch's ``meta`` device, a stand-in
  for a GPU: a tensor left on the CPU meets a meta tensor and raises, as it would meet a CUDA
  one, and reading a value on the host (``.item()``, ``.tolist()``, ``if tensor:``) raises too,
  so a training step that passes here neither mixes devices nor waits for the device. Where
  CUDA is present the same tests run on it too, under torch's sync debug mode ("error"): the
  GPU check, kept in the suite so that it cannot rot.
"""

import ast
import re
from pathlib import Path

import pytest
import torch

from pagrob import figures, models, sources
from pagrob.attacks import Attack
from pagrob.pag import STRATEGIES
from pagrob.train import EpochTally, Run, TrainSettings, make_optimizer

SRC = Path(__file__).resolve().parents[2] / "src"

#: torch functions that make a new tensor on the CPU unless told a device (the ones that take
#: tensors, such as ``cat``, ``stack``, ``cartesian_prod`` or ``*_like``, follow their inputs)
FACTORIES = {
    "arange",
    "zeros",
    "ones",
    "empty",
    "full",
    "rand",
    "randn",
    "randint",
    "randperm",
    "tensor",
    "as_tensor",
    "eye",
    "linspace",
    "logspace",
    "empty_strided",
    "scalar_tensor",
    "tril_indices",
    "triu_indices",
    "from_numpy",
}
MARKER = re.compile(r"#\s*cpu:\s*\S")

#: code on the CPU by design in files whose lines carry no markers yet: path -> functions
#: (None: the whole file) and why
CPU_BY_DESIGN = {
    "pagrob/datasets.py": (
        None,
        "dataset preparation: archives read into CPU tensors, saved to disk",
    ),
    "pagrob/sources.py": (
        {"one_image", "class_mean", "nearest_neighbor", "clustered_nn", "build"},
        "building a source's definition (make_targets step): CPU tensors saved to disk",
    ),
}


def unmarked_factory_calls(source: str, filename: str = "<string>", exempt=None) -> list[str]:
    """``file:line: torch.name(...)`` for every factory call without ``device=`` or a marker."""
    lines = source.splitlines()
    tree = ast.parse(source, filename)
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            name = (
                child.name
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                else function
            )
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and isinstance(child.func.value, ast.Name)
                and child.func.value.id == "torch"
                and child.func.attr in FACTORIES
                and not any(k.arg == "device" for k in child.keywords)
                and not any(
                    MARKER.search(line) for line in lines[child.lineno - 1 : child.end_lineno]
                )
                and not (exempt is not None and (exempt is True or name in exempt))
            ):
                found.append(
                    f"{filename}:{child.lineno}: torch.{child.func.attr}(...) in {name or 'module'}"
                )
            visit(child, name)

    visit(tree, None)
    return found


def test_every_tensor_factory_in_src_names_its_device():
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        functions = CPU_BY_DESIGN.get(rel, (False,))[0]
        exempt = True if rel in CPU_BY_DESIGN and functions is None else (functions or None)
        problems += unmarked_factory_calls(path.read_text(), rel, exempt)
    assert not problems, (
        "tensors made on the CPU where data may live on a GPU; pass device=<the data's device>, "
        "or say why the CPU is meant with a '# cpu: <reason>' comment on the line:\n"
        + "\n".join(problems)
    )


def test_the_scan_flags_what_it_should():
    code = """
import torch
def f(x, g):
    a = torch.arange(3)
    b = torch.arange(3, device=x.device)
    c = torch.rand(3, generator=g)  # cpu: seeded draw, moved once
    d = torch.zeros(
        3,
    )
    e = torch.zeros(  # cpu: reason on the first line of a call
        3,
    )
    f = torch.cat([a, b])  # follows its inputs
    return torch.tensor([1])  # cpu:
"""
    found = unmarked_factory_calls(code)
    assert [line.split(":")[1] for line in found] == ["4", "7", "14"], (
        found
    )  # a marker needs a reason
    assert unmarked_factory_calls(code, exempt={"f"}) == []


# --- the real code paths on another device -------------------------------------------------------

#: ``meta`` everywhere (no values: any host read raises); CUDA too where there is one, with
#: torch's sync debug mode raising on every synchronising call inside the steps
DEVICES = [
    "meta",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]


def device_model(device, arch="small_cnn", shape=(1, 8, 8), num_classes=4):
    torch.manual_seed(0)
    return models.build_model(
        arch, shape, num_classes, torch.full(shape[:1], 0.5), torch.full(shape[:1], 0.3)
    ).to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_targeted_attacks_towards_every_class_on_another_device(device):
    """figures.targeted_towards_every_class with the images on a non-CPU device (its target
    labels used to be made on the CPU)."""
    x = torch.rand(2, 1, 8, 8, device=device)
    out = figures.targeted_towards_every_class(
        device_model(device), x, 4, Attack("l2", 1.0, 2), torch.Generator().manual_seed(0)
    )
    assert out.shape == (2, 4, 1, 8, 8) and out.device == x.device


def device_run(device, s: TrainSettings, arch="small_cnn", with_source=True) -> Run:
    device = torch.device(device)
    x_train = torch.rand(48, 1, 8, 8, device=device)
    y_train = torch.randint(4, (48,), device=device)
    source = None
    if with_source:
        nn_index = torch.randint(48, (48, 4), device=device)
        source = sources.NearestNeighbors(x_train, nn_index)
    model = device_model(device, arch)
    if s.channels_last:
        model.to(memory_format=torch.channels_last)
    attack = Attack(**s.adversarial) if s.adversarial else None
    return Run(
        model,
        make_optimizer(model, s),
        x_train,
        y_train,
        source,
        s,
        attack,
        48 // s.batch_size,
        4,
        device,
    )


def two_steps(run: Run, strategy: str, monkeypatch) -> None:
    """What ``Run.epoch`` does per batch: a step and the tally, for two batches. Inside the
    steps, no tensor may be copied from the host to the device (a blocking copy per step:
    random numbers are drawn per epoch and moved once), and on CUDA nothing may synchronise."""
    draws = run.draws(1)
    tally = EpochTally(run.steps, run.device)
    run.model.train()
    to, copy_ = torch.Tensor.to, torch.Tensor.copy_

    def no_upload(moved, source, target):
        if source.device.type == "cpu" and target.device.type != "cpu":
            raise AssertionError(
                f"a {tuple(source.shape)} tensor copied from the host inside a step"
            )
        return moved

    def checked_to(self, *args, **kwargs):
        moved = to(self, *args, **kwargs)
        return no_upload(moved, self, moved)

    monkeypatch.setattr(torch.Tensor, "to", checked_to)
    monkeypatch.setattr(
        torch.Tensor,
        "copy_",
        lambda self, src, *a, **k: no_upload(copy_(self, src, *a, **k), src, self),
    )
    cuda = run.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        for b in range(2):
            batch, out = run.step(draws, b, strategy)
            tally.add(b, out, batch.y)
            drawn = [batch.index, batch.start] + (
                [batch.aug.dy, batch.aug.dx, batch.aug.flip] if batch.aug else []
            )
            assert all(
                t.device == run.device for t in drawn if t is not None
            )  # indexing would hide a CPU one
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
        monkeypatch.undo()
    assert tally.sums.device == run.device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pag_training_step_on_another_device(strategy, device, monkeypatch):
    """Augmentation, a class subset, nearest-neighbour targets and every strategy: all on the
    device, nothing read back (meta tensors have no values to read)."""
    s = TrainSettings(
        epochs=1, batch_size=16, lam=0.5, crop_padding=1, flip=True, classes_per_step=2, seed=1
    )
    arch = "resnet18" if strategy in ("segmented", "replicated") else "small_cnn"
    two_steps(device_run(device, s, arch), strategy, monkeypatch)


@pytest.mark.parametrize("device", DEVICES)
def test_adversarial_training_step_on_another_device(device, monkeypatch):
    """Teachers: the training attack's random starts (drawn per epoch) on the device."""
    for norm in ("linf", "l2"):
        s = TrainSettings(
            epochs=1, batch_size=16, adversarial={"norm": norm, "eps": 0.1, "steps": 2}, seed=1
        )
        two_steps(device_run(device, s, with_source=False), "loop", monkeypatch)


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_step_on_another_device(device, monkeypatch):
    s = TrainSettings(epochs=1, batch_size=16, lam=0.5, channels_last=True, seed=1)
    two_steps(device_run(device, s, arch="resnet18"), "replicated", monkeypatch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_amp_step_on_cuda(strategy, monkeypatch):
    """bfloat16 autocast on CUDA: the same step, finite losses in float32."""
    s = TrainSettings(epochs=1, batch_size=16, lam=0.5, amp=True, channels_last=True, seed=1)
    run = device_run("cuda", s, arch="resnet18")
    two_steps(run, strategy, monkeypatch)
    batch, out = run.step(run.draws(1), 0, strategy)
    assert out.pag.dtype == out.ce.dtype == torch.float32
    assert torch.isfinite(out.ce) and torch.isfinite(out.pag)

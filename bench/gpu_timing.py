"""The GPU check's timing harness (bench/gpu_check.py): what every job kind's check is timed
with and runs on.

- timing: ``sync`` and ``timed`` (the device synchronised around a call, never inside it),
  ``counting_syncs`` (CUDA's sync debug mode 'warn': the host synchronisations inside a block),
  the peak CUDA memory (``peak_reset``, ``peak_gib``) and ``Log`` (the check's log lines, with
  the library's own behind --verbose);
- what the checks run on: ``synthetic`` datasets of random 8-bit images (no download), the
  config's model (``build_model``, narrower with --width) and the config's training settings
  (``settings``, as the train and teacher steps build them, with the check's options over them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings

import torch

from pagrob import data, models, train

NUM_CLASSES = 10


# --- Timing --------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """(fn(), seconds), the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


@contextlib.contextmanager
def counting_syncs(device: torch.device):
    """Counts the host synchronisations inside (CUDA sync debug mode 'warn'); None on the CPU."""
    box = {"syncs": None}
    if device.type != "cuda":
        yield box
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield box
        finally:
            torch.cuda.set_sync_debug_mode("default")
    box["syncs"] = sum("synchroniz" in str(w.message) for w in caught)


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


class Log:
    def __init__(self, verbose: bool):
        self.t0, self.verbose = time.perf_counter(), verbose

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f}s] {message}", flush=True)

    def library(self, message: str) -> None:
        if self.verbose:
            self(f"  {message}")


# --- Synthetic data, models, settings ------------------------------------------------------------


def synthetic(name: str, shape, n_train: int, n_test: int, seed: int) -> data.Dataset:
    """Random 8-bit images in [0, 1] with balanced labels in random order, on the CPU like a
    prepared dataset (the steps move what they use to the device)."""
    g = torch.Generator().manual_seed(seed)

    def images(n):
        return (
            torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8).float() / 255
        )  # cpu: a prepared dataset

    def labels(n):
        return (torch.arange(n) % NUM_CLASSES)[
            torch.randperm(n, generator=g)
        ]  # cpu: a prepared dataset

    x_train = images(n_train)
    return data.Dataset(
        name=name,
        x_train=x_train,
        y_train=labels(n_train),
        x_test=images(n_test),
        y_test=labels(n_test),
        classes=[f"class {c}" for c in range(NUM_CLASSES)],
        mean=x_train.mean((0, 2, 3)),
        std=x_train.std((0, 2, 3)),
    )


def build_model(arch: str, ds: data.Dataset, width: int | None, seed: int) -> models.Classifier:
    """``arch`` as training builds it (seeded); ``width``: a narrower ResNet-18 of the same form."""
    torch.manual_seed(seed)
    if width is None:
        return models.build_model(arch, ds.input_shape, ds.num_classes, ds.mean, ds.std)
    if arch != "resnet18":
        raise ValueError(f"--width applies to resnet18, not {arch!r}")
    net = models.ResNet(
        models.BasicBlock,
        [2, 2, 2, 2],
        ds.input_shape[0],
        ds.num_classes,
        widths=(width, 2 * width, 4 * width, 8 * width),
    )
    return models.Classifier(net, ds.mean, ds.std)


def settings(
    cfg: dict, d: str, args, *, lam: float = 0.0, adversarial: dict | None = None, epochs: int = 2
) -> train.TrainSettings:
    """TrainSettings from the config, as the train and teacher steps build them."""
    fields = {f.name for f in dataclasses.fields(train.TrainSettings)}
    t = {k: v for k, v in cfg["datasets"][d]["train"].items() if k in fields}
    t.update(epochs=epochs)
    if args.batch_size:
        t["batch_size"] = args.batch_size
    # --amp / --channels-last switch them on over the config; amp stays off on the CPU (fit
    # refuses it there), so the CPU form runs a config that asks for it
    if args.amp or (t.get("amp") and args.device_type == "cuda"):
        t["amp"] = True
    elif "amp" in t:
        t["amp"] = False
    if args.channels_last:
        t["channels_last"] = True
    p = cfg["pag"]
    return train.TrainSettings(
        **t,
        lam=lam,
        grad_of=p["grad_of"],
        strategy=p["strategy"],
        pag_eps=p["eps"],
        classes_per_step=p["classes_per_step"] or None,
        seed=0,
        adversarial=adversarial,
    )

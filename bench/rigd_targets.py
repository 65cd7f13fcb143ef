"""RIGD targets: computed on the fly from the teacher, or read from a float16 memory map?

Times, for one training batch: the teacher's input-gradients for every class (what training
does), a gather of the same batch from a float16 N x C x image memory map (the alternative),
and the student's PAG step for scale. Run by hand:

    .venv/bin/python bench/rigd_targets.py [--arch resnet18] [--batch 64] [--threads 2]

The memory map is written to a temporary folder (N images only; --stored-images). Note that
stored targets are gradients of the *un-augmented* images: under crop and flip they are not
the targets of the augmented image the student sees, which on-the-fly targets are.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pagrob import models
from pagrob.pag import pag_backward
from pagrob.sources import teacher_gradients


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def parser() -> argparse.ArgumentParser:
    """The benchmark's command-line options."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=32, help="image side (32: CIFAR-10, 96: STL-10)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--stored-images", type=int, default=4096, help="N of the memory map")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def write_memmap(path: Path, n: int, classes: int, shape: tuple[int, ...]) -> None:
    """A float16 N x C x image memory map of standard-normal targets at ``path``."""
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, classes, *shape))
    for start in range(0, n, 256):
        mm[start : start + 256] = (
            np.random.default_rng(start)
            .standard_normal(mm[start : start + 256].shape)
            .astype(np.float16)
        )
    mm.flush()
    del mm


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    dev = args.device
    shape = (3, args.size, args.size)
    torch.manual_seed(0)
    teacher = models.build_model(
        args.arch, shape, args.classes, torch.full((3,), 0.5), torch.full((3,), 0.25)
    ).to(dev)
    student = models.build_model(
        args.arch, shape, args.classes, torch.full((3,), 0.5), torch.full((3,), 0.25)
    ).to(dev)
    x = torch.rand(args.batch, *shape, device=dev)
    y = torch.randint(args.classes, (args.batch,), device=dev)
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)

    def on_the_fly():
        teacher_gradients(teacher, x)
        sync()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "targets.f16"
        n = args.stored_images
        write_memmap(path, n, args.classes, shape)
        stored = np.load(path, mmap_mode="r")
        rng = np.random.default_rng(0)

        def from_memmap():
            idx = np.sort(rng.choice(n, args.batch, replace=False))
            torch.from_numpy(np.ascontiguousarray(stored[idx])).to(dev, torch.float32)
            sync()

        def pag_step():
            student.zero_grad(set_to_none=True)
            grads = teacher_gradients(teacher, x)
            pag_backward(student.train(), x, y, lambda c: grads[c], 0.4, strategy="loop")
            sync()

        t_fly = timed(on_the_fly, args.repeats)
        t_mm = timed(from_memmap, args.repeats * 5)
        t_step = timed(pag_step, args.repeats)
        full_gb = 50000 * args.classes * int(np.prod(shape)) * 2 / 1e9
    print(f"device {dev}, {args.arch}, batch {args.batch}, images {shape}, {args.threads} threads")
    print(f"teacher gradients on the fly   {t_fly * 1e3:9.1f} ms/batch")
    print(
        f"float16 memmap gather          {t_mm * 1e3:9.1f} ms/batch  ({t_fly / t_mm:.0f}x faster than on the fly; "
        f"file for 50,000 images: {full_gb:.1f} GB)"
    )
    print(
        f"whole RIGD step (on the fly)   {t_step * 1e3:9.1f} ms/batch  (teacher share {100 * t_fly / t_step:.0f}%)"
    )


if __name__ == "__main__":
    main()

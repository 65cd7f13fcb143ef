"""One training step, vanilla and every exact PAG strategy, on the same model, batch and threads.

Each strategy runs in its own process, so that its peak memory is its own: CPU peak RSS, or
CUDA peak allocated memory on a GPU. Prints seconds per step (median of --repeats after one
warm-up step), the ratio to vanilla and to the per-class loop, and the peak memory. Run by hand:

    .venv/bin/python bench/pag_step.py                          # ResNet-18, batch 32, 2 threads, CPU
    .venv/bin/python bench/pag_step.py --device cuda --batch 128
    .venv/bin/python bench/pag_step.py --device cuda --batch 128 --amp --channels-last --strategies vanilla,segmented,replicated
    .venv/bin/python bench/pag_step.py --model small_cnn --size 8 --channels 1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from pagrob import models
from pagrob.pag import STRATEGIES, pag_backward


def one(args) -> dict:
    """Time ``args.strategy`` in this process."""
    torch.set_num_threads(args.threads)
    dev, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    shape = (args.channels, args.size, args.size)
    model = models.build_model(
        args.model,
        shape,
        args.classes,
        torch.full((args.channels,), 0.5),
        torch.full((args.channels,), 0.25),
    )
    model = model.to(dev, dtype).train()
    x = torch.rand(args.batch, *shape, device=dev, dtype=dtype)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(args.classes, (args.batch,), device=dev)
    targets = torch.randn(args.classes, args.batch, *shape, device=dev, dtype=dtype)
    vanilla = args.strategy == "vanilla"
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step():
        model.zero_grad(set_to_none=True)
        pag_backward(
            model,
            x,
            y,
            None if vanilla else (lambda c: targets[c]),
            0.0 if vanilla else 0.5,
            strategy="loop" if vanilla else args.strategy,
            autocast=torch.bfloat16 if args.amp else None,
        )
        sync()

    step()  # warm-up (allocator, kernels)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"strategy": args.strategy, "seconds": statistics.median(times), "peak_gib": peak}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="resnet18", choices=models.ARCHITECTURES)
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--amp", action="store_true", help="bfloat16 autocast (as the train setting amp)"
    )
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument(
        "--strategies", default="vanilla," + ",".join(STRATEGIES), help="comma-separated"
    )
    p.add_argument("--strategy", help=argparse.SUPPRESS)  # internal: time one in this process
    args = p.parse_args()
    if args.strategy:
        print(json.dumps(one(args)))
        return

    rows = []
    for name in args.strategies.split(","):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--strategy", name]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {name}: {rows[-1]['seconds']:.2f} s", file=sys.stderr, flush=True)
    base = {r["strategy"]: r for r in rows}
    memory = "CUDA max allocated" if args.device.startswith("cuda") else "peak RSS"
    print(
        f"\n{args.model}, batch {args.batch}, {args.channels}x{args.size}x{args.size}, {args.classes} classes, "
        f"{args.device}, {args.dtype}{', bf16 autocast' if args.amp else ''}{', channels-last' if args.channels_last else ''}, "
        f"{args.threads} threads, median of {args.repeats} step(s)"
    )
    print(f"{'strategy':12} {'s/step':>8} {'x vanilla':>10} {'x loop':>8} {memory + ' GiB':>22}")
    for r in rows:
        vs_vanilla = (
            r["seconds"] / base["vanilla"]["seconds"] if "vanilla" in base else float("nan")
        )
        vs_loop = r["seconds"] / base["loop"]["seconds"] if "loop" in base else float("nan")
        print(
            f"{r['strategy']:12} {r['seconds']:8.2f} {vs_vanilla:10.2f} {vs_loop:8.2f} {r['peak_gib']:22.2f}"
        )


if __name__ == "__main__":
    main()

"""PGD evaluation: gradients w.r.t. the perturbation only (parameters frozen, eval mode), as
pagrob.attacks.pgd does, against the common `.backward()` version that also computes every
parameter's gradient. Same model, batch, attack and threads in one run; prints seconds per
attacked batch and the ratio. Run by hand:

    .venv/bin/python bench/pgd.py [--model resnet18] [--batch 128] [--steps 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from pagrob import models
from pagrob.attacks import Attack, pgd, project, random_start


def backward_pgd(model, x, y, attack: Attack, generator) -> torch.Tensor:
    """The baseline: loss.backward() with the parameters requiring gradients."""
    model.eval()
    delta = random_start(x, attack, generator)
    for _ in range(attack.steps):
        delta = delta.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        model.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            delta = project(delta + attack.alpha * delta.grad.sign(), x, attack.norm, attack.eps)
    return (x + delta).detach()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="resnet18", choices=models.ARCHITECTURES)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = models.build_model(
        args.model, (3, args.size, args.size), 10, torch.full((3,), 0.5), torch.full((3,), 0.25)
    )
    model = model.to(args.device)
    x = torch.rand(args.batch, 3, args.size, args.size, device=args.device)
    y = torch.randint(10, (args.batch,), device=args.device)
    attack = Attack("linf", 8 / 255, args.steps)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    variants = {
        "perturbation only (pagrob)": lambda g: pgd(model, x, y, attack, generator=g),
        ".backward() baseline": lambda g: backward_pgd(model, x, y, attack, g),
    }
    times = {name: [] for name in variants}
    outputs = {}
    for _ in range(args.repeats + 1):  # the first round warms up
        for name, run in variants.items():
            sync()
            t0 = time.perf_counter()
            outputs[name] = run(torch.Generator().manual_seed(0))
            sync()
            times[name].append(time.perf_counter() - t0)
    same = torch.equal(*outputs.values())
    print(
        f"{args.model}, batch {args.batch}, PGD-{args.steps} L-inf, {args.device}, {args.threads} threads, "
        f"median of {args.repeats}"
    )
    base = statistics.median(times[".backward() baseline"][1:])
    for name in variants:
        t = statistics.median(times[name][1:])
        print(f"{name:30} {t:7.2f} s/batch  {t / base:5.2f}x baseline")
    print(f"identical adversarial examples: {same}")


if __name__ == "__main__":
    main()

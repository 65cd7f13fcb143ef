"""Eq. 1 under BatchNorm: how far the coupled (``pag.batchnorm: batch``) and the per-image
(``frozen``) input-gradients are apart, at initialisation and after training, and what training
with each does to robustness. The measurement behind config.yaml's ``pag.batchnorm``.

A narrow ResNet-18 of the paper's form (widths 16-128, BatchNorm after every convolution) on the
8x8 digits, trained with Class Mean targets as the demo trains its students (demo.yaml's
recipe: 10 epochs, batch 64, SGD), once per mode and seed, and vanilla for scale. Prints, per
mode: the cosine between the two modes' input-gradients of every class for a training batch
(the gradients the PAG term sees; mean and minimum over images and classes) and their norm
ratio, at initialisation and after training, and each model's clean and PGD-20 L-inf (eps 0.1)
accuracy on the whole test set, mean and 95% t-interval over the seeds. Run by hand (no data
files needed; about 15 minutes on 2 cores):

    .venv/bin/python bench/batchnorm.py --seeds 0 1 2 --out /tmp/batchnorm.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from pagrob import datasets, io, models, sources, stats
from pagrob.attacks import Attack, frozen_eval, predict
from pagrob.evaluate import robust_accuracy
from pagrob.pag import class_input_gradients
from pagrob.settings import TrainSettings
from pagrob.train import fit

WIDTHS = (16, 32, 64, 128)
#: demo.yaml's digits recipe
RECIPE = dict(
    epochs=10,
    batch_size=64,
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=1e-4,
    crop_padding=1,
    flip=False,
    grad_of="logit",
    strategy="segmented",
)
LAM = 0.3


def narrow_resnet18(ds, seed: int) -> models.Classifier:
    torch.manual_seed(seed)
    net = models.ResNet(models.BasicBlock, [2, 2, 2, 2], 1, ds.num_classes, widths=WIDTHS)
    return models.Classifier(net, ds.mean, ds.std)


def apart(model, x) -> dict:
    """The two modes' input-gradients of every class for the batch ``x`` (train mode, as the
    PAG term sees them): their cosine per image and class, and the norm ratio batch / frozen."""
    model.train()
    coupled = class_input_gradients(model, x, batchnorm="batch").flatten(2)
    own = class_input_gradients(model, x, batchnorm="frozen").flatten(2)
    cos = torch.nn.functional.cosine_similarity(coupled, own, dim=2)
    ratio = coupled.norm(dim=2) / own.norm(dim=2)
    return {
        "cos_mean": cos.mean().item(),
        "cos_min": cos.min().item(),
        "norm_ratio": ratio.mean().item(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    p.add_argument("--threads", type=int, default=1, help="per run (the workflow's digits jobs: 1)")
    p.add_argument("--out", help="write the numbers as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ds = datasets.load_digits(0.3, 0)
    targets = sources.GlobalRepresentatives(
        sources.build("class_mean", ds, seed=0)["representatives"]
    )
    batch = ds.x_train[: RECIPE["batch_size"]]
    pgd = Attack("linf", 0.1, 20)
    out = {"cpu": io.cpu_model(), "threads": args.threads, "runs": []}
    out["init"] = apart(narrow_resnet18(ds, args.seeds[0]), batch)
    print(f"at initialisation (seed {args.seeds[0]}): {out['init']}")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("vanilla", "batch", "frozen"):
            for seed in args.seeds:
                model = narrow_resnet18(ds, seed)
                s = TrainSettings(
                    **(RECIPE | {"epochs": args.epochs}),
                    lam=0.0 if mode == "vanilla" else LAM,
                    seed=seed,
                    batchnorm="batch" if mode == "vanilla" else mode,
                )
                start = time.perf_counter()
                fit(
                    model,
                    ds,
                    None if mode == "vanilla" else targets,
                    s,
                    Path(tmp) / f"{mode}{seed}.pt",
                    log=lambda _: None,
                )
                seconds = time.perf_counter() - start
                run = {"mode": mode, "seed": seed, "train_s": seconds, **apart(model, batch)}
                with frozen_eval(model):
                    hits = predict(model, ds.x_test) == ds.y_test
                    run["clean"] = 100.0 * hits.float().mean().item()
                    run["pgd20_linf"] = robust_accuracy(model, ds.x_test, ds.y_test, pgd, 600)
                out["runs"].append(run)
                print(json.dumps(run))
    print("\nmode     cos(batch, frozen) after training   clean        PGD-20 L-inf 0.1")
    for mode in ("vanilla", "batch", "frozen"):
        runs = [r for r in out["runs"] if r["mode"] == mode]
        cols = []
        for key in ("clean", "pgd20_linf"):
            mean, half = stats.t_interval([r[key] for r in runs])
            cols.append(f"{mean:5.1f} ± {half:4.1f}")
        cos = statistics.mean(r["cos_mean"] for r in runs)
        low = min(r["cos_min"] for r in runs)
        print(f"{mode:8s} mean {cos:.3f} (min {low:.3f})                 {cols[0]}   {cols[1]}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""What pinning the CPU kernels' instruction set (config's cpu_isa: avx2) costs and changes.

Runs the demo's Class Mean training job (digits, seed 0, one thread) with and without the pin
the workflow exports, in turn, and prints each run's wall time, the median ratio pinned /
unpinned, the instruction set each run used, the largest difference between their weights and
their PGD-20 L-inf accuracy on the test set. Needs `make demo`'s data and targets:

    .venv/bin/python bench/isa_pin.py --pairs 3

On an AVX-512 machine the pinned run computes what an AVX2 machine computes; on an AVX2 machine
both runs are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the pin of cpu_isa: avx2 (workflow/rules/common.smk's ISA_ENVIRONMENT)
PIN = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}
#: the demo's digits model of Class Mean, whose training (its settings, in its model.json) this
#: runs again
MODEL = "digits/class_mean/lam0.3/seed0"


def train(out: Path, pinned: bool, results: Path) -> float:
    info = json.loads((results / MODEL / "model.json").read_text())
    env = {k: v for k, v in os.environ.items() if k not in PIN}
    env["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}"
    if pinned:
        env.update(PIN)
    cmd = [
        sys.executable,
        "-m",
        "pagrob.steps.train",
        "--data",
        str(results / "digits/data.pt"),
        "--targets",
        str(results / "digits/targets/class_mean.pt"),
        "--arch",
        info["arch"],
        "--source",
        info["source"],
        "--settings",
        json.dumps(info["settings"]),  # as the workflow trained it
        "--device",
        "cpu",
        "--threads",
        "1",
        "--overwrite",
        "--out",
        str(out),
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--pairs", type=int, default=3, help="pinned/unpinned runs, alternating")
    p.add_argument("--results", default=str(ROOT / "results/demo"), help="make demo's results root")
    args = p.parse_args()
    results = Path(args.results)
    needed = [results / "digits/targets/class_mean.pt", results / MODEL / "model.json"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        sys.exit(f"error: {', '.join(missing)} missing; run make demo first")
    sys.path.insert(0, str(ROOT / "src"))
    from pagrob import data, models
    from pagrob.attacks import Attack
    from pagrob.evaluate import robust_accuracy

    with tempfile.TemporaryDirectory() as tmp:
        out = {True: Path(tmp, "pinned.pt"), False: Path(tmp, "unpinned.pt")}
        times = {True: [], False: []}
        for i in range(args.pairs):
            for pinned in (True, False):
                times[pinned].append(train(out[pinned], pinned, results))
                print(
                    f"pair {i + 1}: {'pinned' if pinned else 'unpinned'} {times[pinned][-1]:.2f} s",
                    flush=True,
                )
        ratio = statistics.median(a / b for a, b in zip(times[True], times[False]))
        ds = data.load_prepared(results / "digits/data.pt")
        attack = Attack("linf", 0.1, 20, bounds=ds.bounds)
        loaded = {k: models.load_model(v) for k, v in out.items()}
        diff = max(
            (a - b).abs().max().item()
            for a, b in zip(
                loaded[True][0].state_dict().values(), loaded[False][0].state_dict().values()
            )
        )
        for pinned, (model, meta) in loaded.items():
            acc = robust_accuracy(model, ds.x_test, ds.y_test, attack, 600, 0)
            print(
                f"{'pinned' if pinned else 'unpinned'}: {meta['environment']['cpu_capability']}, "
                f"median {statistics.median(times[pinned]):.2f} s, PGD-20 L-inf {acc:.2f}%"
            )
        print(f"wall time pinned / unpinned (median of {args.pairs} pairs): {ratio:.3f}")
        print(
            f"largest weight difference: {diff:.3g} ({'identical' if diff == 0 else 'different'})"
        )


if __name__ == "__main__":
    main()

"""Are two runs' numbers the same? Compares two results roots file by file: every model's
weights (model.pt's state dict, tensor by tensor), every tidy CSV (metrics, AutoAttack, PAG
scores, the tables' numbers) and every table's Markdown, byte for byte. Run by hand, e.g. to
show that the demo's numbers do not depend on how many jobs run at once:

    git clone <repo> a && cd a && make demo                      # cores: all (2 here)
    git clone <repo> b && cd b && make venv && \\
      .venv/bin/snakemake --profile workflow/profiles/demo --cores 4
    .venv/bin/python bench/compare_roots.py a/results/demo b/results/demo

Prints each kind's count of identical and differing files and names the differing ones; exits 1
if any differ or one root lacks a file of the other. Logs, benchmarks, records with timings and
the report (which holds the wall time) are left out: they differ by nature.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

#: what is compared, by kind: (glob, how)
KINDS = {
    "model weights": ("**/model.pt", "weights"),
    "tidy CSVs": ("**/*.csv", "bytes"),
    "tables (Markdown)": ("tables/*.md", "bytes"),
}


def same(a: Path, b: Path, how: str) -> bool:
    if how == "bytes":
        return a.read_bytes() == b.read_bytes()
    sa = torch.load(a, weights_only=True)["state_dict"]
    sb = torch.load(b, weights_only=True)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path, help="a results root, e.g. a/results/demo")
    p.add_argument("b", type=Path, help="another one")
    args = p.parse_args()
    bad = False
    for kind, (pattern, how) in KINDS.items():
        left = {f.relative_to(args.a) for f in args.a.glob(pattern)}
        right = {f.relative_to(args.b) for f in args.b.glob(pattern)}
        missing = sorted(left ^ right)
        differ = sorted(f for f in left & right if not same(args.a / f, args.b / f, how))
        print(f"{kind}: {len(left & right) - len(differ)} identical, {len(differ)} differ"
              + (f", {len(missing)} in one root only" if missing else ""))  # fmt: skip
        for f in differ:
            print(f"  differs: {f}")
        for f in missing:
            print(f"  only in {'a' if f in left else 'b'}: {f}")
        bad |= bool(differ or missing)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

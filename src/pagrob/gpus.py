"""One GPU per job on a machine with several: each job locks the first GPU no other job holds.

Snakemake limits how many GPU jobs run at once (``--resources gpu=N``) but does not say which
GPU a job should use. A job that asks for ``cuda`` without an index therefore takes a lock file
per GPU (named by the GPU's UUID, so jobs that see the devices in another order, or through
another CUDA_VISIBLE_DEVICES, still agree) and uses the first one it gets. The lock is an
``flock``: the kernel releases it when the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Callable

LOCK_DIR = Path(os.environ.get("PAGROB_GPU_LOCKS", "/tmp/pagrob-gpu-locks"))
_held: list = []  # open lock files: kept for the life of the process


def claim(ids: list[str], lock_dir: Path = LOCK_DIR, poll_s: float = 2.0, log: Callable[[str], None] = print) -> int:
    """Index into ``ids`` of the first device whose lock this process gets; waits while all
    are held (that happens only when something outside Snakemake's limit uses them)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for index, ident in enumerate(ids):
            f = open(lock_dir / f"{ident}.lock", "a")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            _held.append(f)
            return index
        if not waited:
            log(f"all {len(ids)} GPUs are held by other jobs ({lock_dir}); waiting for one")
            waited = True
        time.sleep(poll_s)


def pick_cuda_device(log: Callable[[str], None] = print) -> str:
    """'cuda:<i>' for a free GPU among the visible ones ('cuda' when there is just one)."""
    import torch

    count = torch.cuda.device_count()
    if count <= 1:
        return "cuda"
    ids = [str(torch.cuda.get_device_properties(i).uuid) for i in range(count)]
    index = claim(ids, log=log)
    torch.cuda.set_device(index)
    log(f"using GPU {index} of {count} ({ids[index]})")
    return f"cuda:{index}"

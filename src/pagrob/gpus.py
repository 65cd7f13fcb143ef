"""One GPU per job on a machine with several: each job locks the first GPU no other job holds.

Snakemake limits how many GPU jobs run at once (``--resources gpu=N``) but does not say which
GPU a job should use. A job that asks for ``cuda`` without an index therefore takes a lock file
per GPU (named by the GPU's UUID, so jobs that see the devices in another order, or through
another CUDA_VISIBLE_DEVICES, still agree) and uses the first one it gets. The lock is an
``flock``: the kernel releases it when the process ends, however it ends, so a lock file left
behind never blocks anyone. The lock folder is shared by every user's jobs (created
world-writable and sticky, like /tmp) and lock files are opened read-only, so that one user's
jobs can lock the files another user's jobs created.

With a single visible device (``CUDA_VISIBLE_DEVICES=N``, as SLURM sets it per job) no lock is
taken: the job uses that device.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

LOCK_DIR = Path(os.environ.get("PAGROB_GPU_LOCKS", "/tmp/pagrob-gpu-locks"))
_held: list[int] = []  # file descriptors of the locks held: kept for the life of the process


def _make_lock_dir(lock_dir: Path) -> None:
    try:
        lock_dir.mkdir(parents=True)
    except FileExistsError:
        return
    os.chmod(lock_dir, 0o1777)  # every user's jobs create their lock files here


def _open_lock(path: Path) -> int:
    """Read-only (flock needs no write access, so another user's lock file will do); a new
    lock file is made readable by all whatever the umask."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return os.open(path, os.O_RDONLY)
    os.fchmod(fd, 0o644)
    return fd


def claim(
    ids: list[str],
    lock_dir: Path | None = None,
    poll_s: float = 2.0,
    log: Callable[[str], None] = print,
) -> int:
    """Index into ``ids`` of the first device whose lock this process gets; waits while all
    are held (that happens only when something outside Snakemake's limit uses them).
    ``lock_dir`` defaults to LOCK_DIR ($PAGROB_GPU_LOCKS or /tmp/pagrob-gpu-locks)."""
    lock_dir = Path(lock_dir if lock_dir is not None else LOCK_DIR)
    _make_lock_dir(lock_dir)
    waited = False
    while True:
        for index, ident in enumerate(ids):
            fd = _open_lock(lock_dir / f"{ident}.lock")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            _held.append(fd)
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

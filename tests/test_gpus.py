"""GPU jobs on one machine never share a device: each takes the first GPU lock it gets."""

import subprocess
import sys
import time

from conftest import ROOT

CLAIM = """
import sys, time
from pathlib import Path
from pagrob.gpus import claim
index = claim(["GPU-a", "GPU-b", "GPU-c"], Path(sys.argv[1]), poll_s=0.1, log=lambda m: print(m, flush=True))
print("claimed", index, flush=True)
time.sleep(float(sys.argv[2]))
"""


def start(lock_dir, hold):
    return subprocess.Popen(
        [sys.executable, "-c", CLAIM, str(lock_dir), str(hold)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def claimed(proc):
    for line in proc.stdout:
        if line.startswith("claimed"):
            return int(line.split()[1])
    raise AssertionError("no claim")


def test_concurrent_jobs_get_distinct_gpus_and_wait_when_all_are_held(tmp_path):
    holders = [start(tmp_path, 3.0) for _ in range(3)]
    assert sorted(claimed(p) for p in holders) == [0, 1, 2]
    t0 = time.time()
    waiter = start(tmp_path, 0.0)  # a fourth job: all three GPUs held
    assert "held by other jobs" in waiter.stdout.readline()
    index = claimed(waiter)
    assert time.time() - t0 > 1.0  # it waited for one to be released
    assert index in (0, 1, 2)
    for p in holders + [waiter]:
        p.wait(timeout=30)


def test_lock_is_released_when_a_job_is_killed(tmp_path):
    first = start(tmp_path, 60.0)
    assert claimed(first) == 0
    first.kill()
    first.wait()
    second = start(tmp_path, 0.0)
    assert claimed(second) == 0
    second.wait(timeout=30)

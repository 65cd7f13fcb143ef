"""GPU jobs on one machine never share a device: each takes the first GPU lock it gets.

No GPU is needed: the claimants are separate processes (as Snakemake's jobs are), and for
``pick_cuda_device`` a stand-in ``torch`` module sees four GPUs through CUDA_VISIBLE_DEVICES as
CUDA does (visible devices renumbered from 0, each with the UUID of its physical GPU).
"""

import os
import shutil
import stat
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT

CLAIM = """
import sys, time
from pathlib import Path
from pagrob.gpus import claim
index = claim(["GPU-a", "GPU-b", "GPU-c"], Path(sys.argv[1]), poll_s=0.1, log=lambda m: print(m, flush=True))
print("claimed", index, flush=True)
time.sleep(float(sys.argv[2]))
"""

# pick_cuda_device with a stand-in torch: prints the device it returns, the index it set and
# the physical GPU that is, then holds it for argv[1] seconds.
PICK = """
import os, sys, time, types
PHYSICAL = ["GPU-0000", "GPU-1111", "GPU-2222", "GPU-3333"]
visible = os.environ.get("CUDA_VISIBLE_DEVICES")
visible = PHYSICAL if visible is None else [PHYSICAL[int(i)] for i in visible.split(",") if i]
set_to = []
torch = types.ModuleType("torch")
torch.cuda = types.SimpleNamespace(
    device_count=lambda: len(visible),
    get_device_properties=lambda i: types.SimpleNamespace(uuid=visible[i][4:]),  # str(uuid): no 'GPU-'
    set_device=set_to.append,
)
sys.modules["torch"] = torch
from pagrob import gpus
hold = time.sleep
gpus.time = types.SimpleNamespace(sleep=lambda s: hold(0.1))  # poll faster while waiting
device = gpus.pick_cuda_device(log=lambda m: print("log", m, flush=True))
index = int(device.split(":")[1]) if ":" in device else 0
print("picked", device, set_to, visible[index], flush=True)
hold(float(sys.argv[1]))
"""


RUNNING = []


@pytest.fixture(autouse=True)
def _end_claimants():
    yield
    while RUNNING:
        proc = RUNNING.pop()
        proc.kill()
        proc.wait()


def spawn(args, **kw):
    """A claimant, killed after 30 s (a lock that is never released must fail the test, not hang
    it) and at the end of the test."""
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )
    RUNNING.append(proc)
    watchdog = threading.Timer(30, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    return proc


def start(lock_dir, hold, prefix=()):
    return spawn([*prefix, sys.executable, "-c", CLAIM, str(lock_dir), str(hold)])


def claimed(proc):
    for line in proc.stdout:
        if line.startswith("claimed"):
            return int(line.split()[1])
    raise AssertionError(f"no claim: {proc.stderr.read()}")


def pick(lock_dir, hold, visible=None):
    env = dict(os.environ, PAGROB_GPU_LOCKS=str(lock_dir))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    return spawn([sys.executable, "-c", PICK, str(hold)], env=env)


def picked(proc):
    """(device returned, indices passed to set_device, physical GPU used, log lines)."""
    logs = []
    for line in proc.stdout:
        if line.startswith("log"):
            logs.append(line[4:].strip())
        elif line.startswith("picked"):
            _, device, rest = line.split(" ", 2)
            set_to, physical = rest.rsplit(" ", 1)
            return device, eval(set_to), physical.strip(), logs
    raise AssertionError(f"no device picked: {proc.stderr.read()}")


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
    assert (tmp_path / "GPU-a.lock").exists()  # the file stays; its lock went with the process
    second = start(tmp_path, 0.0)
    assert claimed(second) == 0
    second.wait(timeout=30)


def test_two_claims_in_one_process_get_distinct_gpus(tmp_path):
    from pagrob import gpus

    held = len(gpus._held)
    try:
        assert gpus.claim(["GPU-a", "GPU-b"], tmp_path) == 0
        assert gpus.claim(["GPU-a", "GPU-b"], tmp_path) == 1
    finally:
        for fd in gpus._held[held:]:
            os.close(fd)
        del gpus._held[held:]


def test_jobs_with_different_visible_devices_pick_distinct_physical_gpus(tmp_path):
    # the same two GPUs seen in opposite orders: locks by UUID, not by CUDA index
    a = pick(tmp_path, 30.0, visible="1,2")
    device_a, set_a, gpu_a, _ = picked(a)
    assert (device_a, set_a, gpu_a) == ("cuda:0", [0], "GPU-1111")
    b = pick(tmp_path, 30.0, visible="2,1")
    device_b, set_b, gpu_b, logs = picked(b)
    assert (device_b, set_b, gpu_b) == ("cuda:0", [0], "GPU-2222")
    assert logs == ["using GPU 0 of 2 (2222)"]
    # all four visible: the two free ones, never a held one
    c = pick(tmp_path, 30.0)
    d = pick(tmp_path, 30.0)
    rest = sorted(picked(p)[2] for p in (c, d))
    assert rest == ["GPU-0000", "GPU-3333"]
    for p in (a, b, c, d):
        p.kill()
        p.wait()


def test_a_killed_jobs_gpu_is_picked_again(tmp_path):
    first = pick(tmp_path, 60.0, visible="3,0")
    assert picked(first)[2] == "GPU-3333"
    second = pick(tmp_path, 60.0, visible="0,3")
    assert picked(second)[2] == "GPU-0000"  # GPU-3333 is held
    first.kill()
    first.wait()
    third = pick(tmp_path, 0.0, visible="3,0")
    assert picked(third)[:3] == ("cuda:0", [0], "GPU-3333")
    assert third.wait(timeout=30) == 0
    second.kill()
    second.wait()


def test_waits_while_every_visible_gpu_is_held(tmp_path):
    holder = pick(tmp_path, 2.0, visible="1,2")
    other = pick(tmp_path, 2.0, visible="2,1")
    assert {picked(holder)[2], picked(other)[2]} == {"GPU-1111", "GPU-2222"}
    t0 = time.time()
    waiter = pick(tmp_path, 0.0, visible="2,1")
    _, _, gpu, logs = picked(waiter)
    assert time.time() - t0 > 1.0 and gpu in ("GPU-1111", "GPU-2222")
    assert logs[0].startswith("all 2 GPUs are held by other jobs")
    for p in (holder, other, waiter):
        p.wait(timeout=30)


def test_a_single_visible_gpu_is_used_without_a_lock(tmp_path):
    # CUDA_VISIBLE_DEVICES=N (SLURM sets it per job): that device, no lock, no set_device
    proc = pick(tmp_path / "locks", 0.0, visible="2")
    assert picked(proc)[:3] == ("cuda", [], "GPU-2222")
    assert proc.wait(timeout=30) == 0
    assert not (tmp_path / "locks").exists()


def test_lock_folder_and_files_are_shared_between_users(tmp_path):
    """One user's jobs must be able to lock the GPUs of another user's lock files."""
    lock_dir = tmp_path / "locks"
    old = os.umask(0o077)
    try:
        first = start(lock_dir, 0.0)
        assert claimed(first) == 0 and first.wait(timeout=30) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(lock_dir.stat().st_mode) == 0o1777  # anyone may add lock files
    assert stat.S_IMODE((lock_dir / "GPU-a.lock").stat().st_mode) == 0o644  # anyone may open them
    # a lock file this process may not write (as another user's is): it still locks it
    (lock_dir / "GPU-a.lock").chmod(0o444)
    prefix = ()
    if os.geteuid() == 0:  # root writes anything: drop that power, as for any other user
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
        prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
    second = start(lock_dir, 0.0, prefix)
    assert claimed(second) == 0
    assert second.wait(timeout=30) == 0

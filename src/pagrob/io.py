"""Files: atomic writes, and loading tensor files safely with a clear error for bad ones.

Imports torch only where tensors are read or written, so that the report steps run without it.
"""

from __future__ import annotations

import os
import platform
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any


class BadFileError(ValueError):
    """An input file is missing, truncated, corrupt or of the wrong kind."""


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it onto ``path``.

    A reader never sees a half-written file: either the old file or the complete new one.
    If writing fails (disk full, unwritable folder) the temporary file is removed, ``path`` is
    left as it was, and the error names the file.

    The file gets the permissions of any newly created file (0666 less the umask, or the
    folder's default ACL): the temporary file is created with mode 0666 and the kernel applies
    the umask, so colleagues sharing a results folder can read it when the umask lets them.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed writer
            stale.unlink(missing_ok=True)
        tmp = _create_temporary(path)
    except OSError as e:
        raise OSError(
            f"cannot write {path}: {e.strerror or e}. Check that the folder is writable and the "
            "disk has space; earlier outputs are unchanged."
        ) from e
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(
                f"cannot write {path}: {e.strerror or e}. Check that the folder is writable and "
                "the disk has space; earlier outputs are unchanged."
            ) from e
        raise
    return path


def _create_temporary(path: Path) -> Path:
    """A new empty file ``.<name>.<random>.tmp`` beside ``path``, created with mode 0666 so that
    the umask applies as for any new file (``tempfile.mkstemp`` makes 0600 whatever the umask)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically. ``obj`` must hold only tensors and plain Python values."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def load(
    path: str | Path, what: str, required: tuple[str, ...] = (), foreign: bool = False
) -> dict:
    """Load a dict saved by :func:`save` with ``weights_only=True`` (never runs pickled code).

    ``what`` names the kind of file in error messages; ``required`` lists keys it must have.
    ``foreign``: a file from elsewhere (a published checkpoint), which the workflow cannot
    rebuild, so the errors point at its path and its download instead.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        fix = "check its path in the config" if foreign else "build it with the workflow first"
        raise BadFileError(f"{what} {path} does not exist; {fix}.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, random bytes...
        reason = str(e).splitlines()[0] if str(e) else ""
        refused = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", str(e))
        if refused:  # a pickled Python object: refused, never executed
            reason = f"it pickles a Python object, {refused.group(1)}"
        raise BadFileError(
            f"{what} {path} cannot be read safely ({type(e).__name__}: {reason}). "
            "It is truncated, corrupt, or not a plain tensors file. "
            + (
                "Download it again (and compare its checksum with the publisher's)."
                if foreign
                else "Delete it and rebuild it."
            )
        ) from e
    if not isinstance(obj, dict):
        raise BadFileError(f"{what} {path} holds a {type(obj).__name__}, not a dict; rebuild it.")
    missing = [k for k in required if k not in obj]
    if missing:
        raise BadFileError(f"{what} {path} lacks the keys {missing}; rebuild it.")
    return obj


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's contents: what a resumable state records of each input it used."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Library versions recorded beside every model."""
    import numpy
    import torch

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
        "cuda": str(torch.version.cuda),
    }


#: the environment variables that pin the CPU kernels' instruction set (set by the workflow from
#: the config's cpu_isa): PyTorch's own kernels, oneDNN's (convolutions), MKL's (matrix products)
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo's ``model name``; elsewhere the platform's)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment() -> dict:
    """What else decides a CPU result beside the code and the seed, recorded beside every model
    and AutoAttack result: the CPU and the instruction set PyTorch's kernels use and the pins
    asked for, the torch threads, the torch build, and the git commit of the code (from the
    workflow)."""
    import torch

    return {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "isa_pins": {k: os.environ[k] for k in ISA_VARIABLES if k in os.environ},
        "threads": torch.get_num_threads(),
        "torch_build": f"{torch.__version__} ({torch.version.git_version[:12]})",
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "git_commit": os.environ.get("PAGROB_GIT_COMMIT", "unknown (not run by the workflow)"),
    }

"""What every step shares: common options, device and threads, logging, clean error exits."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pagrob.io import BadFileError

_T0 = time.perf_counter()


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    p.add_argument(
        "--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)"
    )
    p.add_argument(
        "--config-threads",
        type=int,
        default=0,
        help="the threads the config gives this job: refused if --threads differs (the workflow "
        "passes both; a result depends on its thread count)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (refused otherwise)"
    )
    return p


def add_settings(
    p: argparse.ArgumentParser, cls, required: bool = True, option: str = "--settings"
) -> None:
    """``--settings`` (or ``option``): the step's settings as data, a JSON object of ``cls``'s
    fields (pagrob.settings) or a file holding one; the workflow writes it from the config."""
    import dataclasses

    def field(f) -> str:
        if f.default is not dataclasses.MISSING:
            return f"{f.name} (default {f.default!r})"
        if f.default_factory is not dataclasses.MISSING:
            return f"{f.name} (default {f.default_factory()!r})"
        return f.name

    names = [field(f) for f in dataclasses.fields(cls) if f.metadata.get("data", True)]
    p.add_argument(
        option,
        required=required,
        metavar="JSON|FILE",
        help=f"a JSON object of pagrob.settings.{cls.__name__}'s fields, or a file holding one "
        f"(attacks as objects of Attack's fields: norm, eps, steps, step_size, random_start); the "
        f"workflow builds it from the config. Fields: {', '.join(names)}".replace("%", "%%"),
    )


def read_settings(args: argparse.Namespace, cls, option: str = "--settings"):
    """The ``option`` of ``add_settings``, as ``cls`` (a bad one named in a ValueError)."""
    from pagrob import settings

    return settings.read(cls, getattr(args, option.lstrip("-").replace("-", "_")), option)


def add_table_outputs(p: argparse.ArgumentParser, required: bool = True) -> None:
    """A table's files: --out-md (the table), --out-csv (its numbers), --out-html (the report's
    page of it; optional)."""
    p.add_argument("--out-md", required=required, help="the table (Markdown)")
    p.add_argument("--out-csv", required=required, help="the table's numbers (CSV)")
    p.add_argument("--out-html", help="also the table as an HTML page (for the report)")


def add_figure_outputs(p: argparse.ArgumentParser, required: bool = True) -> None:
    """A figure's files: --out-png and --out-pdf."""
    p.add_argument("--out-png", required=required, help="the figure (PNG)")
    p.add_argument("--out-pdf", required=required, help="the figure (PDF)")


def write_table(
    args: argparse.Namespace, numbers, text: str, title: str | None = None, images=None
) -> None:
    """The files of ``add_table_outputs``: ``numbers`` (a DataFrame) as CSV, ``text`` (the
    Markdown table) and, where --out-html is given, its HTML page (``title`` where the text has
    no heading; ``images``: a figure's path as the text names it -> its PNG file, embedded)."""
    from pathlib import Path

    from pagrob import html_table, io

    io.write_text(numbers.to_csv(index=False), args.out_csv)
    io.write_text(text, args.out_md)
    if args.out_html:
        embedded = {name: Path(path).read_bytes() for name, path in (images or {}).items()}
        io.write_text(html_table.page(text, title, embedded), args.out_html)


def boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def int_list(text: str) -> list[int]:
    """'50 75' or '50,75' -> [50, 75] (one argument, as the workflow passes lists)."""
    return [int(t) for t in text.replace(",", " ").split()]


def float_list(text: str) -> list[float]:
    return [float(t) for t in text.replace(",", " ").split()]


def setup(args: argparse.Namespace, outputs: list) -> str:
    """Apply --threads, refuse to overwrite outputs, and return the device to use."""
    import torch

    if args.config_threads and args.threads and args.threads != args.config_threads:
        raise ValueError(
            f"this job runs with --threads {args.threads}, but the config gives it "
            f"{args.config_threads} (datasets.<dataset>.resources.threads): Snakemake's --cores "
            "caps a job's threads, and a result depends on its thread count (float rounding). "
            f"Run Snakemake with --cores {args.config_threads} or more, or lower the config's "
            "threads."
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    existing = [str(o) for o in outputs if o is not None and Path(o).exists()]
    if existing and not args.overwrite:
        raise FileExistsError(
            f"output already exists: {', '.join(existing)}. Remove it or pass --overwrite "
            "(Snakemake removes outputs itself before rerunning a job)."
        )
    for o in outputs:  # fail now, not after hours of training
        if o is not None:
            check_writable(Path(o).parent)
    args.device_asked = args.device
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device} asked for, but torch sees no CUDA device")
    if args.device == "cuda":  # no index: one free GPU of this machine, none shared
        from pagrob.gpus import pick_cuda_device

        return pick_cuda_device(log)
    return args.device


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OSError(
            f"cannot write into {folder}: {e.strerror or e}. Make it writable (or free space)."
        ) from e


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:8.1f}s] {message}", flush=True)


#: the environment variable naming a file descriptor of the console: the workflow's jobs send
#: their log to a file, and their error line to the console too (Snakefile's shell prefix)
CONSOLE_FD = "PAGROB_CONSOLE_FD"


def run(main: Callable[[], None]) -> None:
    """Run ``main``; known input errors end with one clear line and exit status 2, written to
    stderr and, where the workflow gives one, to the console (``CONSOLE_FD``)."""
    try:
        main()
    except (
        BadFileError,
        ValueError,
        FileExistsError,
        FileNotFoundError,
        OSError,
        FloatingPointError,
    ) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        to_console(f"error in {spec.name if spec else sys.argv[0]}: {e}")
        sys.exit(2)


def to_console(line: str) -> None:
    fd = os.environ.get(CONSOLE_FD)
    if fd:
        try:
            os.write(int(fd), f"{line}\n".encode())
        except (OSError, ValueError):  # no such descriptor: the log has the line
            pass

"""AutoAttack (Croce & Hein, ICML 2020), the authors' original code (PyPI: ``pyautoattack``), run
so that a killed run resumes and its results can be read stage by stage.

``version="standard"`` runs APGD-CE, APGD-T (9 target classes), FAB-T (9 target classes) and
Square (5000 queries) in that order, each on the images that the previous stages left
standing, in batches of ``batch_size`` of them, with the original settings (100 iterations for
APGD and FAB) and AutoAttack's own checks (randomness, output range, dynamic defences, number
of classes, zero gradients), whose warnings are collected.

Resuming. pyautoattack 0.2.0 cannot resume from its own state file (it writes the set of
attacks as a string, reads the attacks already run back as a list, and on a restored state
fails with an unbound ``y_adv`` as soon as an image falls). The library attacks every batch
independently, its seed set again for each, so this module hands it one batch of one stage at
a time, exactly the batches of a single uninterrupted run, and after every batch saves the
per-image robust flags, the accuracy after every finished stage and the warnings in a state
file of its own (written atomically, with a fingerprint of the model, data and settings: a
state of other inputs is never reused). A killed run loses at most one batch of one stage and
ends with the result of an uninterrupted run.

AutoAttack assumes inputs in [0, 1] (it clips to that box) and at least 4 classes (the
targeted DLR loss of APGD-T): it applies to the image datasets, not to the 2-D toy data.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from pagrob import io
from pagrob.attacks import frozen_eval, predict

#: the stages of each version, in the order AutoAttack runs them
STAGES = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
}
VERSIONS = tuple(STAGES)
NORM_NAMES = {"linf": "Linf", "l2": "L2"}
#: iterations (APGD, FAB) or queries (Square) of each stage in the standard settings
STAGE_STEPS = {
    "apgd-ce": 100,
    "apgd-dlr": 100,
    "apgd-t": 100,
    "fab": 100,
    "fab-t": 100,
    "square": 5000,
}


@dataclass
class AutoAttackResult:
    images: int
    clean: float  # accuracy in percent
    robust: float  # after the last stage run
    stages: dict[str, float]  # accuracy after each stage run, percent, in run order
    warnings: list[str] = field(default_factory=list)
    resumed: bool = False
    robust_flags: list[bool] = field(default_factory=list)  # per image, after the last stage
    stage_flags: dict[str, list[bool]] = field(default_factory=dict)  # per image, after each
    complete: bool = True  # every stage of the version ran (else: its first ``len(stages)``)


class _Warnings(logging.Handler):
    """Collects the warnings of AutoAttack's checks (each once)."""

    def __init__(self, found: list[str], log: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self.found, self.log = found, log

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.found:
            self.found.append(message)
            self.log(f"AutoAttack warning: {message}")


def fingerprint(model_file, data_file, **settings) -> dict:
    """What an AutoAttack state belongs to: the input files' contents and the settings."""
    return {"model": io.file_digest(model_file), "data": io.file_digest(data_file), **settings}


def run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    norm: str,
    eps: float,
    *,
    state_path: Path,
    fingerprint: dict,
    version: str = "standard",
    seed: int = 0,
    batch_size: int = 500,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    stages: tuple[str, ...] | None = None,
) -> AutoAttackResult:
    """AutoAttack on ``x, y`` (kept where they are; each batch goes to ``device``), resuming
    from ``state_path`` when it holds an unfinished run of the same ``fingerprint``. The state
    file is left in place (the caller removes it once the result is saved). ``stages``: the
    version's first stages only (e.g. ``("apgd-ce", "apgd-t")``, exactly what a whole run
    computes after them); None: all."""
    from pyautoattack import AutoAttack

    order, run_stages = _stages_to_run(norm, version, stages)
    state_path = Path(state_path)
    state = _resume(state_path, fingerprint, log)
    resumed = state is not None
    n = len(x)
    with frozen_eval(model):
        if state is None:
            state = _clean_state(model, x, y, fingerprint, batch_size, device, state_path)
        aa_logger = logging.getLogger("auto-attack")
        aa_logger.propagate = False  # its per-batch chatter stays out of the step's log
        handler = _Warnings(state["warnings"], log)
        aa_logger.addHandler(handler)
        try:
            attack = AutoAttack(
                model, norm=NORM_NAMES[norm], eps=eps, version=version, seed=seed, device=device
            )
            _run_stages(attack, model, x, y, state, state_path, run_stages, batch_size, device, log)
        finally:
            aa_logger.removeHandler(handler)
    return _result(state, n, resumed, complete=run_stages == order)


def _stages_to_run(norm: str, version: str, stages) -> tuple[tuple, tuple]:
    """Check norm, version and stages; return the version's stages and those to run."""
    if norm not in NORM_NAMES:
        raise ValueError(f"AutoAttack norm must be one of {tuple(NORM_NAMES)}, not {norm!r}")
    if version not in STAGES:
        raise ValueError(f"AutoAttack version must be one of {VERSIONS}, not {version!r}")
    order = STAGES[version]
    if stages is not None and tuple(stages) != order[: len(stages)]:
        raise ValueError(
            f"AutoAttack stages {list(stages)}: a run of version {version!r} can stop after any of "
            f"its stages, in its order {list(order)}, not run others"
        )
    run_stages = order if stages is None else tuple(stages)
    return order, run_stages


def _clean_state(model, x, y, fingerprint, batch_size, device, state_path: Path) -> dict:
    """A fresh run's state (the clean predictions' per-image flags, no stage run yet), saved."""
    n = len(x)
    robust = (predict(model, x.to(device), batch_size) == y.to(device)).cpu()
    state = {
        "fingerprint": fingerprint,
        "clean": 100.0 * robust.sum().item() / n,
        "robust": robust.tolist(),
        "stage": 0,
        "batch": 0,
        "standing": None,
        "stages": {},
        "stage_robust": {},
        "warnings": [],
    }
    io.write_text(json.dumps(state), state_path)
    return state


def _result(state: dict, n: int, resumed: bool, complete: bool) -> AutoAttackResult:
    """The result of a finished run's state."""
    robust = torch.tensor(state["robust"])  # cpu: the saved per-image flags, counted on the host
    return AutoAttackResult(
        images=n,
        clean=state["clean"],
        robust=100.0 * robust.sum().item() / n,
        stages=dict(state["stages"]),
        warnings=list(state["warnings"]),
        resumed=resumed,
        robust_flags=[bool(v) for v in state["robust"]],
        stage_flags={k: [bool(v) for v in f] for k, f in state["stage_robust"].items()},
        complete=complete,
    )


def _run_stages(attack, model, x, y, state, state_path, stages, batch_size, device, log) -> None:
    """Each stage on the images standing when it starts, batch by batch as AutoAttack's own run
    would batch them; the state saved after every batch."""
    n = len(x)
    while state["stage"] < len(stages):
        stage = stages[state["stage"]]
        robust = torch.tensor(state["robust"])  # cpu: the resumable state lives on the host
        if state["standing"] is None:  # the stage starts: fix the images it attacks
            state["standing"] = robust.nonzero().flatten().tolist()
        standing = torch.tensor(state["standing"], dtype=torch.long)  # cpu: indexes the host x, y
        batches = math.ceil(len(standing) / batch_size)
        t0 = time.perf_counter()
        while state["batch"] < batches:
            b = state["batch"]
            index = standing[b * batch_size : (b + 1) * batch_size]
            attack.attacks_to_run = [stage]
            x_adv, _ = attack.run_standard_evaluation(x[index], y[index], batch_size=batch_size)
            fooled = (predict(model, x_adv.to(device), batch_size) != y[index].to(device)).cpu()
            robust[index[fooled]] = False
            state["robust"], state["batch"] = robust.tolist(), b + 1
            io.write_text(json.dumps(state), state_path)
            log(
                f"{stage}: batch {b + 1}/{batches}, {fooled.sum().item()} of {len(index)} images fooled"
            )
        state["stages"][stage] = 100.0 * robust.sum().item() / n
        state["stage_robust"][stage] = robust.tolist()
        state["stage"], state["batch"], state["standing"] = state["stage"] + 1, 0, None
        io.write_text(json.dumps(state), state_path)
        log(
            f"robust accuracy after {stage}: {state['stages'][stage]:.2f}% ({time.perf_counter() - t0:.1f}s)"
        )


def _resume(state_path: Path, fp: dict, log) -> dict | None:
    """The state of an unfinished run of the same fingerprint, or None (any other state is
    removed, saying why)."""
    if not state_path.exists():
        return None
    try:
        state = json.loads(state_path.read_text())
        keys = {
            "fingerprint",
            "clean",
            "robust",
            "stage",
            "batch",
            "standing",
            "stages",
            "stage_robust",
            "warnings",
        }
        if not isinstance(state, dict) or keys - set(state):
            raise ValueError(f"keys missing: {sorted(keys - set(state or {}))}")
    except (OSError, ValueError) as e:
        log(f"starting AutoAttack over: the state {state_path} cannot be read ({e})")
        state_path.unlink()
        return None
    if state["fingerprint"] != fp:
        changed = sorted(
            k
            for k in set(fp) | set(state["fingerprint"])
            if state["fingerprint"].get(k) != fp.get(k)
        )
        log(
            f"starting AutoAttack over: the state {state_path} was made for other inputs or "
            f"settings (changed: {', '.join(changed)})"
        )
        state_path.unlink()
        return None
    log(
        f"resuming AutoAttack from {state_path}: finished stages {list(state['stages']) or 'none'}, "
        f"then batch {state['batch'] + 1} of the next"
    )
    return state

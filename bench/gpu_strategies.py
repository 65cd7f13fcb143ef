"""The GPU check's PAG strategy timing (bench/gpu_check.py): one training step of vanilla and of
every exact PAG strategy (``pag.STRATEGIES``) on the same model and batch, timed with the device
synchronised around the timed loop only, its host synchronisations counted (0 expected) and its
peak CUDA memory; with --amp / --channels-last, one PAG step's deviation from float32; and the
table that prints them.
"""

from __future__ import annotations

import dataclasses
import time

import torch
from gpu_projection import source_lam
from gpu_timing import (
    NUM_CLASSES,
    build_model,
    counting_syncs,
    peak_gib,
    peak_reset,
    settings,
    sync,
)

from pagrob import pag, train


def strategies(cfg, d, args, ds, view, source, device, log) -> tuple[dict, dict | None]:
    """One training step of vanilla and of every exact PAG strategy (class_mean targets):
    warm-up, then ``repeats`` steps timed with the device synchronised around them only, host
    synchronisations counted, peak memory per strategy. Then the amp/channels-last deviation."""
    s = settings(cfg, d, args, lam=source_lam(cfg, d, "class_mean"))
    model, opt, batch = strategy_setup(cfg, d, args, ds, view, s, device)
    out = {}
    for name in ("vanilla",) + pag.STRATEGIES:
        out[name] = time_strategy(name, model, opt, batch, source, s, args, device)
        log(
            f"{d}: strategy {name}: "
            + (
                f"{out[name]['seconds_per_step']:.4f} s/step"
                if out[name]["seconds_per_step"]
                else "out of memory"
            )
        )

    precision = None
    if getattr(s, "amp", False) or getattr(s, "channels_last", False):
        precision = deviation(cfg, d, args, ds, model, batch, source, s, device)
        log(
            f"{d}: amp={s.amp} channels_last={s.channels_last} vs float32, one PAG step: "
            + ", ".join(f"{k} {v:.3g}" for k, v in precision.items())
        )
    return out, precision


def strategy_setup(cfg, d, args, ds, view, s, device):
    """The strategies' model (in train mode, channels-last where ``s`` says), its optimizer, and
    one batch of the check's training images drawn as training draws it, on the device."""
    model = build_model(cfg["datasets"][d]["arch"], ds, args.width, 0).to(device)
    if getattr(s, "channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = train.make_optimizer(model, s)
    x_train, y_train = view.x_train.to(device), view.y_train.to(device)
    draws = train.EpochDraws.draw(
        s, 1, len(x_train), x_train.shape[1:], NUM_CLASSES, 1, None, device
    )
    return model, opt, draws.batch(0, x_train, y_train)


def time_strategy(name, model, opt, batch, source, s, args, device) -> dict:
    """One training step of ``name`` (vanilla, or an exact PAG strategy): ``warmup`` steps, then
    ``repeats`` steps timed with the device synchronised around the timed loop only, under
    CUDA's sync debug mode 'warn' (host synchronisations counted), and the peak memory (its
    peak reset before)."""
    vanilla = name == "vanilla"
    s_name = dataclasses.replace(s, lam=0.0) if vanilla else s
    strategy = pag.DEFAULT_STRATEGY if vanilla else name

    def step():
        train.train_step(model, opt, batch, None if vanilla else source, s_name, None, strategy)

    peak_reset(device)
    baseline = torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None
    try:
        for _ in range(args.warmup):
            step()
        sync(device)
        with counting_syncs(device) as syncs:
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                step()
        sync(device)
        seconds = (time.perf_counter() - t0) / args.repeats
        peak = peak_gib(device)
        return {
            "seconds_per_step": seconds,
            "max_memory_allocated_gib": peak,
            "step_memory_gib": None if peak is None else peak - baseline,
            "host_syncs_per_step": None
            if syncs["syncs"] is None
            else syncs["syncs"] / args.repeats,
        }
    except torch.OutOfMemoryError:
        peak_reset(device)
        return {
            "seconds_per_step": None,
            "max_memory_allocated_gib": None,
            "step_memory_gib": None,
            "host_syncs_per_step": None,
            "error": "out of memory",
        }


def deviation(cfg, d, args, ds, trained, batch, source, s, device) -> dict:
    """One PAG step (the config's strategy) from the same weights and batch, in float32 and with
    the --amp / --channels-last settings: the relative deviation of CE, PAG and the gradients."""
    strategy = s.strategy if s.strategy in pag.STRATEGIES else pag.DEFAULT_STRATEGY
    state = {k: v.detach().clone() for k, v in trained.state_dict().items()}
    results = {}
    for label, variant in (
        ("float32", dataclasses.replace(s, amp=False, channels_last=False)),
        ("flags", s),
    ):
        model = build_model(cfg["datasets"][d]["arch"], ds, args.width, 0)
        model.load_state_dict(state)
        model.to(device).train()
        if variant.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(
            model.parameters(), lr=0.0
        )  # leaves the weights and the gradients as they are
        out = train.train_step(model, opt, batch, source, variant, None, strategy)
        grads = torch.cat(
            [p.grad.flatten().double() for p in model.parameters() if p.grad is not None]
        )
        results[label] = (out.ce.double(), out.pag.double(), grads)
    (ce0, pag0, g0), (ce1, pag1, g1) = results["float32"], results["flags"]
    values = torch.stack(
        [
            (ce1 - ce0).abs() / ce0.abs(),
            (pag1 - pag0).abs() / pag0.abs().clamp(min=1e-30),
            torch.linalg.vector_norm(g1 - g0) / torch.linalg.vector_norm(g0),
            torch.nn.functional.cosine_similarity(g1, g0, dim=0),
        ]
    ).tolist()  # read once
    return dict(zip(("ce_rel_dev", "pag_rel_dev", "grad_rel_l2_dev", "grad_cosine"), values))


def print_strategies(d: str, m: dict) -> None:
    st = m["strategies"]
    base = (st.get("vanilla") or {}).get("seconds_per_step")
    print(
        f"\nPAG strategies, {d} (batch {m['batch_size']}, {'x'.join(map(str, m['shape']))}): one training step each"
    )
    print(
        f"{'strategy':12} {'s/step':>10} {'x vanilla':>10} {'max alloc GiB':>14} {'of it the step':>15} {'host syncs/step':>16}"
    )
    for name, r in st.items():
        sec = r["seconds_per_step"]
        ratio = f"{sec / base:10.2f}" if sec and base else f"{'-':>10}"
        mem = (
            f"{r['max_memory_allocated_gib']:14.2f}"
            if r["max_memory_allocated_gib"] is not None
            else f"{'-':>14}"
        )
        mem += (
            f" {r['step_memory_gib']:15.2f}" if r["step_memory_gib"] is not None else f" {'-':>15}"
        )
        syncs = (
            f"{r['host_syncs_per_step']:16g}"
            if r["host_syncs_per_step"] is not None
            else f"{'-':>16}"
        )
        shown = f"{sec:10.4f}" if sec else f"{r.get('error', '-'):>10}"
        print(f"{name:12} {shown} {ratio} {mem} {syncs}")
    if m["precision"]:
        print(
            "  deviation from float32, one PAG step: "
            + ", ".join(f"{k} {v:.3g}" for k, v in m["precision"].items())
        )

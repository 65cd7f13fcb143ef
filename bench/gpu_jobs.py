"""The GPU check's job kinds on one dataset (bench/gpu_check.py): ``check_dataset`` builds a
synthetic dataset of the real one's shape and runs, with the library's own functions and the
config's numbers, every job kind of the grid on it, returning each kind's measurements for the
projection (gpu_projection.py).

Here: the data (prepare_data's save and every step's load), the representative sources'
targets (make_targets), training through ``train.fit`` (vanilla, each representative source,
both teachers' Madry adversarial training, a RIGD student), the autoencoder's training, and the
score-based sources' jobs where the config gives a denoiser recipe (datasets.<d>.score_based):
the denoiser's training (rule denoiser, ``denoiser.fit``) and its targets (make_targets of
score_based and score_shuffled, ``denoiser.score_targets`` for all C classes, on the CPU as the
rule asks for no GPU). The PAG strategies' timing is gpu_strategies.py's; the jobs that attack a
trained model (evaluation, sweep, AutoAttack, PAG scores, figures) are gpu_eval_jobs.py's.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import torch
from gpu_eval_jobs import (
    autoattack_check,
    eval_sizes,
    evaluate_check,
    figure_check,
    pag_scores_check,
    sweep_check,
)
from gpu_projection import source_lam
from gpu_strategies import strategies
from gpu_timing import NUM_CLASSES, Log, build_model, settings, synthetic, timed
from threadpoolctl import threadpool_limits

from pagrob import data, datasets, denoiser, io, models, sources, train
from pagrob.attacks import Attack
from pagrob.settings import DenoiserSettings


def check_dataset(
    d: str, cfg: dict, args, device: torch.device, work: Path, log: Log, real: tuple[int, int]
) -> dict:
    """Every job kind's check on a synthetic ``d`` (``real``: the real dataset's training and
    test images): the measurements of each, by kind."""
    dc = cfg["datasets"][d]
    m = dataset_sizes(d, dc, args, real)
    shape = tuple(m["shape"])
    log(
        f"{d}: synthetic {m['train_images']} training and {m['test_images']} test images of {'x'.join(map(str, shape))}"
    )
    ds = synthetic(d, shape, m["train_images"], m["test_images"], seed=0)
    m["data"] = data_check(ds, work)
    m["targets"], loaded = targets_check(ds, dc["targets"], device, work, log)
    # training through fit: two epochs of --steps steps on the first steps x batch images
    n = args.steps * m["batch_size"]
    view = dataclasses.replace(ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n])
    run = Run(
        d=d,
        cfg=cfg,
        args=args,
        device=device,
        work=work,
        log=log,
        ds=ds,
        view=view,
        shape=shape,
        real_train=real[0],
    )
    m["train"], vanilla, teachers = training_checks(run, loaded)
    m["strategies"], m["precision"] = strategies(
        cfg, d, args, ds, view, loaded["class_mean"], device, log
    )
    # evaluation: clean and PGD-20 per norm, then the masking checks' sweep (the evaluate and
    # sweep steps), on the first n_eval test images (kept on the CPU, as those steps keep them)
    m["evaluate"] = evaluate_check(dc, args, vanilla, ds, device, log)
    m["sweep"] = sweep_check(dc, args, vanilla, ds, device, log)
    m["autoattack"] = autoattack_check(dc, args, vanilla, ds, device, work, log)
    m["autoencoder"], ae = autoencoder_check(dc, args, ds, view, device, log)
    m["denoiser"], m["score_targets"] = denoiser_check(dc, args, ds, device, work, log)
    m["pag_scores"] = pag_scores_check(dc, args, vanilla, teachers, ds, device, log, ae)
    m["figure"] = figure_check(dc, vanilla, ds, device, work, log)
    return m


def dataset_sizes(d: str, dc: dict, args, real: tuple[int, int]) -> dict:
    """The synthetic dataset's shape and sizes, the batch size, and the real dataset's sizes."""
    c, h, w = datasets.SHAPES[d]
    shape = (c, h // args.shrink, w // args.shrink)
    real_train, real_test = real
    batch = args.batch_size or dc["train"]["batch_size"]
    targets_cfg = dc["targets"]
    # the fewest training images: nearest_neighbor's sample (+ the image) and clustered_nn's
    # clusters in every class, and one epoch of the check's steps
    fewest = max(
        max(targets_cfg["nn_sample_size"] + 1, targets_cfg["clusters"]) * NUM_CLASSES,
        args.steps * batch,
    )
    n_train = {0: real_train, -1: fewest}.get(args.train_images, min(args.train_images, real_train))
    if n_train < fewest:
        raise ValueError(f"--train-images {n_train}: {d} needs at least {fewest} (or -1 for that)")
    n_eval, _ = eval_sizes(dc, args)
    pictures = dc["pictures"]["images"]
    n_test = max(n_eval, args.aa_images, max(pictures) + 1)
    return {
        "shape": list(shape),
        "batch_size": batch,
        "train_images": n_train,
        "test_images": n_test,
        "real_train_images": real_train,
        "real_test_images": real_test,
    }


def data_check(ds: data.Dataset, work: Path) -> dict:
    """data: what prepare_data writes and every step reads."""
    path = work / f"{ds.name}_data.pt"
    _, t_save = timed(lambda: data.save_prepared(ds, path), torch.device("cpu"))
    _, t_load = timed(lambda: data.load_prepared(path), torch.device("cpu"))
    path.unlink()
    return {"seconds": t_save + t_load, "images": len(ds.x_train) + len(ds.x_test)}


def targets_check(ds: data.Dataset, targets_cfg: dict, device, work: Path, log: Log):
    """targets: every representative source built on the CPU as make_targets does, loaded onto
    the device as train does. Returns the measurements and the loaded sources, by source."""
    out, loaded = {}, {}
    for source in sources.REPRESENTATIVES:
        out[source], loaded[source] = target_check(source, ds, targets_cfg, device, work, log)
    return out, loaded


def target_check(source: str, ds: data.Dataset, targets_cfg: dict, device, work: Path, log: Log):
    """One source's targets built (with the job's threads), saved and loaded onto ``device``."""
    with threadpool_limits(torch.get_num_threads()):  # k-means' OpenMP threads: the job's threads
        built, t_build = timed(
            lambda: sources.build(
                source,
                ds,
                seed=targets_cfg["seed"],
                nn_sample_size=targets_cfg["nn_sample_size"],
                class_mean_rescale=targets_cfg["class_mean_rescale"],
                clusters=targets_cfg["clusters"],
            ),
            torch.device("cpu"),
        )
    tpath = work / f"{ds.name}_{source}.pt"
    _, t_save = timed(lambda: io.save(built, tpath), torch.device("cpu"))
    loaded, t_load = timed(lambda: sources.load_representatives(tpath, ds, source, device), device)
    log(
        f"{ds.name}: targets {source}: built in {t_build:.2f}s, loaded onto {device} in {t_load:.2f}s"
    )
    return {"build_s": t_build, "save_s": t_save, "load_s": t_load}, loaded


def first_rows(source, m: int):
    """The source for a training set cut to its first ``m`` images (the targets were built on
    the whole synthetic set; a check's epoch is only ``steps`` batches of it)."""
    if isinstance(source, sources.NearestNeighbors):
        return sources.NearestNeighbors(source.x_train, source.nn_index[:m])
    return source


# --- Training through fit ------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """What the training checks of one dataset share."""

    d: str
    cfg: dict
    args: object
    device: torch.device
    work: Path
    log: Log
    ds: data.Dataset
    #: the first steps x batch training images: one epoch of the check's steps
    view: data.Dataset
    shape: tuple
    real_train: int

    @property
    def dc(self) -> dict:
        return self.cfg["datasets"][self.d]


def training_checks(run: Run, loaded: dict) -> tuple[dict, models.Classifier, dict]:
    """Training through fit: vanilla, each representative source, both teachers' Madry
    adversarial training (the config's teachers' attacks), and a RIGD student of the L-inf
    teacher. Returns the measurements by kind, the vanilla model and the teachers by norm."""
    cfg, d, args = run.cfg, run.d, run.args
    out = {}
    vanilla, out["vanilla"] = fit_check(run, "vanilla", None, settings(cfg, d, args))
    for source in sources.REPRESENTATIVES:
        _, out[source] = fit_check(
            run,
            source,
            first_rows(loaded[source], len(run.view.x_train)),
            settings(cfg, d, args, lam=source_lam(cfg, d, source)),
        )
    teachers = {}
    for norm in ("linf", "l2"):
        s = settings(cfg, d, args, adversarial=madry(run.dc, norm))
        teachers[norm], out[f"teacher_{norm}"] = fit_check(run, f"teacher_{norm}", None, s)
    rigd = "rigd_linf"
    _, out["rigd"] = fit_check(
        run,
        "rigd",
        sources.TeacherGradients(teachers[sources.TEACHER_SOURCES[rigd]], cfg["pag"]["grad_of"]),
        settings(cfg, d, args, lam=source_lam(cfg, d, rigd)),
    )
    return out, vanilla, teachers


def madry(dc: dict, norm: str) -> dict:
    """The ``norm`` teacher's adversarial training attack (TrainSettings.adversarial)."""
    a = dc["teachers"][norm]["attack"]
    return {
        "norm": norm,
        "eps": a["eps"],
        "steps": a["steps"],
        "step_size": a.get("step_size"),
        "random_start": True,
    }


def fit_check(run: Run, kind: str, source, s: train.TrainSettings):
    """Two epochs of ``s`` through train.fit (the first warms up, the second is timed: fit's
    own history), fit's per-epoch overhead, and the draws of a real-sized epoch. Returns the
    trained model and the measurement."""
    model = build_model(run.dc["arch"], run.ds, run.args.width, s.seed)
    ckpt = run.work / f"{run.d}_{kind}.checkpoint.pt"
    history, wall = timed(
        lambda: train.fit(model, run.view, source, s, ckpt, str(run.device), log=run.log.library),
        run.device,
    )
    ckpt.unlink(missing_ok=True)
    loops = sum(h["seconds"] for h in history)
    last = history[-1]
    t = {
        "seconds_per_step": last["seconds"] / run.args.steps,
        "images_per_s": last["images_per_s"],
        "strategy": last["strategy"],
        "fit_overhead_per_epoch_s": max(0.0, wall - loops) / len(history),
        "real_epoch_draws_s": real_epoch_draws(run, s),
        "losses": {"ce": last["ce"], "pag": last["pag"]},
    }
    run.log(
        f"{run.d}: train {kind}: {t['seconds_per_step']:.4f} s/step "
        f"({last['images_per_s']:.0f} img/s, strategy {last['strategy']})"
    )
    return model, t


def real_epoch_draws(run: Run, s: train.TrainSettings) -> float:
    """Seconds of ``train.EpochDraws.draw`` for a real-sized epoch at the config's batch size."""
    attack = Attack(**s.adversarial, bounds=run.ds.bounds) if s.adversarial else None
    batch = run.dc["train"]["batch_size"]
    steps_real = run.real_train // batch
    real_s = dataclasses.replace(s, batch_size=batch)
    _, seconds = timed(
        lambda: train.EpochDraws.draw(
            real_s, 1, run.real_train, run.shape, NUM_CLASSES, steps_real, attack, run.device
        ),
        run.device,
    )
    return seconds


# --- The autoencoder -----------------------------------------------------------------------------


def autoencoder_check(dc, args, ds, view, device, log):
    """The autoencoder job: its training (two epochs of the check's images, the second timed) at
    the config's settings. Returns the measurement and the model (for the tangent-space score)."""
    from pagrob import autoencoder as ae_lib

    cfg = dc.get("autoencoder")
    if not cfg:
        return {}, None
    torch.manual_seed(cfg["seed"])
    ae = ae_lib.build(cfg["arch"], ds.input_shape, cfg["latent"]).to(device)
    batch = args.batch_size or cfg["batch_size"]
    s = ae_lib.AutoencoderSettings(cfg["arch"], cfg["latent"], 2, batch, cfg["lr"], cfg["seed"])
    history, _ = timed(
        lambda: ae_lib.fit(ae, view.x_train.to(device), s, str(device), log.library), device
    )
    steps = -(-len(view.x_train) // batch)
    per_step = history[-1]["seconds"] / steps
    log(f"{ds.name}: autoencoder ({cfg['arch']}, latent {cfg['latent']}): {per_step:.4f} s/step")
    return {"seconds_per_step": per_step, "batch_size": batch, "epochs": cfg["epochs"]}, ae.eval()


# --- The score-based sources: the denoiser and its targets ---------------------------------------


def denoiser_check(dc, args, ds, device, work: Path, log: Log) -> tuple[dict, dict]:
    """The denoiser job: two epochs of ``--steps`` batches at the config's recipe
    (datasets.<d>.score_based.denoiser; --batch-size over its batch), the second timed (fit's
    own history: its draws, steps and the epoch's one read), per training image and epoch. Then
    the score-based sources' targets (score_targets_check). Returns both measurements ({}, {}
    where the config gives no denoiser recipe)."""
    block = dc.get("score_based")
    if not block:
        return {}, {}
    recipe = block["denoiser"]
    batch = args.batch_size or recipe["batch_size"]
    s = DenoiserSettings.from_config({**recipe, "epochs": 2, "batch_size": batch})
    n = min(len(ds.x_train), args.steps * batch)
    torch.manual_seed(s.seed)
    net = denoiser.build(s.arch, ds.input_shape, ds.num_classes, width=s.width, scale=s.scale)
    history, _ = timed(
        lambda: denoiser.fit(net, ds.x_train[:n], ds.y_train[:n], s, str(device), log=log.library),
        device,
    )
    per_image = history[-1]["seconds"] / n
    log(
        f"{ds.name}: denoiser ({s.arch}, width {s.width}, batch {batch}): "
        f"{per_image * 1e3:.3f} ms/image/epoch on {device}"
    )
    measured = {
        "seconds_per_image_epoch": per_image,
        "images": n,
        "batch_size": batch,
        "epochs": recipe["epochs"],
        "arch": s.arch,
        "width": s.width,
    }
    return measured, score_targets_check(net.cpu().eval(), block, args, ds, work, log)


def score_targets_check(net, block: dict, args, ds, work: Path, log: Log) -> dict:
    """make_targets of each score-based source: ``denoiser.score_targets`` (g(x, c) for all C
    classes; the control's classes shuffled) of the first ``--score-images`` training images
    on the CPU with the job's threads (the rule asks for no GPU), saved as the step saves it."""
    cpu = torch.device("cpu")
    x = ds.x_train[: max(1, args.score_images)]
    out = {}
    for source in sources.SCORE:
        classes = None
        if source == "score_shuffled":
            classes = denoiser.shuffled_classes(len(x), ds.num_classes, 0)
        g, t_build = timed(partial(denoiser.score_targets, net, x, block["sigma"], classes), cpu)
        path = work / f"{ds.name}_{source}.pt"
        _, t_save = timed(partial(io.save, {"gradients": g, "classes": classes}, path), cpu)
        path.unlink()
        out[source] = {
            "build_s": t_build,
            "save_s": t_save,
            "images": len(x),
            "classes": ds.num_classes,
            "threads": torch.get_num_threads(),
        }
        log(
            f"{ds.name}: targets {source}: {(t_build + t_save) / len(x) * 1e3:.2f} ms/image "
            f"({ds.num_classes} classes, CPU, {torch.get_num_threads()} threads)"
        )
    return out

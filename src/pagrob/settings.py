"""The settings of the steps, as data: one dataclass per kind of job (training, evaluation,
AutoAttack, the checks' sweep, PAG scores, the pictures) and the attack they share.

Each is built from the config's own blocks by its ``from_config`` (the one place where config
keys become settings: a key of a block that is a field is taken by name), written by the
workflow as JSON (``to_json``) and read by its step (``--settings``: that JSON, or a file of it)
with ``from_data``, which names an unknown or missing field. A new key then takes the config, the
schema and one field here.

Pure Python (no PyTorch, no Snakemake): the workflow builds these at parse time, so that a bad
value fails before any job runs, and the library's modules re-export them.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

NORMS = ("linf", "l2")

#: the exact PAG strategies (pagrob.pag holds their code; every one computes the same loss and
#: gradients, tests/unit/test_pag.py), and ``auto``: the fastest of them, timed at the start
STRATEGIES = ("loop", "accumulate", "batched", "segmented", "replicated")
AUTO = "auto"
STRATEGY_CHOICES = STRATEGIES + (AUTO,)
DEFAULT_STRATEGY = "segmented"
#: the class score whose input-gradient the PAG term aligns: the raw logit (Eq. 1), the
#: log-softmax (the authors' code), or the centred logit f_c - mean_k f_k with the targets centred
#: the same way (g_c - mean_k g_k): only the part of both that the predictions depend on
GRAD_OF = ("logit", "log_softmax", "centred")
#: how the PAG term meets BatchNorm's batch statistics in train mode: the gradient of the batch's
#: summed score (``batch``: the statistics couple the images) or each image's own gradient with the
#: statistics held as constants (``frozen``); pagrob.pag's docstring
BATCHNORM = ("batch", "frozen")
#: frozen: config.yaml's pag.batchnorm says why (bench/batchnorm.py's measurement)
DEFAULT_BATCHNORM = "frozen"
#: how the PAG term meets the augmentation (pagrob.train's docstring)
FOLLOW, AUTHORS = "follow", "authors"
PAG_VARIANTS = (FOLLOW, AUTHORS)
DEFAULT_PAG_VARIANT = FOLLOW

#: AutoAttack's cheaper stage: its first two attacks, APGD-CE then APGD-T (the same settings as in
#: the whole version), for the seeds outside eval.autoattack.full_seeds
APGD_STAGES = ("apgd-ce", "apgd-t")

#: a field's metadata that keeps it out of the settings' data (set by the step, not the config)
NOT_DATA = {"data": False}


def picked(cls, block: dict | None, where: str, skip=()) -> dict:
    """The keys of a config block that are fields of ``cls``, but those in ``skip`` (read
    elsewhere); a key that is neither is refused, naming it."""
    names = {f.name for f in dataclasses.fields(cls)}
    block = block or {}
    unknown = sorted(set(block) - names - set(skip))
    if unknown:
        raise ValueError(
            f"{where}: {unknown} not a setting of {cls.__name__} (its fields: {sorted(names)}); "
            "a new config key needs its field there (pagrob.settings)"
        )
    return {k: v for k, v in block.items() if k in names and k not in skip}


@dataclass(frozen=True)
class Attack:
    """A PGD attack: its threat model, radius, steps, step size (None: 2 eps / steps, as in the
    paper) and random start; ``bounds`` is the input domain, the dataset's (set by the step)."""

    norm: str
    eps: float
    steps: int
    step_size: float | None = None
    random_start: bool = True
    bounds: tuple[float, float] | None = field(default=(0.0, 1.0), metadata=NOT_DATA)

    def __post_init__(self):
        _as_floats(self)
        if self.norm not in NORMS:
            raise ValueError(f"attack norm must be one of {NORMS}, not {self.norm!r}")
        if self.eps < 0 or self.steps < 0:
            raise ValueError(f"attack eps and steps must be >= 0 (got {self.eps}, {self.steps})")

    @property
    def alpha(self) -> float:
        if self.step_size is not None:
            return self.step_size
        return 2 * self.eps / self.steps if self.steps else 0.0

    @classmethod
    def from_config(cls, norm: str, block: dict, where: str = "attack") -> Attack:
        """A config attack block ({eps, steps, step_size, random_start}) of threat model norm."""
        return cls(norm=norm, **picked(cls, block, where))


@dataclass
class TrainSettings:
    """One training run: datasets.<d>.train's keys by name, pag's (pag.eps as ``pag_eps``), the
    model's lambda and seed, and for the teachers the training attack."""

    epochs: int
    batch_size: int
    optimizer: str = "sgd"  # "sgd" or "adam"
    lr: float = 0.01
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    milestones: list[int] = field(default_factory=list)  # 1-based epochs where lr *= gamma
    gamma: float = 0.1
    crop_padding: int = 0  # random crop with this zero padding (0: no crop)
    flip: bool = False  # random horizontal flip
    lam: float = 0.0
    grad_of: str = "logit"
    strategy: str = DEFAULT_STRATEGY  # one of STRATEGIES, or "auto": the fastest of them
    pag_eps: float = 1e-8
    classes_per_step: int | None = None  # None: all C classes every step
    seed: int = 0
    # Madry adversarial training (teachers): Attack fields (norm, eps, steps, step_size,
    # random_start); the cross-entropy is taken on PGD examples made in eval mode.
    adversarial: dict | None = None
    # mixed precision: forward passes (and the training attack's) under bfloat16 autocast, the
    # logits, losses and the PAG cosine in float32. CUDA only: a CPU run with amp is refused.
    amp: bool = False
    channels_last: bool = False  # model and image batches in channels-last memory format
    pag_variant: str = DEFAULT_PAG_VARIANT  # one of PAG_VARIANTS (pagrob.train's docstring)
    batchnorm: str = DEFAULT_BATCHNORM  # one of BATCHNORM (pagrob.pag's docstring)

    def __post_init__(self):
        _as_floats(self)
        if self.batchnorm not in BATCHNORM:
            raise ValueError(f"batchnorm must be one of {BATCHNORM}, not {self.batchnorm!r}")
        if self.strategy not in STRATEGY_CHOICES:
            raise ValueError(f"strategy must be one of {STRATEGY_CHOICES}, not {self.strategy!r}")
        if self.grad_of not in GRAD_OF:
            raise ValueError(f"grad_of must be one of {GRAD_OF}, not {self.grad_of!r}")
        if self.pag_variant not in PAG_VARIANTS:
            raise ValueError(f"pag_variant must be one of {PAG_VARIANTS}, not {self.pag_variant!r}")
        if self.pag_variant == AUTHORS and self.adversarial:
            raise ValueError(
                f"pag_variant {AUTHORS!r} is a PAG student's training; adversarial training (the "
                f"RIGD teachers) takes its PGD examples of the augmented batch, variant {FOLLOW!r}"
            )

    def lr_at(self, epoch: int) -> float:
        """Learning rate for 1-based ``epoch``."""
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)

    @classmethod
    def from_config(
        cls, train: dict, pag: dict, *, lam: float, seed: int, where: str = "train", **more
    ) -> TrainSettings:
        """A student's run from datasets.<d>.train and pag (``more``: e.g. a teacher's epochs
        and adversarial attack)."""
        p = {"pag_eps" if k == "eps" else k: v for k, v in (pag or {}).items()}
        p["classes_per_step"] = p.get("classes_per_step") or None  # 0: all classes
        values = picked(cls, train, where) | picked(cls, p, "pag") | more
        return cls(**values, lam=float(lam), seed=int(seed))


@dataclass(frozen=True)
class EvalSettings:
    """Clean and PGD accuracy (datasets.<d>.eval): the first ``max_images`` test images (0: all)
    in batches, each attack's random start seeded by ``seed``."""

    attacks: tuple[Attack, ...] = ()
    batch_size: int = 500
    max_images: int = 0
    seed: int = 0

    @classmethod
    def from_config(cls, eval_block: dict) -> EvalSettings:
        attacks = eval_block.get("attacks") or {}
        return cls(
            attacks=tuple(
                Attack.from_config(n, a, f"eval.attacks.{n}") for n, a in attacks.items()
            ),
            **picked(cls, eval_block, "eval", skip=("autoattack", "checks", "attacks")),
        )


@dataclass(frozen=True)
class AutoAttackSettings:
    """AutoAttack (eval.autoattack: version, seed, batch_size, images; 0: all) at the table's PGD
    attack, which also runs on the same images (``pgd``, its starts seeded by eval.seed);
    ``stages``: the version's stages run (None: all; ``APGD_STAGES``: the cheaper stage that the
    seeds outside eval.autoattack.full_seeds get)."""

    pgd: Attack
    version: str = "standard"
    seed: int = 0
    batch_size: int = 500
    images: int = 0
    pgd_seed: int = 0
    stages: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, eval_block: dict, norm: str, full: bool = True) -> AutoAttackSettings:
        """``full``: the whole version (else its APGD stages: the model's seed is not one of
        eval.autoattack.full_seeds, pagrob.grid decides)."""
        pgd = Attack.from_config(norm, eval_block["attacks"][norm], f"eval.attacks.{norm}")
        # which models, seeds and norms get AutoAttack: the workflow's (pagrob.grid)
        grid_keys = ("experiments", "teachers", "seeds", "norms", "full_seeds")
        aa = picked(cls, eval_block["autoattack"], "eval.autoattack", skip=grid_keys)
        stages = None if full else APGD_STAGES
        return cls(pgd=pgd, pgd_seed=eval_block.get("seed", 0), stages=stages, **aa)


@dataclass(frozen=True)
class SweepSettings:
    """The PGD side of the gradient-masking checks (eval.checks): accuracy against eps (one
    ``curves`` attack per eps, the table's steps at 2 eps / steps) and the ``strong`` PGD at the
    table's eps (checks.steps, each the table's step, ``restarts`` random restarts), on the
    AutoAttack images."""

    curves: tuple[Attack, ...] = ()
    strong: tuple[Attack, ...] = ()
    restarts: int = 5
    batch_size: int = 500
    max_images: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.restarts < 1:
            raise ValueError(f"restarts must be at least 1, not {self.restarts}")

    @classmethod
    def from_config(cls, eval_block: dict, norms) -> SweepSettings:
        checks = eval_block["checks"]
        curves, strong = [], []
        for norm in norms:
            attack = Attack.from_config(norm, eval_block["attacks"][norm], f"eval.attacks.{norm}")
            for eps in checks["curves"].get(norm, []):
                curves.append(dataclasses.replace(attack, eps=eps, step_size=None))
            strong.append(
                dataclasses.replace(attack, steps=checks["steps"], step_size=attack.alpha)
            )
        return cls(
            curves=tuple(curves),
            strong=tuple(strong),
            restarts=checks["restarts"],
            batch_size=eval_block.get("batch_size", 500),
            max_images=(eval_block.get("autoattack") or {}).get("images", 0),
            seed=eval_block.get("seed", 0),
        )


@dataclass(frozen=True)
class ChecksSettings:
    """The thresholds of the gradient-masking checks (eval.checks), in points of accuracy:
    robust may exceed clean and accuracy may rise from one eps to the next by ``tolerance``;
    PGD may exceed AutoAttack or the strong PGD by ``max_gap``; at most ``zero_at`` % is left
    at the curve's largest eps."""

    tolerance: float = 1.0
    max_gap: float = 10.0
    zero_at: float = 5.0

    def __post_init__(self):
        _as_floats(self)

    @classmethod
    def from_config(cls, checks: dict) -> ChecksSettings:
        sweep_keys = ("sweep", "steps", "restarts", "curves")  # the sweep's (SweepSettings)
        return cls(**picked(cls, checks, "eval.checks", skip=sweep_keys))


@dataclass(frozen=True)
class PagScoresSettings:
    """PAG scores (datasets.<d>.pag_scores: images, batch_size, seed): the targeted L2 attack
    (its attack, or the pictures', Fig. 4's; no random start) and, with an autoencoder, the L2
    norm of its on/off-manifold noise."""

    attack: Attack
    images: int = 500
    batch_size: int = 500
    seed: int = 0
    noise: float | None = None

    def __post_init__(self):
        _as_floats(self)

    @classmethod
    def from_config(cls, block: dict, pictures_attack: dict, noise=None) -> PagScoresSettings:
        a = block.get("attack") or pictures_attack
        attack = dataclasses.replace(
            Attack.from_config("l2", a, "pag_scores.attack"), random_start=False
        )
        # the reference seed and the ceiling: the workflow's (pagrob.grid)
        skip = ("attack", "reference_seed", "ceiling")
        return cls(attack=attack, noise=noise, **picked(cls, block, "pag_scores", skip=skip))


@dataclass(frozen=True)
class PicturesSettings:
    """Fig. 1, 4 and 5's pictures (datasets.<d>.pictures): the test images' indices and the
    targeted L2 attack (no random start) towards every class."""

    images: tuple[int, ...]
    attack: Attack

    @classmethod
    def from_config(cls, block: dict) -> PicturesSettings:
        attack = Attack.from_config("l2", block["attack"], "pictures.attack")
        return cls(
            images=tuple(block["images"]), attack=dataclasses.replace(attack, random_start=False)
        )


@dataclass(frozen=True)
class AutoencoderSettings:
    """The autoencoder of the tangent-space scores (datasets.<d>.autoencoder; its noise is the
    PAG scores')."""

    arch: str
    latent: int
    epochs: int
    batch_size: int
    lr: float
    seed: int = 0

    def __post_init__(self):
        _as_floats(self)

    @classmethod
    def from_config(cls, block: dict) -> AutoencoderSettings:
        return cls(**picked(cls, block, "autoencoder", skip=("noise",)))


@dataclass(frozen=True)
class DenoiserSettings:
    """The class-conditional denoiser of the score-based sources (datasets.<d>.score_based
    .denoiser): trained by denoising score matching over noise levels drawn log-uniformly from
    [sigma_min, sigma_max] (pagrob.denoiser)."""

    arch: str
    epochs: int
    batch_size: int
    lr: float
    sigma_min: float
    sigma_max: float
    width: int = 256
    #: the data's scale sigma_d of the network's preconditioning (EDM's 0.5 for images in
    #: [0, 1]; the toy's coordinates spread over about +-100)
    scale: float = 0.5
    seed: int = 0

    def __post_init__(self):
        _as_floats(self)
        if self.arch not in ("mlp", "conv"):
            raise ValueError(f"denoiser arch {self.arch!r}: choose mlp or conv")
        if not 0 < self.sigma_min <= self.sigma_max:
            raise ValueError(
                f"denoiser noise levels [{self.sigma_min}, {self.sigma_max}]: need "
                "0 < sigma_min <= sigma_max"
            )
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0 or self.width < 1:
            raise ValueError(f"invalid denoiser settings {self}")

    @classmethod
    def from_config(cls, block: dict) -> DenoiserSettings:
        return cls(**picked(cls, block, "score_based.denoiser"))


# --- As data: the JSON a rule writes and a step reads ---------------------------------------------


def to_data(settings) -> dict:
    """The settings' fields (nested attacks too) as JSON-able values, without those set by the
    step (NOT_DATA)."""

    def value(v):
        if dataclasses.is_dataclass(v):
            return to_data(v)
        if isinstance(v, (list, tuple)):
            return [value(x) for x in v]
        return v

    return {
        f.name: value(getattr(settings, f.name))
        for f in dataclasses.fields(settings)
        if f.metadata.get("data", True)
    }


def to_json(settings) -> str:
    return json.dumps(to_data(settings))


def from_data(cls, data: dict, where: str = "--settings"):
    """``cls`` from its fields' values (as ``to_data`` writes them): a missing, unknown or
    mistyped field is named."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object of {cls.__name__}'s fields")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("data", True)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: {unknown} not a field of {cls.__name__} ({sorted(fields)})")
    missing = [
        n
        for n, f in fields.items()
        if n not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"{where}: {cls.__name__} needs {missing}")
    hints = typing.get_type_hints(cls)
    return cls(**{n: _typed(hints[n], v, f"{where}: {n}") for n, v in data.items()})


def _typed(hint, value, where: str):
    """``value`` as the field's type: nested attacks and tuples built, numbers checked."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None and (origin in (typing.Union, types.UnionType)) and type(None) in args:
        return None
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Attack:
        return from_data(Attack, value, where)
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        item = args[0]
        items = [_typed(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        bool: isinstance(value, bool),
        str: isinstance(value, str),
        int: numeric and isinstance(value, int),
        float: numeric,
    }.get(hint, True)
    if not ok:
        raise ValueError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _as_floats(settings) -> None:
    """The float fields as floats (a YAML 1 is an int), as the steps' options parsed them."""
    hints = typing.get_type_hints(type(settings))
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if hints[f.name] in (float, float | None) and isinstance(value, int):
            object.__setattr__(settings, f.name, float(value))


def read(cls, text: str, option: str = "--settings"):
    """``--settings``: a JSON object of ``cls``'s fields, or the path of a file holding one."""
    where = option
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ValueError(
                f"{option} {text}: no such file; give a JSON file of {cls.__name__}'s fields, "
                "or the JSON itself"
            )
        where, text = f"{option} {text}", path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not JSON ({e})") from None
    return from_data(cls, data, where)

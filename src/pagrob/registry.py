"""The one registry of the gradient sources and the datasets: names, display names, kinds, shapes
and sizes, loaders and the config keys each reads.

Pure Python (no PyTorch, no Snakemake): the library, the workflow (workflow/rules/common.smk),
the report and the bench read these facts from here, and the config schema's enums are checked
against it (tests/unit/test_registry.py). A new dataset is its row in ``DATASETS``, its loader
and its config block; a new gradient source its row in ``SOURCES`` and its code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """A gradient source (Section 4.2), or a model kind the tables show beside them."""

    name: str
    title: str  # its name in every table and figure
    #: vanilla (no PAG term), representative (targets computed once per dataset), score (a
    #: class-conditional denoiser's residual, pagrob.denoiser), file (targets read from a file),
    #: rigd (a robust teacher's gradients), teacher (the robust teachers)
    kind: str
    #: the datasets.<d>.targets keys its precomputation reads (only these reach its job, so that
    #: changing one source's setting rebuilds that source alone)
    targets_keys: tuple[str, ...] = ()
    norm: str | None = None  # rigd and teacher: the threat model of the (teacher's) training
    #: representative: its targets are a random draw (one image, a sample, k-means' starts),
    #: made from the training seed of the model that uses them (datasets.<d>.targets.per_seed)
    drawn: bool = False


#: in the tables' order
_SOURCES = (
    Source("vanilla", "Vanilla", "vanilla"),
    Source("one_image", "One Image", "representative", drawn=True),
    Source("class_mean", "Class Mean", "representative", ("class_mean_rescale",)),
    Source(
        "nearest_neighbor", "Nearest Neighbor", "representative", ("nn_sample_size",), drawn=True
    ),
    Source("rigd_linf", "RIGD ℓ∞", "rigd", norm="linf"),
    Source("rigd_l2", "RIGD ℓ2", "rigd", norm="l2"),
    Source(
        "clustered_nn",
        "Clustered NN (beyond the paper)",
        "representative",
        ("clusters",),
        drawn=True,
    ),
    Source("score_based", "Score-based (denoiser)", "score"),
    Source("score_shuffled", "Score-based, labels shuffled (control)", "score"),
    Source("file", "Targets file (e.g. the authors' score-based)", "file", ("labels",)),
    Source("teacher_linf", "Teacher ℓ∞ (adversarial training)", "teacher", norm="linf"),
    Source("teacher_l2", "Teacher ℓ2 (adversarial training)", "teacher", norm="l2"),
)
SOURCES = {s.name: s for s in _SOURCES}


def _named(kind: str) -> tuple[str, ...]:
    return tuple(s.name for s in _SOURCES if s.kind == kind)


REPRESENTATIVES = _named("representative")
#: score-based gradients from a class-conditional denoiser that the workflow trains
#: (datasets.<d>.score_based), and their control with each image's classes shuffled
SCORE = _named("score")
#: the representatives whose targets are a random draw, one per draw seed
DRAWN = tuple(s.name for s in _SOURCES if s.drawn)
#: targets read from a file (``pagrob.target_files``)
FILE = "file"
#: student source -> its teacher's threat model
RIGD = {s.name: s.norm for s in _SOURCES if s.kind == "rigd"}
TEACHERS = _named("teacher")
#: what a student can be trained with; the score-based and file sources sit with the
#: representatives (a stored target that make_targets prepares once per dataset), the RIGD
#: sources come last
TRAINED = ("vanilla", *REPRESENTATIVES, *SCORE, FILE, *RIGD)
#: the sources whose targets make_targets stores, one file per dataset or per draw
STORED = (*REPRESENTATIVES, *SCORE, FILE)
#: the kinds whose models saw a robust model: a RIGD student distils one, a teacher (and a PAG
#: reference, trained with the teachers' recipe) is one
CIRCULAR_KINDS = ("rigd", "teacher")
#: an imported model's source in every table: external:<name>
EXTERNAL = "external:"


def circular(source: str) -> bool:
    """Whether a model of ``source`` saw a robust model, so that whatever it shows about PAG and
    robustness is circular: it is never a point of a ranking of the question "does PAG imply
    robustness", never counted independent of a robust reference, and is shown as the ceiling.
    A RIGD student, a teacher or reference (``CIRCULAR_KINDS``), and every imported model
    (``external:<name>``: its training is not ours to vouch for). The other sources' models never
    saw one (the score-based sources: a denoiser of the training images; the file source: the
    authors' score-based targets, from a diffusion model). A
    class-score variant (``<source>.<grad_of>``) is its source's."""
    if source.startswith(EXTERNAL):
        return True
    spec = SOURCES.get(source.split(".", 1)[0])
    if spec is None:
        raise ValueError(f"unknown source {source!r}: not in pagrob.registry.SOURCES")
    return spec.kind in CIRCULAR_KINDS


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    #: generated (the toy), bundled (ships with a package), torchvision (its on-disk format)
    kind: str
    shape: tuple[int, ...]  # one input
    classes: int
    sizes: tuple[int, int] | None  # (train, test) images; None: the config sets them
    #: the datasets.<d>.data keys its data step reads
    data_keys: tuple[str, ...]
    #: torchvision.datasets' class (its file names, MD5 sums and reader)
    torchvision: str | None = None


DATASETS = {
    d.name: d
    for d in (
        DatasetSpec(
            "toy",
            "2-D toy data (Section 5.1)",
            "generated",
            (2,),
            2,
            None,
            ("centers", "per_mode", "test", "seed"),
        ),
        DatasetSpec(
            "digits",
            "8x8 handwritten digits (scikit-learn)",
            "bundled",
            (1, 8, 8),
            10,
            None,
            ("test_fraction", "seed"),
        ),
        DatasetSpec(
            "cifar10",
            "CIFAR-10",
            "torchvision",
            (3, 32, 32),
            10,
            (50_000, 10_000),
            ("root", "download"),
            "CIFAR10",
        ),
        DatasetSpec(
            "cifar100",
            "CIFAR-100",
            "torchvision",
            (3, 32, 32),
            100,
            (50_000, 10_000),
            ("root", "download"),
            "CIFAR100",
        ),
        DatasetSpec(
            "stl10",
            "STL-10",
            "torchvision",
            (3, 96, 96),
            10,
            (5_000, 8_000),
            ("root", "download"),
            "STL10",
        ),
        DatasetSpec(
            "fashion_mnist",
            "Fashion-MNIST",
            "torchvision",
            (1, 28, 28),
            10,
            (60_000, 10_000),
            ("root", "download", "train_size", "seed"),
            "FashionMNIST",
        ),
    )
}
#: the datasets of the image experiments (every one but the toy)
IMAGE_DATASETS = tuple(name for name, d in DATASETS.items() if d.kind != "generated")

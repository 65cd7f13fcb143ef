"""Sources of "ground-truth" perceptually aligned gradients g(x, c) (Section 4).

Target class representatives (Section 4.2), g(x, c) = r(x, c) - x:

- ``one_image``: r(x, c) is one seeded random training image of class c, for every x;
- ``class_mean``: r(x, c) is the mean training image of class c, optionally rescaled so that
  its L2 norm equals the mean norm of that class's images (the paper's "multiplied by a constant
  in order to obtain an image-like norm");
- ``nearest_neighbor``: r(x, c) is x's nearest neighbour (L2 in pixel space) among a small iid
  sample of class-c training images, never x itself (Eq. 3);
- ``clustered_nn``: the option Section 4.2 proposes between the last two: each class's training
  images are clustered into k clusters (k-means), and r(x, c) is the centroid of class c nearest
  to x (L2 in pixel space). k = 1 gives the (unrescaled) class mean, k = class size the nearest
  neighbour over the whole class.

Targets computed elsewhere, ``file`` (e.g. the score-based targets the authors released):
g(x, c) is read from a tensor file, matched to the training images once; see
``pagrob.target_files`` (its ``FileTargets`` source follows the augmentation as the nearest
neighbours do).

Robust input-gradient distillation (Section 4.1), ``rigd_*``: g(x, c) = grad_x f*(x)_c of an
adversarially trained teacher f*.

What defines a source is computed once per dataset (``build``) and stored compactly: the C
representatives, or for the nearest neighbour the neighbour's training-set index per image and
class, or for the clustered nearest neighbour the C x k centroids and each image's centroid index
per class (never the expanded N x C x image tensor); for a file, each training image's row in it.
During training, ``TargetSource.for_batch`` turns it into targets for the *augmented* batch the
student sees:

- global representatives: g = r_c - aug(x) (the destination does not move with the image);
- nearest neighbours and nearest centroids: g = aug(r(x, c)) - aug(x), the same crop and flip
  applied to the image and to its representative (crop-with-zero-padding and flip are linear, so
  this is aug(g(x, c)));
- a file: aug(g(x, c)), the stored target through the image's crop and flip;
- teachers: g = grad of the teacher at aug(x), computed on the fly.

(In the authors' training variant, ``train.PAG_VARIANTS``, the targets are those of the
un-augmented batch: ``for_batch(x, index, None)``.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pagrob import io, registry
from pagrob.attacks import frozen_eval
from pagrob.data import CropFlip, Dataset
from pagrob.pag import Targets, class_scores

#: the names, from the registry: the representatives (targets computed once per dataset), the
#: score-based sources (a denoiser's residual, ``pagrob.denoiser``), the file source (targets
#: read from a file, ``pagrob.target_files``), the RIGD sources (a robust teacher's gradients:
#: source -> its threat model) and every source a student trains with
REPRESENTATIVES = registry.REPRESENTATIVES
SCORE = registry.SCORE
FILE = registry.FILE
TEACHER_SOURCES = registry.RIGD
SOURCES = registry.TRAINED

#: clustered_nn: clusters per class (k) when none is given
CLUSTERS = 10
#: clustered_nn: k-means restarts per class (the best inertia is kept); fixed, so that a seed
#: fixes the result
KMEANS_N_INIT = 3


# --- Building the stored definition of a source --------------------------------------------------


def one_image(x: Tensor, y: Tensor, num_classes: int, generator: torch.Generator) -> dict:
    picks = []
    for c in range(num_classes):
        members = _members(y, c)
        picks.append(members[torch.randint(len(members), (1,), generator=generator)])
    index = torch.cat(picks)
    return {"representatives": x[index].clone(), "train_index": index}


def class_mean(x: Tensor, y: Tensor, num_classes: int, rescale: bool) -> dict:
    reps = []
    for c in range(num_classes):
        xc = x[_members(y, c)].double()
        mean = xc.mean(0)
        if rescale:
            image_norm = torch.linalg.vector_norm(xc.flatten(1), dim=1).mean()
            mean = mean * image_norm / torch.linalg.vector_norm(mean).clamp(min=1e-12)
        reps.append(mean.float())
    return {"representatives": torch.stack(reps), "rescaled": rescale}


def nearest_neighbor(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    sample_size: int,
    generator: torch.Generator,
    chunk: int = 2048,
) -> dict:
    """Eq. (3): for every training image and class c, the training index of its nearest
    neighbour among ``sample_size`` iid images of class c, excluding the image itself (and any
    exact duplicate of it, since Eq. 3 asks for x_hat != x)."""
    samples = []
    for c in range(num_classes):
        members = _members(y, c)
        if len(members) < sample_size + 1:
            raise ValueError(
                f"class {c} has {len(members)} training images; nearest_neighbor needs "
                f"sample_size + 1 = {sample_size + 1}. Lower nn_sample_size in the config."
            )
        samples.append(members[torch.randperm(len(members), generator=generator)[:sample_size]])
    sample_index = torch.stack(samples)  # [C, n]

    flat = x.flatten(1).double()
    sq = (flat**2).sum(1)
    nn_index = torch.empty(len(x), num_classes, dtype=torch.long)
    for start in range(0, len(x), chunk):
        rows = torch.arange(start, min(start + chunk, len(x)))
        for c in range(num_classes):
            cols = sample_index[c]
            d2 = sq[rows, None] + sq[None, cols] - 2 * flat[rows] @ flat[cols].T
            # exact arithmetic in float64: identical images give |d2| ~ 1e-12, distinct 8-bit
            # images differ by at least (1/255)^2 ~ 1.5e-5
            same = (d2 <= 1e-9) | (rows[:, None] == cols[None, :])
            d2 = d2.masked_fill(same, float("inf"))
            nn_index[rows, c] = cols[d2.argmin(1)]
    return {"nn_index": nn_index, "sample_index": sample_index}


def clustered_nn(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    clusters: int,
    generator: torch.Generator,
    chunk: int = 4096,
) -> dict:
    """Section 4.2's proposal: k-means each class's training images into ``clusters`` clusters;
    for every training image and class c, the index of the class-c centroid nearest to it.

    Returns ``centroids`` [C, k, *shape] (float32) and ``centroid_index`` [N, C].

    Its own class: the image is a member of one of its class's clusters, and that cluster's
    centroid (its own cluster's mean, normally the nearest) is used like any other: it is not
    the image itself, so g(x, y) = centroid - x is a real direction towards the bulk of the
    class, as the class mean's is (Class Mean also averages over x itself). Only a centroid that
    *is* x (a cluster holding nothing but x and exact copies of it) is skipped, the rule of
    Eq. 3 (x_hat != x) that keeps g(x, y) from being 0; then the next nearest centroid is used.
    So k = 1 gives the class mean and k = class size the nearest neighbour over the whole class
    for every class, the image's own included (Eq. 3 with D_c = all of class c).

    Cost: k-means is scikit-learn's Lloyd algorithm in float32 (``KMEANS_N_INIT`` k-means++
    starts, at most 300 iterations each); one iteration costs n_c * k * D multiply-adds per
    class, so CIFAR-10 (5,000 x 3,072 per class) with k = 10 is 0.15 GFLOP, k = 100 1.5 GFLOP
    per iteration, with about n_c * D * 4 bytes (60 MiB) for the class's data; its time on one
    CPU thread: bench/kmeans_targets.py (README, Performance). The assignment is chunked float32 matrix products, N * C * k * D multiply-adds in
    all (1.5e11 for CIFAR-10 at k = 100, seconds), chunk * k distances at a time.
    """
    if clusters < 1:
        raise ValueError(f"clustered_nn needs at least 1 cluster per class, not {clusters}")
    flat = x.flatten(1).float()
    centroids, labels = _kmeans_per_class(flat, y, num_classes, clusters, generator)
    index = _nearest_centroids(flat, y, centroids, chunk)
    return {
        "centroids": centroids.view(num_classes, clusters, *x.shape[1:]),
        "centroid_index": index,
        "kmeans_labels": labels,
        "clusters": clusters,
    }


def _kmeans_per_class(
    flat: Tensor, y: Tensor, num_classes: int, clusters: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Each class's k-means centroids [C, k, D] (float32) and every image's cluster label [N]."""
    from sklearn.cluster import KMeans

    centroids, labels = [], torch.empty(len(flat), dtype=torch.long)  # cpu: k-means' labels
    for c in range(num_classes):
        members = _members(y, c)
        if len(members) < clusters:
            raise ValueError(
                f"class {c} has {len(members)} training images, fewer than the {clusters} "
                f"clusters clustered_nn asks for; lower datasets.<dataset>.targets.clusters "
                f"(--clusters) to at most {len(members)}."
            )
        state = int(torch.randint(2**31 - 1, (1,), generator=generator))  # cpu: seeded draw
        km = KMeans(clusters, n_init=KMEANS_N_INIT, random_state=state).fit(flat[members].numpy())
        centroids.append(torch.from_numpy(km.cluster_centers_).float())  # cpu: k-means' result
        labels[members] = torch.from_numpy(km.labels_).long()  # cpu: k-means' result
    return torch.stack(centroids), labels  # [C, k, D]


def _nearest_centroids(flat: Tensor, y: Tensor, centroids: Tensor, chunk: int) -> Tensor:
    """For every image and class, the index of the nearest centroid of that class [N, C]."""
    num_classes = len(centroids)
    index = torch.empty(len(flat), num_classes, dtype=torch.long)  # cpu: saved to disk
    sq = (centroids**2).sum(2)  # [C, k]
    for start in range(0, len(flat), chunk):
        rows = flat[start : start + chunk]
        rows_sq = (rows**2).sum(1, keepdim=True)
        for c in range(num_classes):
            d2 = rows_sq + sq[c][None] - 2 * rows @ centroids[c].T
            index[start : start + chunk, c] = d2.argmin(1)
        _skip_itself(index, centroids, rows, y, start, chunk)
    return index


def _skip_itself(
    index: Tensor, centroids: Tensor, rows: Tensor, y: Tensor, start: int, chunk: int
) -> None:
    """Redo the chunk's own-class index where the nearest centroid is the image itself."""
    # own class: never a centroid that is x itself. Only rows whose nearest own-class
    # centroid is at distance ~0 are redone, with exact float64 distances to all k.
    own_class = y[start : start + chunk]
    own = index[start : start + chunk].gather(1, own_class[:, None]).squeeze(1)
    exact = ((centroids[own_class, own].double() - rows.double()) ** 2).sum(1)
    same = (exact <= 1e-9).nonzero().flatten()
    for sub in range(0, len(same), 256):
        i = same[sub : sub + 256]
        d2 = ((centroids[own_class[i]].double() - rows[i, None].double()) ** 2).sum(2)  # [r, k]
        d2 = d2.masked_fill(d2 <= 1e-9, float("inf"))
        if torch.isinf(d2).all(1).any():
            bad = start + i[torch.isinf(d2).all(1)][0].item()
            raise ValueError(
                f"training image {bad}: every centroid of its own class {y[bad].item()} is "
                "the image itself (its class holds only copies of it); clustered_nn cannot "
                "point it anywhere. Remove the duplicates or use another source."
            )
        index[start + i, own_class[i]] = d2.argmin(1)


def build(
    source: str,
    ds: Dataset,
    *,
    seed: int,
    nn_sample_size: int = 100,
    class_mean_rescale: bool = True,
    clusters: int = CLUSTERS,
) -> dict:
    """The stored definition of a representative source for ``ds``'s training set."""
    g = torch.Generator().manual_seed(seed)
    x, y, c = ds.x_train, ds.y_train, ds.num_classes
    if source == "one_image":
        out = one_image(x, y, c, g)
    elif source == "class_mean":
        out = class_mean(x, y, c, class_mean_rescale)
    elif source == "nearest_neighbor":
        out = nearest_neighbor(x, y, c, nn_sample_size, g)
    elif source == "clustered_nn":
        out = clustered_nn(x, y, c, clusters, g)
    else:
        raise ValueError(
            f"{source!r} is not a representative source; choose one of {REPRESENTATIVES}"
        )
    out.update(source=source, dataset=ds.name, seed=seed, num_train=len(x))
    return out


def _members(y: Tensor, c: int) -> Tensor:
    idx = (y == c).nonzero().flatten()
    if len(idx) == 0:
        raise ValueError(f"class {c} has no training images")
    return idx


# --- Turning a source into targets for a training batch -----------------------------------------


class TargetSource:
    """``for_batch(x, index, aug)``: the targets for batch ``x`` (already augmented by ``aug``,
    or not augmented when ``aug`` is None) whose training-set indices are ``index``."""

    def for_batch(self, x: Tensor, index: Tensor, aug: CropFlip | None) -> Targets:
        raise NotImplementedError


class GlobalRepresentatives(TargetSource):
    def __init__(self, representatives: Tensor):
        self.reps = representatives

    def for_batch(self, x, index, aug):
        return lambda c: self.reps[c].to(x.dtype).expand_as(x) - x


class NearestNeighbors(TargetSource):
    def __init__(self, x_train: Tensor, nn_index: Tensor):
        self.x_train = x_train
        self.nn_index = nn_index

    def for_batch(self, x, index, aug):
        neighbours = self.nn_index[index.to(self.nn_index.device)].to(self.x_train.device)  # [B, C]

        def target(c: int) -> Tensor:
            r = self.x_train[neighbours[:, c]].to(x.device, x.dtype)
            return (aug(r) if aug is not None else r) - x

        return target


class TeacherGradients(TargetSource):
    """g(x, c) = grad_x of the teacher's class-c score at the (augmented) batch, eval mode."""

    def __init__(self, teacher: nn.Module, grad_of: str = "logit"):
        self.teacher = teacher
        self.grad_of = grad_of

    def for_batch(self, x, index, aug):
        grads = teacher_gradients(self.teacher, x, self.grad_of)
        return lambda c: grads[c]


def teacher_gradients(teacher: nn.Module, x: Tensor, grad_of: str = "logit") -> Tensor:
    """[C, B, ...]: the input-gradient of every class score, teacher frozen and in eval mode."""
    with frozen_eval(teacher), torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        scores = class_scores(teacher(xg), grad_of)
        grads = [
            torch.autograd.grad(scores[:, c].sum(), xg, retain_graph=True)[0]
            for c in range(scores.shape[1])
        ]
    return torch.stack(grads)


def nearest_centroids(centroids: Tensor, centroid_index: Tensor, device="cpu") -> NearestNeighbors:
    """clustered_nn as a NearestNeighbors source: the C x k centroids are its bank of images,
    and image i's representative of class c is bank row c * k + centroid_index[i, c]."""
    num_classes, k = centroids.shape[:2]
    rows = centroid_index + k * torch.arange(num_classes, device=centroid_index.device)
    return NearestNeighbors(centroids.flatten(0, 1).to(device), rows.to(device))


def load_representatives(path, ds: Dataset, source: str, device="cpu") -> TargetSource:
    """Open a stored representative source and check it belongs to ``ds``."""
    d = io.load(path, "targets file", ("source", "dataset", "num_train"))
    if d["source"] != source or d["dataset"] != ds.name or d["num_train"] != len(ds.x_train):
        raise io.BadFileError(
            f"targets file {path} was built for source {d['source']!r} on {d['dataset']!r} "
            f"({d['num_train']} training images), not {source!r} on {ds.name!r} "
            f"({len(ds.x_train)}); delete it and rebuild it."
        )
    if source == "nearest_neighbor":
        return NearestNeighbors(ds.x_train.to(device), d["nn_index"].to(device))
    if source == "clustered_nn":
        return nearest_centroids(d["centroids"], d["centroid_index"], device)
    if source in registry.SCORE:
        return score_representatives(d["gradients"], ds.x_train, device)
    return GlobalRepresentatives(d["representatives"].to(device))


def score_representatives(gradients: Tensor, x_train: Tensor, device="cpu") -> NearestNeighbors:
    """The score-based sources as a NearestNeighbors source: image i's representative of class
    c is r = x_i + g(x_i, c), the denoiser's estimate D(x_i, c) (pagrob.denoiser), so that the
    augmented target is aug(r) - aug(x) = aug(g), as for a neighbour."""
    n, num_classes = gradients.shape[:2]
    g = gradients.to(x_train.device, x_train.dtype)
    bank = (x_train.unsqueeze(1) + g).flatten(0, 1)  # [N * C, *image]
    rows = torch.arange(n * num_classes, device=device).view(n, num_classes)
    return NearestNeighbors(bank.to(device), rows)

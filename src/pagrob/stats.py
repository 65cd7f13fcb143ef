"""Uncertainty of the numbers: intervals, paired comparisons and rank correlations, all from
``scipy.stats`` (numpy and scipy only: runs in the report environment).

- :func:`accuracy_interval`: Clopper-Pearson (exact) 95% interval of an accuracy over its n test
  images (``binomtest(...).proportion_ci(method="exact")``);
- :func:`t_interval`: mean and half-width of a t-interval over seeds;
- :func:`pack` / :func:`unpack`: per-image correctness as a hex string (one tidy cell);
- :func:`paired_difference`: the difference in accuracy of two models on the same images, with a
  paired bootstrap interval over images and the exact McNemar test;
- :func:`seeds_and_images`: the difference of two recipes over seed-paired training runs
  evaluated on the same test images, with an interval that covers both the training seeds and the
  test images (the verdicts' interval);
- :func:`rank_correlation`: Spearman's rho of points taken as independent, with a bootstrap
  interval and a permutation p-value;
- :func:`clustered_rank_correlation`: Spearman's rho of models that each have several seeds and
  per-image scores: the models are the points, resampled with their seeds and images;
- :func:`holm`: Holm's step-down adjustment of a family of p-values;
- :func:`verdict`: the words for a test of a difference, by one stated rule.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

#: the level of every interval
LEVEL = 0.95
#: bootstrap resamples and their seed (fixed: the same data give the same interval)
RESAMPLES = 9999
SEED = 0


def accuracy_interval(correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Clopper-Pearson (exact) interval of ``correct`` of ``n``, in percent."""
    from scipy import stats

    if n <= 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(correct), int(n)).proportion_ci(level, method="exact")
    return 100.0 * ci.low, 100.0 * ci.high


def t_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """(mean, half-width) of the t-interval over ``values`` (NaN half-width for fewer than 2)."""
    from scipy import stats

    v = np.asarray(list(values), dtype=float)
    if len(v) < 2:
        return (float(v.mean()) if len(v) else math.nan), math.nan
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)


def pack(flags) -> str:
    """Per-image booleans as ``x`` and a hex string (np.packbits, big-endian bits): the ``x``
    keeps a CSV reader from taking an all-digit string for a number (and dropping its zeros)."""
    bits = np.asarray(list(flags), dtype=bool)
    return "x" + np.packbits(bits).tobytes().hex() if len(bits) else ""


def unpack(text: str, n: int) -> np.ndarray:
    """The ``n`` booleans of :func:`pack`'s string."""
    if not isinstance(text, str) or not text.startswith("x"):
        raise ValueError("no per-image correctness recorded for this row; rebuild its metrics")
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(text[1:]), dtype=np.uint8))
    if len(bits) < n or bits[n:].any():
        raise ValueError(
            f"per-image correctness of {len(text)} hex digits does not hold {n} images"
        )
    return bits[:n].astype(bool)


def paired_difference(
    a, b, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED
) -> dict:
    """Accuracy of ``a`` minus that of ``b`` (per-image booleans of the same images), in points,
    with a paired bootstrap interval over the images (percentile) and the exact McNemar test
    (binomial test of the discordant pairs). Identical predictions give 0 and [0, 0]."""
    from scipy import stats

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"a paired comparison needs the same images: {a.shape} and {b.shape}")
    d = a.astype(float) - b.astype(float)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    diff = float(100.0 * d.mean())
    if only_a + only_b == 0:
        low = high = diff
        p = 1.0
    else:
        res = stats.bootstrap(
            (d,),
            np.mean,
            confidence_level=level,
            n_resamples=resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        low = float(100.0 * res.confidence_interval.low)
        high = float(100.0 * res.confidence_interval.high)
        p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    return {
        "diff": diff,
        "ci_low": low,
        "ci_high": high,
        "mcnemar_p": float(p),
        "n": len(a),
        "only_a": only_a,
        "only_b": only_b,
    }


def paired_mean_difference(
    a, b, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED
) -> dict:
    """mean(a) - mean(b) for per-image values of the same images, with a paired bootstrap
    interval over the images (percentile)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"a paired comparison needs the same images: {a.shape} and {b.shape}")
    d = a - b
    if np.all(d == d[0]):
        return {"diff": float(d[0]), "ci_low": float(d[0]), "ci_high": float(d[0]), "n": len(d)}
    res = stats.bootstrap(
        (d,),
        np.mean,
        confidence_level=level,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return {
        "diff": float(d.mean()),
        "ci_low": float(res.confidence_interval.low),
        "ci_high": float(res.confidence_interval.high),
        "n": len(d),
    }


def _spearman(x, y, axis: int = -1):
    """Spearman's rho along ``axis`` (vectorised for the resamples: ranks with ties averaged,
    then Pearson's correlation of the ranks); NaN where a side is constant. Equal to
    ``scipy.stats.spearmanr`` (tests/unit/test_stats.py)."""
    from scipy import stats

    rx = stats.rankdata(x, axis=axis)
    ry = stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    den = np.sqrt((rx**2).sum(axis=axis) * (ry**2).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=axis) / np.where(den > 0, den, 1), np.nan)


def rank_correlation(
    x, y, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED
) -> dict:
    """Spearman's rho of the points (x, y), taken as independent (one per model: for models with
    several seeds, :func:`clustered_rank_correlation`), with a bootstrap interval that resamples
    the points with replacement (percentile; a resample in which one side is constant has no rank
    correlation and is left out) and the permutation p-value of no association (two-sided;
    exact when the points have at most ``resamples`` pairings)."""
    from scipy import stats

    x, y = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    rho = float(_spearman(x, y)) if len(x) > 1 else math.nan
    out = {"rho": rho, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "n": len(x)}
    if len(x) < 3 or math.isnan(out["rho"]):
        return out
    with warnings.catch_warnings():  # resamples of a constant side: NaN, left out below
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (x, y),
            _spearman,
            paired=True,
            vectorized=True,
            n_resamples=resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    tail = 100 * (1 - level) / 2
    out["ci_low"], out["ci_high"] = (float(np.nanpercentile(dist, q)) for q in (tail, 100 - tail))
    out["p"] = _permutation_p(x, y, resamples, seed)
    return out


def _permutation_p(x, y, resamples: int, seed: int) -> float:
    """Two-sided permutation p-value of Spearman's rho over the pairings of x and y (exact when
    there are at most ``resamples`` of them)."""
    from scipy import stats

    perm = stats.permutation_test(
        (np.asarray(x, dtype=float), np.asarray(y, dtype=float)),
        _spearman,
        permutation_type="pairings",
        n_resamples=resamples,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(perm.pvalue)


def _per_image(values) -> np.ndarray:
    """Points' per-image values as a [points, images] array (a number: one image)."""
    rows = [np.atleast_1d(np.asarray(v, dtype=float)) for v in values]
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise ValueError(
            f"every point needs its values on the same images; got {sorted(lengths)} images"
        )
    return np.stack(rows)


def clustered_rank_correlation(
    x, y, clusters, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED
) -> dict:
    """Spearman's rho between models, where a model (``clusters``: one label per point) has one
    or several training runs (its seeds, the points) and each point's x and y are means over
    per-image values (``x[j]``, ``y[j]``: 1-D arrays over the same images for every point, or
    numbers).

    - ``rho``: over the models' means (a model is one point, however many seeds it has: seeds
      of one model are not independent models);
    - ``p``: the permutation test of no association over the models' pairings (two-sided; exact
      when there are at most ``resamples`` pairings): the verdict's test. With k models it
      cannot fall below 2 / k! (``p_min``);
    - ``ci_low``, ``ci_high``: a percentile bootstrap that resamples the models, then the seeds
      of each drawn model, then the test images (one draw for every point, as they share the
      images; x's and y's images drawn apart), so that each model's score carries its own
      sampling uncertainty. Descriptive: the verdict follows ``p``.
    """
    labels = list(dict.fromkeys(clusters))
    members = [[j for j, c in enumerate(clusters) if c == label] for label in labels]
    X, Y = _per_image(x), _per_image(y)
    if len(X) != len(clusters) or len(Y) != len(clusters):
        raise ValueError(f"{len(clusters)} cluster labels for {len(X)} x and {len(Y)} y points")
    xm = np.array([X[m].mean() for m in members])
    ym = np.array([Y[m].mean() for m in members])
    k = len(labels)
    out = {
        "rho": float(_spearman(xm, ym)) if k > 1 else math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p": math.nan,
        "p_min": 2 / math.factorial(k) if k > 1 else math.nan,
        "models": k,
        "points": len(clusters),
    }
    if k < 3 or math.isnan(out["rho"]):
        return out
    out["p"] = _permutation_p(xm, ym, resamples, seed)
    dist = _cluster_bootstrap(X, Y, members, resamples, seed)
    tail = 100 * (1 - level) / 2
    if np.isfinite(dist).any():
        out["ci_low"], out["ci_high"] = (
            float(np.nanpercentile(dist, q)) for q in (tail, 100 - tail)
        )
    return out


def _cluster_bootstrap(X: np.ndarray, Y: np.ndarray, members: list, resamples: int, seed: int):
    """The bootstrap rhos, resampling models, then their seeds, then the test images."""
    k = len(members)
    rng = np.random.default_rng(seed)
    sizes = np.array([len(m) for m in members])
    table = np.full((k, sizes.max()), -1)
    for i, m in enumerate(members):
        table[i, : len(m)] = m
    rhos = []
    for start in range(0, resamples, 1000):
        r = min(1000, resamples - start)
        px = _resample_images(X, r, rng)  # [r, points]
        py = _resample_images(Y, r, rng)
        slot = rng.integers(k, size=(r, k))  # the drawn models
        draw = np.floor(rng.random((r, k, sizes.max())) * sizes[slot][..., None]).astype(int)
        valid = np.arange(sizes.max()) < sizes[slot][..., None]  # [r, k, max seeds]
        point = table[slot[..., None], np.where(valid, draw, 0)]
        rows = np.arange(r)[:, None, None]
        bx = np.where(valid, px[rows, point], 0).sum(-1) / valid.sum(-1)
        by = np.where(valid, py[rows, point], 0).sum(-1) / valid.sum(-1)
        with warnings.catch_warnings():  # a resample with a constant side: NaN, left out
            warnings.simplefilter("ignore")
            rhos.append(_spearman(bx, by, axis=-1))
    return np.concatenate(rhos)


def _resample_images(values: np.ndarray, r: int, rng) -> np.ndarray:
    """[r, points]: each point's mean over ``r`` bootstrap draws of its images (one draw shared
    by every point)."""
    n = values.shape[1]
    if n == 1:
        return np.broadcast_to(values[:, 0], (r, len(values)))
    counts = rng.multinomial(n, np.full(n, 1 / n), size=r)
    return counts @ values.T / n


def seeds_and_images(d, bound: float, level: float = LEVEL) -> dict:
    """The mean difference of two recipes from ``d`` ([S, n]: per-image differences a - b of S
    seed-paired training runs, each pair evaluated on the same n test images), with a 95%
    interval that covers both the training seeds and the test images, and its two-sided p-value.

    Every run sees every image (seeds and images are crossed), so the mean's variance has a seed
    part and an image part, estimated as var(seed means) / S + var(image means) / n (which
    counts the seed-by-image interaction twice: conservative by sigma_e^2 / (S n)). The
    t-quantile takes Welch-Satterthwaite's degrees of freedom: near S - 1 when the seeds
    dominate (honest about three seeds, over which a percentile bootstrap covers about 75%),
    near n - 1 when the images do. The interval is intersected with [-bound, bound], the range
    the difference can take (an accuracy difference in points: 100; a cosine difference: 2),
    which keeps its coverage. ``p`` is the same t-test's, so the interval excludes 0 exactly
    when p < 1 - level."""
    from scipy import stats

    d = np.asarray(d, dtype=float)
    if d.ndim != 2 or d.shape[0] < 2 or d.shape[1] < 1:
        raise ValueError(
            f"seeds_and_images needs per-image differences of at least 2 seeds, got shape {d.shape}"
        )
    s, n = d.shape
    est = float(d.mean())
    v_seed = float(d.mean(1).var(ddof=1)) / s
    v_image = float(d.mean(0).var(ddof=1)) / n if n > 1 else 0.0
    var = v_seed + v_image
    out = {
        "diff": est,
        "seeds": s,
        "images": n,
        "se_seed": math.sqrt(v_seed),
        "se_image": math.sqrt(v_image),
    }
    if var == 0:  # every seed and image the same difference
        return out | {"ci_low": est, "ci_high": est, "p": 1.0 if est == 0 else 0.0, "df": math.nan}
    terms = v_seed**2 / (s - 1) + (v_image**2 / (n - 1) if n > 1 else 0.0)
    df = var**2 / terms
    se = math.sqrt(var)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * stats.t.sf(abs(est) / se, df))
    return out | {
        "ci_low": max(-bound, est - half),
        "ci_high": min(bound, est + half),
        "p": p,
        "df": df,
    }


def holm(pvalues) -> np.ndarray:
    """Holm's (1979) step-down adjustment of a family of p-values: the i-th smallest of the m,
    p_(i), becomes max over j <= i of min(1, (m - j + 1) p_(j)). Rejecting where the adjusted p
    is below alpha keeps the family-wise error rate at alpha under any dependence between the
    tests (the answer's share vanilla's runs and images). NaN (no test) stays NaN, out of the
    family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


#: the level every verdict is decided at (its family's error rate)
ALPHA = 0.05  # = 1 - LEVEL, written out (1 - 0.95 is 0.050000000000000044)

#: the rule that turns a test of a difference (or a correlation) into words
RULE = (
    "“higher” when its p-value, adjusted over the page's family (Holm), is below 0.05 and the "
    "estimate above 0, “lower” when the estimate is below 0, “no detectable difference” otherwise"
)


def verdict(
    estimate: float,
    p: float,
    higher: str = "higher",
    lower: str = "lower",
    none: str = "no detectable difference",
    alpha: float = ALPHA,
) -> str:
    """``higher`` if ``p`` (the family-adjusted p-value) is below ``alpha`` and ``estimate`` is
    above 0, ``lower`` if below 0, else ``none``."""
    if estimate is None or p is None or math.isnan(estimate) or math.isnan(p):
        return "not measured"
    if p < alpha and estimate > 0:
        return higher
    if p < alpha and estimate < 0:
        return lower
    return none

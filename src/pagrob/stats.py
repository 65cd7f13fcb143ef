"""Uncertainty of the numbers: intervals, paired comparisons and rank correlations, all from
``scipy.stats`` (numpy and scipy only: runs in the report environment).

- :func:`accuracy_interval`: Clopper-Pearson (exact) 95% interval of an accuracy over its n test
  images (``binomtest(...).proportion_ci(method="exact")``);
- :func:`t_interval`: mean and half-width of a t-interval over seeds;
- :func:`pack` / :func:`unpack`: per-image correctness as a hex string (one tidy cell);
- :func:`paired_difference`: the difference in accuracy of two models on the same images, with a
  paired bootstrap interval over images and the exact McNemar test;
- :func:`rank_correlation`: Spearman's rho with a bootstrap interval (resampling the points:
  models, and each seed of a model where there are several) and a permutation p-value;
- :func:`verdict`: the words for an interval of a difference, by one stated rule.
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
    """Spearman's rho of the points (x, y), with a bootstrap interval that resamples the points
    with replacement (percentile; a resample in which one side is constant has no rank
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
    perm = stats.permutation_test(
        (x, y),
        _spearman,
        permutation_type="pairings",
        n_resamples=resamples,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    out["p"] = float(perm.pvalue)
    return out


#: the rule that turns an interval of a difference (or a correlation) into words
RULE = (
    "“higher” when the whole 95% interval of the difference lies above 0, “lower” when it lies "
    "below 0, “no detectable difference” otherwise"
)


def verdict(
    low: float,
    high: float,
    higher: str = "higher",
    lower: str = "lower",
    none: str = "no detectable difference",
) -> str:
    """``higher`` if the interval [low, high] lies above 0, ``lower`` if below, else ``none``."""
    if math.isnan(low) or math.isnan(high):
        return "not measured"
    if low > 0:
        return higher
    if high < 0:
        return lower
    return none

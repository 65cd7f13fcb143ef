"""Intervals, paired comparisons and rank correlations (pagrob.stats), and the answer page's
wording from them (pagrob.answer), each on a case whose answer is known."""

import math

import numpy as np
import pandas as pd
import pytest

from pagrob import answer, report, stats


def test_clopper_pearson_interval_of_a_known_case():
    # 5 of 10: the exact interval is [18.71%, 81.29%] (the Clopper-Pearson table value)
    low, high = stats.accuracy_interval(5, 10)
    assert low == pytest.approx(18.7086, abs=1e-3) and high == pytest.approx(81.2914, abs=1e-3)
    # none and all: one-sided, 0 and 100 included; 0 of 539: upper bound 1 - 0.025^(1/539)
    assert stats.accuracy_interval(0, 539) == pytest.approx((0.0, 100 * (1 - 0.025 ** (1 / 539))))
    assert stats.accuracy_interval(539, 539)[1] == pytest.approx(100.0)


def test_t_interval_of_a_known_case():
    mean, half = stats.t_interval([50.0, 52.0, 54.0])
    # std 2, n 3: t(0.975, 2) = 4.3027 -> 4.3027 * 2 / sqrt(3)
    assert mean == 52.0 and half == pytest.approx(4.3027 * 2 / math.sqrt(3), rel=1e-4)
    assert math.isnan(stats.t_interval([50.0])[1])


def test_pack_round_trip_and_bad_strings():
    flags = np.random.default_rng(0).random(539) < 0.4
    assert (stats.unpack(stats.pack(flags), 539) == flags).all()
    with pytest.raises(ValueError, match="does not hold 600 images"):
        stats.unpack(stats.pack(flags), 600)
    with pytest.raises(ValueError, match="rebuild its metrics"):
        stats.unpack("", 10)
    # never a string a CSV reader would take for a number
    zeros = stats.pack([False] * 24)
    assert (
        zeros == "x000000"
        and pd.read_csv(__import__("io").StringIO(f"c\n{zeros}\n"))["c"][0] == zeros
    )


def test_paired_difference_of_identical_predictions_is_zero():
    a = np.random.default_rng(1).random(300) < 0.5
    r = stats.paired_difference(a, a.copy())
    assert (r["diff"], r["ci_low"], r["ci_high"], r["mcnemar_p"]) == (0.0, 0.0, 0.0, 1.0)


def test_paired_difference_known_case():
    # 40 images: a is right where b is wrong on 10, the reverse on 0, the rest the same
    a = np.array([True] * 30 + [False] * 10)
    b = a.copy()
    b[:10] = False
    r = stats.paired_difference(a, b)
    assert r["diff"] == pytest.approx(25.0) and (r["only_a"], r["only_b"]) == (10, 0)
    assert r["ci_low"] > 0 and r["ci_low"] <= 25.0 <= r["ci_high"]
    assert r["mcnemar_p"] == pytest.approx(2 * 0.5**10)  # exact McNemar: binomial(10, 0.5)
    assert stats.verdict(r["ci_low"], r["ci_high"]) == "higher"
    back = stats.paired_difference(b, a)
    assert (
        back["diff"] == pytest.approx(-25.0)
        and stats.verdict(back["ci_low"], back["ci_high"]) == "lower"
    )
    with pytest.raises(ValueError, match="the same images"):
        stats.paired_difference(a, b[:-1])


def test_rank_correlation_interval_contains_the_estimate_and_narrows_with_more_models():
    rng = np.random.default_rng(2)

    def points(n):
        x = np.arange(n, dtype=float)
        return x, x + rng.normal(0, n / 4, n)

    small, large = stats.rank_correlation(*points(8)), stats.rank_correlation(*points(80))
    for r in (small, large):
        assert r["ci_low"] <= r["rho"] <= r["ci_high"]
    assert large["ci_high"] - large["ci_low"] < small["ci_high"] - small["ci_low"]
    assert large["p"] < 0.001 and large["ci_low"] > 0
    # a perfect ranking of 6 models: rho 1, permutation p about 2 / 6! (two-sided)
    exact = stats.rank_correlation(range(6), [1, 2, 3, 4, 5, 9])
    assert exact["rho"] == 1.0 and exact["p"] == pytest.approx(2 / 720, abs=2e-3)
    # the vectorised rho is scipy's spearmanr, ties included
    from scipy.stats import spearmanr

    x, y = [1, 2, 2, 3, 7, 5], [1, 3, 2, 4, 4, 9]
    assert stats.rank_correlation(x, y)["rho"] == pytest.approx(spearmanr(x, y).statistic)
    assert math.isnan(stats.rank_correlation([1, 1, 1, 1], [1, 2, 3, 4])["rho"])


def test_verdict_rule():
    assert stats.verdict(0.1, 3.0) == "higher"
    assert stats.verdict(-3.0, -0.1) == "lower"
    assert stats.verdict(-0.1, 3.0) == "no detectable difference"
    assert stats.verdict(math.nan, 1.0) == "not measured"


# --- the answer page on synthetic metrics -----------------------------------------------------


def metrics(accuracies: dict, n: int = 200, seeds=(0,), seed: int = 0) -> pd.DataFrame:
    """Tidy rows (clean and AutoAttack L-inf) of models whose per-image results are drawn with
    the given AutoAttack accuracy, each image a fixed draw (so a source equal to vanilla has the
    very same predictions)."""
    rows = []
    base = np.random.default_rng(seed).random((len(seeds), n))
    for (source, lam), acc in accuracies.items():
        for i, s in enumerate(seeds):
            robust = base[i] < acc / 100
            for attack, flags in (("clean", np.ones(n, bool)), ("autoattack", robust)):
                lo, hi = stats.accuracy_interval(int(flags.sum()), n)
                rows.append(
                    dict(
                        dataset="digits",
                        source=source,
                        lam=lam,
                        seed=s,
                        attack=attack,
                        norm="none" if attack == "clean" else "linf",
                        eps=0.0 if attack == "clean" else 0.1,
                        steps=0,
                        accuracy=100 * flags.mean(),
                        classes_per_step=0,
                        images=n,
                        ci_low=lo,
                        ci_high=hi,
                        correct=stats.pack(flags),
                    )
                )
    df = pd.DataFrame(rows, columns=report.COLUMNS)
    df["metric"] = df.apply(report.metric_name, axis=1)
    return df


def test_answer_wording_for_a_clearly_better_source_and_a_tie():
    m = metrics({("vanilla", 0.0): 20.0, ("one_image", 0.3): 60.0, ("class_mean", 0.3): 20.0})
    df, text = answer.image_answer(m, None, "digits")
    got = df.set_index("source")
    assert got.loc["one_image", "verdict"] == "more robust"
    aa = m[m["attack"] == "autoattack"].set_index("source")["accuracy"]
    assert got.loc["one_image", "estimate"] == pytest.approx(aa["one_image"] - aa["vanilla"])
    assert got.loc["one_image", "ci_low"] > 25
    # the same predictions as vanilla: a difference of exactly 0, no detectable difference
    assert got.loc["class_mean", "estimate"] == 0.0
    assert got.loc["class_mean", "verdict"] == "no detectable difference"
    assert f"- One Image (λ 0.3): L∞ AutoAttack {aa['one_image'] - aa['vanilla']:+.1f}" in text
    assert "**more robust**" in text
    assert "- Class Mean (λ 0.3): L∞ AutoAttack +0.0 [+0.0, +0.0]" in text
    assert "**no detectable difference**" in text and stats.RULE in text


def test_answer_over_seeds_uses_the_t_interval_of_the_paired_differences():
    m = metrics({("vanilla", 0.0): 20.0, ("one_image", 0.3): 60.0}, seeds=(0, 1, 2))
    df, _ = answer.image_answer(m, None, "digits")
    (row,) = df.itertuples()
    assert row.n == 3 and row.interval.startswith("t over 3 seeds")
    assert row.verdict == "more robust"


def test_answer_without_per_image_results_says_to_rebuild():
    m = metrics({("vanilla", 0.0): 20.0, ("one_image", 0.3): 60.0})
    m["correct"] = ""
    with pytest.raises(ValueError, match="rebuild the metrics"):
        answer.image_answer(m, None, "digits")

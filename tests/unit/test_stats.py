"""Intervals, paired comparisons and rank correlations (pagrob.stats), and the answer page's
wording from them (pagrob.answer), each on a case whose answer is known."""

import math

import numpy as np
import pandas as pd
import pytest

from pagrob import answer, pag_report, report, stats


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
    assert stats.verdict(r["diff"], r["mcnemar_p"]) == "higher"
    back = stats.paired_difference(b, a)
    assert back["diff"] == pytest.approx(-25.0) and back["ci_high"] < 0
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


def test_verdict_rule_follows_the_adjusted_p_value():
    assert stats.verdict(2.0, 0.01) == "higher"
    assert stats.verdict(-2.0, 0.01) == "lower"
    assert stats.verdict(2.0, 0.2) == "no detectable difference"
    assert stats.verdict(2.0, 0.05) == "no detectable difference"  # below 0.05, not at it
    assert stats.verdict(math.nan, 0.01) == "not measured"
    assert stats.verdict(1.0, math.nan) == "not measured"


# --- seeds, then images ----------------------------------------------------------------------


def crossed(seed_sd, n=400, seeds=3, mean=5.0, image_sd=30.0, rng_seed=0):
    """Per-image differences of seed-paired runs on the same images: a shared per-image part
    (fixed by ``rng_seed``) plus a per-seed shift of spread ``seed_sd``."""
    rng = np.random.default_rng(rng_seed)
    images = rng.normal(0, image_sd, n)
    shifts = np.array([-1.0, 0.0, 1.0])[:seeds] * seed_sd
    return mean + images[None, :] + shifts[:, None]


def test_seeds_and_images_widens_with_seed_variance_when_image_variance_is_fixed():
    widths = []
    for seed_sd in (0.0, 2.0, 8.0, 20.0):
        r = stats.seeds_and_images(crossed(seed_sd), bound=100)
        assert r["ci_low"] < r["diff"] < r["ci_high"] and r["diff"] == pytest.approx(5.0, abs=4)
        widths.append(r["ci_high"] - r["ci_low"])
    assert widths == sorted(widths) and widths[-1] > 3 * widths[0]
    # the image part alone (no seed spread): about the t-interval of the images' means
    r = stats.seeds_and_images(crossed(0.0), bound=100)
    assert r["se_seed"] == pytest.approx(0, abs=1e-9) and r["df"] == pytest.approx(399, rel=1e-6)
    # with the seeds dominating, the degrees of freedom fall towards S - 1 = 2 (a t-quantile
    # honest about three seeds)
    assert stats.seeds_and_images(crossed(200.0), bound=1000)["df"] < 2.5
    # p and interval agree: 0 outside the interval exactly when p < 0.05
    for seed_sd in (0.0, 8.0, 20.0):
        r = stats.seeds_and_images(crossed(seed_sd), bound=100)
        assert (r["ci_low"] > 0) == (r["p"] < 0.05)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.seeds_and_images(np.ones((1, 10)), bound=100)


def test_an_accuracy_difference_interval_never_leaves_its_range():
    # the PAG model right on every image for two seeds and wrong on all for the third, vanilla
    # always wrong: a t-interval over such seeds reaches past 100 points; ours stops at 100
    d = np.zeros((3, 50))
    d[:2] = 100.0
    r = stats.seeds_and_images(d, bound=100)
    assert r["diff"] == pytest.approx(200 / 3)
    assert r["ci_high"] == 100.0 and -100.0 <= r["ci_low"] < r["diff"]
    assert r["diff"] + 4.30 * 57.7 / math.sqrt(3) > 100  # the untrimmed t-interval's top
    # a cosine difference stays within +-2
    r = stats.seeds_and_images(np.array([[1.9] * 5, [-1.9] * 5, [1.9] * 5]), bound=2)
    assert -2 <= r["ci_low"] and r["ci_high"] <= 2
    # the same seeds and images: an exact difference
    r = stats.seeds_and_images(np.full((3, 20), 7.0), bound=100)
    assert (r["ci_low"], r["ci_high"], r["p"]) == (7.0, 7.0, 0.0)


def test_holm_adjusts_a_known_family():
    # Holm (1979): sorted 0.005, 0.01, 0.03, 0.04 of m = 4 -> 4 x 0.005, 3 x 0.01, 2 x 0.03 and
    # max(1 x 0.04, 0.06): monotone in the sorted order; NaN stays out of the family
    got = stats.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    np.testing.assert_allclose(got[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(got[4])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1, monotone
    assert stats.holm([]).size == 0


def test_a_seed_clustered_correlation_does_not_count_seeds_as_models():
    """No true correlation between 8 models, 3 near-identical seeds each: taking the 24 runs as
    points rejects far more often than 5%; taking the models as points stays near 5%."""
    rng = np.random.default_rng(0)
    sims, clustered, naive = 200, 0, 0
    labels = [m for m in range(8) for _ in range(3)]
    for i in range(sims):
        xm, ym = rng.normal(size=8), rng.normal(size=8)
        x = xm[labels] + 0.1 * rng.normal(size=24)
        y = ym[labels] + 0.1 * rng.normal(size=24)
        r = stats.clustered_rank_correlation(x, y, labels, resamples=299, seed=i)
        clustered += r["p"] < 0.05
        naive += stats.rank_correlation(x, y, resamples=299, seed=i)["p"] < 0.05
        assert r["models"] == 8 and r["points"] == 24
    assert clustered / sims <= 0.09
    assert naive / sims >= 0.15


def test_clustered_correlation_of_models_and_their_images():
    rng = np.random.default_rng(3)
    # 6 models, 3 seeds each, per-image scores and robust flags rising together
    x, y, labels = [], [], []
    for m in range(6):
        for _ in range(3):
            x.append(0.1 * m + rng.normal(0, 0.05, 50))
            y.append(rng.random(200) < 0.2 + 0.1 * m)
            labels.append(f"model{m}")
    r = stats.clustered_rank_correlation(x, y, labels, resamples=999)
    assert r["rho"] == pytest.approx(1.0) and r["models"] == 6
    assert r["p"] == pytest.approx(2 / 720, abs=2e-3) and r["p_min"] == pytest.approx(2 / 720)
    assert 0 < r["ci_low"] <= r["rho"] <= r["ci_high"] <= 1
    with pytest.raises(ValueError, match="same images"):
        stats.clustered_rank_correlation([np.ones(3), np.ones(4)], [1, 2], ["a", "b"])


# --- the answer page on synthetic metrics -----------------------------------------------------


def metrics(
    accuracies: dict, n: int = 200, seeds=(0, 1, 2), seed: int = 0, spread: float = 0.0
) -> pd.DataFrame:
    """Tidy rows (clean, PGD and AutoAttack L-inf) of models whose per-image results are drawn
    with the given robust accuracy, each image a fixed draw per seed (so a source equal to
    vanilla has the very same predictions); ``spread``: the seeds' accuracies shifted by
    -spread, 0, +spread points."""
    rows = []
    base = np.random.default_rng(seed).random((len(seeds), n))
    for (source, lam), acc in accuracies.items():
        for i, s in enumerate(seeds):
            shift = spread * (i - 1) if source != "vanilla" else 0.0
            robust = base[i] < (acc + shift) / 100
            for attack, flags in (
                ("clean", np.ones(n, bool)),
                ("pgd", robust),
                ("autoattack", robust),
            ):
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
                        steps=20 if attack == "pgd" else 0,
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


def test_answer_over_seeds_for_a_clearly_better_source_and_a_tie():
    m = metrics({("vanilla", 0.0): 20.0, ("one_image", 0.3): 60.0, ("class_mean", 0.3): 20.0})
    df, text = answer.image_answer(m, None, "digits", "../figures/answer_digits.png")
    got = df[(df["measure"] == "AutoAttack") & (df["role"] == answer.VERDICT)].set_index("source")
    assert got.loc["one_image", "verdict"] == "more robust"
    aa = m[m["attack"] == "autoattack"].groupby("source")["accuracy"].mean()
    assert got.loc["one_image", "estimate"] == pytest.approx(aa["one_image"] - aa["vanilla"])
    assert got.loc["one_image", "seeds"] == 3 and got.loc["one_image", "ci_low"] > 25
    assert got.loc["one_image", "interval"].startswith("t over 3 seeds × 200 images")
    # the same predictions as vanilla: a difference of exactly 0, no detectable difference
    assert got.loc["class_mean", "estimate"] == 0.0
    assert got.loc["class_mean", "verdict"] == "no detectable difference"
    # the page: the figure first, then the compact table, one verdict mark per cell
    assert text.startswith("# The answer on digits\n\n![The answer on digits](../figures/")
    row = next(line for line in text.splitlines() if line.startswith("| One Image |"))
    assert f"+{aa['one_image'] - aa['vanilla']:.1f} [" in row and row.rstrip(" |").endswith("↑")
    assert "| Class Mean | 0.3 | 3 | +0.0 [+0.0, +0.0] · |" in text
    assert stats.RULE in text and "2 verdicts" in text


def test_one_seed_decides_nothing():
    """With one seed a difference is measured over its images alone: a secondary line."""
    m = metrics({("vanilla", 0.0): 20.0, ("one_image", 0.3): 60.0}, seeds=(0,))
    df, _ = answer.image_answer(m, None, "digits")
    (row,) = df[df["measure"] == "AutoAttack"].itertuples()
    assert row.role == answer.ONE_SEED and row.verdict == "one seed: not tested"
    assert row.interval.startswith("seed 0 alone") and row.ci_low > 25


def test_seed_variance_widens_the_verdicts_interval():
    """The same mean difference, seeds far apart: the interval over seeds widens, the verdict
    is withheld (an image-only interval would have called it)."""
    calm = metrics({("vanilla", 0.0): 30.0, ("one_image", 0.3): 45.0})
    wild = metrics({("vanilla", 0.0): 30.0, ("one_image", 0.3): 45.0}, spread=25.0)
    rows = []
    for m in (calm, wild):
        df, _ = answer.image_answer(m, None, "digits")
        rows.append(df[(df["measure"] == "AutoAttack") & (df["role"] == "verdict")].iloc[0])
    assert rows[1]["ci_high"] - rows[1]["ci_low"] > 3 * (rows[0]["ci_high"] - rows[0]["ci_low"])
    assert rows[0]["verdict"] == "more robust" and rows[1]["verdict"] == "no detectable difference"


def test_the_pages_family_is_holm_adjusted():
    m = metrics(
        {
            ("vanilla", 0.0): 30.0,
            ("one_image", 0.3): 42.0,
            ("class_mean", 0.3): 36.0,
            ("nearest_neighbor", 0.3): 31.0,
        }
    )
    df, text = answer.image_answer(m, None, "digits")
    family = df[df["role"] == answer.VERDICT]
    # one verdict per source (AutoAttack, every seed has it); the table's PGD a secondary line
    assert len(family) == 3 and (family["measure"] == "AutoAttack").all()
    assert (df[df["measure"] == "PGD"]["role"] == answer.SECONDARY).all()
    np.testing.assert_allclose(family["p_holm"], stats.holm(family["p"]))
    assert (family["p_holm"] >= family["p"]).all()
    for _, r in family.iterrows():
        assert r["verdict"] == stats.verdict(
            r["estimate"], r["p_holm"], *answer.WORDS[r["question"]]
        )
    assert f"{len(family)} verdicts" in text
    assert df[df["role"] != answer.VERDICT]["p_holm"].isna().all()


def test_circular_models_are_the_ceiling_never_tested():
    m = metrics({("vanilla", 0.0): 20.0, ("rigd_linf", 0.3): 60.0, ("one_image", 0.3): 20.0})
    df, text = answer.image_answer(m, None, "digits")
    rigd = df[df["source"] == "rigd_linf"]
    assert len(rigd) and (rigd["role"] != answer.VERDICT).all() and rigd["p_holm"].isna().all()
    primary = rigd[rigd["measure"] == "AutoAttack"].iloc[0]
    assert primary["role"] == answer.CEILING and primary["verdict"] == "ceiling: not tested"
    assert primary["estimate"] == pytest.approx(40.0, abs=8)  # shown with its interval
    assert "| RIGD ℓ∞ (ceiling) |" in text


@pytest.mark.parametrize(
    "circular",
    ["rigd_linf", "rigd_l2", "teacher_linf", "teacher_l2", "external:authors_sbg"],
)
def test_a_circular_model_is_refused_as_a_ranking_point(circular):
    """RIGD students, the teachers and the references (their recipe, another seed), imported
    models: each refused as a point of a ranking of whether PAG implies robustness."""
    rng = np.random.default_rng(0)
    points = [
        {"source": s, "lam": 0.3, "x": rng.random(20), "y": rng.random(50) < 0.5}
        for s in ("vanilla", "one_image", "class_mean", "nearest_neighbor")
    ]
    answer.ranking(points)  # the models that never saw a robust one: ranked
    with pytest.raises(ValueError, match="saw a robust model"):
        answer.ranking([*points, {**points[0], "source": circular}])


def test_answer_without_per_image_results_says_to_rebuild():
    m = metrics({("vanilla", 0.0): 20.0, ("one_image", 0.3): 60.0})
    m["correct"] = ""
    with pytest.raises(ValueError, match="rebuild the metrics"):
        answer.image_answer(m, None, "digits")


def test_the_answer_figure_shows_each_model_with_its_interval_the_ceiling_apart(monkeypatch):
    from pagrob import answer_figure

    m = metrics(
        {
            ("vanilla", 0.0): 20.0,
            ("one_image", 0.3): 60.0,
            ("class_mean", 0.3): 22.0,
            ("rigd_linf", 0.3): 70.0,
            ("teacher_linf", 0.0): 80.0,
        }
    )
    # the teacher spared AutoAttack: its PGD stands in its row, and says so
    m = m[~((m["source"] == "teacher_linf") & (m["attack"] == "autoattack"))]
    df, _ = answer.image_answer(m, None, "digits")
    shown = {}
    monkeypatch.setattr(answer_figure, "save", lambda fig, png, pdf: shown.setdefault("fig", fig))
    answer_figure.answer_figure(df, "The answer on digits", "a.png", "a.pdf")
    (ax,) = [a for a in shown["fig"].axes if a.get_visible()]  # one panel: L∞ robustness
    assert ax.get_title() == "L∞ robust accuracy\n(AutoAttack, 3 seeds)"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [
        "One Image (λ 0.3)",
        "Class Mean (λ 0.3)",
        "RIGD ℓ∞ (λ 0.3)",
        "Teacher ℓ∞ (adversarial training)",
    ]
    notes = {t.get_text(): t.xy for t in ax.texts if t.get_text() != ""}
    assert "PGD" in notes and notes["PGD"][1] == dict(zip(labels, ax.get_yticks()))[labels[3]]
    ys = dict(zip(labels, ax.get_yticks()))
    assert ys["RIGD ℓ∞ (λ 0.3)"] < ys["Class Mean (λ 0.3)"] - 1  # the ceiling below, apart
    rows = df[(df["measure"] == "AutoAttack") & (df["role"] != answer.SECONDARY)]
    assert len(rows) == 3
    for _, r in rows.iterrows():
        y = ys[f"{report.method(r['source'])} (λ {r['lam']:g})"]
        bars = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [y, y]]
        assert [list(b.get_xdata()) for b in bars] == [[r["ci_low"], r["ci_high"]]]
        marker = next(ln for ln in ax.get_lines() if list(ln.get_ydata()) == [y])
        assert list(marker.get_xdata()) == [r["estimate"]]
        # a decided difference filled, none detected and the ceiling hollow
        assert (marker.get_fillstyle() == "full") == (r["verdict"] == "more robust")
    zero = [ln for ln in ax.get_lines() if list(ln.get_xdata()) == [0, 0]]
    assert len(zero) == 1  # the line at 0


# --- the score instrument: circular for the score-based students ------------------------------


def pag_scores(values: dict, n: int = 200, seeds=(0, 1, 2), sd: float = 0.05) -> pd.DataFrame:
    """Tidy PAG score rows with per-image values: ``values[(source, lam)]`` maps each
    (score, reference) to the mean of its images' values, each seed's images a fixed draw."""
    rng = np.random.default_rng(1)
    rows = []
    for (source, lam), means in values.items():
        for s in seeds:
            for (score, ref), mean in means.items():
                v = np.clip(mean + sd * rng.standard_normal(n), -1.0, 1.0)
                circular = ref == "denoiser" and source.startswith("score_")
                rows.append(
                    dict(
                        dataset="digits",
                        source=source,
                        lam=lam,
                        seed=s,
                        score=score,
                        reference=ref,
                        value=v.mean(),
                        relation="circular" if circular else "independent",
                        per_image=";".join(f"{x:.6g}" for x in v),
                    )
                )
    return pd.DataFrame(rows, columns=pag_report.COLUMNS)


TEACHER, SCORE = ("alignment", "teacher_linf"), ("score_alignment", "denoiser")
#: (source, lam): robust accuracy, teacher alignment, score alignment; the score-based student
#: far ahead on the score instrument (circular for it: never tested, never ranked)
SCORE_MODELS = {
    ("vanilla", 0.0): (20.0, 0.2, 0.1),
    ("one_image", 0.3): (25.0, 0.2, 0.1),
    ("nearest_neighbor", 0.3): (40.0, 0.35, 0.3),
    ("score_based", 0.3): (35.0, 0.3, 0.6),
}


@pytest.fixture(scope="module")
def score_case():
    m = metrics({k: acc for k, (acc, _, _) in SCORE_MODELS.items()})
    sc = pag_scores({k: {TEACHER: t, SCORE: s} for k, (_, t, s) in SCORE_MODELS.items()})
    return m, sc


def test_score_based_students_are_circular_for_the_score_instrument_alone(score_case):
    _, sc = score_case
    df = pd.DataFrame(answer.alignment_rows(sc, "digits"), columns=answer.COLUMNS)
    role = df.set_index(["source", "measure"])["role"]
    assert role[("score_based", "score_alignment")] == answer.CIRCULAR
    assert role[("score_based", "alignment")] == answer.VERDICT  # the teacher: independent
    assert role[("nearest_neighbor", "score_alignment")] == answer.VERDICT
    assert role[("nearest_neighbor", "alignment")] == answer.VERDICT
    decided = answer.decide(df)
    row = decided[(decided["source"] == "score_based") & (decided["measure"] == "score_alignment")]
    (row,) = row.itertuples()
    assert row.reference == "denoiser" and row.estimate == pytest.approx(0.5, abs=0.02)
    assert math.isnan(row.p_holm) and row.verdict == "circular for this instrument: not tested"
    family = decided[decided["role"] == answer.VERDICT]
    assert len(family) == 5  # one_image and nearest_neighbor twice, score_based's teacher line
    np.testing.assert_allclose(family["p_holm"], stats.holm(family["p"]))


def test_the_circular_cell_stays_in_the_models_row_marked(score_case):
    m, sc = score_case
    rows = answer.robustness_rows(m, "digits") + answer.alignment_rows(sc, "digits")
    df = answer.decide(pd.DataFrame(rows, columns=answer.COLUMNS))
    text = answer.markdown(df, "The answer on digits", None)
    table = answer.compact(df)
    name = report.method("score_based")
    rows = table[table["model"].str.startswith(name)]
    assert rows["model"].tolist() == [name]  # one row, no "(ceiling)" row of its own
    (score,) = [c for c in table.columns if c.startswith("score alignment")]
    cells = rows.iloc[0]
    assert cells[score].endswith("§") and cells[score].startswith("+0.5")
    assert cells["alignment vs teacher_linf"].endswith("↑")  # its teacher line: a verdict
    assert not table[table["model"] != name][score].str.contains("§").any()
    row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
    assert "§" in row and "§ circular for this instrument" in text
    # no circular row: no § and no word of it
    plain = df[df["source"] != "score_based"]
    assert "§" not in answer.markdown(plain, "t", None)


def test_the_score_instrument_ranks_without_the_score_based_students(score_case):
    m, sc = score_case
    df = pd.DataFrame(answer.ranking_rows(sc, m, "digits"), columns=answer.COLUMNS)
    score = df[df["reference"] == "denoiser"]
    teacher = df[df["reference"] == "teacher_linf"]
    # the score instrument: vanilla, one_image, nearest_neighbor (without vanilla: too few)
    assert score["interval"].str.split(";").str[0].tolist() == ["3 models (9 runs)"]
    assert teacher["interval"].str.split(";").str[0].tolist() == [
        "4 models (12 runs)",
        "3 models (9 runs), without vanilla",
    ]
    ranks = answer.ranking_table(answer.decide(df)).set_index("instrument")
    assert ranks.loc["score alignment", "models"] == "3 models (9 runs)"


def toy_scores(values: dict, n: int = 60, seeds=(0, 1, 2), sd: float = 0.05) -> pd.DataFrame:
    """A toy_pag table: each model's per-point scores, ``values[(source, lam)]`` their means
    (manifold, teacher and score alignment), and the reference's row."""
    rng = np.random.default_rng(2)
    rows = []
    for (source, lam), means in values.items():
        for s in seeds:
            row = dict(dataset="toy", source=source, lam=lam, seed=s, role="model")
            for k, mean in zip(("manifold", "teacher", "score"), means):
                v = np.clip(mean + sd * rng.standard_normal(n), -1.0, 1.0)
                row[f"{k}_alignment"] = v.mean()
                row[f"{k}_alignment_per_point"] = ";".join(f"{x:.6g}" for x in v)
            rows.append(row)
    rows.append(dict(dataset="toy", source="teacher_l2", lam=0.0, seed=5, role="reference"))
    return pd.DataFrame(rows)


def test_the_toys_score_based_student_is_circular_for_the_score_instrument():
    models = {
        ("vanilla", 0.0): (20.0, (0.1, 0.1, 0.1)),
        ("nearest_neighbor", 1.0): (60.0, (0.5, 0.4, 0.4)),
        ("score_based", 1.0): (50.0, (0.4, 0.3, 0.8)),
    }
    m = metrics({k: acc for k, (acc, _) in models.items()})
    toy = toy_scores({k: v for k, (_, v) in models.items()})
    df, text = answer.toy_answer(m, toy)
    role = df[df["question"] == "alignment"].set_index(["source", "measure"])["role"]
    assert role[("score_based", "score_alignment")] == answer.CIRCULAR
    assert role[("nearest_neighbor", "score_alignment")] == answer.VERDICT
    assert role[("score_based", "teacher_alignment")] == answer.VERDICT
    assert role[("score_based", "manifold_alignment")] == answer.VERDICT
    row = next(line for line in text.splitlines() if line.startswith("| Score-based"))
    assert row.rstrip(" |").endswith("§") and "§ circular for this instrument" in text
    # a toy table without the score instrument (its column absent, or empty): no score rows
    for without in (
        toy.drop(columns=["score_alignment", "score_alignment_per_point"]),
        toy.assign(score_alignment=np.nan, score_alignment_per_point=np.nan),
    ):
        df, text = answer.toy_answer(m, without)
        assert set(df[df["question"] == "alignment"]["measure"]) == {
            "manifold_alignment",
            "teacher_alignment",
        }
        assert "§" not in text

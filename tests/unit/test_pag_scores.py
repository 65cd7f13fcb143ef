"""PAG scores (alignment and targeted success against a robust reference), their step, and the
tables and figures built from them."""

import math
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from torch import nn

from conftest import settings_json
from pagrob import data, models, pag_report, pag_scores, registry, report, train
from pagrob.attacks import Attack
from pagrob.datasets import load_digits

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


class Scaled(nn.Module):
    def __init__(self, model, factor):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x):
        return self.factor * self.model(x)


def small_cnn(seed, ds):
    torch.manual_seed(seed)
    return models.build_model("small_cnn", ds.input_shape, ds.num_classes, ds.mean, ds.std).eval()


@pytest.fixture(scope="module")
def digits():
    return load_digits(0.2, 0)


@pytest.fixture(scope="module")
def robust(digits, tmp_path_factory):
    """Two small CNNs adversarially trained on digits (L2, 3 epochs, seeds 0 and 1): ~4 s."""
    torch.set_num_threads(1)
    out = []
    for seed in (0, 1):
        model = small_cnn(seed, digits)
        settings = train.TrainSettings(
            epochs=3,
            batch_size=64,
            optimizer="adam",
            lr=2e-3,
            seed=seed,
            adversarial={
                "norm": "l2",
                "eps": 1.0,
                "steps": 2,
                "step_size": 0.5,
                "random_start": False,
            },
        )
        train.fit(
            model,
            digits,
            None,
            settings,
            tmp_path_factory.mktemp("ck") / "ck.pt",
            log=lambda s: None,
        )
        out.append(model.eval())
    return out


def test_alignment_of_a_model_with_itself_is_one(digits):
    model = small_cnn(0, digits)
    assert pag_scores.alignment(model, model, digits.x_test[:50], 16) == pytest.approx(
        1.0, abs=1e-5
    )
    assert pag_scores.alignment(small_cnn(1, digits), model, digits.x_test[:50], 16) < 0.5


def test_alignment_ignores_the_scale_of_the_logits(digits):
    a, b = small_cnn(0, digits), small_cnn(1, digits)
    x = digits.x_test[:40]
    plain = pag_scores.alignment(a, b, x, 16)
    assert pag_scores.alignment(Scaled(a, 7.0), b, x, 16) == pytest.approx(plain, abs=1e-6)
    assert pag_scores.alignment(a, Scaled(b, 0.1), x, 16) == pytest.approx(plain, abs=1e-6)


def test_alignment_is_the_mean_cosine_over_images_and_classes(digits):
    """The default (centred logits) against a plain per-image, per-class computation (batch size
    not a divisor of n)."""
    a, b = small_cnn(0, digits), small_cnn(1, digits)
    x = digits.x_test[:7]
    cosines = []
    for image in x:
        for c in range(10):
            grads = []
            for m in (a, b):
                xi = image[None].clone().requires_grad_(True)
                logits = m(xi)[0]
                (g,) = torch.autograd.grad(logits[c] - logits.mean(), xi)  # the centred logit
                grads.append(g.flatten())
            cosines.append(torch.nn.functional.cosine_similarity(*grads, dim=0))
    assert pag_scores.alignment(a, b, x, 3) == pytest.approx(
        torch.stack(cosines).mean().item(), abs=1e-5
    )


def test_floor_is_far_below_the_ceiling_and_a_trained_model(digits, robust):
    """The scores separate: a robust model of another seed lies near the reference (the
    ceiling, itself), a freshly initialised model (the floor) far below."""
    reference, other = robust
    floor = small_cnn(5, digits)
    x, y = digits.x_test[:100], digits.y_test[:100]
    ceiling = pag_scores.alignment(reference, reference, x, 100)
    trained = pag_scores.alignment(other, reference, x, 100)
    low = pag_scores.alignment(floor, reference, x, 100)
    assert ceiling == pytest.approx(1.0, abs=1e-5)
    assert low < 0.2 and trained > 0.6 and trained - low > 0.5
    attack = Attack("l2", 3.0, 20, random_start=False)
    hit_trained = pag_scores.targeted_success(other, reference, x[:20], y[:20], attack, 10, 200)
    hit_floor = pag_scores.targeted_success(floor, reference, x[:20], y[:20], attack, 10, 200)
    assert hit_trained["targeted_success"] > 0.8 and hit_floor["targeted_success"] < 0.3
    assert hit_trained["targeted_prob"] > hit_floor["targeted_prob"] + 0.4


def test_targeted_examples_are_fig4s_attack_towards_every_other_class(digits):
    from pagrob.figures import targeted_towards_every_class

    model = small_cnn(0, digits)
    x, y = digits.x_test[:3], digits.y_test[:3]
    attack = Attack("l2", 2.0, 5, random_start=False)
    x_adv, targets = pag_scores.targeted_examples(model, x, y, attack, 10, batch_size=7)
    grid = targeted_towards_every_class(model, x, 10, attack)  # [3, 10, ...]
    for i in range(3):
        others = [c for c in range(10) if c != y[i]]
        torch.testing.assert_close(targets[9 * i : 9 * (i + 1)], torch.tensor(others))
        torch.testing.assert_close(x_adv[9 * i : 9 * (i + 1)], grid[i, others], atol=1e-5, rtol=0)


def test_scores_stay_on_the_data_device():
    """Model, reference and data on PyTorch's meta device (a stand-in for a GPU): a tensor made
    on the CPU would meet a meta tensor and raise, and nothing can be read back to the host."""
    meta = torch.device("meta")

    def meta_model(seed):
        torch.manual_seed(seed)
        return models.build_model(
            "small_cnn", (1, 8, 8), 4, torch.full((1,), 0.5), torch.full((1,), 0.3)
        ).to(meta)

    a, b = meta_model(0), meta_model(1)
    x = torch.rand(5, 1, 8, 8, device=meta)
    y = torch.randint(4, (5,), device=meta)
    assert pag_scores.alignment_on_device(a, b, x, 2).device == meta
    for start in (False, True):  # the random start is drawn on the CPU and moved
        x_adv, targets = pag_scores.targeted_examples(
            a,
            x,
            y,
            Attack("l2", 1.0, 2, random_start=start),
            4,
            4,
            torch.Generator().manual_seed(0),
        )
        assert x_adv.shape == (15, 1, 8, 8) and x_adv.device == meta and targets.device == meta
        assert pag_scores.agreement_on_device(b, x_adv, targets, 4).device == meta


class Constant(nn.Module):
    """Softmax probabilities (0.7, 0.2, 0.1) whatever the input."""

    def forward(self, x):
        return torch.tensor([0.7, 0.2, 0.1]).log().expand(len(x), 3)


def test_reference_agreement_known_answer():
    x_adv = torch.zeros(4, 1, 2, 2)
    targets = torch.tensor([0, 1, 2, 0])
    got = pag_scores.reference_agreement(Constant(), x_adv, targets, batch_size=3)
    assert got["targeted_success"] == pytest.approx(0.5)  # argmax 0 hits targets 0 and 0
    assert got["targeted_prob"] == pytest.approx((0.7 + 0.2 + 0.1 + 0.7) / 4)


def test_spearman_with_ties_known_answer():
    # ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): centred (-1.5, 0, 0, 1.5), (-1.5, .5, -.5, 1.5)
    # -> 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert pag_report.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    assert pag_report.spearman([1, 2, 3, 100], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(
        1.0
    )  # ranks only
    assert pag_report.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(pag_report.spearman([1, 1, 1], [1, 2, 3]))


def test_relations_to_a_reference():
    rel = pag_scores.relation
    assert rel("rigd_linf", "teacher_linf") == rel("rigd_l2", "teacher_l2") == "same_recipe"
    assert rel("teacher_l2", "teacher_l2") == "same_recipe"  # another seed: the realistic ceiling
    assert rel("ceiling", "teacher_linf") == "self"
    # a model that saw a robust model is never independent of a robust reference: robust models
    # agree with each other across threat models
    assert rel("rigd_linf", "teacher_l2") == rel("teacher_linf", "teacher_l2") == "circular"
    assert rel("external:theirs", "teacher_linf") == "circular"
    assert rel("rigd_l2.centred", "teacher_l2") == "same_recipe"
    for source in ("vanilla", "class_mean", "clustered_nn", "class_mean.centred", "floor"):
        assert rel(source, "teacher_linf") == "independent"


class PlusShared(nn.Module):
    """``model``'s logits plus one function of x added to every logit (here a random linear map
    and its square): no prediction, softmax or loss changes."""

    def __init__(self, model, d, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.model, self.w = model, torch.randn(d, generator=g)

    def forward(self, x):
        h = x.flatten(1) @ self.w
        return self.model(x) + (h + 0.1 * h**2)[:, None]


def test_shift_invariant_alignment_ignores_a_function_added_to_every_logit(digits):
    a, b = small_cnn(0, digits), small_cnn(1, digits)
    x = digits.x_test[:30]
    shifted = PlusShared(a, 64, 0)
    torch.testing.assert_close(shifted(x).softmax(1), a(x).softmax(1))  # the same predictions
    for kind in ("centred", "log_softmax"):
        plain = pag_scores.alignment(a, b, x, 16, kind)
        assert pag_scores.alignment(shifted, b, x, 16, kind) == pytest.approx(plain, abs=1e-5)
    raw = pag_scores.alignment(a, b, x, 16, "logit")
    assert abs(pag_scores.alignment(shifted, b, x, 16, "logit") - raw) > 0.05
    # and all in one pass, as the step computes them
    mean = lambda scores: {k: sum(v) / len(v) for k, v in scores.items()}  # noqa: E731
    both = mean(pag_scores.gradient_scores(shifted, x, 7, {"teacher_linf": b}))
    alone = mean(pag_scores.gradient_scores(a, x, 7, {"teacher_linf": b}))
    assert both[("alignment", "teacher_linf")] == pytest.approx(
        alone[("alignment", "teacher_linf")], abs=1e-5
    )
    assert both[("alignment_logit", "teacher_linf")] != pytest.approx(
        alone[("alignment_logit", "teacher_linf")], abs=0.05
    )
    assert both[("common_mode", "none")] > alone[("common_mode", "none")] + 0.1


def test_centred_and_log_softmax_gradients_against_autograd(digits):
    """shift_invariant's centred and log-softmax gradients are autograd's of those scores."""
    a = small_cnn(0, digits)
    x = digits.x_test[:3]
    logits, grads = pag_scores.class_gradients(a, x)
    for kind, score in (
        ("centred", lambda z: z - z.mean(1, keepdim=True)),
        ("log_softmax", lambda z: z.log_softmax(1)),
    ):
        got = pag_scores.shift_invariant(grads, logits, kind)
        for c in range(10):
            xg = x.clone().requires_grad_(True)
            (want,) = torch.autograd.grad(score(a(xg))[:, c].sum(), xg)
            torch.testing.assert_close(got[c], want, atol=1e-5, rtol=1e-4)


class Linear(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = weight  # [C, d]

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


def test_common_mode_fraction_known_cases():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 12, generator=g)
    x = torch.randn(5, 3, 4, generator=g)
    same = Linear(w.expand(4, 12).clone())  # every class gradient the same
    _, grads = pag_scores.class_gradients(same, x)
    torch.testing.assert_close(
        pag_scores.common_mode_fraction(grads), torch.ones(5, dtype=torch.float64)
    )
    v = torch.randn(4, 12, generator=g)
    balanced = Linear(v - v.mean(0))  # the class gradients sum to zero
    _, grads = pag_scores.class_gradients(balanced, x)
    assert pag_scores.common_mode_fraction(grads).abs().max() < 1e-12
    # a model with no gradient at all: 0, not NaN
    assert pag_scores.common_mode_fraction(torch.zeros(4, 2, 3)).eq(0).all()


# --- the step ------------------------------------------------------------------------------------


def save(model, path, ds, source, lam, seed):
    models.save_model(
        path,
        model,
        "small_cnn",
        ds.input_shape,
        ds.num_classes,
        dataset=ds.name,
        source=source,
        lam=lam,
        seed=seed,
    )
    return str(path)


def test_pag_scores_step(digits, robust, tmp_path, monkeypatch):
    from pagrob.steps import pag_scores as step

    data.save_prepared(digits, tmp_path / "data.pt")
    ref_linf = save(robust[0], tmp_path / "tl.pt", digits, "teacher_linf", 0.0, 0)
    ref_l2 = save(robust[1], tmp_path / "t2.pt", digits, "teacher_l2", 0.0, 1)
    student = save(small_cnn(3, digits), tmp_path / "s.pt", digits, "rigd_linf", 2.0, 3)
    vanilla = save(small_cnn(4, digits), tmp_path / "v.pt", digits, "vanilla", 0.0, 4)
    out = tmp_path / "pag_scores.csv"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "pag_scores",
            "--data",
            str(tmp_path / "data.pt"),
            "--model",
            student,
            "--model",
            vanilla,
            "--references",
            ref_linf,
            ref_l2,
            "--baselines",
            "--settings",
            settings_json(
                images=12,
                attack={"norm": "l2", "eps": 2, "steps": 5, "random_start": False},
                batch_size=50,
                seed=3,
            ),
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    step.main()
    df = pag_report.read_scores([out])
    assert list(df.columns) == pag_report.COLUMNS
    per_reference = {
        "alignment",
        "alignment_log_softmax",
        "alignment_logit",
        "targeted_success",
        "targeted_prob",
    }
    assert set(df["score"]) == per_reference | {"common_mode"}
    per = df.groupby(["source", "reference"]).size()
    # each model against each reference, and its own common-mode fraction; the floor too; a
    # ceiling against its own reference only
    assert per.to_dict() == {
        ("ceiling", "teacher_l2"): 5,
        ("ceiling", "teacher_linf"): 5,
        ("floor", "none"): 1,
        ("floor", "teacher_l2"): 5,
        ("floor", "teacher_linf"): 5,
        ("rigd_linf", "none"): 1,
        ("rigd_linf", "teacher_l2"): 5,
        ("rigd_linf", "teacher_linf"): 5,
        ("vanilla", "none"): 1,
        ("vanilla", "teacher_l2"): 5,
        ("vanilla", "teacher_linf"): 5,
    }
    relation = df.groupby(["source", "reference"])["relation"].agg(set).to_dict()
    assert {k for k, v in relation.items() if v != {"independent"}} == {
        ("ceiling", "teacher_l2"),
        ("ceiling", "teacher_linf"),
        ("rigd_linf", "teacher_linf"),
        ("rigd_linf", "teacher_l2"),
    }
    assert relation[("rigd_linf", "teacher_linf")] == {"same_recipe"}
    assert relation[("rigd_linf", "teacher_l2")] == {"circular"}
    assert relation[("ceiling", "teacher_l2")] == {"self"}
    ceiling = df[(df["source"] == "ceiling") & (df["score"] == "alignment")]
    assert ceiling["value"].tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert sorted(ceiling["seed"]) == [0, 1]
    floor = df[(df["source"] == "floor") & (df["score"] == "alignment")]
    assert (floor["seed"] == 3).all() and (floor["value"] < 0.3).all()
    # the floor is training's initialisation of seed 3: the same model as the 'student' here
    student_rows = df[(df["source"] == "rigd_linf")].set_index(["score", "reference"])["value"]
    floor_rows = df[(df["source"] == "floor")].set_index(["score", "reference"])["value"]
    pd.testing.assert_series_equal(student_rows.sort_index(), floor_rows.sort_index())
    assert (df["lam"][df["source"] == "rigd_linf"] == 2.0).all()


# --- tables and figures --------------------------------------------------------------------------


def synthetic_scores():
    rows = []
    models_ = [
        ("vanilla", 0.0, 0, 0.2),
        ("class_mean", 0.5, 0, 0.4),
        ("class_mean", 2.0, 0, 0.6),
        ("class_mean", 8.0, 0, 0.7),
        ("class_mean", 2.0, 1, 0.62),
        ("rigd_linf", 1.0, 0, 0.9),
        ("teacher_linf", 0.0, 0, 1.0),
        ("floor", 0.0, 0, 0.01),
    ]
    row = lambda source, lam, seed, score, ref, v, rel: dict(  # noqa: E731
        dataset="digits",
        source=source,
        lam=lam,
        seed=seed,
        score=score,
        reference=ref,
        value=v,
        relation=rel,
    )
    for ref, shift in (("teacher_linf", 0.0), ("teacher_l2", -0.05)):
        for source, lam, seed, value in models_:
            for score, v in (
                ("alignment", value + shift),
                ("targeted_success", value / 2),
                ("targeted_prob", value / 3),
            ):
                rows.append(row(source, lam, seed, score, ref, v, pag_scores.relation(source, ref)))
        for score in ("alignment", "targeted_success", "targeted_prob"):
            rows.append(row("ceiling", 0.0, 0, score, ref, 1.0, "self"))
    for source, lam, seed, value in models_:  # no reference: the same in every panel
        rows.append(
            row(source, lam, seed, "tangent_fraction", "autoencoder", 1 - value / 2, "independent")
        )
    rows.append(row("random", 0.0, 0, "tangent_fraction", "autoencoder", 0.35, "independent"))
    return pd.DataFrame(rows, columns=pag_report.COLUMNS)


def synthetic_metrics():
    """AutoAttack rows (and PGD rows that must be ignored); robust accuracy rises with the
    alignment except for one model per norm."""
    acc = {
        ("vanilla", 0.0, 0): 1.0,
        ("class_mean", 0.5, 0): 20.0,
        ("class_mean", 2.0, 0): 30.0,
        ("class_mean", 8.0, 0): 25.0,
        ("class_mean", 2.0, 1): 31.0,
        ("rigd_linf", 1.0, 0): 50.0,
        ("teacher_linf", 0.0, 0): 60.0,
    }
    rows = []
    for (source, lam, seed), a in acc.items():
        for norm, eps, off in (("linf", 0.1, 0.0), ("l2", 0.5, 5.0)):
            for attack, aa in (("autoattack", a + off), ("pgd", 99.0)):
                rows.append(
                    dict(
                        dataset="digits",
                        source=source,
                        lam=lam,
                        seed=seed,
                        attack=attack,
                        norm=norm,
                        eps=eps,
                        steps=20,
                        accuracy=aa,
                        classes_per_step=0,
                        images=100,
                        ci_low=aa - 5,
                        ci_high=aa + 5,
                        correct="",
                    )
                )
    return pd.DataFrame(rows)


def test_pag_scores_table_marks_circular_cells_and_shows_the_baselines():
    full, text = pag_report.pag_scores_table(synthetic_scores())
    assert len(full) == 9  # 7 models + floor + ceiling (the random direction is a line below)
    assert full["source"].iloc[0] == "floor" and full["source"].iloc[-1] == "ceiling"
    col = "alignment vs teacher_linf"
    assert full.set_index(["source", "lam", "seed"]).loc[
        ("class_mean", 2.0, 1), col
    ] == pytest.approx(0.62)
    gradient_part, targeted_part = text.split("## Targeted attacks")
    table = [line for line in gradient_part.splitlines() if line.startswith("| ")]
    lines = {line.split("|")[1].strip() + " " + line.split("|")[2].strip(): line for line in table}
    header = [c.strip() for c in table[0].split("|")[1:-1]]
    assert "targeted success vs teacher_linf" in targeted_part and "targeted" not in table[0]
    linf, l2 = header.index(col), header.index("alignment vs teacher_l2")

    def cells(key):
        return [c.strip() for c in lines[key].split("|")[1:-1]]

    assert cells("RIGD ℓ∞ 1")[linf] == "0.900‡" and cells("RIGD ℓ∞ 1")[l2] == "0.850§"
    assert cells("Vanilla 0")[linf] == "0.200"
    assert cells("Self-ceiling (the reference itself) 0")[linf] == "1.000†"
    assert cells("Vanilla 0")[header.index("tangent-space fraction")] == "0.900"
    assert "Floor (untrained model) 0" in lines
    assert (
        "‡ same recipe" in text and "Random direction (√(k/d)): tangent-space fraction 0.35" in text
    )


def test_the_score_instrument_in_the_table_marks_the_score_based_students_circular():
    rel = pag_scores.relation
    for source in ("score_based", "score_shuffled", "score_based.sigma0.5"):
        assert rel(source, pag_scores.DENOISER) == "circular"
    for source in ("vanilla", "nearest_neighbor", "class_mean.centred"):
        assert rel(source, pag_scores.DENOISER) == "independent"
    assert rel("score_based", "teacher_linf") == "independent"  # the teachers: no denoiser
    # the denoiser is no robust model: no reference of the alignments, its score one column
    names = ["teacher_l2", "denoiser", "none", "autoencoder", "teacher_linf"]
    assert pag_report.references(names) == ["teacher_linf", "teacher_l2"]
    extra = [
        dict(
            dataset="digits",
            source=source,
            lam=lam,
            seed=0,
            score="score_alignment",
            reference=pag_scores.DENOISER,
            value=value,
            relation=rel(source, pag_scores.DENOISER),
            per_image="",
        )
        for source, lam, value in (("vanilla", 0.0, 0.1), ("score_based", 0.3, 0.8))
    ]
    scores = pd.concat([synthetic_scores(), pd.DataFrame(extra)], ignore_index=True)
    full, text = pag_report.pag_scores_table(scores)
    assert "relation: denoiser" not in full.columns and "score alignment" in full.columns
    table = [line for line in text.split("## Targeted")[0].splitlines() if line.startswith("| ")]
    header = [c.strip() for c in table[0].split("|")[1:-1]]
    assert "score alignment" in header and not any("denoiser" in c for c in header)
    col = header.index("score alignment")
    cells = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in table
    }
    assert cells[report.method("score_based")][col] == "0.800§"
    assert cells["Vanilla"][col] == "0.100"
    assert "a score-based student" in text  # the note says what § means here


def test_a_point_circular_for_its_score_is_never_ranked():
    from pagrob import pag_figures

    points = pd.DataFrame(
        {
            "source": ["vanilla", "one_image", "class_mean", "score_based", "rigd_linf"],
            "lam": [0.0, 0.3, 0.3, 0.3, 0.3],
            "value": [0.1, 0.2, 0.3, 0.9, 0.8],
            "accuracy": [10.0, 30.0, 20.0, 5.0, 50.0],
            "relation": ["independent"] * 3 + ["circular", "independent"],
        }
    )
    assert pag_figures._circular(points).tolist() == [False, False, False, True, True]
    text = pag_figures._rho_text(points)
    assert ", 3 models (3 runs) (circular models excluded" in text
    # without a relation column: registry.circular alone
    plain = pag_figures._circular(points.drop(columns="relation"))
    assert plain.tolist() == [False, False, False, False, True]


def test_lambda_table_measures_the_trend():
    full, text = pag_report.lambda_table(synthetic_scores(), "class_mean")
    cm = full[full["source"] == "class_mean"].set_index("lam")
    assert cm.loc[2.0, "teacher_linf mean"] == pytest.approx(0.61)  # two seeds
    assert cm.loc[2.0, "teacher_linf seeds"] == 2
    # models by lambda: vanilla 0 -> 0.2, 0.5 -> 0.4, 2 -> 0.6 and 0.62, 8 -> 0.7: monotone
    assert "Spearman ρ(λ, alignment vs teacher_linf) = +1.00 over 4 λ values (5 models" in text


def test_pag_vs_robustness_joins_autoattack_rows_and_plots(tmp_path):
    from pagrob import pag_figures

    points = pag_figures.pag_vs_robustness(
        synthetic_scores(),
        synthetic_metrics(),
        ["alignment", "tangent_fraction"],
        tmp_path / "f.png",
        tmp_path / "f.pdf",
    )
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.pdf").stat().st_size > 0
    assert sorted(points["norm"].unique()) == ["l2", "linf"]
    assert len(points) == 2 * 14  # 7 models per norm and instrument, no baselines
    align = points[points["score"] == "alignment"]
    linf = align[align["norm"] == "linf"].set_index(["source", "lam", "seed"])
    assert linf.loc[("class_mean", 8.0, 0), "accuracy"] == 25.0  # AutoAttack, not PGD
    assert (linf["reference"] == "teacher_linf").all()
    l2 = align[align["norm"] == "l2"].set_index(["source", "lam", "seed"])
    assert l2.loc[("class_mean", 8.0, 0), "value"] == pytest.approx(0.65)  # teacher_l2's score
    assert l2.loc[("class_mean", 8.0, 0), "accuracy"] == 30.0
    circular = linf.index[linf.index.get_level_values("source").map(registry.circular)]
    assert set(circular) == {("rigd_linf", 1.0, 0), ("teacher_linf", 0.0, 0)}
    # a score without a reference is the same point in both panels
    tangent = points[points["score"] == "tangent_fraction"].set_index(
        ["norm", "source", "lam", "seed"]
    )
    assert (
        tangent.loc[("l2", "class_mean", 8.0, 0), "value"]
        == tangent.loc[("linf", "class_mean", 8.0, 0), "value"]
    )
    # the title's rho: over the models that never saw a robust one (a model one point, its
    # seeds averaged), then with every run
    text = pag_figures._rho_text(align[align["norm"] == "linf"])
    honest = linf.drop(index=circular).reset_index()
    means = honest.groupby(["source", "lam"])[["value", "accuracy"]].mean()
    rho = pag_report.spearman(means["value"], means["accuracy"])
    assert f"ρ = {rho:+.2f} [" in text and f", {len(means)} models ({len(honest)} runs)" in text
    assert "circular models excluded" in text


def test_report_steps_run_without_torch(tmp_path):
    """table, lambda and plot in a Python where importing torch fails (the report env)."""
    scores, metrics = tmp_path / "scores.csv", tmp_path / "metrics.csv"
    synthetic_scores().to_csv(scores, index=False)
    synthetic_metrics().to_csv(metrics, index=False)
    runs = [
        [
            "table",
            "--scores",
            scores,
            "--out-md",
            tmp_path / "t.md",
            "--out-csv",
            tmp_path / "t.csv",
        ],
        [
            "lambda",
            "--scores",
            scores,
            "--source",
            "class_mean",
            "--out-md",
            tmp_path / "l.md",
            "--out-csv",
            tmp_path / "l.csv",
            "--out-png",
            tmp_path / "l.png",
            "--out-pdf",
            tmp_path / "l.pdf",
        ],
        [
            "plot",
            "--scores",
            scores,
            "--metrics",
            metrics,
            "--score",
            "targeted_success",
            "--out-png",
            tmp_path / "p.png",
            "--out-pdf",
            tmp_path / "p.pdf",
            "--out-csv",
            tmp_path / "p.csv",
        ],
    ]
    code = (
        "import importlib.abc, runpy, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "runs = " + repr([[str(a) for a in r] for r in runs]) + "\n"
        "for r in runs:\n"
        "    sys.argv = ['pag_report', *r]\n"
        "    runpy.run_module('pagrob.steps.pag_report', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("t.md", "t.csv", "l.md", "l.csv", "l.png", "l.pdf", "p.png", "p.pdf", "p.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "‡" in (tmp_path / "t.md").read_text()

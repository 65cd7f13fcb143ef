"""Table 1's reference columns: the paper's numbers labelled as the paper's, another
publication's (Fashion-MNIST's) labelled as published and named."""

import pandas as pd

from conftest import ROOT
from fake_records import with_images
from pagrob import report


def metrics(dataset: str) -> pd.DataFrame:
    base = dict(dataset=dataset, lam=0.0, seed=0, classes_per_step=0, images=100)
    rows = [
        dict(base, source=source, attack=attack, norm=norm, eps=eps, steps=steps, accuracy=acc)
        for source in ("vanilla", "teacher_linf")
        for attack, norm, eps, steps, acc in (
            ("clean", "none", 0.0, 0, 80.0),
            ("pgd", "linf", 0.1, 20, 30.0),
            ("autoattack", "linf", 0.1, 0, 25.0),
        )
    ]
    df = pd.DataFrame([with_images(r) for r in rows])
    df["metric"] = df.apply(report.metric_name, axis=1)  # as report.read_metrics adds it
    return df


def test_published_rows_are_labelled_published_and_named_the_papers_stay_the_papers():
    paper = report.read_paper(ROOT / "workflow/resources/paper_numbers.csv")
    full, text = report.main_table(metrics("fashion_mnist"), paper, "table1", "fashion_mnist")
    assert full.set_index(["source", "metric"]).loc[("teacher_linf", "linf"), "paper"] == 68.06
    assert "(published)" in text and "(paper)" not in text
    assert "inspire-group/privacy-vs-robustness" in text and "Δ = ours − published" in text
    assert "The reported values are PGD only; AutoAttack is the standard version." in text
    _, text = report.main_table(metrics("cifar10"), paper, "table1", "cifar10")
    assert "(paper)" in text and "(published)" not in text
    assert "The paper's values" in text and "privacy-vs-robustness" not in text
    # nothing reported (digits): no reference columns, and no word of them
    _, text = report.main_table(metrics("digits"), paper, "table1", "digits")
    assert "(paper)" not in text and "(published)" not in text and "reported" not in text
    assert "AutoAttack is the standard version." in text

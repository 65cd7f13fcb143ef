"""A wrong config fails before any job runs, naming the key and the fix."""

import pytest
import yaml

from conftest import ROOT, copy_workflow, snakemake


def base_config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def dry_run(tmp_path, config):
    copy_workflow(tmp_path)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    return snakemake(["-n", "--configfile", "bad.yaml"], tmp_path, check=False)


def edit(path, value):
    def apply(cfg):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        if value is DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return cfg

    return apply


DELETE = object()


def both(first, second):
    return lambda cfg: second(first(cfg))


CASES = {
    "unknown top-level key": (edit(["epoch"], 3), ["(top level)", "'epoch' was unexpected"]),
    "unknown nested key": (
        edit(["datasets", "toy", "train", "learning_rate"], 0.1),
        ["datasets.toy.train", "'learning_rate' was unexpected"],
    ),
    "wrong type": (
        edit(["datasets", "toy", "train", "epochs"], "ten"),
        ["datasets.toy.train.epochs", "not of type 'integer'"],
    ),
    "out of range": (
        edit(["datasets", "toy", "train", "lr"], -0.1),
        ["datasets.toy.train.lr", "less than or equal to the minimum"],
    ),
    "bad enum": (edit(["pag", "grad_of"], "softmax"), ["pag.grad_of", "is not one of"]),
    "no seeds": (
        edit(["experiments", "toy", "seeds"], []),
        ["experiments.toy.seeds", "should be non-empty"],
    ),
    "missing required key": (
        edit(["datasets", "toy", "arch"], DELETE),
        ["datasets.toy", "'arch' is a required property"],
    ),
    "lambda missing for a source": (
        edit(["experiments", "toy", "sources"], ["class_mean"]),
        ["no lambda for source 'class_mean' on 'toy'", "datasets.toy.lam.class_mean"],
    ),
    "the toy's old single source": (
        both(
            edit(["experiments", "toy", "sources"], DELETE),
            edit(["experiments", "toy", "source"], "nearest_neighbor"),
        ),
        ["experiments.toy", "'sources' is a required property"],
    ),
    "dataset without settings": (
        edit(["datasets"], {}),
        ["datasets.toy is not defined", "add its settings under datasets:"],
    ),
    "empty grid": (edit(["experiments"], {}), ["experiments", "should be non-empty"]),
    "RIGD without a teacher": (
        both(
            edit(["datasets", "stl10", "teachers"], DELETE),
            edit(["datasets", "stl10", "pag_scores"], DELETE),
        ),
        ["datasets.stl10.teachers.linf is not defined", "add its training attack"],
    ),
    "PAG scores without a reference": (
        both(
            both(
                edit(["datasets", "stl10", "teachers"], DELETE),
                edit(["datasets", "stl10", "autoencoder"], DELETE),
            ),
            edit(["experiments", "main", "sources"], ["vanilla", "one_image", "class_mean"]),
        ),
        [
            "datasets.stl10.pag_scores needs robust references or an autoencoder",
            "add datasets.stl10.teachers",
        ],
    ),
    "PAG reference seed of a scored model": (
        edit(["datasets", "cifar10", "pag_scores", "reference_seed"], 2),
        [
            "datasets.cifar10.pag_scores.reference_seed 2 is also the seed of",
            "results/cifar10/one_image/lam0.5/seed2",
            "choose a reference_seed",
        ],
    ),
    "toy reference seed of its teacher": (
        edit(["datasets", "toy", "pag_scores", "reference_seed"], 0),
        [
            "datasets.toy.pag_scores.reference_seed 0 is also the seed of",
            "datasets.toy.teachers.seed",
        ],
    ),
    "unknown AutoAttack key": (
        edit(["datasets", "cifar10", "eval", "autoattack", "verison"], "standard"),
        ["datasets.cifar10.eval.autoattack", "'verison' was unexpected"],
    ),
    "bad AutoAttack version": (
        edit(["datasets", "cifar10", "eval", "autoattack", "version"], "fast"),
        ["datasets.cifar10.eval.autoattack.version", "is not one of"],
    ),
    "unknown masking check key": (
        edit(["datasets", "stl10", "eval", "checks", "max_gap_points"], 3),
        ["datasets.stl10.eval.checks", "'max_gap_points' was unexpected"],
    ),
    "bad class score in the grad_of ablation": (
        edit(["experiments", "grad_of_ablation", "class_scores"], ["logit", "softmax"]),
        ["experiments.grad_of_ablation.class_scores.1", "'softmax' is not one of"],
    ),
    "results root inside another config's folders": (
        edit(["results"], "results/cifar100"),
        ["results: 'results/cifar100' is a folder that the results root", "choose another"],
    ),
    "results root outside results/": (
        edit(["results"], "/tmp/elsewhere"),
        ["results: '/tmp/elsewhere' does not match"],
    ),
    "unknown dataset in a table": (
        edit(["experiments", "main", "tables", "mnist"], "table9"),
        ["experiments.main.tables", "'mnist' is not one of"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_config_fails_before_any_job(tmp_path, case):
    change, expected = CASES[case]
    proc = dry_run(tmp_path, change(base_config()))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for text in expected:
        assert text in out, f"{text!r} not in:\n{out}"
    assert not (tmp_path / "results").exists()
    assert any(hint in out for hint in ("Fix these keys", "add ", "choose "))


def test_good_configs_validate(tmp_path):
    copy_workflow(tmp_path)
    for name in ("config.yaml", "demo.yaml", "fmnist.yaml"):
        proc = snakemake(["-n", "--configfile", name], tmp_path)
        assert "Building DAG of jobs" in proc.stdout + proc.stderr


def test_the_commented_cifar100_block_runs_when_uncommented(tmp_path):
    """config.yaml's CIFAR-100 block (a dataset added by its registry row, loader and config),
    uncommented and given a table, validates and plans Table 5 from CIFAR-100's own files."""
    text = (ROOT / "config.yaml").read_text()
    start = text.index("  # cifar100:\n")
    end = text.index("\n\n", start)
    block = "\n".join(line.replace("# ", "", 1) for line in text[start:end].splitlines())
    cfg = yaml.safe_load(text.replace(text[start:end], block))
    cfg["experiments"] = {
        "main": {
            "tables": {"cifar100": "table5"},
            "sources": ["vanilla", "class_mean"],
            "seeds": [0],
        }
    }
    copy_workflow(tmp_path)
    (tmp_path / "c100.yaml").write_text(yaml.safe_dump(cfg))
    dry = snakemake(
        ["-n", "-p", "results/tables/table5_cifar100.md", "--configfile", "c100.yaml"], tmp_path
    )
    assert "--dataset cifar100 --root data/cifar100 --download true" in dry.stdout
    assert "results/cifar100/class_mean/lam0.04/seed0/model.pt" in dry.stdout

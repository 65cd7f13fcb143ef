"""Published checkpoints (experiments.external): an authors'-format checkpoint imported and
evaluated gives the logits of the original network; bad files fail with what to do; the
workflow evaluates imported models with the rules that evaluate ours and tables them."""

import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import ROOT, copy_workflow, early_fixture, job_counts, snakemake, write_config
from pagrob import data, models, report

# --- The original network, written out as the authors' CIFAR ResNet-18 is described -----------
# (layer names conv1, bn1, layer1-4 of two basic blocks with conv1/bn1/conv2/bn2/shortcut, linear;
# adaptive average pooling; fed inputs normalised with mean = std = 0.5), independent of models.py


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class OriginalResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin, layers = 64, []
        for i, width in enumerate((64, 128, 256, 512)):
            layers.append(
                nn.Sequential(Block(cin, width, 1 if i == 0 else 2), Block(width, width, 1))
            )
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(512, 10)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(nn.AdaptiveAvgPool2d(1)(out).flatten(1))


def authors_checkpoint(path, seed=0):
    """torch.save(model.state_dict()) of a DataParallel-wrapped network with trained-looking
    BatchNorm statistics (so that eval mode matters); returns the original network."""
    torch.manual_seed(seed)
    net = OriginalResNet18()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    wrapped = nn.DataParallel(net)
    torch.save(wrapped.state_dict(), path)
    assert all(k.startswith("module.") for k in torch.load(path, weights_only=True))
    return net.eval()


#: a step's environment: this checkout's library, no other
STEP_ENV = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}


def cifar_shaped(path, n=8):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g).float() / 255
    y = torch.arange(n) % 10
    ds = data.Dataset(
        "cifar10",
        x,
        y,
        x.clone(),
        y.clone(),
        [str(i) for i in range(10)],
        torch.tensor([0.49, 0.48, 0.45]),
        torch.tensor([0.25, 0.24, 0.26]),
    )
    data.save_prepared(ds, path)
    return ds


def import_model(
    tmp_path, checkpoint, *extra, mean="0.5 0.5 0.5", std="0.5 0.5 0.5", arch="resnet18"
):
    out = tmp_path / "external" / "model.pt"
    cmd = [
        sys.executable,
        "-m",
        "pagrob.steps.import_model",
        "--data",
        str(tmp_path / "data.pt"),
        "--checkpoint",
        str(checkpoint),
        "--arch",
        arch,
        "--mean",
        mean,
        "--std",
        std,
        "--name",
        "authors_oi",
        "--claims",
        "one_image",
        "--out",
        str(out),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=STEP_ENV)
    return proc, out


def test_authors_checkpoint_imported_gives_the_original_logits(tmp_path):
    ds = cifar_shaped(tmp_path / "data.pt")
    original = authors_checkpoint(tmp_path / "rn18_oi.pt")
    proc, out = import_model(tmp_path, tmp_path / "rn18_oi.pt", "--lam", "0.5")
    assert proc.returncode == 0, proc.stderr
    model, meta = models.load_model(out)
    with torch.no_grad():
        # ours takes pixels in [0, 1]; the original its normalised inputs (x - 0.5) / 0.5
        ours, theirs = model(ds.x_test), original((ds.x_test - 0.5) / 0.5)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert meta["source"] == "external:authors_oi" and meta["claims"] == "one_image"
    assert meta["lam"] == 0.5 and meta["lam_stated"] is True and meta["dataset"] == "cifar10"
    assert len(meta["checkpoint_sha256"]) == 64
    # the normalisation is the checkpoint's, not the dataset's
    assert model.normalize.mean.tolist() == [0.5, 0.5, 0.5]


def test_wrong_normalisation_gives_other_logits(tmp_path):
    """The import applies the normalisation it is told: the declared one matters."""
    ds = cifar_shaped(tmp_path / "data.pt")
    original = authors_checkpoint(tmp_path / "rn18.pt")
    proc, out = import_model(tmp_path, tmp_path / "rn18.pt", mean="0 0 0", std="1 1 1")
    assert proc.returncode == 0, proc.stderr
    model, _ = models.load_model(out)
    with torch.no_grad():
        assert not torch.allclose(model(ds.x_test), original((ds.x_test - 0.5) / 0.5), atol=1e-3)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "does not exist; check its path in the config"),
        ("pickled code", "pickles a Python object"),
        ("truncated", "Download it again"),
        ("other architecture", "does not fit architecture 'resnet18'"),
        ("channels", "one value per channel of cifar10 (3), not 1 and 1"),
    ],
)
def test_bad_checkpoints_fail_naming_the_problem(tmp_path, case, expected):
    cifar_shaped(tmp_path / "data.pt")
    ckpt = tmp_path / "ckpt.pt"
    extra = {}
    if case == "pickled code":
        torch.save({"model": Payload()}, ckpt)
    elif case == "truncated":
        authors_checkpoint(ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    elif case == "other architecture":
        torch.save(nn.DataParallel(models.SmallCNN(3, 10, size=32)).state_dict(), ckpt)
    elif case == "channels":
        authors_checkpoint(ckpt)
        extra = {"mean": "0.5", "std": "0.5"}
    proc, out = import_model(tmp_path, ckpt, **extra)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr
    assert "this must never run" not in proc.stdout + proc.stderr
    assert not out.exists()


# --- The table ------------------------------------------------------------------------------------


def metrics_rows(source, lam, values, seed=0, images=100):
    rows = []
    for metric, acc in values.items():
        attack, norm = (
            ("clean", None)
            if metric == "clean"
            else (("autoattack", metric[3:]) if metric.startswith("aa_") else ("pgd", metric))
        )
        eps = {"linf": 8 / 255, "l2": 0.5, None: 0.0}[norm]
        rows.append(
            {
                "dataset": "cifar10",
                "source": source,
                "lam": lam,
                "seed": seed,
                "attack": attack,
                "norm": norm,
                "eps": eps,
                "steps": 20 if attack == "pgd" else 0,
                "accuracy": acc,
                "classes_per_step": 0,
                "images": images,
                "ci_low": acc - 1,
                "ci_high": acc + 1,
                "correct": "",
            }
        )
    return rows


def test_external_table_sets_each_model_beside_ours_and_the_paper(tmp_path):
    rows = (
        metrics_rows(
            "external:authors_oi",
            0.5,
            {"clean": 80.0, "linf": 15.0, "l2": 48.0, "aa_linf": 9.0, "aa_l2": 40.0},
        )
        + metrics_rows("one_image", 0.5, {"clean": 78.0, "linf": 14.0, "l2": 47.0})
        + metrics_rows(
            "external:authors_sbg",
            0.0,
            {"clean": 85.0, "linf": 20.0, "l2": 55.0, "aa_linf": 12.0, "aa_l2": 50.0},
        )
    )
    path = tmp_path / "m.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    metrics = report.read_metrics(path)
    paper = report.read_paper(ROOT / "workflow/resources/paper_numbers.csv")
    externals = {
        "authors_oi": {"claims": "one_image", "lam": 0.5},
        "authors_sbg": {"claims": "file", "lam": None},
    }
    flags = {("external:authors_sbg", 0.0, 0): ["autoattack_gap"]}
    full, text = report.external_table(metrics, paper, "cifar10", externals, flags)
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    # theirs, ours, paper for One Image; theirs and paper (blank: the paper has no such row) for the file
    assert [line.split(" | ")[0] for line in lines[1:]] == [
        "| authors_oi (external)",
        "| One Image (ours)",
        "| One Image (paper)",
        "| authors_sbg (external) ⚠1",
        "| Targets file (e.g. the authors' score-based) (paper)",
    ]
    assert (
        "| authors_oi (external) | One Image | 0.5 | 80.00 | 15.00 | 9.00 | 48.00 | 40.00 |" in text
    )
    # ours has no AutoAttack: blank there, not dropped from the table
    assert "| One Image (ours) | One Image | 0.5 | 78.00 | 14.00 |  | 47.00 |  |" in text
    assert "| One Image (paper) | One Image | 0.5 | 79.46 | 16.57 |  | 49.68 |  |" in text
    assert "1. authors_sbg (external): autoattack_gap" in text
    cell = full.set_index(["external", "row", "metric"])["value"]
    assert (
        cell[("authors_oi", "paper", "linf")] == 16.57
        and cell[("authors_oi", "ours", "clean")] == 78.0
    )


@pytest.mark.parametrize("max_gap, flagged", [(1.0, True), (5.0, False)])
def test_external_table_computes_the_checks_of_its_own_models(tmp_path, max_gap, flagged):
    """The table step checks its models from their own AutoAttack and sweep rows and records (no
    masking table of the whole grid needed): PGD-20 40% against AutoAttack 38% is a 2-point gap."""
    from fake_records import robustness_files

    metrics, records = robustness_files(tmp_path, "digits", "external:theirs", 0.0)
    out = tmp_path / "external"
    cmd = [
        sys.executable,
        "-m",
        "pagrob.steps.table",
        "external",
        "--dataset",
        "digits",
        "--externals",
        '{"theirs": {"claims": "one_image", "lam": null}}',
        "--metrics",
        *metrics,
        "--records",
        *records,
        "--checks",
        f'{{"tolerance": 1, "max_gap": {max_gap}, "zero_at": 5}}',
        "--paper",
        str(ROOT / "workflow/resources/paper_numbers.csv"),
        "--out-md",
        f"{out}.md",
        "--out-csv",
        f"{out}.csv",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=STEP_ENV)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "external.md").read_text()
    assert (
        "| theirs (external) ⚠1 |" in text and "1. theirs (external): autoattack_gap" in text
    ) == flagged
    # without the thresholds the records cannot be checked: said, not ignored
    proc = subprocess.run(
        cmd[: cmd.index("--checks")] + cmd[cmd.index("--paper") :],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=STEP_ENV,
    )
    assert proc.returncode != 0 and "--records needs --checks" in proc.stderr


# --- The workflow ----------------------------------------------------------------------------------


def authors_targets(tmp_path):
    """The digits training set as the authors' c10_sbg_data.pt is laid out: N x (1 + C) x image,
    images in [-1, 1], rows shuffled, one target per class (here towards the class means), and the
    labels in their own file."""
    ds = data.load_prepared(tmp_path / "results/digits/data.pt")
    x, y = ds.x_train, ds.y_train
    means = torch.stack([x[y == c].mean(0) for c in range(10)])
    rows = torch.cat(
        [x[:, None], (means[None] - x[:, None]) / 2], 1
    )  # d/dv = d/dx / 2 for v = 2x - 1
    rows[:, 0] = 2 * x - 1
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    (tmp_path / "authors").mkdir()
    torch.save(rows[perm].clone(), tmp_path / "authors/sbg_data.pt")
    torch.save(y[perm].clone(), tmp_path / "authors/sbg_label.pt")


def with_external(tmp_path, aa=True, targets_file=True):
    def change(cfg):
        cfg["results"] = "results"  # the paper grid's root (the demo's: results/demo)
        cfg["experiments"] = {
            "main": {
                "tables": {"digits": "table1"},
                "sources": ["vanilla", "one_image", "file"],
                "seeds": [0],
            },
            "external": {
                "their_oi": {
                    "dataset": "digits",
                    "path": "ckpt/oi.pt",
                    "arch": "small_cnn",
                    "mean": [0.5],
                    "std": [0.5],
                    "source": "one_image",
                    "lam": 0.3,
                },
            },
        }
        d = cfg["datasets"]["digits"]
        d["train"]["epochs"] = 2
        d.pop("pag_scores")
        d.pop("teachers")
        d["lam"] = {"one_image": 0.3, "file": 0.3}
        if targets_file:
            d["targets"]["file"] = {"data": "authors/sbg_data.pt", "labels": "authors/sbg_label.pt"}
        if aa:
            d["eval"]["autoattack"]["images"] = 20
            d["eval"]["autoattack"]["norms"] = None  # both threat models (the demo: L-inf)
            d["eval"]["checks"]["sweep"] = True  # and the checks' sweep (the demo: none)
        else:
            d["eval"].pop("autoattack")

    copy_workflow(tmp_path)
    write_config(tmp_path / "ext.yaml", "demo.yaml", change)
    (tmp_path / "ckpt").mkdir()
    torch.manual_seed(0)
    torch.save(nn.DataParallel(models.SmallCNN(1, 10)).state_dict(), tmp_path / "ckpt/oi.pt")
    return ["--configfile", "ext.yaml", "--cores", "2"]


def test_external_models_get_our_evaluation(tmp_path):
    opts = with_external(tmp_path)
    (tmp_path / "authors").mkdir()
    for name in ("sbg_data.pt", "sbg_label.pt"):
        (tmp_path / "authors" / name).touch()
    dry = snakemake(["-n", "-p", *opts], tmp_path)
    counts = job_counts(dry.stdout)
    # the imported model: once imported, then PGD, AutoAttack per norm and the checks' sweep, as ours
    assert counts["import_external"] == 1 and counts["external_table"] == 1
    assert counts["evaluate"] == 4 and counts["autoattack"] == 8 and counts["sweep"] == 4
    # the file source: matched once, trained with the authors' variant (its default), ours follow
    assert "--source file --file authors/sbg_data.pt --labels authors/sbg_label.pt" in dry.stdout
    train = [line for line in dry.stdout.splitlines() if "pagrob.steps.train " in line]
    assert [('"pag_variant": "authors"' in t, "--source file" in t) for t in train].count(
        (True, True)
    ) == 1
    assert sum('"pag_variant": "follow"' in t for t in train) == 2
    assert "results/tables/external_digits.md" in dry.stdout
    assert "results/digits/external/their_oi/autoattack_linf.csv" in dry.stdout
    # the table alone needs its own models only (their checks computed in its step): no masking
    # table of the grid, no other model trained
    only = snakemake(["-n", "-p", *opts, "results/tables/external_digits.md"], tmp_path)
    counts = job_counts(only.stdout)
    assert "masking_table" not in counts and counts["train"] == 1 and counts["autoattack"] == 4
    (command,) = [
        line for line in only.stdout.splitlines() if "pagrob.steps.table external" in line
    ]
    records = command.split("--records ")[1].split(" --")[0].split()
    assert sorted(records) == sorted(
        f"results/digits/{m}/autoattack_{n}.json"
        for m in ("external/their_oi", "one_image/lam0.3/seed0")
        for n in ("linf", "l2")
    )
    assert '"max_gap": 10.0' in command


def test_file_source_needs_a_file(tmp_path):
    opts = with_external(tmp_path, targets_file=False)
    proc = snakemake(["-n", *opts], tmp_path, check=False)
    assert proc.returncode != 0
    assert (
        "experiments.main.sources has the file source, but no dataset" in proc.stdout + proc.stderr
    )


def test_external_table_without_external_models_is_refused(tmp_path):
    copy_workflow(tmp_path)
    proc = snakemake(["-n", "results/tables/external_cifar10.md"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "experiments.external has none on 'cifar10'" in proc.stdout + proc.stderr


#: with_external(aa=False)'s options
EXT = ["--configfile", "ext.yaml", "--cores", "2"]


def run_external(where):
    """The external table and the file source's model in with_external(aa=False)'s folder
    (prepared by it): the data first, from which the authors' targets file is written."""
    snakemake([*EXT, "results/digits/data.pt"], where, background=True)
    authors_targets(where)
    targets = ["results/tables/external_digits.md", "results/digits/file/lam0.3/seed0/metrics.csv"]
    snakemake([*EXT, *targets], where, background=True)
    return where


#: run_external's folder, an early run (its checkpoint drawn from PyTorch's global random state
#: before it starts, in the tests' thread)
external_run = early_fixture(
    "external_run", run_external, prepare=lambda where: with_external(where, aa=False)
)


@pytest.mark.slow
def test_external_table_target_end_to_end(external_run):
    tmp_path, opts = external_run, EXT
    log = (tmp_path / "results/digits/logs/targets_file.log").read_text()
    assert "[-1, 1]" in log
    info = (tmp_path / "results/digits/file/lam0.3/seed0/model.json").read_text()
    assert '"pag_variant": "authors"' in info
    text = (tmp_path / "results/tables/external_digits.md").read_text()
    assert "| their_oi (external) | One Image | 0.3 |" in text
    assert "| One Image (ours) | One Image | 0.3 |" in text
    metrics = pd.read_csv(tmp_path / "results/digits/external/their_oi/metrics.csv")
    assert set(metrics["source"]) == {"external:their_oi"} and len(metrics) == 3
    # a changed checkpoint is imported and evaluated again
    torch.manual_seed(1)
    torch.save(nn.DataParallel(models.SmallCNN(1, 10)).state_dict(), tmp_path / "ckpt/oi.pt")
    dry = snakemake(["-n", *opts, "results/tables/external_digits.md"], tmp_path)
    assert job_counts(dry.stdout) == {"import_external": 1, "evaluate": 1, "external_table": 1}

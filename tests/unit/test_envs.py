"""Every rule that runs software names a conda environment from envs/, the environments' pins
agree with pyproject.toml's (conda itself is not installable on the CI machine), and the steps
of the rules that run in envs/report.yaml work with only that environment's packages: they run
here with every other pinned package (PyTorch, matplotlib, ...) made unimportable."""

import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib

import pandas as pd
import yaml

from conftest import ROOT
from fake_records import robustness_files, with_images


def pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        name, version = dep.split("==")
        pins[name.lower()] = version
    return pins


def rule_blocks():
    for path in sorted((ROOT / "workflow/rules").glob("*.smk")):
        text = path.read_text()
        for match in re.finditer(r"^(local)?rule (\w+):\n((?:[ \t]+.*\n|\n)+)", text, re.M):
            yield path, match.group(2), match.group(3)


def test_every_pin_is_exact():
    pins = pyproject_pins()
    assert {"torch", "torchvision", "snakemake", "pandas", "matplotlib", "pyyaml"} <= set(pins)


def test_env_files_agree_with_pyproject():
    pins = pyproject_pins()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
        assert pip, env
        for entry in pip:
            name, version = entry.split("==")
            assert name.lower() in pins, f"{env.name}: {name} is not pinned in pyproject.toml"
            assert pins[name.lower()] == version, (
                f"{env.name}: {name}=={version}, pyproject.toml has {pins[name.lower()]}"
            )
        python = next(
            d for d in spec["dependencies"] if isinstance(d, str) and d.startswith("python=")
        )
        assert python == "python=3.11"


def test_every_rule_with_software_has_a_conda_env():
    seen = 0
    for path, rule, body in rule_blocks():
        if "shell:" not in body:
            continue
        seen += 1
        env = re.search(r'conda:\n\s+"([^"]+)"', body)
        assert env, f"rule {rule} in {path.name} has no conda: environment"
        assert (path.parent / env.group(1)).resolve().is_file(), (
            f"rule {rule}: {env.group(1)} is missing"
        )
    assert seen >= 10


# --- The report environment -------------------------------------------------------------------

REPORT_ENV = "envs/report.yaml"


def env_pins(env: str) -> set[str]:
    spec = yaml.safe_load((ROOT / env).read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {entry.split("==")[0].lower() for entry in pip}


def blocked_imports() -> list[str]:
    """Top-level import names of the pinned packages that envs/report.yaml lacks."""
    missing = set(pyproject_pins()) - env_pins(REPORT_ENV)
    names = {"torch", "torchvision"}
    for name, dists in importlib.metadata.packages_distributions().items():
        if any(d.lower() in missing for d in dists):
            names.add(name)
    return sorted(names)


# python -c WITHOUT BLOCKED MODULE ARGS...: runs MODULE as ``python -m`` does, with BLOCKED
# (comma-separated top-level names) unimportable, as in an environment that lacks them.
WITHOUT = """
import importlib.abc, runpy, sys
blocked = set(sys.argv[1].split(","))
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not in envs/report.yaml)", name=name)
sys.meta_path.insert(0, Missing())
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def report_env_rules() -> dict[str, str]:
    """{rule: the module its shell command runs} for every rule run in envs/report.yaml."""
    rules = {}
    for path, rule, body in rule_blocks():
        env = re.search(r'conda:\n\s+"([^"]+)"', body)
        if env and (path.parent / env.group(1)).resolve() == (ROOT / REPORT_ENV).resolve():
            rules[rule] = re.search(r"python -m ([\w.]+)", body).group(1)
    return rules


def tidy_metrics(folder, dataset, source, lam, seed, accuracy):
    """A model's metrics.csv as the evaluate step writes it (columns: report.COLUMNS)."""
    from pagrob.report import COLUMNS

    model = dict(dataset=dataset, source=source, lam=lam, seed=seed, classes_per_step=0, images=100)
    rows = [
        with_images(dict(model, attack="clean", norm="none", eps=0.0, steps=0, accuracy=accuracy)),
        with_images(
            dict(model, attack="pgd", norm="linf", eps=0.1, steps=20, accuracy=accuracy / 3)
        ),
        with_images(dict(model, attack="pgd", norm="l2", eps=0.5, steps=20, accuracy=accuracy / 2)),
    ]
    assert set(COLUMNS) <= set(rows[0]), (
        f"give the new metrics columns {set(COLUMNS) - set(rows[0])} a value here"
    )
    path = folder / f"{dataset}_{source}_lam{lam}_seed{seed}.csv"
    pd.DataFrame(rows)[COLUMNS].to_csv(path, index=False)
    return str(path)


def pag_scores_file(folder):
    """PAG scores as pagrob.steps.pag_scores writes them (columns: pag_report.COLUMNS)."""
    from pagrob.pag_report import COLUMNS

    rows = [
        dict(
            dataset="digits",
            source=src,
            lam=lam,
            seed=0,
            score=score,
            reference=ref,
            value=v,
            relation="self" if src == "ceiling" else "independent",
            per_image="",
        )
        for src, lam, v in (
            ("vanilla", 0.0, 0.5),
            ("one_image", 0.3, 0.4),
            ("floor", 0.0, 0.0),
            ("ceiling", 0.0, 1.0),
        )
        for score in ("alignment", "targeted_success", "targeted_prob")
        for ref in ("teacher_linf", "teacher_l2")
    ]
    path = folder / "pag_scores.csv"
    pd.DataFrame(rows)[COLUMNS].to_csv(path, index=False)
    return str(path)


def toy_pag_file(folder):
    """results/tables/toy_pag.csv as pagrob.steps.toy_pag writes it."""
    rows = [
        dict(
            dataset="toy",
            source=src,
            lam=lam,
            seed=s,
            manifold_alignment=m,
            teacher_alignment=t,
            clean=100.0,
            robust=r,
            role="model",
            manifold_alignment_per_point=f"{m - 0.01};{m + 0.01};{m}",
            teacher_alignment_per_point=f"{t - 0.02};{t + 0.02};{t}",
        )
        for src, lam, s, m, t, r in (
            ("vanilla", 0.0, 0, 0.3, 0.2, 5.0),
            ("vanilla", 0.0, 1, 0.5, 0.4, 20.0),
            ("nearest_neighbor", 1.0, 0, 0.95, 0.7, 90.0),
            ("nearest_neighbor", 1.0, 1, 0.97, 0.8, 95.0),
        )
    ]
    path = folder / "toy_pag.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def report_step_runs(tmp_path):
    """{rule: [(module, args)]}: the runs of each report-environment rule on small metrics."""
    m = lambda *a: tidy_metrics(tmp_path, *a)  # noqa: E731
    toy = [m("toy", "vanilla", 0.0, s, 100.0) for s in (0, 1)] + [
        m("toy", "nearest_neighbor", 1.0, s, 99.0) for s in (0, 1)
    ]
    main = [
        m("digits", src, lam, 0, 90.0)
        for src, lam in [
            ("vanilla", 0.0),
            ("one_image", 0.3),
            ("class_mean", 0.3),
            ("teacher_linf", 0.0),
        ]
    ]
    seeds = [m("digits", "one_image", 0.3, s, 90.0 + s) for s in (1, 2)]
    ablation = [m("digits", "class_mean", lam, 0, 90.0 - lam) for lam in (0.1, 1.0)]
    paper = str(ROOT / "workflow/resources/paper_numbers.csv")

    def table(kind, *extra):
        out = tmp_path / f"{kind}_table"
        return (
            "pagrob.steps.table",
            [kind, *extra, "--paper", paper, "--out-md", f"{out}.md", "--out-csv", f"{out}.csv"],
        )

    checked = [
        robustness_files(tmp_path, "digits", src, lam)
        for src, lam in [("vanilla", 0.0), ("one_image", 0.3)]
    ]
    robust = [f for metrics, _ in checked for f in metrics]
    records = [r for _, rs in checked for r in rs]
    scores = pag_scores_file(tmp_path)

    def pag(kind, *extra):
        out = tmp_path / f"pag_{kind}"
        return (
            "pagrob.steps.pag_report",
            [kind, "--scores", scores, *extra, "--out-csv", f"{out}.csv"],
        )

    return {
        "masking_table": [
            (
                "pagrob.steps.robustness",
                [
                    "checks",
                    "--metrics",
                    *robust,
                    "--records",
                    *records,
                    "--checks",
                    '{"tolerance": 1, "max_gap": 5, "zero_at": 5}',
                    "--out-md",
                    str(tmp_path / "masking.md"),
                    "--out-csv",
                    str(tmp_path / "masking.csv"),
                ],
            )
        ],
        "robustness_curves": [
            (
                "pagrob.steps.robustness",
                [
                    "curves",
                    "--metrics",
                    *robust,
                    "--out-png",
                    str(tmp_path / "curves.png"),
                    "--out-pdf",
                    str(tmp_path / "curves.pdf"),
                ],
            )
        ],
        "collect_pag_scores": [
            (
                "pagrob.steps.collect",
                ["--kind", "pag_scores", scores, scores, "--out", str(tmp_path / "scores.csv")],
            )
        ],
        "pag_scores_table": [pag("table", "--out-md", str(tmp_path / "pag_table.md"))],
        "pag_vs_robustness": [
            pag(
                "plot",
                "--metrics",
                *robust,
                "--out-png",
                str(tmp_path / "pag.png"),
                "--out-pdf",
                str(tmp_path / "pag.pdf"),
            )
        ],
        "pag_lambda": [
            pag(
                "lambda",
                "--source",
                "one_image",
                "--out-md",
                str(tmp_path / "pag_lambda.md"),
                "--out-png",
                str(tmp_path / "pag_lambda.png"),
                "--out-pdf",
                str(tmp_path / "pag_lambda.pdf"),
            )
        ],
        "collect_metrics": [
            ("pagrob.steps.collect", [*toy, *main, "--out", str(tmp_path / "collected.csv")])
        ],
        "grad_of_table": [
            table(
                "grad_of",
                "--metrics",
                *[m("digits", src, 0.3, 0, 90.0) for src in ("one_image", "one_image.centred")],
                "--scores",
                scores,
                "--default-score",
                "logit",
                "--out-png",
                str(tmp_path / "grad_of.png"),
                "--out-pdf",
                str(tmp_path / "grad_of.pdf"),
            )
        ],
        "answer": [
            (
                "pagrob.steps.answer",
                [
                    "images",
                    "--dataset",
                    "digits",
                    "--metrics",
                    *robust,
                    "--scores",
                    scores,
                    "--out-md",
                    str(tmp_path / "answer.md"),
                    "--out-csv",
                    str(tmp_path / "answer.csv"),
                    "--out-html",
                    str(tmp_path / "answer.html"),
                    "--out-png",
                    str(tmp_path / "answer.png"),
                    "--out-pdf",
                    str(tmp_path / "answer.pdf"),
                ],
            )
        ],
        "answer_toy": [
            (
                "pagrob.steps.answer",
                [
                    "toy",
                    "--metrics",
                    *toy,
                    "--toy-pag",
                    toy_pag_file(tmp_path),
                    "--out-md",
                    str(tmp_path / "answer_toy.md"),
                    "--out-csv",
                    str(tmp_path / "answer_toy.csv"),
                    "--out-png",
                    str(tmp_path / "answer_toy.png"),
                    "--out-pdf",
                    str(tmp_path / "answer_toy.pdf"),
                ],
            )
        ],
        "toy_table": [table("toy", "--metrics", *toy)],
        "main_table": [
            table("main", "--name", "table1", "--dataset", "digits", "--metrics", *main)
        ],
        "lambda_table": [
            table("lambda", "--lams", json.dumps({"digits": {"one_image": 0.3, "class_mean": 0.3}}))
        ],
        "seeds_table": [table("seeds", "--metrics", *seeds)],
        "ablation_table": [table("ablation", "--metrics", *ablation)],
        "sigma_sweep": [
            (
                "pagrob.steps.sigma_sweep",
                [
                    "--metrics",
                    m("digits", "vanilla", 0.0, 0, 90.0),
                    *(m("digits", f"score_based.sigma{s}", 0.3, 0, 88.0) for s in (0.1, 0.5)),
                    "--out-md",
                    str(tmp_path / "sigma_sweep.md"),
                    "--out-csv",
                    str(tmp_path / "sigma_sweep.csv"),
                    "--out-png",
                    str(tmp_path / "sigma_sweep.png"),
                    "--out-pdf",
                    str(tmp_path / "sigma_sweep.pdf"),
                ],
            )
        ],
        "external_table": [
            table(
                "external",
                "--dataset",
                "digits",
                "--externals",
                json.dumps({"theirs": {"claims": "one_image", "lam": None}}),
                "--metrics",
                m("digits", "external:theirs", 0.0, 0, 88.0),
                *main,
                *robust,
                "--records",
                *records,
                "--checks",
                '{"tolerance": 1, "max_gap": 5, "zero_at": 5}',
            )
        ],
    }


def test_blocker_makes_torch_unimportable():
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT, ",".join(blocked_imports()), "json.tool", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr  # runs modules as python -m does
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT, ",".join(blocked_imports()), "torch.utils.collect_env"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert (
        proc.returncode != 0 and "No module named 'torch' (not in envs/report.yaml)" in proc.stderr
    )
    assert {"torch", "torchvision", "sklearn"} <= set(blocked_imports())


def test_every_report_environment_rule_has_a_case_here(tmp_path):
    rules, cases = set(report_env_rules()), set(report_step_runs(tmp_path))
    assert not rules - cases, (
        f"rules run in {REPORT_ENV} with no case in report_step_runs: {sorted(rules - cases)}"
    )
    assert not cases - rules, (
        f"cases for rules that no longer run in {REPORT_ENV}: {sorted(cases - rules)}"
    )


def test_report_environment_steps_run_without_pytorch(tmp_path):
    runs = report_step_runs(tmp_path)
    rules = report_env_rules()
    blocked = ",".join(blocked_imports())
    assert {"collect_metrics", "toy_table", "main_table"} <= set(rules) & set(runs)
    for rule, cases in runs.items():
        if rule not in rules:
            continue  # test_every_report_environment_rule_has_a_case_here says so
        for module, args in cases:
            assert module == rules[rule], f"rule {rule} runs {rules[rule]}, not {module}"
            proc = subprocess.run(
                [sys.executable, "-c", WITHOUT, blocked, module, *args],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            assert proc.returncode == 0, (
                f"{rule}: {module} fails without PyTorch:\n{proc.stderr[-3000:]}"
            )
    assert len(pd.read_csv(tmp_path / "collected.csv")) == 3 * 8
    for kind in ("toy", "main", "lambda", "seeds", "ablation"):
        assert (tmp_path / f"{kind}_table.md").read_text().startswith("# ")
        assert len(pd.read_csv(tmp_path / f"{kind}_table.csv")) > 0

"""Every rule that runs software names a conda environment from envs/, and the environments'
pins agree with pyproject.toml's (conda itself is not installable on the CI machine)."""

import re
import tomllib

import yaml

from conftest import ROOT


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
            assert pins[name.lower()] == version, f"{env.name}: {name}=={version}, pyproject.toml has {pins[name.lower()]}"
        python = next(d for d in spec["dependencies"] if isinstance(d, str) and d.startswith("python="))
        assert python == "python=3.11"


def test_every_rule_with_software_has_a_conda_env():
    seen = 0
    for path, rule, body in rule_blocks():
        if "shell:" not in body:
            continue
        seen += 1
        env = re.search(r'conda:\n\s+"([^"]+)"', body)
        assert env, f"rule {rule} in {path.name} has no conda: environment"
        assert (path.parent / env.group(1)).resolve().is_file(), f"rule {rule}: {env.group(1)} is missing"
    assert seen >= 10

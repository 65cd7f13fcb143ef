# Reproduces "Do Perceptually Aligned Gradients Imply Adversarial Robustness?" (Ganz, Kawar,
# Elad, ICML 2023). The workflow turns config.yaml into the DAG; the PyTorch code lives in
# src/pagrob and each rule calls one small entry point of it (python -m pagrob.steps.<step>).

import json
import os
import shlex
import sys

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"


# Fails before any job runs, naming each wrong key and how to fix it.
check_config(
    config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
)

# The rules' shell commands import the library from this checkout (no install needed, also in
# conda environments and on cluster nodes). Without --use-conda they run the Python that runs
# Snakemake, so that `.venv/bin/snakemake ...` works without activating the environment.
PYTHON_FIRST = (
    ""
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    else f'export PATH="{os.path.dirname(sys.executable)}:$PATH"; '
)
shell.prefix(
    f'set -eo pipefail; export PYTHONPATH="{workflow.basedir}/src:$PYTHONPATH"; set -u; '
    f"{PYTHON_FIRST}"
)


include: "workflow/rules/data.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_outputs(),

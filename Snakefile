# Reproduces "Do Perceptually Aligned Gradients Imply Adversarial Robustness?" (Ganz, Kawar,
# Elad, ICML 2023). The workflow turns config.yaml into the DAG; the PyTorch code lives in
# src/pagrob and each rule calls one small entry point of it (python -m pagrob.steps.<step>).

import json
import os
import shlex
import sys
import time

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import min_version

min_version("9.0")


# config.yaml unless config files are given on the command line (--configfile demo.yaml), which
# then replace it: their keys are the whole config, also inside cluster jobs.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


# the library's pure-Python modules (its registry) for the rule files, also where Snakemake runs
# outside the project's environment
sys.path.insert(0, os.path.join(workflow.basedir, "src"))


include: "workflow/rules/common.smk"


# Fails before any job runs, naming each wrong key and how to fix it.
check_config(
    config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
)
# the config's grid (pagrob.grid): its models, outputs and jobs, and its meaning-level checks
grid = Grid(config)


# The page in front of `snakemake --report`: the answer pages' lines where this config's exist
# (written again when the workflow succeeds, before --report-after-run reads it), then what the
# study is and how to read the report (workflow/report/workflow.rst).
report: front_page()


# The rules' shell commands import the library from this checkout (no install needed, also in
# conda environments and on cluster nodes). Without --use-conda they run the Python that runs
# Snakemake, so that `.venv/bin/snakemake ...` works without activating the environment.
PYTHON_FIRST = (
    ""
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    else f'export PATH="{os.path.dirname(sys.executable)}:$PATH"; '
)
# Each job's log goes to its file; fd 3 stays the console, where a step that fails with a
# known error also writes its one-line error (naming the fix), with or without --profile.
shell.prefix(
    f'set -eo pipefail; export PYTHONPATH="{workflow.basedir}/src:$PYTHONPATH"; set -u; '
    f"exec 3>&2; export PAGROB_CONSOLE_FD=3; {PYTHON_FIRST}{job_environment(config)}"
)


include: "workflow/rules/data.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/pag_scores.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/external.smk"


# Cheap aggregation runs where Snakemake runs, never as a cluster job (each such rule says
# localrule: True); so does the data step, which may need the network to download a dataset
# (cluster nodes often have none).


STARTED = time.time()

# each successful run's record, <root>/logs/runs.jsonl (pure Python; docs/numbers.md reads it)
from pagrob import run_record


onsuccess:
    front_page()  # with the answers this run wrote
    wall = time.time() - STARTED
    minutes, seconds = divmod(round(wall), 60)
    cores = workflow.resource_settings.cores  # None when jobs go to a cluster
    where = f" with {cores} cores on {cpu_model()}" if cores else ""
    print(f"Workflow finished: {minutes} min {seconds} s wall time{where}.")
    targets = sorted(workflow.dag_settings.targets) or [workflow.default_target]
    run_record.append(
        results(run_record.RUNS),
        run_record.record(
            wall_s=wall,
            cores=cores,
            commit=git_commit(),  # workflow/rules/common.smk's, as the jobs record it
            configfiles=workflow.configfiles,
            targets=targets,
            command=sys.argv,
            basedir=workflow.basedir,
        ),
    )


rule all:
    default_target: True
    input:
        grid.all_outputs(),
        results("provenance.html"),
    localrule: True


# Every rule comes before unknown_target (workflow/rules/report.smk), the refusal of a table or
# figure that no rule of this config makes.
for other in workflow.rules:
    if other.name != "unknown_target":
        workflow.ruleorder(other.name, "unknown_target")

# Config -> the arguments of each step. The grid itself (which models exist, where their files
# live, which outputs and jobs the config asks for, and the config's meaning-level checks) is
# pagrob.grid's, composed of one module per experiment (pagrob.experiments: grid.main,
# grid.toy, grid.pag_scores, ...), pure Python, shared with bench/gpu_check.py: the Snakefile builds `grid` from the
# validated config, and the rules here keep only their input and params functions. Every output
# lives under the config's results root (results()); the rules that evaluate a model take
# <root>/{dataset}/{source}/lam{lam}/seed{seed} or <root>/{dataset}/external/{name} as {model}.


# The names of the datasets and sources, and what each reads, from the library's registry
# (pure Python: pagrob.registry imports no PyTorch).
import dataclasses
from types import SimpleNamespace

from pagrob import html_table, registry
from pagrob import settings as step_settings
from pagrob.grid import ConfigError, Grid, files_of
from pagrob.io import cpu_model

DATASETS = list(registry.DATASETS)
REPRESENTATIVES = list(registry.REPRESENTATIVES)
DRAWN = list(registry.DRAWN)  # representatives drawn from a seed: targets per draw seed
SCORE = list(registry.SCORE)  # a trained denoiser's residual: targets per dataset
STORED = list(registry.STORED)  # the sources whose targets make_targets writes
FILE = (
    registry.FILE
)  # targets read from a file someone else computed (datasets.<d>.targets.file)
RIGD = registry.RIGD  # student source -> its teacher's threat model
SOURCES = list(registry.TRAINED)
TEACHERS = list(registry.TEACHERS)


def results(path=""):
    """``path`` under this config's results root (the key results), or the root itself."""
    return grid.results(path)


wildcard_constraints:
    dataset="|".join(DATASETS),
    source="|".join(SOURCES + TEACHERS),
    norm="linf|l2",
    lam=r"[0-9]+(\.[0-9]+)?",
    seed=r"[0-9]+",
    name=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    grad_of="logit|log_softmax|centred",
    sigma=r"[0-9]+(\.[0-9]+)?",
    model=r"[a-z0-9_]+(\.[a-z_]+|\.sigma[0-9]+(\.[0-9]+)?)?/lam[0-9]+(\.[0-9]+)?/seed[0-9]+|external/[A-Za-z0-9][A-Za-z0-9_-]*",


def check_config(config, schema_path):
    """Validate against the schema (filling its defaults), listing every error by key path."""
    import jsonschema
    import yaml
    from snakemake.utils import validate

    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(config),
        key=lambda e: list(map(str, e.absolute_path)),
    )
    if errors:
        lines = []
        for e in errors:
            key = ".".join(map(str, e.absolute_path)) or "(top level)"
            lines.append(f"  {key}: {e.message}")
        lines.append(
            "Fix these keys; workflow/schemas/config.schema.yaml documents every key, "
            "its type and range."
        )
        raise ConfigError("\n".join(["invalid config:", *lines]))
    validate(config, schema_path, set_default=True)


#: cpu_isa -> the environment that pins the CPU kernels' instruction set in every job: PyTorch's
#: kernel dispatch, oneDNN (convolutions) and MKL (matrix products, in its conditional numerical
#: reproducibility mode), so that an AVX-512 machine computes what an AVX2 machine computes
ISA_ENVIRONMENT = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
}


def git_commit():
    """The checkout's commit (with -dirty when it has uncommitted changes), recorded by the
    steps; 'unknown' outside a git checkout."""
    import subprocess

    def git(*args):
        return subprocess.run(
            ["git", "-C", workflow.basedir, *args], capture_output=True, text=True
        )

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except OSError:
        return "unknown"


def job_environment(config):
    """The exports every job's shell starts with: the instruction-set pin and the commit."""
    env = dict(ISA_ENVIRONMENT.get(config.get("cpu_isa"), {}))
    env["PAGROB_GIT_COMMIT"] = git_commit()
    return "".join(f"export {k}={shlex.quote(v)}; " for k, v in env.items())


def front_page():
    """Write the report's first page and return its path (.snakemake/pagrob_report_front.rst in
    the working directory): workflow/report/workflow.rst's title, then every answer page of this
    config that exists (results/tables/answer_<dataset>.md: its figure, compact table and words,
    as the HTML of its report page, the figure embedded), then the rest.
    """
    static = open(os.path.join(workflow.basedir, "workflow/report/workflow.rst")).read()
    lines = static.splitlines()
    title, rest = lines[:2], lines[2:]
    block = []
    pages = [
        p
        for p in grid.all_outputs()
        if p.startswith(results("tables/answer_")) and p.endswith(".md")
    ]
    # the image datasets' answers first, the toy's (its ground truth) last
    for path in sorted(pages, key=lambda p: p.endswith("answer_toy.md")):
        if os.path.exists(path):
            block += ["", ".. raw:: html", ""]
            html = html_table.markdown_to_html(open(path).read(), answer_images(path))
            block += [f"   {line}" for line in wrap_data_uris(html).splitlines()]
    if block:
        block = [
            "",
            "The answer",
            "----------",
            *block,
            "",
            "This report",
            "-----------",
        ]
    path = os.path.abspath(os.path.join(".snakemake", "pagrob_report_front.rst"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # atomically: cluster jobs parse this Snakefile too, each writing the same page
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(title + block + rest) + "\n")
    os.replace(tmp, path)
    return path


def wrap_data_uris(html, width=76):
    """An embedded image's base64 over lines of ``width`` (docutils refuses lines over 10,000
    characters; a URL's line breaks are dropped when it is read, so the image is the same).
    """
    import re

    def wrap(m):
        data = m.group(2)
        lines = "\n".join(data[i : i + width] for i in range(0, len(data), width))
        return f"{m.group(1)}{lines}"

    return re.sub(r"(data:image/png;base64,)([A-Za-z0-9+/=]+)", wrap, html)


def answer_images(page):
    """The figures an answer page names (![...](path), relative to it) that exist: the path as
    the page names it -> the PNG's bytes."""
    import re

    images = {}
    for name in re.findall(r"^!\[[^\]]*\]\(([^)\s]+)\)", open(page).read(), re.M):
        found = os.path.join(os.path.dirname(page), name)
        if os.path.exists(found):
            images[name] = open(found, "rb").read()
    return images


def external_spec(wildcards):
    spec = grid.external.specs(wildcards.dataset).get(wildcards.name)
    if spec is None:
        raise ConfigError(
            f"{results()}/{wildcards.dataset}/external/{wildcards.name} is not a model of this config: "
            f"experiments.external has no {wildcards.name!r} on {wildcards.dataset!r}"
        )
    return spec


def import_flags(wildcards):
    spec = external_spec(wildcards)
    return flags(
        {
            "arch": spec["arch"],
            "mean": spec["mean"],
            "std": spec["std"],
            "name": wildcards.name,
            "claims": spec["source"],
            "lam": spec["lam"],
            "seed": spec["seed"],
        }
    )


def externals_json(dataset):
    return json.dumps(
        {
            name: {"claims": spec["source"], "lam": spec["lam"]}
            for name, spec in grid.external.specs(dataset).items()
        }
    )


def flags(options):
    """{'batch_size': 64, 'augment': True, 'milestones': [50, 75]} -> '--batch-size 64 ...'."""
    out = []
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (list, tuple)):
            value = " ".join(str(v) for v in value)
        out.append(f"--{key.replace('_', '-')} {shlex.quote(str(value))}")
    return " ".join(out)


def common_flags(dataset):
    """--device: the config's device for jobs given GPUs, the CPU for the others;
    --config-threads: the threads the config gives the job (a job that Snakemake gives fewer,
    as --cores caps them, refuses to run: its thread count is part of its result)."""
    return flags(
        {
            "device": config["device"] if grid.res(dataset)["gpu"] else "cpu",
            "config_threads": grid.res(dataset)["threads"],
        }
    )


def threads_of(wildcards):
    return grid.res(wildcards.dataset)["threads"]


def gpu_of(wildcards):
    return grid.res(wildcards.dataset)["gpu"]


def mem_of(wildcards):
    return grid.res(wildcards.dataset)["mem_mb"]


def runtime_of(kind):
    return lambda wildcards: grid.res(wildcards.dataset)["runtime"][kind]


def train_flags(wildcards):
    """The model's identity: its architecture, source and label (the settings: train_settings)."""
    grad_of = getattr(wildcards, "grad_of", None)
    sigma = getattr(wildcards, "sigma", None)
    label = f"{wildcards.source}.{grad_of}" if grad_of else None
    if sigma:  # the sigma sweep's: named by its noise level
        label = f"{wildcards.source}.sigma{sigma}"
    return flags(
        {
            "arch": grid.dataset_config(wildcards.dataset)["arch"],
            "source": wildcards.source,
            "label": label,
        }
    )


def settings_option(settings, option="--settings"):
    """--settings (or ``option``) with the step's settings (pagrob.settings) as JSON, quoted for
    the shell."""
    return f"{option} {shlex.quote(step_settings.to_json(settings))}"


def train_settings(wildcards):
    """datasets.<d>.train and pag as the run's TrainSettings; a model of another class score
    than pag.grad_of (the grad_of ablation) is named <source>.<grad_of> in its path."""
    cfg = grid.dataset_config(wildcards.dataset)
    train = dict(cfg["train"])
    if wildcards.source == FILE:  # stored targets are un-augmented: their own variant
        train["pag_variant"] = grid.file_targets_config(wildcards.dataset)[
            "pag_variant"
        ]
    pag = dict(config["pag"])
    pag["grad_of"] = getattr(wildcards, "grad_of", None) or pag["grad_of"]
    return settings_option(
        step_settings.TrainSettings.from_config(
            train,
            pag,
            lam=float(wildcards.lam),
            seed=int(wildcards.seed),
            where=f"datasets.{wildcards.dataset}.train",
        )
    )


def data_flags(wildcards):
    data = grid.dataset_config(wildcards.dataset)["data"]
    kind = registry.DATASETS[wildcards.dataset].kind
    if kind == "generated":  # the toy
        return flags(
            {
                "toy_centers": json.dumps(data["centers"]),
                "toy_per_mode": data["per_mode"],
                "toy_test": data["test"],
                "seed": data["seed"],
            }
        )
    keys = registry.DATASETS[
        wildcards.dataset
    ].data_keys  # bundled and torchvision data
    return flags({k: data[k] for k in keys})


def pictures_settings(dataset):
    return settings_option(
        step_settings.PicturesSettings.from_config(grid.pictures_config(dataset))
    )


def lams_json():
    """Table 3: the lambda of every source on every dataset of experiments.main."""
    return json.dumps(
        {d: grid.dataset_config(d)["lam"] for d in grid.experiment("main")["tables"]}
    )


# the targets settings that each representative source depends on (only these reach its job, so
# that changing one source's setting rebuilds that source alone)
TARGETS_KEYS = {s: list(registry.SOURCES[s].targets_keys) for s in REPRESENTATIVES}


def targets_flags(wildcards):
    """The targets settings of the source (and a drawn source's draw seed, from its path)."""
    t = grid.dataset_config(wildcards.dataset)["targets"]
    if wildcards.source == FILE:
        return flags({"labels": grid.file_targets_config(wildcards.dataset)["labels"]})
    if wildcards.source in SCORE:  # the control's shuffle is drawn from targets.seed
        sigma = getattr(wildcards, "sigma", None)  # the sweep's, else the config's
        sigma = sigma or grid.score_based.config(wildcards.dataset)["sigma"]
        return flags({"sigma": sigma, "seed": t["seed"]})
    draw = {"seed": wildcards.seed} if wildcards.source in DRAWN else {}
    return flags({k: t[k] for k in TARGETS_KEYS[wildcards.source]} | draw)


def targets_inputs(wildcards):
    """The prepared data, and for the file source the file (and labels) it matches to them."""
    inputs = {"data": f"{results()}/{wildcards.dataset}/data.pt"}
    if wildcards.source in SCORE:
        inputs["denoiser"] = grid.score_based.denoiser_file(wildcards.dataset)
    if wildcards.source == FILE:
        spec = grid.file_targets_config(wildcards.dataset)
        inputs["file"] = spec["data"]
        if spec["labels"]:
            inputs["labels"] = spec["labels"]
    return inputs


def file_flag(wildcards, input):
    """--file for the file source, --denoiser for the score-based ones."""
    if "denoiser" in input.keys():
        return f"--denoiser {input.denoiser}"
    return f"--file {input.file}" if "file" in input.keys() else ""


def denoiser_settings(wildcards):
    """--settings of a denoiser: datasets.<d>.score_based.denoiser, with its seed (the
    score-based sources') or the references' (the score instrument's)."""
    block = grid.score_based.config(wildcards.dataset)["denoiser"]
    wanted = [block["seed"]]
    if grid.pag_scores.score_config(wildcards.dataset):
        wanted.append(
            grid.dataset_config(wildcards.dataset)["pag_scores"]["reference_seed"]
        )
    if int(wildcards.seed) not in wanted:
        raise ConfigError(
            f"{results()}/{wildcards.dataset}/denoiser/seed{wildcards.seed} is not a model of "
            f"this config: its denoisers have the seeds {wanted} (datasets.{wildcards.dataset}"
            ".score_based.denoiser.seed, pag_scores.reference_seed)"
        )
    settings = step_settings.DenoiserSettings.from_config(block)
    return settings_option(dataclasses.replace(settings, seed=int(wildcards.seed)))


def train_inputs(wildcards):
    inputs = {"data": f"{results()}/{wildcards.dataset}/data.pt"}
    if getattr(
        wildcards, "sigma", None
    ):  # the sigma sweep's: targets at its noise level
        inputs["targets"] = grid.score_based.targets_file(
            wildcards.dataset, wildcards.source, wildcards.sigma
        )
    elif wildcards.source in STORED:
        inputs["targets"] = grid.targets_file(
            wildcards.dataset, wildcards.source, wildcards.seed
        )
    if wildcards.source == FILE:  # read again at training time (its digest checked)
        inputs["file"] = grid.file_targets_config(wildcards.dataset)["data"]
    if wildcards.source in RIGD:
        inputs["teacher"] = (
            f"{grid.teacher_dir(wildcards.dataset, RIGD[wildcards.source])}/model.pt"
        )
    return inputs


def source_flags(wildcards, input):
    """--targets or --teacher: the precomputed source a student needs, if any."""
    if "targets" in input.keys():
        return f"--targets {input.targets}"
    if "teacher" in input.keys():
        return f"--teacher {input.teacher}"
    return ""


def teacher_inputs(wildcards):
    inputs = {"data": f"{results()}/{wildcards.dataset}/data.pt"}
    t, _ = grid.teacher_config(wildcards.dataset, wildcards.norm)
    if grid.imports_teacher(wildcards.dataset, wildcards.norm, int(wildcards.seed)):
        inputs["checkpoint"] = t["checkpoint"]["path"]
    return inputs


def teacher_flags(wildcards):
    """The checkpoint's description where the teacher is imported; else its architecture and
    settings: datasets.<d>.train (without pag_variant: Madry adversarial training takes its PGD
    examples of the augmented batch), the teachers' epochs and the training attack."""
    t, teachers = grid.teacher_config(wildcards.dataset, wildcards.norm)
    if grid.imports_teacher(wildcards.dataset, wildcards.norm, int(wildcards.seed)):
        c = t["checkpoint"]
        return flags(
            {"import_arch": c["arch"], "import_mean": c["mean"], "import_std": c["std"]}
        )
    cfg = grid.dataset_config(wildcards.dataset)
    train = {k: v for k, v in cfg["train"].items() if k != "pag_variant"}
    where = f"datasets.{wildcards.dataset}.teachers.{wildcards.norm}.attack"
    attack = step_settings.Attack.from_config(wildcards.norm, t["attack"], where)
    settings = step_settings.TrainSettings.from_config(
        train,
        {},
        lam=0,
        seed=int(wildcards.seed),
        where=f"datasets.{wildcards.dataset}.train",
        epochs=teachers["epochs"],
        adversarial=step_settings.to_data(attack),
    )
    return f"{flags({'arch': cfg['arch']})} {settings_option(settings)}"


def checkpoint_flag(wildcards, input):
    return (
        f"--import-state-dict {input.checkpoint}"
        if "checkpoint" in input.keys()
        else ""
    )


def eval_settings(wildcards):
    e = grid.dataset_config(wildcards.dataset)["eval"]
    return settings_option(step_settings.EvalSettings.from_config(e))


# --- Trusting the numbers: AutoAttack, the gradient-masking checks, accuracy against eps --------


def autoattack_settings(wildcards):
    e = grid.dataset_config(wildcards.dataset)["eval"]
    if not grid.robustness.config(wildcards.dataset):
        raise ConfigError(
            f"AutoAttack of a {wildcards.dataset} model asked for, but "
            f"datasets.{wildcards.dataset}.eval.autoattack is not set"
        )
    full = grid.robustness.aa_full(
        wildcards.dataset, f"{results()}/{wildcards.dataset}/{wildcards.model}"
    )
    return settings_option(
        step_settings.AutoAttackSettings.from_config(e, wildcards.norm, full)
    )


def sweep_settings(wildcards):
    e = grid.dataset_config(wildcards.dataset)["eval"]
    norms = grid.robustness.norms(wildcards.dataset)
    return settings_option(step_settings.SweepSettings.from_config(e, norms))


def checks_flags(dataset):
    """--checks: the gradient-masking checks' thresholds (eval.checks) as JSON."""
    c = grid.dataset_config(dataset)["eval"]["checks"]
    return settings_option(step_settings.ChecksSettings.from_config(c), "--checks")


def checks_args(dataset, records):
    """The table step's options for ``records`` (none: no footnotes)."""
    if not records:
        return ""
    return f"--records {' '.join(records)} {checks_flags(dataset)}"


# --- Measuring PAG: scores against independent robust references and an autoencoder ----------


def autoencoder_settings(wildcards):
    ae = grid.pag_scores.autoencoder_config(wildcards.dataset)
    if not ae or int(wildcards.seed) != ae["seed"]:
        raise ConfigError(
            f"{results()}/{wildcards.dataset}/autoencoder/seed{wildcards.seed} is not a model of this "
            f"config: datasets.{wildcards.dataset}.autoencoder "
            + (f"has seed {ae['seed']}" if ae else "is not set")
        )
    return settings_option(step_settings.AutoencoderSettings.from_config(ae))


def pag_scores_settings(dataset):
    cfg = grid.pag_scores.config(dataset)
    ae = grid.pag_scores.autoencoder_config(dataset)
    noise = ae.get("noise") if ae else None
    pictures = (grid.dataset_config(dataset).get("pictures") or {}).get("attack")
    if not cfg.get("attack") and not pictures:
        grid.pictures_config(dataset)  # names the missing key
    return settings_option(
        step_settings.PagScoresSettings.from_config(cfg, pictures, noise=noise or None)
    )


def pag_inputs(wildcards):
    """The data, the references, the autoencoder and the score instrument's denoiser a PAG
    score job reads."""
    inputs = {"data": f"{results()}/{wildcards.dataset}/data.pt"}
    refs = grid.pag_scores.references(wildcards.dataset)
    if refs:
        inputs["references"] = refs
    if grid.pag_scores.autoencoder_config(wildcards.dataset):
        inputs["autoencoder"] = grid.pag_scores.autoencoder_file(wildcards.dataset)
    if grid.pag_scores.score_config(wildcards.dataset):
        inputs["denoiser"] = grid.pag_scores.denoiser_file(wildcards.dataset)
    return inputs


def pag_input_flags(wildcards, input):
    keys = input.keys()
    out = f"--references {' '.join(input.references)}" if "references" in keys else ""
    if "autoencoder" in keys:
        out += f" --autoencoder {input.autoencoder}"
    if "denoiser" in keys:
        sigma = grid.pag_scores.score_config(wildcards.dataset)["sigma"]
        out += f" --denoiser {input.denoiser} --score-sigma {sigma}"
    return out


def toy_score_flags(wildcards, input):
    """The toy_pag step's score instrument: its denoiser, the toy's centres and the noise level
    ("" where the instrument does not run)."""
    block = grid.pag_scores.score_config("toy")
    if not block:
        return ""
    centers = shlex.quote(json.dumps(grid.dataset_config("toy")["data"]["centers"]))
    return f"--denoiser {input.denoiser} --centers {centers} --sigma {block['sigma']}"


# --- The toy: one job per recipe (workflow/rules/toy.smk), each run as its rule runs it -------


def toy_wildcards(wildcards, seed):
    return SimpleNamespace(
        dataset="toy", source=wildcards.source, lam=wildcards.lam, seed=str(seed)
    )


def train_toy_inputs(wildcards):
    inputs = {"data": results("toy/data.pt")}
    if wildcards.source in STORED:
        inputs["targets"] = grid.toy.draws(wildcards.source)
    return inputs


def train_toy_runs(wildcards, output, threads):
    """One training run per seed, as the train rule runs it."""
    runs = []
    for seed, model in zip(grid.toy.seeds(), output.model):
        w = toy_wildcards(wildcards, seed)
        targets = (
            f"--targets {grid.targets_file('toy', w.source, seed)}"
            if w.source in STORED
            else ""
        )
        runs.append(
            f"--data {results('toy/data.pt')} {targets} {train_flags(w)} "
            f"{train_settings(w)} {common_flags('toy')} --threads {threads} --out {model}"
        )
    return " ::: ".join(runs)


def evaluate_toy_runs(wildcards, input, output, threads):
    """One evaluation per seed, as the evaluate rule runs it."""
    w = SimpleNamespace(dataset="toy")
    return " ::: ".join(
        f"--data {input.data} --model {model} {eval_settings(w)} {common_flags('toy')} "
        f"--threads {threads} --out {out}"
        for model, out in zip(input.models, output)
    )


def draw_toy_runs(wildcards, input, output, threads):
    """One draw per draw seed, as the draw_targets rule makes it."""
    runs = []
    for out in output:
        w = SimpleNamespace(
            dataset="toy", source=wildcards.source, seed=out.rsplit("seed", 1)[1][:-3]
        )
        runs.append(
            f"--data {input.data} --source {w.source} {targets_flags(w)} "
            f"{common_flags('toy')} --threads {threads} --out {out}"
        )
    return " ::: ".join(runs)

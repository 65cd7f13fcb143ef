# Config -> grid: which models exist, where their files live, and the arguments of each step.
# Every output lives under the config's results root (results(): the key results, so that two
# configs never write the same file; config.yaml: results, demo.yaml: results/demo). Paths encode
# the grid: <root>/{dataset}/{source}/lam{lam}/seed{seed}/... for the models we train,
# <root>/{dataset}/external/{name}/... for imported ones; the rules that evaluate a model take
# either as {model}.


# The names of the datasets and sources, and what each reads, from the library's registry
# (pure Python: pagrob.registry imports no PyTorch).
from pagrob import registry

DATASETS = list(registry.DATASETS)
REPRESENTATIVES = list(registry.REPRESENTATIVES)
FILE = (
    registry.FILE
)  # targets read from a file someone else computed (datasets.<d>.targets.file)
RIGD = registry.RIGD  # student source -> its teacher's threat model
SOURCES = list(registry.TRAINED)
TEACHERS = list(registry.TEACHERS)


wildcard_constraints:
    dataset="|".join(DATASETS),
    source="|".join(SOURCES + TEACHERS),
    norm="linf|l2",
    lam=r"[0-9]+(\.[0-9]+)?",
    seed=r"[0-9]+",
    name=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    grad_of="logit|log_softmax|centred",
    model=r"[a-z0-9_]+(\.[a-z_]+)?/lam[0-9]+(\.[0-9]+)?/seed[0-9]+|external/[A-Za-z0-9][A-Za-z0-9_-]*",


class ConfigError(Exception):
    pass


def results(path=""):
    """``path`` under this config's results root (the key results), or the root itself."""
    return f"{config['results']}/{path}" if path else config["results"]


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
    check_results_root(config["results"])


def check_results_root(root):
    """A results root inside results/ must not be a folder that results/ itself holds."""
    parts = root.split("/")
    reserved = [*registry.DATASETS, "tables", "figures", "logs"]
    if len(parts) > 1 and parts[1] in reserved:
        raise ConfigError(
            f"invalid config:\n  results: {root!r} is a folder that the results root 'results' "
            f"uses itself ({', '.join(reserved)}); choose another, e.g. results/demo"
        )


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
    the working directory): workflow/report/workflow.rst's title, then the lines of every answer
    page of this config that exists (results/tables/answer_<dataset>.md), then the rest.
    """
    static = open(os.path.join(workflow.basedir, "workflow/report/workflow.rst")).read()
    lines = static.splitlines()
    title, rest = lines[:2], lines[2:]
    answers = []
    for path in all_outputs():
        if path.startswith(results("tables/answer_")) and path.endswith(".md"):
            if os.path.exists(path):
                answers.append(open(path).read())
    block = []
    if answers:
        block = ["", "The answer", "----------", ""]
        for text in answers:
            for line in text.splitlines():
                if line.startswith("## "):  # a blank line first: it may end a list
                    block += ["", f"**{line[3:]}**", ""]
                elif line.startswith("# "):
                    head = line[2:]
                    block += [head, "~" * len(head), ""]
                else:
                    block.append(line)
            block.append("")
        block += ["This report", "-----------"]
    path = os.path.abspath(os.path.join(".snakemake", "pagrob_report_front.rst"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # atomically: cluster jobs parse this Snakefile too, each writing the same page
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(title + block + rest) + "\n")
    os.replace(tmp, path)
    return path


def lam_str(lam):
    """0.4 -> '0.4', 1.0 -> '1', 0 -> '0': the lambda as it appears in paths."""
    return ("%.10f" % float(lam)).rstrip("0").rstrip(".")


def dataset_config(dataset):
    if dataset not in config["datasets"]:
        raise ConfigError(
            f"config: dataset {dataset!r} is used but datasets.{dataset} is not defined; "
            f"add its settings under datasets: (defined: {sorted(config['datasets'])})"
        )
    return config["datasets"][dataset]


def source_lam(dataset, source):
    """The lambda of a source on a dataset (Table 3); 0 for vanilla."""
    if source == "vanilla":
        return 0
    lams = dataset_config(dataset)["lam"]
    if source not in lams:
        raise ConfigError(
            f"config: no lambda for source {source!r} on {dataset!r}; "
            f"add datasets.{dataset}.lam.{source}: <value>"
        )
    return lams[source]


def model_dir(dataset, source, lam, seed):
    return f"{results()}/{dataset}/{source}/lam{lam_str(lam)}/seed{seed}"


def experiment(name):
    return config["experiments"].get(name)


def toy_models():
    exp = experiment("toy")
    if not exp:
        return []
    pag_lam = source_lam("toy", exp["source"])
    return [
        model_dir("toy", src, lam, seed)
        for src, lam in (("vanilla", 0), (exp["source"], pag_lam))
        for seed in exp["seeds"]
    ]


def teacher_config(dataset, norm):
    teachers = dataset_config(dataset).get("teachers") or {}
    if norm not in teachers:
        raise ConfigError(
            f"config: the {norm} teacher of {dataset!r} is needed (rigd_{norm}, Fig. 1) but "
            f"datasets.{dataset}.teachers.{norm} is not defined; add its training attack "
            "{eps, steps, step_size} (and seed, epochs under teachers)"
        )
    return teachers[norm], teachers


def teacher_dir(dataset, norm):
    _, teachers = teacher_config(dataset, norm)
    return model_dir(dataset, f"teacher_{norm}", 0, teachers["seed"])


def configured_teachers(dataset):
    teachers = dataset_config(dataset).get("teachers") or {}
    return [teacher_dir(dataset, n) for n in ("linf", "l2") if n in teachers]


def main_models(dataset, seeds=None):
    """Tables 1-2: every source of experiments.main at its lambda, for each of its seeds (or of
    ``seeds``, e.g. the first only: Fig. 4 shows one model per source)."""
    exp = experiment("main")
    if not exp or dataset not in exp["tables"]:
        raise ConfigError(
            f"config: experiments.main.tables has no entry for {dataset!r}"
        )
    return [
        model_dir(dataset, s, source_lam(dataset, s), seed)
        for s in main_sources(dataset)
        for seed in (exp["seeds"] if seeds is None else seeds)
    ]


def first_seed_models(dataset):
    """Fig. 4: one model per source, of experiments.main's first seed."""
    return main_models(dataset, experiment("main")["seeds"][:1])


def main_sources(dataset):
    """experiments.main's sources on ``dataset``: the file source only where a targets file is
    given (the authors' is CIFAR-10's alone), and then it must be on at least one dataset.
    """
    exp = experiment("main")
    with_file = [d for d in exp["tables"] if dataset_config(d)["targets"].get("file")]
    if FILE in exp["sources"] and not with_file:
        raise ConfigError(
            "config: experiments.main.sources has the file source, but no dataset of "
            "experiments.main.tables has datasets.<dataset>.targets.file; add one, or drop file"
        )
    return [s for s in exp["sources"] if s != FILE or dataset in with_file]


def check_table_name(table, dataset):
    """<results>/tables/<table>_<dataset> must be the name experiments.main gives the dataset."""
    expected = (experiment("main") or {}).get("tables", {}).get(dataset)
    if expected != table:
        raise ConfigError(
            f"{results()}/tables/{table}_{dataset} is not a table of this config: "
            f"experiments.main.tables.{dataset} is {expected!r}"
        )
    return table


def table_teachers(dataset):
    """The teachers of the RIGD sources in a main table (shown as reference rows)."""
    return [
        teacher_dir(dataset, RIGD[s])
        for s in experiment("main")["sources"]
        if s in RIGD
    ]


def seeds_models():
    """Table 4: one source over several seeds."""
    exp = experiment("seeds")
    lam = source_lam(exp["dataset"], exp["source"])
    return [
        model_dir(exp["dataset"], exp["source"], lam, seed) for seed in exp["seeds"]
    ]


def ablation_models():
    """Fig. 5: one source for several lambdas."""
    exp = experiment("lambda_ablation")
    return [
        model_dir(exp["dataset"], exp["source"], lam, exp["seed"])
        for lam in exp["lams"]
    ]


def ablation_table_models():
    """Fig. 5's numbers: the ablation's models and, as lambda = 0, the vanilla model of the
    same seed where experiments.main trains one on that dataset."""
    exp, main = experiment("lambda_ablation"), experiment("main")
    vanilla = []
    if main and exp["dataset"] in main["tables"] and "vanilla" in main["sources"]:
        vanilla = [model_dir(exp["dataset"], "vanilla", 0, exp["seed"])]
    return vanilla + ablation_models()


def class_score_dir(dataset, source, grad_of, seed):
    """A source's model trained with the class score ``grad_of``: the main experiment's path
    for pag.grad_of's, results/<d>/<source>.<grad_of>/... for another."""
    lam = source_lam(dataset, source)
    if grad_of == config["pag"]["grad_of"]:
        return model_dir(dataset, source, lam, seed)
    return model_dir(dataset, f"{source}.{grad_of}", lam, seed)


def grad_of_dataset():
    return experiment("grad_of_ablation")["dataset"]


def grad_of_models():
    """experiments.grad_of_ablation: each source with each class score, for each seed."""
    exp = experiment("grad_of_ablation")
    if not exp:
        return []
    bad = [s for s in exp["sources"] if s not in REPRESENTATIVES]
    if bad:
        raise ConfigError(
            f"config: experiments.grad_of_ablation.sources {bad}: the ablation compares the "
            f"hand-made sources' class scores; choose among {REPRESENTATIVES}"
        )
    return [
        class_score_dir(exp["dataset"], s, g, seed)
        for s in exp["sources"]
        for g in exp["class_scores"]
        for seed in exp["seeds"]
    ]


def externals(dataset=None):
    """experiments.external (name -> spec), those on ``dataset`` when given."""
    return {
        name: spec
        for name, spec in (experiment("external") or {}).items()
        if dataset is None or spec["dataset"] == dataset
    }


def external_models(dataset):
    return [f"{results()}/{dataset}/external/{name}" for name in externals(dataset)]


def external_table_models(dataset):
    """The external table's models: the imported ones and ours of the sources they claim."""
    if not externals(dataset):
        raise ConfigError(
            f"{results()}/tables/external_{dataset} needs imported models: experiments.external has "
            f"none on {dataset!r}; add one (README: Using the authors' checkpoints and targets)"
        )
    return external_models(dataset) + external_comparison(dataset)


def external_spec(wildcards):
    spec = externals(wildcards.dataset).get(wildcards.name)
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


def external_comparison(dataset):
    """Our models that the external table sets beside the imported ones: the main experiment's
    model of each claimed source, where the config trains one on ``dataset``."""
    exp = experiment("main")
    if not exp or dataset not in exp["tables"]:
        return []
    claimed = {spec["source"] for spec in externals(dataset).values()}
    return [
        model_dir(dataset, s, source_lam(dataset, s), seed)
        for s in main_sources(dataset)
        if s in claimed
        for seed in exp["seeds"]
    ]


def external_records(dataset):
    """The AutoAttack records of the external table's models that are checked."""
    return checked_records(dataset, external_table_models(dataset))


def externals_json(dataset):
    return json.dumps(
        {
            name: {"claims": spec["source"], "lam": spec["lam"]}
            for name, spec in externals(dataset).items()
        }
    )


def dataset_models(dataset):
    """Every model that some experiment trains or imports on ``dataset`` (each once)."""
    models = toy_models() if dataset == "toy" else []
    if experiment("main") and dataset in experiment("main")["tables"]:
        models += main_models(dataset) + table_teachers(dataset)
    if experiment("seeds") and experiment("seeds")["dataset"] == dataset:
        models += seeds_models()
    if (
        experiment("lambda_ablation")
        and experiment("lambda_ablation")["dataset"] == dataset
    ):
        models += ablation_models()
    if (
        experiment("grad_of_ablation")
        and experiment("grad_of_ablation")["dataset"] == dataset
    ):
        models += grad_of_models()
    models += external_models(dataset)
    if not models:
        raise ConfigError(f"config: no experiment trains models on {dataset!r}")
    return list(dict.fromkeys(models))


def used_datasets():
    used = []
    if experiment("toy"):
        used.append("toy")
    if experiment("main"):
        used += list(experiment("main")["tables"])
    for name in ("seeds", "lambda_ablation", "grad_of_ablation"):
        if experiment(name):
            used.append(experiment(name)["dataset"])
    used += [spec["dataset"] for spec in externals().values()]
    return list(dict.fromkeys(used))


def pictures_config(dataset):
    pictures = dataset_config(dataset).get("pictures")
    if not pictures:
        raise ConfigError(
            f"config: datasets.{dataset}.pictures is needed for its PAG figure; add images: "
            "[...] and attack: {eps: ..., steps: ...}"
        )
    return pictures


def all_outputs():
    """Every table and figure that the config's experiments ask for."""
    for dataset in used_datasets():
        dataset_config(dataset)
    outs = [f"{results()}/{d}/metrics.csv" for d in used_datasets()]
    for d in used_datasets():
        outs += robustness_outputs(d) + pag_outputs(d)
    if experiment("toy"):
        if toy_pag_enabled():
            outs += [f"{results()}/tables/answer_toy.{ext}" for ext in ("md", "csv")]
        outs += [f"{results()}/tables/toy.{ext}" for ext in ("md", "csv")]
        outs += [f"{results()}/figures/fig3_toy.{ext}" for ext in ("png", "pdf")]
    if experiment("main"):
        for dataset, table in experiment("main")["tables"].items():
            pictures_config(dataset)
            outs += [
                f"{results()}/tables/{table}_{dataset}.{ext}" for ext in ("md", "csv")
            ]
            outs += [
                f"{results()}/tables/answer_{dataset}.{ext}" for ext in ("md", "csv")
            ]
            outs += [
                f"{results()}/figures/fig4_{dataset}.{ext}" for ext in ("png", "pdf")
            ]
            if configured_teachers(dataset):
                outs += [
                    f"{results()}/figures/fig1_{dataset}.{ext}"
                    for ext in ("png", "pdf")
                ]
        outs += [f"{results()}/tables/table3_lambda.{ext}" for ext in ("md", "csv")]
    if experiment("seeds"):
        outs += [f"{results()}/tables/table4_seeds.{ext}" for ext in ("md", "csv")]
    for dataset in dict.fromkeys(spec["dataset"] for spec in externals().values()):
        outs += [
            f"{results()}/tables/external_{dataset}.{ext}" for ext in ("md", "csv")
        ]
    if experiment("grad_of_ablation"):
        outs += [f"{results()}/tables/grad_of_ablation.{ext}" for ext in ("md", "csv")]
        outs += [
            f"{results()}/figures/grad_of_ablation.{ext}" for ext in ("png", "pdf")
        ]
    if experiment("lambda_ablation"):
        pictures_config(experiment("lambda_ablation")["dataset"])
        outs += [
            f"{results()}/tables/fig5_lambda_ablation.{ext}" for ext in ("md", "csv")
        ]
        outs += [
            f"{results()}/figures/fig5_lambda_ablation.{ext}" for ext in ("png", "pdf")
        ]
    return outs


def refuse_target(path):
    """A table or figure that this config does not make: the error lists those it makes."""
    shown = sorted(p for p in all_outputs() if p.endswith((".md", ".png")))
    raise ConfigError(
        f"{path}: not a table or figure of this config. It makes these (each table also as "
        ".csv and .html, each figure also as .pdf):\n"
        + "\n".join(f"  {p}" for p in shown)
    )


def files_of(models):
    return [f"{m}/model.pt" for m in models]


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
            "device": config["device"] if res(dataset)["gpu"] else "cpu",
            "config_threads": res(dataset)["threads"],
        }
    )


def res(dataset):
    """datasets.<dataset>.resources, the schema's defaults filled in."""
    return dataset_config(dataset)["resources"]


def threads_of(wildcards):
    return res(wildcards.dataset)["threads"]


def gpu_of(wildcards):
    return res(wildcards.dataset)["gpu"]


def mem_of(wildcards):
    return res(wildcards.dataset)["mem_mb"]


def runtime_of(kind):
    return lambda wildcards: res(wildcards.dataset)["runtime"][kind]


def ablation_dataset():
    return experiment("lambda_ablation")["dataset"]


def train_flags(wildcards):
    cfg = dataset_config(wildcards.dataset)
    train = dict(cfg["train"])
    if wildcards.source == FILE:  # stored targets are un-augmented: their own variant
        train["pag_variant"] = file_targets_config(wildcards.dataset)["pag_variant"]
    # a model of another class score than pag.grad_of (the grad_of ablation) is named
    # <source>.<grad_of> in its path and in every table
    grad_of = getattr(wildcards, "grad_of", None)
    return flags(
        {
            "arch": cfg["arch"],
            **train,
            "source": wildcards.source,
            "label": f"{wildcards.source}.{grad_of}" if grad_of else None,
            "lam": wildcards.lam,
            "seed": wildcards.seed,
            "grad_of": grad_of or config["pag"]["grad_of"],
            "pag_eps": config["pag"]["eps"],
            "strategy": config["pag"]["strategy"],
            "classes_per_step": config["pag"]["classes_per_step"],
        }
    )


def attack_flags(dataset):
    attacks = dataset_config(dataset)["eval"]["attacks"]
    return " ".join(f"--attack {norm}:{pgd_spec(a)}" for norm, a in attacks.items())


def data_flags(wildcards):
    data = dataset_config(wildcards.dataset)["data"]
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


def pictures_flags(dataset):
    p = pictures_config(dataset)
    a = p["attack"]
    spec = f"l2:{a['eps']}:{a['steps']}:{a.get('step_size') or 'auto'}:nostart"
    return f"{flags({'images': p['images']})} --attack {spec}"


def lams_json():
    """Table 3: the lambda of every source on every dataset of experiments.main."""
    return json.dumps(
        {d: dataset_config(d)["lam"] for d in experiment("main")["tables"]}
    )


# the targets settings that each representative source depends on (only these reach its job, so
# that changing one source's setting rebuilds that source alone)
TARGETS_KEYS = {s: list(registry.SOURCES[s].targets_keys) for s in REPRESENTATIVES}


def targets_flags(wildcards):
    t = dataset_config(wildcards.dataset)["targets"]
    if wildcards.source == FILE:
        return flags({"labels": file_targets_config(wildcards.dataset)["labels"]})
    return flags({k: t[k] for k in TARGETS_KEYS[wildcards.source]})


def file_targets_config(dataset):
    """datasets.<dataset>.targets.file, which the file source needs."""
    spec = dataset_config(dataset)["targets"].get("file")
    if not spec:
        raise ConfigError(
            f"config: the file source on {dataset!r} needs datasets.{dataset}.targets.file "
            "{data: <targets file>, labels: <labels file>}"
        )
    return spec


def targets_inputs(wildcards):
    """The prepared data, and for the file source the file (and labels) it matches to them."""
    inputs = {"data": f"{results()}/{wildcards.dataset}/data.pt"}
    if wildcards.source == FILE:
        spec = file_targets_config(wildcards.dataset)
        inputs["file"] = spec["data"]
        if spec["labels"]:
            inputs["labels"] = spec["labels"]
    return inputs


def file_flag(wildcards, input):
    return f"--file {input.file}" if "file" in input.keys() else ""


def train_inputs(wildcards):
    inputs = {"data": f"{results()}/{wildcards.dataset}/data.pt"}
    if wildcards.source in REPRESENTATIVES or wildcards.source == FILE:
        inputs["targets"] = (
            f"{results()}/{wildcards.dataset}/targets/{wildcards.source}.pt"
        )
    if wildcards.source == FILE:  # read again at training time (its digest checked)
        inputs["file"] = file_targets_config(wildcards.dataset)["data"]
    if wildcards.source in RIGD:
        inputs["teacher"] = (
            f"{teacher_dir(wildcards.dataset, RIGD[wildcards.source])}/model.pt"
        )
    return inputs


def source_flags(wildcards, input):
    """--targets or --teacher: the precomputed source a student needs, if any."""
    if "targets" in input.keys():
        return f"--targets {input.targets}"
    if "teacher" in input.keys():
        return f"--teacher {input.teacher}"
    return ""


def imports_teacher(wildcards):
    """The teacher at teachers.seed comes from its checkpoint where one is given; the PAG
    references (pag_scores.reference_seed) are always trained with the teachers' recipe.
    """
    t, teachers = teacher_config(wildcards.dataset, wildcards.norm)
    seeds = [teachers["seed"], *reference_seed_list(wildcards.dataset)]
    if int(wildcards.seed) not in seeds:
        raise ConfigError(
            f"the {wildcards.norm} teacher of {wildcards.dataset} has seed {teachers['seed']} "
            f"in the config (and PAG references {seeds[1:]}), not {wildcards.seed}"
        )
    return bool(t.get("checkpoint")) and int(wildcards.seed) == teachers["seed"]


def teacher_inputs(wildcards):
    inputs = {"data": f"{results()}/{wildcards.dataset}/data.pt"}
    t, _ = teacher_config(wildcards.dataset, wildcards.norm)
    if imports_teacher(wildcards):
        inputs["checkpoint"] = t["checkpoint"]["path"]
    return inputs


def teacher_flags(wildcards):
    t, teachers = teacher_config(wildcards.dataset, wildcards.norm)
    if imports_teacher(wildcards):
        c = t["checkpoint"]
        return flags(
            {"import_arch": c["arch"], "import_mean": c["mean"], "import_std": c["std"]}
        )
    cfg = dataset_config(wildcards.dataset)
    # Madry adversarial training takes its PGD examples of the augmented batch: no PAG variant
    train = {k: v for k, v in cfg["train"].items() if k != "pag_variant"}
    return flags(
        {
            "arch": cfg["arch"],
            **train,
            "epochs": teachers["epochs"],
            "eps": t["attack"]["eps"],
            "steps": t["attack"]["steps"],
            "step_size": t["attack"]["step_size"],
        }
    )


def checkpoint_flag(wildcards, input):
    return (
        f"--import-state-dict {input.checkpoint}"
        if "checkpoint" in input.keys()
        else ""
    )


def robust_figure_models(dataset):
    """Fig. 1: the vanilla model beside the robust teachers."""
    exp = experiment("main")
    if not exp or "vanilla" not in exp["sources"]:
        raise ConfigError("Fig. 1 needs experiments.main with the vanilla source")
    return [
        model_dir(dataset, "vanilla", 0, exp["seeds"][0]),
        *configured_teachers(dataset),
    ]


def eval_flags(wildcards):
    e = dataset_config(wildcards.dataset)["eval"]
    options = {
        "batch_size": e.get("batch_size", 500),
        "max_images": e.get("max_images", 0),
        "seed": e.get("seed", 0),
    }
    return f"{flags(options)} {attack_flags(wildcards.dataset)}"


# --- Trusting the numbers: AutoAttack, the gradient-masking checks, accuracy against eps --------


def autoattack_config(dataset):
    """datasets.<dataset>.eval.autoattack (None: no AutoAttack and no checks there)."""
    return dataset_config(dataset)["eval"].get("autoattack")


def experiment_models(name, dataset):
    """The models of one experiment on ``dataset`` (none if it runs elsewhere)."""
    exp = experiment(name)
    if name == "main":
        if exp and dataset in exp["tables"]:
            return main_models(dataset) + table_teachers(dataset)
        return []
    if exp and exp["dataset"] == dataset:
        return {
            "seeds": seeds_models,
            "lambda_ablation": ablation_models,
            "grad_of_ablation": grad_of_models,
        }[name]()
    return []


def checked_models(dataset):
    """The models of ``dataset`` that get AutoAttack and the gradient-masking checks."""
    aa = autoattack_config(dataset)
    if not aa:
        return []
    models = [m for name in aa["experiments"] for m in experiment_models(name, dataset)]
    if not aa["teachers"]:
        models = [m for m in models if m not in configured_teachers(dataset)]
    if (
        aa["seeds"] is not None
    ):  # e.g. one seed of each source, where AutoAttack is costly
        models = [m for m in models if int(m.rsplit("seed", 1)[1]) in aa["seeds"]]
    # imported models get the whole evaluation: that is what they are imported for
    return list(dict.fromkeys(models + external_models(dataset)))


def eval_norms(dataset):
    return list(dataset_config(dataset)["eval"]["attacks"])


def aa_norms(dataset):
    """The threat models that get AutoAttack and the checks: eval.autoattack.norms, or all."""
    aa = autoattack_config(dataset) or {}
    norms = aa.get("norms") or eval_norms(dataset)
    unknown = [n for n in norms if n not in eval_norms(dataset)]
    if unknown:
        raise ConfigError(
            f"config: datasets.{dataset}.eval.autoattack.norms {unknown} have no PGD attack: add "
            f"them to datasets.{dataset}.eval.attacks or drop them"
        )
    return norms


def model_metrics(dataset, models):
    """Every tidy CSV of ``models``: clean and PGD, and where checked, AutoAttack per norm and
    the checks' PGD sweep."""
    checked = set(checked_models(dataset))
    files = []
    for m in models:
        files.append(f"{m}/metrics.csv")
        if m in checked:
            files += [f"{m}/autoattack_{n}.csv" for n in aa_norms(dataset)]
            if sweeps(dataset):
                files.append(f"{m}/sweep.csv")
    return files


def sweeps(dataset):
    """Whether the checked models get the checks' PGD sweep (eval.checks.sweep)."""
    return dataset_config(dataset)["eval"]["checks"]["sweep"]


def autoattack_records(dataset):
    return [
        f"{m}/autoattack_{n}.json"
        for m in checked_models(dataset)
        for n in aa_norms(dataset)
    ]


def pgd_spec(attack, eps=None, steps=None):
    """norm:eps:steps:step_size|auto[:nostart] for the steps' --attack style options."""
    eps = attack["eps"] if eps is None else eps
    steps = attack["steps"] if steps is None else steps
    spec = f"{eps}:{steps}:{attack['step_size'] if attack.get('step_size') else 'auto'}"
    return spec + ("" if attack.get("random_start", True) else ":nostart")


def autoattack_flags(wildcards):
    e = dataset_config(wildcards.dataset)["eval"]
    aa = autoattack_config(wildcards.dataset)
    if not aa:
        raise ConfigError(
            f"AutoAttack of a {wildcards.dataset} model asked for, but "
            f"datasets.{wildcards.dataset}.eval.autoattack is not set"
        )
    attack = e["attacks"][wildcards.norm]
    options = {
        "eps": attack["eps"],
        "version": aa["version"],
        "aa_seed": aa["seed"],
        "batch_size": aa["batch_size"],
        "max_images": aa["images"],
        "seed": e["seed"],
    }
    return f"{flags(options)} --pgd {wildcards.norm}:{pgd_spec(attack)}"


def sweep_flags(wildcards):
    e = dataset_config(wildcards.dataset)["eval"]
    aa, checks = autoattack_config(wildcards.dataset), e["checks"]
    options = {
        "batch_size": e["batch_size"],
        "max_images": aa["images"],
        "seed": e["seed"],
    }
    specs = []
    for norm in aa_norms(wildcards.dataset):
        attack = e["attacks"][norm]
        for eps in checks["curves"].get(norm, []):
            curve = {
                k: v for k, v in attack.items() if k != "step_size"
            }  # 2 eps / steps
            specs.append(f"--curve {norm}:{pgd_spec(curve, eps=eps)}")
        # the strong PGD: many more steps, each as long as the table's PGD's (2 eps / its steps
        # unless it sets one), and restarts
        strong = dict(
            attack,
            step_size=attack.get("step_size") or 2 * attack["eps"] / attack["steps"],
        )
        specs.append(f"--strong {norm}:{pgd_spec(strong, steps=checks['steps'])}")
    return f"{flags(options)} --restarts {checks['restarts']} {' '.join(specs)}"


def checks_flags(dataset):
    c = dataset_config(dataset)["eval"]["checks"]
    return flags(
        {"tolerance": c["tolerance"], "max_gap": c["max_gap"], "zero_at": c["zero_at"]}
    )


def curve_models(dataset):
    """The robustness curves: the models of the dataset's main table (and its teachers), and
    the imported ones."""
    models = experiment_models("main", dataset) + external_models(dataset)
    return [m for m in models if m in checked_models(dataset)]


def robustness_outputs(dataset):
    if not autoattack_config(dataset):
        return []
    outs = [f"{results()}/tables/masking_{dataset}.{ext}" for ext in ("md", "csv")]
    if (
        sweeps(dataset)
        and curve_models(dataset)
        and any(dataset_config(dataset)["eval"]["checks"]["curves"].values())
    ):
        outs += [
            f"{results()}/figures/robustness_curves_{dataset}.{ext}"
            for ext in ("png", "pdf")
        ]
    return outs


def checked_records(dataset, models):
    """The AutoAttack records of those of ``models`` that are checked: a table computes their
    gradient-masking checks from these and its metrics, to footnote the models that fail one,
    so that it waits for no other model (the masking table waits for every checked one).
    """
    models = set(models)
    return [
        f"{m}/autoattack_{n}.json"
        for m in checked_models(dataset)
        if m in models
        for n in aa_norms(dataset)
    ]


def checks_args(dataset, records):
    """The table step's options for ``records`` (none: no footnotes)."""
    if not records:
        return ""
    return f"--records {' '.join(records)} {checks_flags(dataset)}"


# --- Measuring PAG: scores against independent robust references and an autoencoder ----------


def pag_scores_config(dataset):
    """datasets.<dataset>.pag_scores (None: no PAG scores there); the attack defaults to the
    pictures' one (Fig. 4). Needs robust references (teachers) or an autoencoder, and a
    reference seed that no scored model uses."""
    cfg = dataset_config(dataset).get("pag_scores")
    if not cfg:
        return cfg
    if not configured_teachers(dataset) and not autoencoder_config(dataset):
        raise ConfigError(
            f"config: datasets.{dataset}.pag_scores needs robust references or an autoencoder: "
            f"add datasets.{dataset}.teachers (their recipe trains the references) and/or "
            f"datasets.{dataset}.autoencoder"
        )
    check_reference_seed(dataset)
    return cfg


def reference_seed_list(dataset):
    cfg = dataset_config(dataset).get("pag_scores")
    return [cfg["reference_seed"]] if cfg and configured_teachers(dataset) else []


def check_reference_seed(dataset):
    """The references start from an initialisation no scored model shares: refused otherwise."""
    seeds = reference_seed_list(dataset)
    if not seeds:
        return
    (seed,) = seeds
    teachers = dataset_config(dataset)["teachers"]
    scored = [
        m for m in scored_model_dirs(dataset) if m.rsplit("seed", 1)[-1] == str(seed)
    ]
    if seed == teachers["seed"]:
        scored.append(f"datasets.{dataset}.teachers.seed")
    if scored:
        raise ConfigError(
            f"config: datasets.{dataset}.pag_scores.reference_seed {seed} is also the seed of "
            f"{', '.join(scored)}: a PAG reference must be independent of what it scores (the "
            "same seed gives the same initial weights): choose a reference_seed that no scored "
            "model uses."
        )


def reference_dirs(dataset):
    """The PAG references: one adversarially trained model per threat model of the teachers'
    recipe, with the reference seed."""
    return [
        model_dir(dataset, f"teacher_{n}", 0, seed)
        for seed in reference_seed_list(dataset)
        for n in ("linf", "l2")
        if n in dataset_config(dataset)["teachers"]
    ]


def pag_references(dataset):
    return files_of(reference_dirs(dataset))


def scored_model_dirs(dataset):
    """Every model of the dataset, and the teachers at their seed: robust models of the
    references' recipe with another seed, the realistic ceiling."""
    if dataset == "toy":
        return toy_models() + configured_teachers("toy")
    return list(dict.fromkeys(dataset_models(dataset) + configured_teachers(dataset)))


def scored_models(dataset):
    """Every model of the dataset gets a PAG score (when pag_scores is configured)."""
    return scored_model_dirs(dataset) if pag_scores_config(dataset) else []


def autoencoder_config(dataset):
    """datasets.<dataset>.autoencoder (None: no tangent-space scores)."""
    return dataset_config(dataset).get("autoencoder")


def autoencoder_file(dataset):
    ae = autoencoder_config(dataset)
    return f"{results()}/{dataset}/autoencoder/seed{ae['seed']}/model.pt" if ae else []


def autoencoder_flags(wildcards):
    ae = autoencoder_config(wildcards.dataset)
    if not ae or int(wildcards.seed) != ae["seed"]:
        raise ConfigError(
            f"{results()}/{wildcards.dataset}/autoencoder/seed{wildcards.seed} is not a model of this "
            f"config: datasets.{wildcards.dataset}.autoencoder "
            + (f"has seed {ae['seed']}" if ae else "is not set")
        )
    return flags(
        {k: ae[k] for k in ("arch", "latent", "epochs", "batch_size", "lr", "seed")}
    )


def pag_scores_flags(dataset):
    cfg = pag_scores_config(dataset)
    a = cfg.get("attack") or pictures_config(dataset)["attack"]
    spec = f"l2:{a['eps']}:{a['steps']}:{a.get('step_size') or 'auto'}:nostart"
    options = {
        "images": cfg["images"],
        "batch_size": cfg["batch_size"],
        "seed": cfg["seed"],
    }
    ae = autoencoder_config(dataset)
    if ae and ae.get("noise"):
        options["noise"] = ae["noise"]
    return f"{flags(options)} --attack {spec}"


def pag_inputs(wildcards):
    """The data, the references and the autoencoder a PAG score job reads."""
    inputs = {"data": f"{results()}/{wildcards.dataset}/data.pt"}
    refs = pag_references(wildcards.dataset)
    if refs:
        inputs["references"] = refs
    if autoencoder_config(wildcards.dataset):
        inputs["autoencoder"] = autoencoder_file(wildcards.dataset)
    return inputs


def pag_input_flags(wildcards, input):
    keys = input.keys()
    out = f"--references {' '.join(input.references)}" if "references" in keys else ""
    if "autoencoder" in keys:
        out += f" --autoencoder {input.autoencoder}"
    return out


def toy_pag_models():
    """The toy's PAG table: the toy models and the toy teachers at their seed (the realistic
    ceiling), scored against the toy's reference."""
    return scored_model_dirs("toy") if toy_pag_enabled() else []


def toy_pag_enabled():
    enabled = bool(
        experiment("toy")
        and dataset_config("toy").get("pag_scores")
        and configured_teachers("toy")
    )
    if enabled:
        check_reference_seed("toy")
    return enabled


def toy_reference(wildcards=None):
    refs = [m for m in reference_dirs("toy") if "/teacher_l2/" in m]
    if not refs:
        raise ConfigError(
            "config: the toy's PAG table needs an L2 reference: add datasets.toy.teachers.l2"
        )
    return f"{refs[0]}/model.pt"


def pag_outputs(dataset):
    if dataset == "toy":
        if not toy_pag_enabled():
            return []
        return [f"{results()}/tables/toy_pag.{ext}" for ext in ("md", "csv")]
    if not pag_scores_config(dataset):
        return []
    outs = [f"{results()}/{dataset}/pag_scores.csv"]
    outs += [f"{results()}/tables/pag_scores_{dataset}.{ext}" for ext in ("md", "csv")]
    if checked_models(dataset):
        outs += [
            f"{results()}/figures/pag_vs_robustness_{dataset}.{ext}"
            for ext in ("png", "pdf")
        ]
    exp = experiment("lambda_ablation")
    if exp and exp["dataset"] == dataset:
        outs += [f"{results()}/tables/fig5_pag_scores.{ext}" for ext in ("md", "csv")]
        outs += [f"{results()}/figures/fig5_pag_scores.{ext}" for ext in ("png", "pdf")]
    return outs

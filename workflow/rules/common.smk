# Config -> grid: which models exist, where their files live, and the arguments of each step.
# Paths encode the grid: results/{dataset}/{source}/lam{lam}/seed{seed}/...


REPRESENTATIVES = ["one_image", "class_mean", "nearest_neighbor"]
SOURCES = ["vanilla", *REPRESENTATIVES]


wildcard_constraints:
    dataset=r"[a-z][a-z0-9_]*",
    source="|".join(SOURCES),
    lam=r"[0-9]+(\.[0-9]+)?",
    seed=r"[0-9]+",


class ConfigError(Exception):
    pass


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
    return f"results/{dataset}/{source}/lam{lam_str(lam)}/seed{seed}"


def toy_models():
    exp = config["experiments"].get("toy")
    if not exp:
        return []
    pag_lam = source_lam("toy", exp["source"])
    return [
        model_dir("toy", src, lam, seed)
        for src, lam in (("vanilla", 0), (exp["source"], pag_lam))
        for seed in exp["seeds"]
    ]


def all_outputs():
    outs = []
    if config["experiments"].get("toy"):
        dataset_config("toy")
        outs += [
            "results/tables/toy.md",
            "results/tables/toy.csv",
            "results/figures/fig3_toy.png",
            "results/figures/fig3_toy.pdf",
        ]
    return outs


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


def common_flags():
    return flags({"device": config["device"]})


def train_flags(wildcards):
    cfg = dataset_config(wildcards.dataset)
    return flags(
        {
            "arch": cfg["arch"],
            **cfg["train"],
            "source": wildcards.source,
            "lam": wildcards.lam,
            "seed": wildcards.seed,
            "grad_of": config["pag"]["grad_of"],
            "pag_eps": config["pag"]["eps"],
            "strategy": config["pag"]["strategy"],
        }
    )


def attack_flags(dataset):
    specs = []
    for norm, a in dataset_config(dataset)["eval"]["attacks"].items():
        spec = f"{norm}:{a['eps']}:{a['steps']}"
        spec += f":{a['step_size']}" if a.get("step_size") else ":auto"
        spec += "" if a.get("random_start", True) else ":nostart"
        specs.append(f"--attack {spec}")
    return " ".join(specs)


def data_flags(wildcards):
    data = dataset_config(wildcards.dataset)["data"]
    if wildcards.dataset == "toy":
        return flags(
            {
                "toy_centers": json.dumps(data["centers"]),
                "toy_per_mode": data["per_mode"],
                "toy_test": data["test"],
                "seed": data["seed"],
            }
        )
    raise ConfigError(f"no data preparation for dataset {wildcards.dataset!r}")


def targets_flags(wildcards):
    t = dataset_config(wildcards.dataset)["targets"]
    return flags(
        {
            "seed": t["seed"],
            "nn_sample_size": t.get("nn_sample_size", 100),
            "class_mean_rescale": t.get("class_mean_rescale", True),
        }
    )


def train_inputs(wildcards):
    inputs = {"data": f"results/{wildcards.dataset}/data.pt"}
    if wildcards.source in REPRESENTATIVES:
        inputs["targets"] = f"results/{wildcards.dataset}/targets/{wildcards.source}.pt"
    return inputs


def targets_flag(wildcards, input):
    return f"--targets {input.targets}" if "targets" in input.keys() else ""


def eval_flags(wildcards):
    e = dataset_config(wildcards.dataset)["eval"]
    options = {
        "batch_size": e.get("batch_size", 500),
        "max_images": e.get("max_images", 0),
        "seed": e.get("seed", 0),
    }
    return f"{flags(options)} {attack_flags(wildcards.dataset)}"


def dataset_models(dataset):
    if dataset == "toy":
        return toy_models()
    raise ConfigError(f"no experiment uses dataset {dataset!r}")

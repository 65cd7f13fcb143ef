# The report's provenance page: the config that produced the run, the library versions, and the
# run's wall time (from its jobs' benchmark files). It waits for every other output of the run.

from snakemake import __version__ as SNAKEMAKE_VERSION


rule provenance:
    input:
        outputs=grid.all_outputs(),
        envs=["envs/pytorch.yaml", "envs/report.yaml"],
    output:
        report(
            results("provenance.html"),
            caption="../report/provenance.rst",
            category="Provenance",
            labels={"Result": "Config, library versions and wall time"},
        ),
    log:
        results("logs/provenance.log"),
    localrule: True
    conda:
        "../../envs/pytorch.yaml"
    params:
        config=lambda w: shlex.quote(json.dumps(config)),
        configfiles=lambda w: [shlex.quote(str(f)) for f in workflow.configfiles],
        # the folders of this config's benchmark files and model.json files
        folders=lambda w: sorted(
            {results("logs")}
            | {
                folder
                for d in grid.used_datasets()
                for folder in (
                    f"{results()}/{d}/logs",
                    *grid.dataset_models(d),
                    *grid.configured_teachers(d),
                    *grid.pag_scores.reference_dirs(d),
                    *(
                        [
                            f"{results()}/{d}/autoencoder/seed{grid.pag_scores.autoencoder_config(d)['seed']}"
                        ]
                        if grid.pag_scores.autoencoder_config(d)
                        else []
                    ),
                )
            }
        ),
        snakemake=SNAKEMAKE_VERSION,
    shell:
        "python -m pagrob.steps.provenance --config-json {params.config} "
        "--configfiles {params.configfiles} --envs {input.envs} "
        "--snakemake-version {params.snakemake} --job-folders {params.folders} "
        "--outputs {input.outputs} --out-html {output} > {log} 2>&1"

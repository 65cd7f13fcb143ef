# Published checkpoints (experiments.external, e.g. the authors' ResNet-18s): each is imported
# once into our model-file format, results/{dataset}/external/{name}/model.pt, and from there the
# rules that evaluate our models (evaluate, autoattack, sweep, pag_scores: their {model} is
# either kind) evaluate it the same way. The table sets each beside our model of the source it
# claims and the paper's row, with the masking checks of these models alone (computed in the
# table step), so that it needs no other model of the grid.


rule import_external:
    input:
        data=results("{dataset}/data.pt"),
        checkpoint=lambda w: external_spec(w)["path"],
    output:
        model=results("{dataset}/external/{name}/model.pt"),
        info=results("{dataset}/external/{name}/model.json"),
    log:
        results("{dataset}/external/{name}/import.log"),
    localrule: True
    conda:
        "../../envs/pytorch.yaml"
    params:
        args=import_flags,
    shell:
        "python -m pagrob.steps.import_model --data {input.data} --checkpoint {input.checkpoint} "
        "{params.args} --out {output.model} > {log} 2>&1"


rule external_table:
    input:
        metrics=lambda w: grid.model_metrics(
            w.dataset, grid.external.table_models(w.dataset)
        ),
        records=lambda w: grid.external.records(w.dataset),
        paper="workflow/resources/paper_numbers.csv",
    output:
        md=results("tables/external_{dataset}.md"),
        csv=results("tables/external_{dataset}.csv"),
        html=report(
            results("tables/external_{dataset}.html"),
            caption="../report/external_table.rst",
            category="External models",
            subcategory="{dataset}",
            labels={"Result": "Imported models beside ours and the paper's"},
        ),
    log:
        results("logs/external_{dataset}.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        externals=lambda w: shlex.quote(externals_json(w.dataset)),
        checks=lambda w, input: checks_args(w.dataset, input.records),
    shell:
        "python -m pagrob.steps.table external --dataset {wildcards.dataset} "
        "--externals {params.externals} --metrics {input.metrics} --paper {input.paper} "
        "{params.checks} --out-md {output.md} --out-csv {output.csv} "
        "--out-html {output.html} > {log} 2>&1"

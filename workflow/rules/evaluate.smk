# Clean accuracy and PGD robust accuracy of every model, one tidy CSV per model; where the config
# asks for it (eval.autoattack), AutoAttack per threat model and the PGD sweeps of the
# gradient-masking checks, each its own job; all gathered per dataset into
# results/{dataset}/metrics.csv.


rule evaluate:
    input:
        data=results("{dataset}/data.pt"),
        model=results("{dataset}/{model}/model.pt"),
    output:
        results("{dataset}/{model}/metrics.csv"),
    log:
        results("{dataset}/{model}/evaluate.log"),
    benchmark:
        results("{dataset}/{model}/evaluate.benchmark.tsv")
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("evaluate"),
    params:
        settings=eval_settings,
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.evaluate --data {input.data} --model {input.model} {params.settings} "
        "{params.common} --threads {threads} --out {output} > {log} 2>&1"


# Resumable: a killed run continues from its state file (autoattack_{norm}.state.json) when rerun.
rule autoattack:
    input:
        data=results("{dataset}/data.pt"),
        model=results("{dataset}/{model}/model.pt"),
    output:
        csv=results("{dataset}/{model}/autoattack_{norm}.csv"),
        record=results("{dataset}/{model}/autoattack_{norm}.json"),
    log:
        results("{dataset}/{model}/autoattack_{norm}.log"),
    benchmark:
        results("{dataset}/{model}/autoattack_{norm}.benchmark.tsv")
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("autoattack"),
    params:
        settings=autoattack_settings,
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.autoattack --data {input.data} --model {input.model} "
        "{params.settings} {params.common} --threads {threads} "
        "--out {output.csv} --out-json {output.record} >> {log} 2>&1"


rule sweep:
    input:
        data=results("{dataset}/data.pt"),
        model=results("{dataset}/{model}/model.pt"),
    output:
        results("{dataset}/{model}/sweep.csv"),
    log:
        results("{dataset}/{model}/sweep.log"),
    benchmark:
        results("{dataset}/{model}/sweep.benchmark.tsv")
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("sweep"),
    params:
        settings=sweep_settings,
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.sweep --data {input.data} --model {input.model} {params.settings} "
        "{params.common} --threads {threads} --out {output} > {log} 2>&1"


rule collect_metrics:
    input:
        lambda w: grid.model_metrics(w.dataset, grid.dataset_models(w.dataset)),
    output:
        results("{dataset}/metrics.csv"),
    log:
        results("{dataset}/logs/collect_metrics.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.collect {input} --out {output} > {log} 2>&1"

# Clean accuracy and PGD robust accuracy of every model, one tidy CSV per model, gathered per
# dataset into results/{dataset}/metrics.csv.


rule evaluate:
    input:
        data="results/{dataset}/data.pt",
        model="results/{dataset}/{source}/lam{lam}/seed{seed}/model.pt",
    output:
        "results/{dataset}/{source}/lam{lam}/seed{seed}/metrics.csv",
    log:
        "results/{dataset}/{source}/lam{lam}/seed{seed}/evaluate.log",
    benchmark:
        "results/{dataset}/{source}/lam{lam}/seed{seed}/evaluate.benchmark.tsv"
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("evaluate"),
    params:
        args=eval_flags,
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.evaluate --data {input.data} --model {input.model} {params.args} "
        "{params.common} --threads {threads} --out {output} > {log} 2>&1"


rule collect_metrics:
    input:
        lambda w: metrics_of(dataset_models(w.dataset)),
    output:
        "results/{dataset}/metrics.csv",
    log:
        "results/{dataset}/logs/collect_metrics.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.collect {input} --out {output} > {log} 2>&1"

# Datasets: each prepared once into results/{dataset}/data.pt (train and test tensors).


rule prepare_data:
    output:
        results("{dataset}/data.pt"),
    log:
        results("{dataset}/logs/prepare_data.log"),
    benchmark:
        results("{dataset}/logs/prepare_data.benchmark.tsv")
    localrule: True
    conda:
        "../../envs/pytorch.yaml"
    resources:
        mem_mb=mem_of,
        runtime=runtime_of("data"),
    params:
        args=data_flags,
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.prepare_data --dataset {wildcards.dataset} {params.args} "
        "{params.common} --out {output} > {log} 2>&1"

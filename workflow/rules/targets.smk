# Representative gradient sources (Section 4.2), computed once per dataset and shared by every
# lambda and seed: results/{dataset}/targets/{source}.pt


rule make_targets:
    input:
        "results/{dataset}/data.pt",
    output:
        "results/{dataset}/targets/{source}.pt",
    log:
        "results/{dataset}/logs/targets_{source}.log",
    benchmark:
        "results/{dataset}/logs/targets_{source}.benchmark.tsv"
    wildcard_constraints:
        source="|".join(REPRESENTATIVES),
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        mem_mb=mem_of,
        runtime=runtime_of("targets"),
    params:
        args=targets_flags,
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.make_targets --data {input} --source {wildcards.source} "
        "{params.args} {params.common} --threads {threads} --out {output} > {log} 2>&1"

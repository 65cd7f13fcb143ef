# One training job per (dataset, source, lambda, seed); vanilla is source "vanilla", lambda 0.
# The step checkpoints every epoch and resumes when rerun, so its log is appended to.


rule train:
    input:
        unpack(train_inputs),
    output:
        "results/{dataset}/{source}/lam{lam}/seed{seed}/model.pt",
    log:
        "results/{dataset}/{source}/lam{lam}/seed{seed}/train.log",
    benchmark:
        "results/{dataset}/{source}/lam{lam}/seed{seed}/train.benchmark.tsv"
    conda:
        "../../envs/pytorch.yaml"
    threads: config["threads"]
    params:
        args=train_flags,
        targets=targets_flag,
        common=common_flags(),
    shell:
        "python -m pagrob.steps.train --data {input.data} {params.targets} {params.args} "
        "{params.common} --threads {threads} --out {output} >> {log} 2>&1"

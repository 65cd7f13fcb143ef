# One training job per (dataset, source, lambda, seed); vanilla is source "vanilla", lambda 0.
# The step checkpoints every epoch and resumes when rerun, so its log is appended to.


rule train:
    input:
        unpack(train_inputs),
    output:
        model=results("{dataset}/{source}/lam{lam}/seed{seed}/model.pt"),
        info=results("{dataset}/{source}/lam{lam}/seed{seed}/model.json"),
    log:
        results("{dataset}/{source}/lam{lam}/seed{seed}/train.log"),
    benchmark:
        results("{dataset}/{source}/lam{lam}/seed{seed}/train.benchmark.tsv")
    wildcard_constraints:
        source="|".join(SOURCES),
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("train"),
    params:
        args=train_flags,
        settings=train_settings,
        source=source_flags,
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.train --data {input.data} {params.source} {params.args} "
        "{params.settings} "
        "{params.common} --threads {threads} --out {output.model} >> {log} 2>&1"


rule teacher:
    input:
        unpack(teacher_inputs),
    output:
        model=results("{dataset}/teacher_{norm}/lam0/seed{seed}/model.pt"),
        info=results("{dataset}/teacher_{norm}/lam0/seed{seed}/model.json"),
    log:
        results("{dataset}/teacher_{norm}/lam0/seed{seed}/train.log"),
    benchmark:
        results("{dataset}/teacher_{norm}/lam0/seed{seed}/train.benchmark.tsv")
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("teacher"),
    params:
        args=teacher_flags,
        checkpoint=checkpoint_flag,
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.teacher --data {input.data} --norm {wildcards.norm} "
        "--seed {wildcards.seed} {params.checkpoint} {params.args} {params.common} "
        "--threads {threads} --out {output.model} >> {log} 2>&1"


# The grad_of ablation's models trained with another class score than pag.grad_of:
# results/{dataset}/{source}.{grad_of}/..., named <source>.<grad_of> in every table.
use rule train as train_class_score with:
    output:
        model=results("{dataset}/{source}.{grad_of}/lam{lam}/seed{seed}/model.pt"),
        info=results("{dataset}/{source}.{grad_of}/lam{lam}/seed{seed}/model.json"),
    log:
        results("{dataset}/{source}.{grad_of}/lam{lam}/seed{seed}/train.log"),
    benchmark:
        results("{dataset}/{source}.{grad_of}/lam{lam}/seed{seed}/train.benchmark.tsv")


# The sigma sweep's models (experiments.sigma_sweep): a score-based source trained with the
# targets of another noise level, results/{dataset}/{source}.sigma{sigma}/...
use rule train as train_sigma with:
    output:
        model=results("{dataset}/{source}.sigma{sigma}/lam{lam}/seed{seed}/model.pt"),
        info=results("{dataset}/{source}.sigma{sigma}/lam{lam}/seed{seed}/model.json"),
    log:
        results("{dataset}/{source}.sigma{sigma}/lam{lam}/seed{seed}/train.log"),
    benchmark:
        results(
            "{dataset}/{source}.sigma{sigma}/lam{lam}/seed{seed}/train.benchmark.tsv"
        )
    wildcard_constraints:
        source="|".join(SCORE),

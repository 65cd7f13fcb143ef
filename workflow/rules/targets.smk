# Representative gradient sources (Section 4.2). A drawn source (one_image, nearest_neighbor,
# clustered_nn: a random image, sample or k-means start) is drawn once per draw seed, the
# training seed of the models that use it (datasets.<d>.targets.per_seed; else targets.seed):
# results/{dataset}/targets/{source}/seed{seed}.pt. The others are computed once per dataset and
# shared by every lambda and seed: results/{dataset}/targets/{source}.pt. For the file source
# (targets someone else computed) that is the match of the file's rows to our training images,
# checked here, before any training. The score-based sources (score_based, and its control
# score_shuffled) are a trained denoiser's residual at datasets.<d>.score_based.sigma, for every
# training image and class: results/{dataset}/targets/{source}.pt, from the denoiser that rule
# denoiser trains once per dataset.


rule denoiser:
    input:
        data=results("{dataset}/data.pt"),
    output:
        model=results("{dataset}/denoiser/seed{seed}/model.pt"),
        info=results("{dataset}/denoiser/seed{seed}/model.json"),
    log:
        results("{dataset}/denoiser/seed{seed}/train.log"),
    benchmark:
        results("{dataset}/denoiser/seed{seed}/train.benchmark.tsv")
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("train"),
    params:
        settings=denoiser_settings,
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.denoiser --data {input.data} {params.settings} {params.common} "
        "--threads {threads} --out {output.model} > {log} 2>&1"


rule make_targets:
    input:
        unpack(targets_inputs),
    output:
        results("{dataset}/targets/{source}.pt"),
    log:
        results("{dataset}/logs/targets_{source}.log"),
    benchmark:
        results("{dataset}/logs/targets_{source}.benchmark.tsv")
    wildcard_constraints:
        source="|".join([s for s in STORED if s not in DRAWN]),
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        mem_mb=mem_of,
        runtime=runtime_of("targets"),
    params:
        args=targets_flags,
        file=file_flag,
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.make_targets --data {input.data} --source {wildcards.source} "
        "{params.file} {params.args} {params.common} --threads {threads} --out {output} > {log} 2>&1"


# The sigma sweep's targets: a score-based source at each of its noise levels.
use rule make_targets as make_score_targets with:
    output:
        results("{dataset}/targets/{source}/sigma{sigma}.pt"),
    log:
        results("{dataset}/logs/targets_{source}_sigma{sigma}.log"),
    benchmark:
        results("{dataset}/logs/targets_{source}_sigma{sigma}.benchmark.tsv")
    wildcard_constraints:
        source="|".join(SCORE),


use rule make_targets as draw_targets with:
    output:
        results("{dataset}/targets/{source}/seed{seed}.pt"),
    log:
        results("{dataset}/logs/targets_{source}_seed{seed}.log"),
    benchmark:
        results("{dataset}/logs/targets_{source}_seed{seed}.benchmark.tsv")
    wildcard_constraints:
        source="|".join(DRAWN),

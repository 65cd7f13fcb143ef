# Measuring PAG (beyond the paper): every model's input-gradients scored against robust
# references (adversarially trained with the teachers' recipe and a seed no scored model uses:
# alignment of the centred logits' gradients, and whether the reference sees the target in the
# model's large-eps targeted attacks) and against the data manifold of an autoencoder (the
# tangent-space fraction), with a floor (an untrained model), the self-ceiling (each reference
# itself) and a random direction; then the scores against AutoAttack robust accuracy, and
# against lambda for Fig. 5. The toy has its ground truth: the data's line.


rule autoencoder:
    input:
        data=results("{dataset}/data.pt"),
    output:
        model=results("{dataset}/autoencoder/seed{seed}/model.pt"),
        info=results("{dataset}/autoencoder/seed{seed}/model.json"),
    log:
        results("{dataset}/autoencoder/seed{seed}/train.log"),
    benchmark:
        results("{dataset}/autoencoder/seed{seed}/train.benchmark.tsv")
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("train"),
    params:
        settings=autoencoder_settings,
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.autoencoder --data {input.data} {params.settings} {params.common} "
        "--threads {threads} --out {output.model} > {log} 2>&1"


rule pag_scores:
    input:
        unpack(pag_inputs),
        model=results("{dataset}/{model}/model.pt"),
    output:
        results("{dataset}/{model}/pag_scores.csv"),
    log:
        results("{dataset}/{model}/pag_scores.log"),
    benchmark:
        results("{dataset}/{model}/pag_scores.benchmark.tsv")
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("evaluate"),
    params:
        inputs=pag_input_flags,
        settings=lambda w: pag_scores_settings(w.dataset),
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.pag_scores --data {input.data} --model {input.model} "
        "{params.inputs} {params.settings} {params.common} --threads {threads} "
        "--out {output} > {log} 2>&1"


rule pag_baselines:
    input:
        unpack(pag_inputs),
    output:
        results("{dataset}/pag_baselines.csv"),
    log:
        results("{dataset}/logs/pag_baselines.log"),
    benchmark:
        results("{dataset}/logs/pag_baselines.benchmark.tsv")
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("evaluate"),
    params:
        inputs=pag_input_flags,
        settings=lambda w: pag_scores_settings(w.dataset),
        arch=lambda w: grid.dataset_config(w.dataset)["arch"],
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.pag_scores --data {input.data} --baselines --floor-arch {params.arch} "
        "{params.inputs} {params.settings} {params.common} --threads {threads} "
        "--out {output} > {log} 2>&1"


rule collect_pag_scores:
    input:
        baselines=results("{dataset}/pag_baselines.csv"),
        models=lambda w: [
            f"{m}/pag_scores.csv" for m in grid.pag_scores.scored(w.dataset)
        ],
    output:
        results("{dataset}/pag_scores.csv"),
    log:
        results("{dataset}/logs/collect_pag_scores.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.collect --kind pag_scores {input.baselines} {input.models} "
        "--out {output} > {log} 2>&1"


rule pag_scores_table:
    input:
        results("{dataset}/pag_scores.csv"),
    output:
        md=results("tables/pag_scores_{dataset}.md"),
        csv=results("tables/pag_scores_{dataset}.csv"),
        html=report(
            results("tables/pag_scores_{dataset}.html"),
            caption="../report/pag_scores.rst",
            category="Measuring PAG",
            subcategory="{dataset}",
            labels={"Result": "PAG scores of every model"},
        ),
    log:
        results("logs/pag_scores_{dataset}.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.pag_report table --scores {input} --out-md {output.md} "
        "--out-csv {output.csv} --out-html {output.html} > {log} 2>&1"


rule pag_vs_robustness:
    input:
        scores=results("{dataset}/pag_scores.csv"),
        metrics=lambda w: grid.model_metrics(
            w.dataset, grid.robustness.checked(w.dataset)
        ),
    output:
        png=report(
            results("figures/pag_vs_robustness_{dataset}.png"),
            caption="../report/pag_vs_robustness.rst",
            category="Measuring PAG",
            subcategory="{dataset}",
            labels={"Result": "PAG score against AutoAttack accuracy"},
        ),
        pdf=results("figures/pag_vs_robustness_{dataset}.pdf"),
        csv=results("tables/pag_vs_robustness_{dataset}.csv"),
    log:
        results("logs/pag_vs_robustness_{dataset}.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.pag_report plot --scores {input.scores} --metrics {input.metrics} "
        "--out-png {output.png} --out-pdf {output.pdf} --out-csv {output.csv} > {log} 2>&1"


rule pag_lambda:
    input:
        scores=lambda w: f"{results()}/{grid.lambda_ablation.dataset()}/pag_scores.csv",
    output:
        md=results("tables/fig5_pag_scores.md"),
        csv=results("tables/fig5_pag_scores.csv"),
        html=report(
            results("tables/fig5_pag_scores.html"),
            caption="../report/fig5_pag_scores_table.rst",
            category="λ ablation",
            labels={"Result": "Fig. 5 measured: PAG score against λ (numbers)"},
        ),
        png=report(
            results("figures/fig5_pag_scores.png"),
            caption="../report/fig5_pag_scores.rst",
            category="λ ablation",
            labels={"Result": "Fig. 5 measured: PAG score against λ"},
        ),
        pdf=results("figures/fig5_pag_scores.pdf"),
    log:
        results("logs/fig5_pag_scores.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        source=lambda w: grid.experiment("lambda_ablation")["source"],
    shell:
        "python -m pagrob.steps.pag_report lambda --scores {input.scores} --source {params.source} "
        "--out-md {output.md} --out-csv {output.csv} --out-html {output.html} --out-png {output.png} "
        "--out-pdf {output.pdf} > {log} 2>&1"


# The toy's ground truth (Section 5.1: PAG there means faithfulness to the data's line): each toy
# model's margin gradient against the line's tangent, beside the teacher-based alignment against
# an adversarially trained toy reference, the score instrument (a denoiser's class scores, and
# the exact ones: its check) and the robust accuracy.
rule toy_pag:
    input:
        data=results("toy/data.pt"),
        models=lambda w: files_of(grid.pag_scores.toy_models()),
        reference=grid.pag_scores.toy_reference,
        metrics=lambda w: [f"{m}/metrics.csv" for m in grid.pag_scores.toy_models()],
        denoiser=lambda w: grid.pag_scores.denoiser_file("toy"),
    output:
        md=results("tables/toy_pag.md"),
        csv=results("tables/toy_pag.csv"),
        html=report(
            results("tables/toy_pag.html"),
            caption="../report/toy_pag.rst",
            category="Toy experiment",
            labels={
                "Result": "Toy: PAG against the known manifold, and the teacher-based score"
            },
        ),
    log:
        results("logs/toy_pag.log"),
    conda:
        "../../envs/pytorch.yaml"
    resources:
        mem_mb=lambda w: grid.res("toy")["mem_mb"],
        runtime=lambda w: grid.res("toy")["runtime"]["figure"],
    params:
        score=toy_score_flags,
    shell:
        "python -m pagrob.steps.toy_pag --data {input.data} --models {input.models} "
        "--reference {input.reference} --metrics {input.metrics} {params.score} --device cpu "
        "--out-csv {output.csv} --out-md {output.md} --out-html {output.html} > {log} 2>&1"

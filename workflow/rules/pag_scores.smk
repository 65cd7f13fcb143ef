# Measuring PAG (beyond the paper): every model's input-gradients scored against the robust
# teachers (alignment, and whether the teacher sees the target in the model's large-eps targeted
# attacks), with a floor (an untrained model) and a ceiling (each teacher itself); then the
# scores against AutoAttack robust accuracy, and against lambda for Fig. 5.


rule pag_scores:
    input:
        data="results/{dataset}/data.pt",
        model="results/{dataset}/{model}/model.pt",
        references=lambda w: pag_references(w.dataset),
    output:
        "results/{dataset}/{model}/pag_scores.csv",
    log:
        "results/{dataset}/{model}/pag_scores.log",
    benchmark:
        "results/{dataset}/{model}/pag_scores.benchmark.tsv"
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("evaluate"),
    params:
        args=lambda w: pag_scores_flags(w.dataset),
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.pag_scores --data {input.data} --model {input.model} "
        "--references {input.references} {params.args} {params.common} --threads {threads} "
        "--out {output} > {log} 2>&1"


rule pag_baselines:
    input:
        data="results/{dataset}/data.pt",
        references=lambda w: pag_references(w.dataset),
    output:
        "results/{dataset}/pag_baselines.csv",
    log:
        "results/{dataset}/logs/pag_baselines.log",
    benchmark:
        "results/{dataset}/logs/pag_baselines.benchmark.tsv"
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("evaluate"),
    params:
        args=lambda w: pag_scores_flags(w.dataset),
        arch=lambda w: dataset_config(w.dataset)["arch"],
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.pag_scores --data {input.data} --baselines --floor-arch {params.arch} "
        "--references {input.references} {params.args} {params.common} --threads {threads} "
        "--out {output} > {log} 2>&1"


rule collect_pag_scores:
    input:
        baselines="results/{dataset}/pag_baselines.csv",
        models=lambda w: [f"{m}/pag_scores.csv" for m in scored_models(w.dataset)],
    output:
        "results/{dataset}/pag_scores.csv",
    log:
        "results/{dataset}/logs/collect_pag_scores.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.collect --kind pag_scores {input.baselines} {input.models} "
        "--out {output} > {log} 2>&1"


rule pag_scores_table:
    input:
        "results/{dataset}/pag_scores.csv",
    output:
        md="results/tables/pag_scores_{dataset}.md",
        csv="results/tables/pag_scores_{dataset}.csv",
        html=report(
            "results/tables/pag_scores_{dataset}.html",
            caption="../report/pag_scores.rst",
            category="Measuring PAG",
            subcategory="{dataset}",
            labels={"Result": "PAG scores of every model"},
        ),
    log:
        "results/logs/pag_scores_{dataset}.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.pag_report table --scores {input} --out-md {output.md} "
        "--out-csv {output.csv} --out-html {output.html} > {log} 2>&1"


rule pag_vs_robustness:
    input:
        scores="results/{dataset}/pag_scores.csv",
        metrics=lambda w: model_metrics(w.dataset, checked_models(w.dataset)),
    output:
        png=report(
            "results/figures/pag_vs_robustness_{dataset}.png",
            caption="../report/pag_vs_robustness.rst",
            category="Measuring PAG",
            subcategory="{dataset}",
            labels={"Result": "PAG score against AutoAttack accuracy"},
        ),
        pdf="results/figures/pag_vs_robustness_{dataset}.pdf",
        csv="results/tables/pag_vs_robustness_{dataset}.csv",
    log:
        "results/logs/pag_vs_robustness_{dataset}.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.pag_report plot --scores {input.scores} --metrics {input.metrics} "
        "--out-png {output.png} --out-pdf {output.pdf} --out-csv {output.csv} > {log} 2>&1"


rule pag_lambda:
    input:
        scores=lambda w: f"results/{ablation_dataset()}/pag_scores.csv",
    output:
        md="results/tables/fig5_pag_scores.md",
        csv="results/tables/fig5_pag_scores.csv",
        html=report(
            "results/tables/fig5_pag_scores.html",
            caption="../report/fig5_pag_scores_table.rst",
            category="λ ablation",
            labels={"Result": "Fig. 5 measured: PAG score against λ (numbers)"},
        ),
        png=report(
            "results/figures/fig5_pag_scores.png",
            caption="../report/fig5_pag_scores.rst",
            category="λ ablation",
            labels={"Result": "Fig. 5 measured: PAG score against λ"},
        ),
        pdf="results/figures/fig5_pag_scores.pdf",
    log:
        "results/logs/fig5_pag_scores.log",
    conda:
        "../../envs/report.yaml"
    params:
        source=lambda w: experiment("lambda_ablation")["source"],
    shell:
        "python -m pagrob.steps.pag_report lambda --scores {input.scores} --source {params.source} "
        "--out-md {output.md} --out-csv {output.csv} --out-html {output.html} --out-png {output.png} "
        "--out-pdf {output.pdf} > {log} 2>&1"

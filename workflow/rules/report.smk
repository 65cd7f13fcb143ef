# The paper's tables and figures for the image datasets: Tables 1-4, Fig. 4 and Fig. 5. Each
# target depends only on the models it shows, so rerunning one builds only those.


rule main_table:
    input:
        metrics=lambda w: metrics_of(main_models(w.dataset) + table_teachers(w.dataset)),
        paper="workflow/resources/paper_numbers.csv",
    output:
        md="results/tables/{table}_{dataset}.md",
        csv="results/tables/{table}_{dataset}.csv",
    log:
        "results/logs/{table}_{dataset}.log",
    wildcard_constraints:
        table=r"table[0-9]+",
    conda:
        "../../envs/report.yaml"
    params:
        check=lambda w: check_table_name(w.table, w.dataset),
    shell:
        "python -m pagrob.steps.table main --name {wildcards.table} --dataset {wildcards.dataset} "
        "--metrics {input.metrics} --paper {input.paper} --out-md {output.md} "
        "--out-csv {output.csv} > {log} 2>&1"


rule lambda_table:
    input:
        paper="workflow/resources/paper_numbers.csv",
    output:
        md="results/tables/table3_lambda.md",
        csv="results/tables/table3_lambda.csv",
    log:
        "results/logs/table3_lambda.log",
    conda:
        "../../envs/report.yaml"
    params:
        lams=lambda w: shlex.quote(lams_json()),
    shell:
        "python -m pagrob.steps.table lambda --lams {params.lams} --paper {input.paper} "
        "--out-md {output.md} --out-csv {output.csv} > {log} 2>&1"


rule seeds_table:
    input:
        metrics=lambda w: metrics_of(seeds_models()),
        paper="workflow/resources/paper_numbers.csv",
    output:
        md="results/tables/table4_seeds.md",
        csv="results/tables/table4_seeds.csv",
    log:
        "results/logs/table4_seeds.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.table seeds --metrics {input.metrics} --paper {input.paper} "
        "--out-md {output.md} --out-csv {output.csv} > {log} 2>&1"


rule ablation_table:
    input:
        metrics=lambda w: metrics_of(ablation_models()),
        paper="workflow/resources/paper_numbers.csv",
    output:
        md="results/tables/fig5_lambda_ablation.md",
        csv="results/tables/fig5_lambda_ablation.csv",
    log:
        "results/logs/fig5_lambda_ablation_table.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.table ablation --metrics {input.metrics} --paper {input.paper} "
        "--out-md {output.md} --out-csv {output.csv} > {log} 2>&1"


rule pag_figure:
    input:
        data="results/{dataset}/data.pt",
        models=lambda w: files_of(main_models(w.dataset)),
    output:
        png="results/figures/fig4_{dataset}.png",
        pdf="results/figures/fig4_{dataset}.pdf",
    log:
        "results/logs/fig4_{dataset}.log",
    benchmark:
        "results/logs/fig4_{dataset}.benchmark.tsv"
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("figure"),
    params:
        args=lambda w: pictures_flags(w.dataset),
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.pag_figure --data {input.data} --models {input.models} "
        "{params.args} {params.common} --threads {threads} --out-png {output.png} "
        "--out-pdf {output.pdf} > {log} 2>&1"


rule ablation_figure:
    input:
        data=lambda w: f"results/{ablation_dataset()}/data.pt",
        models=lambda w: files_of(ablation_models()),
        table="results/tables/fig5_lambda_ablation.csv",
    output:
        png="results/figures/fig5_lambda_ablation.png",
        pdf="results/figures/fig5_lambda_ablation.pdf",
    log:
        "results/logs/fig5_lambda_ablation.log",
    benchmark:
        "results/logs/fig5_lambda_ablation.benchmark.tsv"
    conda:
        "../../envs/pytorch.yaml"
    threads: lambda w: res(ablation_dataset())["threads"]
    resources:
        gpu=lambda w: res(ablation_dataset())["gpu"],
        mem_mb=lambda w: res(ablation_dataset())["mem_mb"],
        runtime=lambda w: res(ablation_dataset())["runtime"]["figure"],
    params:
        args=lambda w: pictures_flags(ablation_dataset()),
        common=lambda w: common_flags(ablation_dataset()),
    shell:
        "python -m pagrob.steps.ablation_figure --data {input.data} --models {input.models} "
        "--table {input.table} {params.args} {params.common} --threads {threads} "
        "--out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


rule robust_figure:
    input:
        data="results/{dataset}/data.pt",
        models=lambda w: files_of(robust_figure_models(w.dataset)),
    output:
        png="results/figures/fig1_{dataset}.png",
        pdf="results/figures/fig1_{dataset}.pdf",
    log:
        "results/logs/fig1_{dataset}.log",
    benchmark:
        "results/logs/fig1_{dataset}.benchmark.tsv"
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("figure"),
    params:
        args=lambda w: pictures_flags(w.dataset),
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.pag_figure --data {input.data} --models {input.models} "
        "{params.args} {params.common} --threads {threads} --out-png {output.png} "
        "--out-pdf {output.pdf} > {log} 2>&1"

# The toy experiment's table and Fig. 3 (Section 5.1).


rule toy_table:
    input:
        metrics=results("toy/metrics.csv"),
        paper="workflow/resources/paper_numbers.csv",
    output:
        md=results("tables/toy.md"),
        csv=results("tables/toy.csv"),
        html=report(
            results("tables/toy.html"),
            caption="../report/toy_table.rst",
            category="Toy experiment",
            labels={"Result": "Toy table: accuracy of vanilla and PAG"},
        ),
    log:
        results("logs/toy_table.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.table toy --metrics {input.metrics} --paper {input.paper} "
        "--out-md {output.md} --out-csv {output.csv} --out-html {output.html} > {log} 2>&1"


rule toy_figure:
    input:
        data=results("toy/data.pt"),
        models=files_of(grid.toy_models()),
        metrics=results("toy/metrics.csv"),
    output:
        png=report(
            results("figures/fig3_toy.png"),
            caption="../report/fig3_toy.rst",
            category="Toy experiment",
            labels={"Result": "Fig. 3: decision regions"},
        ),
        pdf=results("figures/fig3_toy.pdf"),
    log:
        results("logs/fig3_toy.log"),
    conda:
        "../../envs/pytorch.yaml"
    resources:
        mem_mb=lambda w: grid.res("toy")["mem_mb"],
        runtime=lambda w: grid.res("toy")["runtime"]["figure"],
    shell:
        "python -m pagrob.steps.toy_figure --data {input.data} --models {input.models} "
        "--metrics {input.metrics} --out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"

# The paper's tables and figures for the image datasets: Tables 1-4, Fig. 4 and Fig. 5. Each
# target depends only on the models it shows, so rerunning one builds only those.


rule main_table:
    input:
        metrics=lambda w: grid.model_metrics(w.dataset, grid.main.models(w.dataset)),
        paper="workflow/resources/paper_numbers.csv",
        records=lambda w: grid.robustness.checked_records(
            w.dataset, grid.main.models(w.dataset)
        ),
    output:
        md=results("tables/{table}_{dataset}.md"),
        csv=results("tables/{table}_{dataset}.csv"),
        html=report(
            results("tables/{table}_{dataset}.html"),
            caption="../report/main_table.rst",
            category="Main results",
            subcategory="{dataset}",
            labels=lambda w: {
                "Result": f"Table {w.table[5:]}: accuracy on {w.dataset}"
            },
        ),
    log:
        results("logs/{table}_{dataset}.log"),
    wildcard_constraints:
        table=r"table[0-9]+",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        check=lambda w: grid.main.check_table_name(w.table, w.dataset),
        checks=lambda w, input: checks_args(w.dataset, input.records),
    shell:
        "python -m pagrob.steps.table main --name {wildcards.table} --dataset {wildcards.dataset} "
        "--metrics {input.metrics} --paper {input.paper} {params.checks} --out-md {output.md} "
        "--out-csv {output.csv} --out-html {output.html} > {log} 2>&1"


rule lambda_table:
    input:
        paper="workflow/resources/paper_numbers.csv",
    output:
        md=results("tables/table3_lambda.md"),
        csv=results("tables/table3_lambda.csv"),
        html=report(
            results("tables/table3_lambda.html"),
            caption="../report/table3_lambda.rst",
            category="Main results",
            subcategory="all datasets",
            labels={"Result": "Table 3: λ per source and dataset"},
        ),
    log:
        results("logs/table3_lambda.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        lams=lambda w: shlex.quote(lams_json()),
    shell:
        "python -m pagrob.steps.table lambda --lams {params.lams} --paper {input.paper} "
        "--out-md {output.md} --out-csv {output.csv} --out-html {output.html} > {log} 2>&1"


rule seeds_table:
    input:
        metrics=lambda w: grid.model_metrics(
            grid.experiment("seeds")["dataset"], grid.seeds.trained()
        ),
        paper="workflow/resources/paper_numbers.csv",
    output:
        md=results("tables/table4_seeds.md"),
        csv=results("tables/table4_seeds.csv"),
        html=report(
            results("tables/table4_seeds.html"),
            caption="../report/table4_seeds.rst",
            category="Seeds",
            labels={"Result": "Table 4: error bars over seeds"},
        ),
    log:
        results("logs/table4_seeds.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.table seeds --metrics {input.metrics} --paper {input.paper} "
        "--out-md {output.md} --out-csv {output.csv} --out-html {output.html} > {log} 2>&1"


rule ablation_table:
    input:
        metrics=lambda w: grid.model_metrics(
            grid.lambda_ablation.dataset(), grid.lambda_ablation.table_models()
        ),
        paper="workflow/resources/paper_numbers.csv",
    output:
        md=results("tables/fig5_lambda_ablation.md"),
        csv=results("tables/fig5_lambda_ablation.csv"),
        html=report(
            results("tables/fig5_lambda_ablation.html"),
            caption="../report/fig5_lambda_ablation_table.rst",
            category="λ ablation",
            labels={"Result": "Fig. 5 (numbers): accuracy against λ"},
        ),
    log:
        results("logs/fig5_lambda_ablation_table.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.table ablation --metrics {input.metrics} --paper {input.paper} "
        "--out-md {output.md} --out-csv {output.csv} --out-html {output.html} > {log} 2>&1"


rule pag_figure:
    input:
        data=results("{dataset}/data.pt"),
        models=lambda w: files_of(grid.main.first_seed_models(w.dataset)),
    output:
        png=report(
            results("figures/fig4_{dataset}.png"),
            caption="../report/fig4.rst",
            category="Main results",
            subcategory="{dataset}",
            labels={"Result": "Fig. 4: targeted attacks on vanilla and PAG models"},
        ),
        pdf=results("figures/fig4_{dataset}.pdf"),
    log:
        results("logs/fig4_{dataset}.log"),
    benchmark:
        results("logs/fig4_{dataset}.benchmark.tsv")
    conda:
        "../../envs/pytorch.yaml"
    threads: threads_of
    resources:
        gpu=gpu_of,
        mem_mb=mem_of,
        runtime=runtime_of("figure"),
    params:
        settings=lambda w: pictures_settings(w.dataset),
        common=lambda w: common_flags(w.dataset),
    shell:
        "python -m pagrob.steps.pag_figure --data {input.data} --models {input.models} "
        "{params.settings} {params.common} --threads {threads} --out-png {output.png} "
        "--out-pdf {output.pdf} > {log} 2>&1"


rule ablation_figure:
    input:
        data=lambda w: f"{results()}/{grid.lambda_ablation.dataset()}/data.pt",
        models=lambda w: files_of(grid.lambda_ablation.trained()),
        table=results("tables/fig5_lambda_ablation.csv"),
    output:
        png=report(
            results("figures/fig5_lambda_ablation.png"),
            caption="../report/fig5_lambda_ablation.rst",
            category="λ ablation",
            labels={"Result": "Fig. 5: accuracy and targeted attacks against λ"},
        ),
        pdf=results("figures/fig5_lambda_ablation.pdf"),
    log:
        results("logs/fig5_lambda_ablation.log"),
    benchmark:
        results("logs/fig5_lambda_ablation.benchmark.tsv")
    conda:
        "../../envs/pytorch.yaml"
    threads: lambda w: grid.res(grid.lambda_ablation.dataset())["threads"]
    resources:
        gpu=lambda w: grid.res(grid.lambda_ablation.dataset())["gpu"],
        mem_mb=lambda w: grid.res(grid.lambda_ablation.dataset())["mem_mb"],
        runtime=lambda w: grid.res(grid.lambda_ablation.dataset())["runtime"]["figure"],
    params:
        settings=lambda w: pictures_settings(grid.lambda_ablation.dataset()),
        common=lambda w: common_flags(grid.lambda_ablation.dataset()),
    shell:
        "python -m pagrob.steps.ablation_figure --data {input.data} --models {input.models} "
        "--table {input.table} {params.settings} {params.common} --threads {threads} "
        "--out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


# Fig. 1: Fig. 4's attacks on the vanilla model beside the robust teachers.
use rule pag_figure as robust_figure with:
    input:
        data=results("{dataset}/data.pt"),
        models=lambda w: files_of(grid.main.robust_figure_models(w.dataset)),
    output:
        png=report(
            results("figures/fig1_{dataset}.png"),
            caption="../report/fig1.rst",
            category="Main results",
            subcategory="{dataset}",
            labels={"Result": "Fig. 1: targeted attacks on vanilla and robust models"},
        ),
        pdf=results("figures/fig1_{dataset}.pdf"),
    log:
        results("logs/fig1_{dataset}.log"),
    benchmark:
        results("logs/fig1_{dataset}.benchmark.tsv")


# Trusting the numbers: the gradient-masking checks of every model with AutoAttack, and robust
# accuracy against eps for the main table's models.
rule masking_table:
    input:
        metrics=lambda w: grid.model_metrics(
            w.dataset, grid.robustness.checked(w.dataset)
        ),
        records=lambda w: grid.robustness.records(w.dataset),
    output:
        md=results("tables/masking_{dataset}.md"),
        csv=results("tables/masking_{dataset}.csv"),
        html=report(
            results("tables/masking_{dataset}.html"),
            caption="../report/masking.rst",
            category="Trusting the numbers",
            subcategory="{dataset}",
            labels={"Result": "Gradient-masking checks"},
        ),
    log:
        results("logs/masking_{dataset}.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        args=lambda w: checks_flags(w.dataset),
    shell:
        "python -m pagrob.steps.robustness checks --metrics {input.metrics} "
        "--records {input.records} {params.args} --out-md {output.md} --out-csv {output.csv} "
        "--out-html {output.html} > {log} 2>&1"


rule robustness_curves:
    input:
        metrics=lambda w: grid.model_metrics(
            w.dataset, grid.robustness.curve_models(w.dataset)
        ),
    output:
        png=report(
            results("figures/robustness_curves_{dataset}.png"),
            caption="../report/robustness_curves.rst",
            category="Trusting the numbers",
            subcategory="{dataset}",
            labels={"Result": "Robust accuracy against ε"},
        ),
        pdf=results("figures/robustness_curves_{dataset}.pdf"),
    log:
        results("logs/robustness_curves_{dataset}.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        title=lambda w: shlex.quote(f"Robust accuracy against ε on {w.dataset}"),
    shell:
        "python -m pagrob.steps.robustness curves --metrics {input.metrics} "
        "--title {params.title} --out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


# The answer to the paper's question, per dataset: a figure, a compact table with the 95%
# intervals and verdicts over the seeds (robustness against vanilla, alignment against vanilla
# per instrument, whether alignment ranks robustness), and a few words; the table's teachers are
# the ceiling. For the toy, against its ground truth.
rule answer:
    input:
        metrics=lambda w: grid.model_metrics(w.dataset, grid.main.models(w.dataset)),
        scores=lambda w: (
            [f"{m}/pag_scores.csv" for m in grid.main.models(w.dataset)]
            if grid.pag_scores.config(w.dataset)
            else []
        ),
    output:
        md=results("tables/answer_{dataset}.md"),
        csv=results("tables/answer_{dataset}.csv"),
        html=report(
            results("tables/answer_{dataset}.html"),
            caption="../report/answer.rst",
            category="The answer",
            subcategory="{dataset}",
            labels={"Result": "The answer, with its intervals"},
        ),
        png=report(
            results("figures/answer_{dataset}.png"),
            caption="../report/answer.rst",
            category="The answer",
            subcategory="{dataset}",
            labels={"Result": "The answer as a figure"},
        ),
        pdf=results("figures/answer_{dataset}.pdf"),
    log:
        results("logs/answer_{dataset}.log"),
    wildcard_constraints:
        dataset="|".join(d for d in DATASETS if d != "toy"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        scores=lambda w, input: (
            f"--scores {' '.join(input.scores)}" if input.scores else ""
        ),
    shell:
        "python -m pagrob.steps.answer images --dataset {wildcards.dataset} --metrics {input.metrics} "
        "{params.scores} --out-md {output.md} --out-csv {output.csv} --out-html {output.html} "
        "--out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


rule answer_toy:
    input:
        metrics=lambda w: grid.model_metrics("toy", grid.pag_scores.scored_dirs("toy")),
        toy_pag=results("tables/toy_pag.csv"),
    output:
        md=results("tables/answer_toy.md"),
        csv=results("tables/answer_toy.csv"),
        html=report(
            results("tables/answer_toy.html"),
            caption="../report/answer.rst",
            category="The answer",
            subcategory="toy",
            labels={"Result": "The answer on the toy data, against its ground truth"},
        ),
        png=report(
            results("figures/answer_toy.png"),
            caption="../report/answer.rst",
            category="The answer",
            subcategory="toy",
            labels={"Result": "The answer on the toy data as a figure"},
        ),
        pdf=results("figures/answer_toy.pdf"),
    log:
        results("logs/answer_toy.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.answer toy --metrics {input.metrics} --toy-pag {input.toy_pag} "
        "--out-md {output.md} --out-csv {output.csv} --out-html {output.html} "
        "--out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


# Which class score should the PAG loss align (beyond the paper)? Each hand-made source with the
# paper's logit, the authors' log-softmax and the centred logit: accuracy with its intervals and
# the PAG scores, as a table and a figure.
rule grad_of_table:
    input:
        metrics=lambda w: grid.model_metrics(
            grid.grad_of_ablation.dataset(), grid.grad_of_ablation.trained()
        ),
        scores=lambda w: (
            [f"{m}/pag_scores.csv" for m in grid.grad_of_ablation.trained()]
            if grid.pag_scores.config(grid.grad_of_ablation.dataset())
            else []
        ),
        paper="workflow/resources/paper_numbers.csv",
    output:
        md=results("tables/grad_of_ablation.md"),
        csv=results("tables/grad_of_ablation.csv"),
        html=report(
            results("tables/grad_of_ablation.html"),
            caption="../report/grad_of_ablation.rst",
            category="Class-score ablation",
            labels={"Result": "Which class score the PAG loss aligns (numbers)"},
        ),
        png=report(
            results("figures/grad_of_ablation.png"),
            caption="../report/grad_of_ablation.rst",
            category="Class-score ablation",
            labels={"Result": "Which class score the PAG loss aligns"},
        ),
        pdf=results("figures/grad_of_ablation.pdf"),
    log:
        results("logs/grad_of_ablation.log"),
    conda:
        "../../envs/report.yaml"
    params:
        scores=lambda w, input: (
            f"--scores {' '.join(input.scores)}" if input.scores else ""
        ),
        default=config["pag"]["grad_of"],
    shell:
        "python -m pagrob.steps.table grad_of --metrics {input.metrics} {params.scores} "
        "--default-score {params.default} --paper {input.paper} --out-md {output.md} "
        "--out-csv {output.csv} --out-html {output.html} --out-png {output.png} "
        "--out-pdf {output.pdf} > {log} 2>&1"


# A table or figure that no rule of this config makes (a mistyped target) comes here, and is
# refused with the list of those it makes (the Snakefile orders every other rule first).
rule unknown_target:
    output:
        "{target}",
    log:
        results("logs/unknown_target/{target}.log"),
    wildcard_constraints:
        # a table or figure under any results root, e.g. another config's
        target=r"results/(.+/)?(tables|figures)/[^/]+",
    localrule: True
    params:
        refuse=lambda w: grid.refuse_target(w.target),
    run:
        grid.refuse_target(
            output[0]
        )  # never reached: the params refuse when the DAG is built


rule sigma_sweep:
    input:
        metrics=lambda w: grid.model_metrics(
            grid.sigma_sweep.dataset(), grid.sigma_sweep.table_models()
        ),
    output:
        md=results("tables/sigma_sweep.md"),
        csv=results("tables/sigma_sweep.csv"),
        html=report(
            results("tables/sigma_sweep.html"),
            caption="../report/sigma_sweep.rst",
            category="Score-based source",
            labels={"Result": "σ sweep: accuracy against the targets' noise level"},
        ),
        png=report(
            results("figures/sigma_sweep.png"),
            caption="../report/sigma_sweep.rst",
            category="Score-based source",
            labels={"Result": "σ sweep (figure)"},
        ),
        pdf=results("figures/sigma_sweep.pdf"),
    log:
        results("logs/sigma_sweep.log"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pagrob.steps.sigma_sweep --metrics {input.metrics} --out-md {output.md} "
        "--out-csv {output.csv} --out-html {output.html} --out-png {output.png} "
        "--out-pdf {output.pdf} > {log} 2>&1"

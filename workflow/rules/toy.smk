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
        models=files_of(grid.toy.trained()),
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


rule toy_score:
    input:
        data=results("toy/data.pt"),
        denoiser=lambda w: grid.score_based.denoiser_file("toy"),
    output:
        md=results("tables/toy_score.md"),
        csv=results("tables/toy_score.csv"),
        html=report(
            results("tables/toy_score.html"),
            caption="../report/toy_score.rst",
            category="Toy experiment",
            labels={"Result": "The denoiser's score against the exact one"},
        ),
    log:
        results("logs/toy_score.log"),
    benchmark:
        results("logs/toy_score.benchmark.tsv")
    conda:
        "../../envs/pytorch.yaml"
    threads: lambda w: grid.res("toy")["threads"]
    resources:
        mem_mb=lambda w: grid.res("toy")["mem_mb"],
        runtime=lambda w: grid.res("toy")["runtime"]["figure"],
    params:
        centers=lambda w: shlex.quote(
            json.dumps(grid.dataset_config("toy")["data"]["centers"])
        ),
        sigma=lambda w: grid.score_based.config("toy")["sigma"],
        common=lambda w: common_flags("toy"),
    shell:
        "python -m pagrob.steps.toy_score --data {input.data} --denoiser {input.denoiser} "
        "--centers {params.centers} --sigma {params.sigma} {params.common} --threads {threads} "
        "--out-md {output.md} --out-csv {output.csv} --out-html {output.html} > {log} 2>&1"


# The toy's models are tiny: a job would take longer to start (PyTorch's import) than to train
# or evaluate one. So one job trains every seed of a recipe, one evaluates them and one draws
# a source's targets for every seed, each in one Python process (pagrob.steps.runs: the step
# run once per seed, as alone), writing the per-seed files that every other rule reads. Asking
# for one such file runs its recipe's job.
if grid.toy.recipes():
    TOY_SEEDS = grid.toy.seeds()
    TOY_SOURCES = [source for source, _ in grid.toy.recipes()]

    rule train_toy:
        input:
            unpack(train_toy_inputs),
        output:
            model=expand(
                results("toy/{{source}}/lam{{lam}}/seed{seed}/model.pt"),
                seed=TOY_SEEDS,
            ),
            info=expand(
                results("toy/{{source}}/lam{{lam}}/seed{seed}/model.json"),
                seed=TOY_SEEDS,
            ),
        log:
            results("toy/{source}/lam{lam}/train.log"),
        benchmark:
            results("toy/{source}/lam{lam}/train.benchmark.tsv")
        wildcard_constraints:
            source="|".join(TOY_SOURCES),
        conda:
            "../../envs/pytorch.yaml"
        threads: lambda w: grid.res("toy")["threads"]
        resources:
            gpu=lambda w: grid.res("toy")["gpu"],
            mem_mb=lambda w: grid.res("toy")["mem_mb"],
            runtime=lambda w: grid.res("toy")["runtime"]["train"] * len(TOY_SEEDS),
        params:
            runs=train_toy_runs,
        shell:
            "python -m pagrob.steps.runs pagrob.steps.train {params.runs} >> {log} 2>&1"

    rule evaluate_toy:
        input:
            data=results("toy/data.pt"),
            models=expand(
                results("toy/{{source}}/lam{{lam}}/seed{seed}/model.pt"),
                seed=TOY_SEEDS,
            ),
        output:
            expand(
                results("toy/{{source}}/lam{{lam}}/seed{seed}/metrics.csv"),
                seed=TOY_SEEDS,
            ),
        log:
            results("toy/{source}/lam{lam}/evaluate.log"),
        benchmark:
            results("toy/{source}/lam{lam}/evaluate.benchmark.tsv")
        wildcard_constraints:
            source="|".join(TOY_SOURCES),
        conda:
            "../../envs/pytorch.yaml"
        threads: lambda w: grid.res("toy")["threads"]
        resources:
            gpu=lambda w: grid.res("toy")["gpu"],
            mem_mb=lambda w: grid.res("toy")["mem_mb"],
            runtime=lambda w: grid.res("toy")["runtime"]["evaluate"] * len(TOY_SEEDS),
        params:
            runs=evaluate_toy_runs,
        shell:
            "python -m pagrob.steps.runs pagrob.steps.evaluate {params.runs} > {log} 2>&1"

    toy_targets = grid.dataset_config("toy")["targets"]
    DRAW_SEEDS = TOY_SEEDS if toy_targets["per_seed"] else [toy_targets["seed"]]

    rule draw_toy_targets:
        input:
            data=results("toy/data.pt"),
        output:
            expand(results("toy/targets/{{source}}/seed{seed}.pt"), seed=DRAW_SEEDS),
        log:
            results("toy/logs/targets_{source}.log"),
        benchmark:
            results("toy/logs/targets_{source}.benchmark.tsv")
        wildcard_constraints:
            source="|".join(s for s in TOY_SOURCES if s in DRAWN),
        conda:
            "../../envs/pytorch.yaml"
        threads: lambda w: grid.res("toy")["threads"]
        resources:
            mem_mb=lambda w: grid.res("toy")["mem_mb"],
            runtime=lambda w: grid.res("toy")["runtime"]["targets"],
        params:
            runs=draw_toy_runs,
        shell:
            "python -m pagrob.steps.runs pagrob.steps.make_targets {params.runs} > {log} 2>&1"

    ruleorder: train_toy > train
    ruleorder: evaluate_toy > evaluate
    ruleorder: draw_toy_targets > draw_targets

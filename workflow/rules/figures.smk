# Figures 3-5: qualitative examples from a run's predictions (kind cases); sampled responses of
# training images (n per image at the GRPO temperature) for the reward-variance figures (the others).
SAMPLED_FIGURES = [name for name, spec in config.get("figures", {}).items() if spec["kind"] != "cases"]


rule sample_responses:
    input:
        unpack(sample_inputs),
    output:
        SAMPLES,
    log:
        "logs/sample_responses/{figure}.log",
    benchmark:
        "benchmarks/sample_responses/{figure}.tsv"
    wildcard_constraints:
        figure="|".join(SAMPLED_FIGURES) or "no-figure",
    conda:
        "../../envs/train.yaml"
    threads: res("predict", "threads")
    resources:
        **family_resources("predict"),
    params:
        gpu_job=gpu_job,
        dataset=lambda wc: config["figures"][wc.figure]["dataset"],
        run=lambda wc: config["figures"][wc.figure]["run"],
        settings=lambda wc: inference_settings.PredictSettings.for_figure(config, wc.figure).to_json(),
        adapter=adapter_arg,
    shell:
        "{params.gpu_job} python -m adfm predict --split {input.split} --dataset {params.dataset} --model {input.model}"
        " {params.adapter} --run-name {params.run} --settings {params.settings:q} --out {output} > {log} 2>&1"


rule figure:
    input:
        unpack(figure_inputs),
    output:
        png=report(FIGURE, caption="../report/figure.rst", category="Figures", labels={"figure": "{figure}"}),
        pdf="results/{figure}.pdf",
        csv="results/{figure}.csv",
    log:
        "logs/figure/{figure}.log",
    wildcard_constraints:
        figure="|".join(config.get("figures", {})) or "no-figure",
    conda:
        "../../envs/report.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        settings=lambda wc: evaluation_settings.FigureSettings.from_config(config, wc.figure).to_json(),
    shell:
        "python -m adfm figure --predictions {input.predictions} --settings {params.settings:q}"
        " --png {output.png} --pdf {output.pdf} --csv {output.csv} > {log} 2>&1"


# What GRPO logged while each trained run of a table trained (train_log.csv in its adapter folder).
rule training_curves:
    input:
        adapters=lambda wc: [ADAPTER.format(run=run) for run in targets.trained_rows(config, wc.table)],
        code=code("evaluation/training_curves.py", "evaluation/drawing.py", "evaluation/summary.py"),
    output:
        png=report(
            TRAINING_CURVES, caption="../report/training_curves.rst", category="Training", labels={"table": "{table}"}
        ),
        pdf="results/training/{table}.pdf",
        csv="results/training/{table}.csv",
    log:
        "logs/training_curves/{table}.log",
    conda:
        "../../envs/report.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        runs=lambda wc: " ".join(
            f"--run {shlex.quote(label)} {ADAPTER.format(run=run)}/train_log.csv"
            for run, label in targets.trained_rows(config, wc.table).items()
        ),
    shell:
        "python -m adfm training-curves {params.runs} --table {wildcards.table}"
        " --png {output.png} --pdf {output.pdf} --csv {output.csv} > {log} 2>&1"

rule predict:
    input:
        unpack(predict_inputs),
    output:
        "results/predictions/{run}/{dataset}.jsonl",
    params:
        gpu_job=gpu_job,
        settings=lambda wc: inference_settings.PredictSettings.from_config(config, wc.run).to_json(),
        adapter=lambda wc, input: f"--adapter {input.adapter}" if "adapter" in input.keys() else "",
    threads: res("predict", "threads")
    resources:
        **family_resources("predict"),
    log:
        "logs/predict/{run}/{dataset}.log",
    benchmark:
        "benchmarks/predict/{run}/{dataset}.tsv"
    conda:
        "../../envs/train.yaml"
    shell:
        "{params.gpu_job} python -m adfm predict --split {input.split} --dataset {wildcards.dataset} --model {input.model}"
        " {params.adapter} --run-name {wildcards.run} --settings {params.settings:q} --out {output} > {log} 2>&1"


rule score:
    input:
        predictions="results/predictions/{run}/{dataset}.jsonl",
        code=code("evaluation/score.py"),
    output:
        "results/metrics/{run}/{dataset}.csv",
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    log:
        "logs/score/{run}/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m adfm score --predictions {input.predictions} --out {output} > {log} 2>&1"

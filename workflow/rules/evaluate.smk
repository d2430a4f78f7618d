rule predict:
    input:
        unpack(predict_inputs),
    output:
        "results/predictions/{run}/{dataset}.jsonl",
    params:
        settings=lambda wc: adfm_config.predict_settings(config, wc.run),
        adapter=lambda wc, input: f"--adapter {input.adapter}" if "adapter" in input.keys() else "",
    threads: res("predict", "threads")
    resources:
        mem_mb=res("predict", "mem_mb"),
        runtime=res("predict", "runtime"),
        gpu=res("predict", "gpu"),
    log:
        "logs/predict/{run}/{dataset}.log",
    benchmark:
        "benchmarks/predict/{run}/{dataset}.tsv"
    conda:
        "../../envs/adfm.yaml"
    shell:
        "adfm predict --split {input.split} --dataset {wildcards.dataset} --model {input.model}"
        " {params.adapter} --run-name {wildcards.run} --settings {params.settings:q} --out {output} > {log} 2>&1"


rule score:
    input:
        predictions="results/predictions/{run}/{dataset}.jsonl",
        code=code("score.py"),
    output:
        "results/metrics/{run}/{dataset}.csv",
    log:
        "logs/score/{run}/{dataset}.log",
    conda:
        "../../envs/adfm.yaml"
    shell:
        "adfm score --predictions {input.predictions} --out {output} > {log} 2>&1"

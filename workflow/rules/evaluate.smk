# A model's answers on each dataset its protocol tests, and their accuracy: the runs (Hugging Face
# VLMs, with their adapters when trained) and the baselines (CLIP scorers, chat models behind an
# API) alike, each through its backend's subcommand (BACKENDS in common.smk).


rule predict:
    input:
        unpack(predict_inputs),
    output:
        PREDICTIONS,
    log:
        "logs/predict/{model}/{dataset}.log",
    benchmark:
        "benchmarks/predict/{model}/{dataset}.tsv"
    conda:
        lambda wc: f"../../envs/{backend_of(wc)['env']}.yaml"
    threads: lambda wc: res(backend_of(wc)["family"], "threads")
    resources:
        **backend_resources(),
    params:
        gpu_job=gpu_job,
        stage=lambda wc: backend_of(wc)["stage"],
        model=model_args,
        settings=prediction_settings,
    shell:
        "{params.gpu_job} python -m adfm {params.stage} --split {input.split} --dataset {wildcards.dataset} {params.model}"
        " --run-name {wildcards.model} --settings {params.settings:q} --out {output} > {log} 2>&1"


rule score:
    input:
        predictions=PREDICTIONS,
        code=code("evaluation/score.py", "protocol.py"),
    output:
        METRICS,
    log:
        "logs/score/{model}/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    shell:
        "python -m adfm score --predictions {input.predictions} --out {output} > {log} 2>&1"

# Baselines (CLIP-based scorers, chat models behind an API) and the MMAD multiple-choice evaluation.
# Predictions land beside the runs' (results/predictions/<name>/<dataset>.jsonl) and are scored
# into results/metrics/<name>/<dataset>.csv; MMAD's go to results/mmad/.


rule predict_clip:
    input:
        split=baseline_split,
        code=code("inference/clip.py", "inference/clip_model.py", "inference/winclip.py", "inference/anomalyclip.py",
                  "inference/records.py", "inference/clip_configs/*.json"),
    output:
        "results/predictions/{baseline}/{dataset}.jsonl",
    params:
        gpu_job=gpu_job,
        settings=lambda wc: inference_settings.ClipSettings.from_config(config, wc.baseline).to_json(),
    wildcard_constraints:
        baseline="|".join(adfm_config.baselines(config, "winclip", "anomalyclip")) or "no-clip-baseline",
    threads: res("predict", "threads")
    resources:
        **family_resources("predict"),
    log:
        "logs/predict/{baseline}/{dataset}.log",
    benchmark:
        "benchmarks/predict/{baseline}/{dataset}.tsv"
    conda:
        "../../envs/clip.yaml"
    shell:
        "{params.gpu_job} python -m adfm predict-clip --split {input.split} --dataset {wildcards.dataset}"
        " --run-name {wildcards.baseline} --settings {params.settings:q} --out {output} > {log} 2>&1"


rule predict_api:
    input:
        split=baseline_split,
        code=code("inference/api.py", "inference/records.py", "protocol.py", "boxes.py"),
    output:
        "results/predictions/{baseline}/{dataset}.jsonl",
    params:
        settings=lambda wc: inference_settings.ApiSettings.from_config(config, wc.baseline).to_json(),
    wildcard_constraints:
        baseline="|".join(adfm_config.baselines(config, "api")) or "no-api-baseline",
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    log:
        "logs/predict/{baseline}/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    shell:
        # the key stays in the environment variable named in the settings; it is never on a command line
        "python -m adfm predict-api --split {input.split} --dataset {wildcards.dataset}"
        " --run-name {wildcards.baseline} --settings {params.settings:q} --out {output} > {log} 2>&1"


rule score_baseline:
    input:
        predictions="results/predictions/{baseline}/{dataset}.jsonl",
        code=code("evaluation/score.py"),
    output:
        "results/metrics/{baseline}/{dataset}.csv",
    wildcard_constraints:
        baseline="|".join(adfm_config.baselines(config)) or "no-baseline",
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    log:
        "logs/score/{baseline}/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m adfm score --predictions {input.predictions} --out {output} > {log} 2>&1"


rule predict_mmad:
    input:
        unpack(mmad_model_inputs),
        questions="resources/splits/mmad_questions.csv",
        code=code("inference/mmad.py", "inference/records.py", "inference/generate.py", "model/load.py", "inference/api.py",
                  "protocol.py"),
    output:
        "results/mmad/predictions/{name}.jsonl",
    params:
        gpu_job=gpu_job,
        settings=lambda wc: inference_settings.MmadSettings.from_config(config, wc.name).to_json(),
        model=mmad_model_args,
    wildcard_constraints:
        name="|".join([*config["runs"], *adfm_config.baselines(config, "api")]),
    threads: res("predict", "threads")
    resources:
        **family_resources("predict", gpu=mmad_gpus),
    log:
        "logs/predict_mmad/{name}.log",
    benchmark:
        "benchmarks/predict_mmad/{name}.tsv"
    conda:
        "../../envs/train.yaml"
    shell:
        "{params.gpu_job} python -m adfm predict-mmad --questions {input.questions} {params.model} --run-name {wildcards.name}"
        " --settings {params.settings:q} --out {output} > {log} 2>&1"


rule score_mmad:
    input:
        predictions="results/mmad/predictions/{name}.jsonl",
        questions="resources/splits/mmad_questions.csv",
        code=code("evaluation/mmad_score.py", "data/datasets/mmad.py"),
    output:
        "results/mmad/metrics/{name}.csv",
    params:
        # a model held to the leakage filter: the metrics count the questions it was not asked
        questions=lambda wc, input: f"--questions {input.questions}" if adfm_config.mmad_filtered(config, wc.name) else "",
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    log:
        "logs/score_mmad/{name}.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m adfm score-mmad --predictions {input.predictions} {params.questions} --out {output} > {log} 2>&1"

# MMAD's multiple-choice questions, answered by a run (Hugging Face) or a chat model behind an API;
# the baselines' predictions on the test splits come from each model's `predict_<model>` job (evaluate.smk).


rule predict_mmad:
    input:
        unpack(lambda wc: model_inputs(wc.model)),
        questions=MMAD_QUESTIONS,
        code=code(
            "inference/mmad.py",
            "inference/mmad_prompt.py",
            "data/mmad_question_table.py",
            "inference/records.py",
            "inference/generate.py",
            "inference/backend.py",
            "model/load.py",
            "inference/api.py",
            "protocol.py",
            "settings/inference.py",
        ),
    output:
        MMAD_PREDICTIONS,
    log:
        "logs/predict_mmad/{model}.log",
    benchmark:
        "benchmarks/predict_mmad/{model}.tsv"
    wildcard_constraints:
        model="|".join([*config["runs"], *targets.baselines(config, "api")]),
    conda:
        "../../envs/train.yaml"
    threads: mmad_resource("threads")
    resources:
        **family_resources("predict", **{k: mmad_resource(k) for k in ("gpu", "mem_mb", "runtime")}),
    params:
        gpu_job=gpu_job,
        settings=lambda wc: inference_settings.MmadSettings.from_config(config, wc.model).to_json(),
        model=model_args,
    shell:
        "{params.gpu_job} python -m adfm predict-mmad --questions {input.questions} {params.model} --run-name {wildcards.model}"
        " --settings {params.settings:q} --out {output} > {log} 2>&1"


rule score_mmad:
    input:
        predictions=MMAD_PREDICTIONS,
        questions=MMAD_QUESTIONS,
        code=code("evaluation/mmad_score.py", "data/datasets/mmad.py"),
    output:
        MMAD_METRICS,
    log:
        "logs/score_mmad/{model}.log",
    conda:
        "../../envs/data.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        # a model held to the leakage filter: the metrics count the questions it was not asked
        questions=lambda wc, input: f"--questions {input.questions}" if targets.mmad_filtered(config, wc.model) else "",
    shell:
        "python -m adfm score-mmad --predictions {input.predictions} {params.questions} --out {output} > {log} 2>&1"

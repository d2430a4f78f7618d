# A model's answers on each dataset its protocol tests, and their accuracy: the runs (Hugging Face
# VLMs, with their adapters when trained) and the baselines (CLIP scorers, chat models behind an
# API) alike, each through its backend's subcommand (BACKENDS in common.smk).
#
# One prediction job and one scoring job per model, each writing every dataset's file: the model
# (7B, tens of seconds to load on a GPU) loads once, and Python with torch starts once, not once per
# dataset. A rule's outputs cannot depend on a wildcard, so each model gets a pair of its own.
for model_name in adfm_config.evaluated_models(config):

    rule:
        name:
            job_name("predict", model_name)
        input:
            **predict_inputs(model_name),
        output:
            model_files(PREDICTIONS, model_name),
        log:
            f"logs/predict/{model_name}.log",
        benchmark:
            f"benchmarks/predict/{model_name}.tsv"
        conda:
            f"../../envs/{backend_of(model_name)['env']}.yaml"
        threads: prediction_resources(model_name)["threads"]
        resources:
            **{k: v for k, v in prediction_resources(model_name).items() if k != "threads"},
        params:
            gpu_job=gpu_job,
            stage=backend_of(model_name)["stage"],
            model=model_args,
            run_name=model_name,
            datasets=" ".join(targets.datasets_tested_by(config, model_name)),
            settings=prediction_settings(model_name),
        shell:
            "{params.gpu_job} python -m adfm {params.stage} --split {input.split} --dataset {params.datasets} {params.model}"
            " --run-name {params.run_name} --settings {params.settings:q} --out {output} > {log} 2>&1"

    rule:
        name:
            job_name("score", model_name)
        input:
            predictions=model_files(PREDICTIONS, model_name),
            code=code("evaluation/score.py", "protocol.py"),
        output:
            model_files(METRICS, model_name),
        log:
            f"logs/score/{model_name}.log",
        conda:
            "../../envs/data.yaml"
        threads: res("default", "threads")
        resources:
            **family_resources("default"),
        shell:
            "python -m adfm score --predictions {input.predictions} --out {output} > {log} 2>&1"

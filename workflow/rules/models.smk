# The model fetch (16 GB for the 7B) runs where Snakemake runs: a cluster's login node has the
# network, compute nodes often have none.
localrules:
    fetch_model,


rule fetch_model:
    output:
        directory(MODEL_DIR),
    log:
        "logs/fetch_model/{vlm}.log",
    conda:
        "../../envs/train.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        source=lambda wc: vlms.entries(config)[wc.vlm]["source"],
        revision=lambda wc: revision_arg(vlms.entries(config)[wc.vlm]),
    shell:
        "python -m adfm fetch-model --source {params.source:q} {params.revision} --out {output} > {log} 2>&1"


rule warm_start:
    # Only when train.warm_start.enabled (the demo): supervised fine-tuning on well-formed responses,
    # merged into a model folder that the GRPO runs of this protocol and reasoning start from.
    input:
        split=SPLIT,
        model=MODEL_DIR.format(vlm=config["model"]["name"]),
        code=code(
            "model/warm_start.py",
            "model/warm_start_data.py",
            "model/grpo.py",
            "model/checkpoints.py",
            "protocol.py",
            "boxes.py",
            "io.py",
            "model/load.py",
            "settings/model.py",
        ),
    output:
        directory(WARM_START),
    log:
        "logs/warm_start/{protocol}/{reasoning}.log",
    benchmark:
        "benchmarks/warm_start/{protocol}/{reasoning}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: res("train", "threads")
    resources:
        **family_resources("train"),
    params:
        gpu_job=gpu_job,
        settings=lambda wc: model_settings.WarmStartSettings.from_config(config, wc.protocol, wc.reasoning).to_json(),
        launcher=LAUNCHER,
    shell:
        "{params.gpu_job} {params.launcher} warm-start --split {input.split} --model {input.model} --settings {params.settings:q}"
        " --out {output} > {log} 2>&1"


rule train:
    input:
        split=lambda wc: split_of(wc.run),
        model=lambda wc: model_inputs(wc.run)["model"],
        code=code(
            "model/train.py",
            "model/grpo.py",
            "model/checkpoints.py",
            "model/train_log.py",
            "model/training_record.py",
            "rewards.py",
            "reward_terms.py",
            "protocol.py",
            "boxes.py",
            "io.py",
            "model/load.py",
            "settings/model.py",
        ),
    output:
        directory(ADAPTER),
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: res("train", "threads")
    resources:
        **family_resources("train"),
    params:
        gpu_job=gpu_job,
        settings=lambda wc: model_settings.TrainSettings.from_config(config, wc.run).to_json(),
        launcher=LAUNCHER,
    shell:
        "{params.gpu_job} {params.launcher} train --split {input.split} --model {input.model} --settings {params.settings:q}"
        " --out {output} > {log} 2>&1"

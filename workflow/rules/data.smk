rule make_demo_archive:
    input:
        # a demo MMAD is built from the demo datasets' own archives (the images they train and test on)
        sources=lambda wc: list(config["demo_archives"][f"resources/demo/{wc.archive}"].get("sources", {}).values()),
    output:
        archive="resources/demo/{archive}",
        checksum="resources/demo/{archive}.sha256",
    log:
        "logs/make_demo_archive/{archive}.log",
    conda:
        "../../envs/data.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        spec=lambda wc: adfm_config.sorted_keys(config["demo_archives"][f"resources/demo/{wc.archive}"]),
        seed=config["seed"],
        sources=lambda wc: " ".join(
            f"{name}={archive}"
            for name, archive in config["demo_archives"][f"resources/demo/{wc.archive}"].get("sources", {}).items()
        ),
    shell:
        "python -m adfm make-demo-archive --layout {params.spec[layout]} --categories {params.spec[categories]}"
        " --image-size {params.spec[image_size]} --train-good {params.spec[train_good]}"
        " --test-good {params.spec[test_good]}"
        " --test-defective-per-type {params.spec[test_defective_per_type]}"
        " --seed {params.seed} --sources {params.sources} --out {output.archive} > {log} 2>&1"


# Downloads run where Snakemake runs: a cluster's login node has the network, compute nodes often
# have none.
localrules:
    download,


rule download:
    input:
        unpack(dataset_inputs),
    output:
        folder=directory(DATASET_DIR),
        # what was used (url or linked folder, sha256), for the provenance
        source=SOURCE_RECORD,
    log:
        "logs/download/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        source=source_args,
        extra=lambda wc: adfm_config.settings_json(config["datasets"][wc.dataset].get("extra_files", [])),
        checksum=checksum_arg,
        strip=lambda wc: config["datasets"][wc.dataset]["strip_components"],
        lock=config["checksum_lock"],
    shell:
        "python -m adfm download {params.source} --extra-files {params.extra:q}"
        " {params.checksum} --strip-components {params.strip} --lock-file {params.lock}"
        " --cache-dir resources/archives --out {output.folder} --source-record {output.source} > {log} 2>&1"


rule index:
    input:
        root=DATASET_DIR,
        code=code("data/index.py", "data/datasets/*.py"),
    output:
        MANIFEST,
    log:
        "logs/index/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        layout=lambda wc: config["datasets"][wc.dataset]["layout"],
        categories=lambda wc: config["datasets"][wc.dataset].get("categories", []),
        count_check="" if config["index"]["check_counts"] else "--no-count-check",
    shell:
        "python -m adfm index --root {input.root} --dataset {wildcards.dataset} --layout {params.layout}"
        " --categories {params.categories} {params.count_check} --threads {threads} --out {output} > {log} 2>&1"


rule boxes:
    input:
        manifest=MANIFEST,
        code=code("data/masks.py", "data/boxes_table.py"),
    output:
        boxes=BOXES,
        summary="resources/boxes/{dataset}.summary.csv",
    log:
        "logs/boxes/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        kernel=config["boxes"]["dilation_kernel"],
        min_area=config["boxes"]["min_area"],
        reference_side=config["boxes"]["reference_side"],
        box_of=config["boxes"]["box_of"],
    shell:
        "python -m adfm boxes --manifest {input.manifest} --dilation-kernel {params.kernel}"
        " --min-area {params.min_area} --reference-side {params.reference_side} --box-of {params.box_of}"
        " --out {output.boxes} --summary {output.summary} > {log} 2>&1"


rule split:
    input:
        unpack(protocol_inputs),
        code=code("data/split.py", "data/boxes_table.py", "data/split_table.py", "settings/data.py"),
    output:
        SPLIT,
    log:
        "logs/split/{protocol}.log",
    conda:
        "../../envs/data.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        settings=lambda wc: data_settings.SplitSettings.from_config(config, wc.protocol).to_json(),
    shell:
        "python -m adfm split --manifests {input.manifests} --boxes {input.boxes} --settings {params.settings:q}"
        " --out {output} > {log} 2>&1"


rule mmad_questions:
    input:
        unpack(mmad_split_filter),
        root=DATASET_DIR.format(dataset="mmad"),
        manifest=MANIFEST.format(dataset="mmad"),
        boxes=BOXES.format(dataset="mmad"),
        code=code(
            "data/mmad_questions.py",
            "data/mmad_question_table.py",
            "data/boxes_table.py",
            "data/datasets/mmad.py",
            "inference/mmad.py",
        ),
    output:
        MMAD_QUESTIONS,
    log:
        "logs/mmad_questions.log",
    conda:
        "../../envs/data.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        split_filter=mmad_question_args,
    shell:
        "python -m adfm mmad-questions --root {input.root} --manifest {input.manifest} --boxes {input.boxes}"
        " {params.split_filter} --out {output} > {log} 2>&1"

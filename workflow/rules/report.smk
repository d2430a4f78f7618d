rule provenance:
    input:
        schema=SCHEMA,
        # the data the run used, as each download recorded it (manual datasets not yet downloaded:
        # none, so they do not hold up the record)
        sources=expand(SOURCE_RECORD, dataset=[name for name, spec in config["datasets"].items() if spec["url"]]),
    output:
        record=report(PROVENANCE, caption="../report/provenance.rst", category="Provenance"),
        settings_csv="results/settings.csv",
        settings_html=report("results/settings.html", caption="../report/settings.rst", category="Provenance"),
    log:
        "logs/provenance.log",
    conda:
        "../../envs/data.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        config=adfm_config.settings_json(config),
        commit=GIT_COMMIT,
    shell:
        "python -m adfm provenance --config {params.config:q} --commit {params.commit} --schema {input.schema}"
        " --sources {input.sources} --out {output.record} --settings-csv {output.settings_csv} --settings-html {output.settings_html}"
        " > {log} 2>&1"

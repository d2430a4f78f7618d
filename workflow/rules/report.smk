rule provenance:
    output:
        report("results/provenance.yaml", caption="../report/provenance.rst", category="Provenance"),
    params:
        config=json.dumps(config),
        commit=GIT_COMMIT,
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    log:
        "logs/provenance.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m adfm provenance --config {params.config:q} --commit {params.commit} --out {output} > {log} 2>&1"

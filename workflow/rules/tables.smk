rule table:
    input:
        unpack(table_metrics),
        code=code("evaluation/tables.py"),
    output:
        csv="results/{table}.csv",
        markdown="results/{table}.md",
        html=report("results/{table}.html", caption="../report/table.rst", category="Tables",
                    labels={"table": "{table}"}),
    params:
        spec=lambda wc: adfm_config.table_spec(config, wc.table),
    wildcard_constraints:
        table="|".join(config["tables"]),
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    log:
        "logs/table/{table}.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m adfm table --spec {params.spec:q} --metrics {input.metrics} --mmad-metrics {input.mmad_metrics}"
        " --out {output.csv} > {log} 2>&1"

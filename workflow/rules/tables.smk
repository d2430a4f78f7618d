rule table:
    input:
        metrics=table_metrics,
        code=code("tables.py"),
    output:
        csv="results/{table}.csv",
        markdown="results/{table}.md",
    params:
        spec=lambda wc: json.dumps(config["tables"][wc.table]),
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
        "python -m adfm table --spec {params.spec:q} --metrics {input.metrics} --out {output.csv} > {log} 2>&1"

rule table:
    input:
        unpack(table_metrics),
        code=code("evaluation/tables.py", "evaluation/table_layout.py", "settings/evaluation.py", "paper/*"),
    output:
        csv=TABLE,
        markdown="results/{table}.md",
        html=report(
            "results/{table}.html", caption="../report/table.rst", category="Tables", labels={"table": "{table}"}
        ),
    log:
        "logs/table/{table}.log",
    wildcard_constraints:
        table="|".join(config["tables"]),
    conda:
        "../../envs/data.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        settings=lambda wc: evaluation_settings.TableSettings.from_config(config, wc.table).to_json(),
    shell:
        "python -m adfm table --settings {params.settings:q} --metrics {input.metrics}"
        " --mmad-metrics {input.mmad_metrics} --csv {output.csv} --markdown {output.markdown} --html {output.html}"
        " > {log} 2>&1"

# How close the reproduction came to the paper, at a glance: every table's cells, ours against the
# paper's, drawn and summed up in a sentence per table; the report's front page leads with it.


rule summary:
    input:
        tables=expand(TABLE, table=config["tables"]),
        code=code("evaluation/summary*.py", "evaluation/drawing.py"),
    output:
        png=report(SUMMARY, caption="../report/summary.rst", category="Summary"),
        pdf="results/summary.pdf",
        csv="results/summary.csv",
        sentences="results/summary.txt",
        html=report("results/summary.html", caption="../report/summary.rst", category="Summary"),
    log:
        "logs/summary.log",
    conda:
        "../../envs/report.yaml"
    threads: res("default", "threads")
    resources:
        **family_resources("default"),
    params:
        tolerance=config["summary"]["tolerance"],
        demo_note=targets.demo_note(config) or "",
    shell:
        "python -m adfm summary --tables {input.tables} --tolerance {params.tolerance}"
        " --demo-note {params.demo_note:q} --png {output.png} --pdf {output.pdf} --csv {output.csv}"
        " --sentences {output.sentences} --html {output.html} > {log} 2>&1"

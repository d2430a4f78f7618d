# AD-FM reproduction: from dataset archives to the paper's tables.
#   snakemake --cores all                                  the paper (real data, Qwen2.5-VL-7B, GPUs)
#   snakemake --cores all --configfile workflow/configs/demo.yaml    every stage on a CPU, in minutes
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/summary.smk"


rule all:
    default_target: True
    input:
        get_final_output(),

# fastadv workflow: data -> training -> evaluation -> results table -> figures.
# All logic lives in workflow/rules/common.smk and the fastadv package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"


onstart:
    refuse_gpu_scale_on_cpu()


rule all:
    input:
        default_targets(),
    default_target: True

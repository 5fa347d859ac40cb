rule evaluate_model:
    input:
        model="runs/{scale}/{experiment}/{variant}/eps{eps}/seed{seed}/model_{kind}.pt",
        data=dataset_file,
    output:
        result="results/{scale}/{experiment}/evals/{variant}/eps{eps}/seed{seed}/{kind}.json",
    params:
        resolved=eval_config,
    log:
        "logs/evaluate_model/{scale}/{experiment}/{variant}/eps{eps}/seed{seed}/{kind}.log",
    benchmark:
        "benchmarks/evaluate_model/{scale}/{experiment}/{variant}/eps{eps}/seed{seed}/{kind}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: resource("eval_threads")
    resources:
        mem_mb=resource("eval_mem_mb"),
        runtime=resource("eval_runtime"),
        gpu=resource("gpu"),
    shell:
        "fastadv evaluate --resolved {params.resolved:q} --model {input.model} --out {output.result}"
        " --set threads={threads} > {log} 2>&1"


rule collect_results:
    input:
        evals=experiment_evals,
    output:
        table="results/{scale}/{experiment}/results.csv",
    log:
        "logs/collect_results/{scale}/{experiment}.log",
    benchmark:
        "benchmarks/collect_results/{scale}/{experiment}.tsv"
    conda:
        "../envs/fastadv.yaml"
    # Seconds of work on files already here: on a cluster it runs where Snakemake runs, not queued as a job.
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv collect --out {output.table} {input.evals} > {log} 2>&1"


rule collect_curves:
    # Every run's learning curves in one long-form CSV, for dvc plots (dvc.yaml plots:, template learning_curves).
    input:
        histories=experiment_histories,
    output:
        curves="results/{scale}/{experiment}/curves.csv",
    params:
        runs=experiment_run_dirs,
    log:
        "logs/collect_curves/{scale}/{experiment}.log",
    benchmark:
        "benchmarks/collect_curves/{scale}/{experiment}.tsv"
    conda:
        "../envs/fastadv.yaml"
    # Seconds of work on files already here: on a cluster it runs where Snakemake runs, not queued as a job.
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv curves --scale {wildcards.scale} --out {output.curves} {params.runs} > {log} 2>&1"


rule make_zoo_table:
    # Published models (params.yaml zoo:) imported and evaluated with the paper's protocol and AutoAttack.
    input:
        unpack(zoo_inputs),
    output:
        md=report("results/{scale}/zoo.md", caption="../report/target.rst", category="zoo", subcategory="{scale} scale"),
        csv="results/{scale}/zoo.csv",
    params:
        resolved=zoo_config,
        caption=CHECK_CAPTIONS["zoo"],
    log:
        "logs/make_zoo_table/{scale}.log",
    benchmark:
        "benchmarks/make_zoo_table/{scale}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: lambda wildcards: study(wildcards.scale).resources()["eval_threads"]
    resources:
        mem_mb=lambda wildcards: study(wildcards.scale).resources()["eval_mem_mb"],
        runtime=lambda wildcards: study(wildcards.scale).resources()["eval_runtime"],
        gpu=lambda wildcards: study(wildcards.scale).resources()["gpu"],
    shell:
        "fastadv zoo --resolved {params.resolved:q} --out {output.md} --set threads={threads} > {log} 2>&1"

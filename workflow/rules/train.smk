rule train_model:
    input:
        data=dataset_file,
    output:
        final="runs/" + RUN + "/model_final.pt",
        best="runs/" + RUN + "/model_best.pt",
        history="runs/" + RUN + "/history.csv",
        summary="runs/" + RUN + "/summary.json",
    params:
        resolved=run_config,
        config=PARAMS,
        out=lambda wildcards, output: os.path.dirname(output.final),
    log:
        "logs/train_model/" + RUN + ".log",
    benchmark:
        "benchmarks/train_model/" + RUN + ".tsv"
    threads: 2
    resources:
        mem_mb=resource("train_mem_mb"),
        runtime=resource("train_runtime"),
        gpu=resource("gpu"),
    shell:
        "fastadv train --config {params.config} --scale {wildcards.scale} --experiment {wildcards.experiment}"
        " --variant {wildcards.variant} --eps {wildcards.eps} --seed {wildcards.seed}"
        " --set runtime.threads={threads} --out {params.out} > {log} 2>&1"

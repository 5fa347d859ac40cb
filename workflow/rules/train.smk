rule train_model:
    input:
        data=dataset_file,
    output:
        final="runs/{scale}/{experiment}/{variant}/eps{eps}/seed{seed}/model_final.pt",
        best="runs/{scale}/{experiment}/{variant}/eps{eps}/seed{seed}/model_best.pt",
        history="runs/{scale}/{experiment}/{variant}/eps{eps}/seed{seed}/history.csv",
        summary="runs/{scale}/{experiment}/{variant}/eps{eps}/seed{seed}/summary.json",
        snapshots="runs/{scale}/{experiment}/{variant}/eps{eps}/seed{seed}/snapshots.npz",
    params:
        resolved=run_config,
        out=lambda wildcards, output: os.path.dirname(output.final),
    log:
        "logs/train_model/{scale}/{experiment}/{variant}/eps{eps}/seed{seed}.log",
    benchmark:
        "benchmarks/train_model/{scale}/{experiment}/{variant}/eps{eps}/seed{seed}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: resource("train_threads")
    priority: train_priority
    resources:
        mem_mb=resource("train_mem_mb"),
        runtime=resource("train_runtime"),
        gpu=train_job("gpu"),
        tasks=train_job("tasks"),
        tasks_per_gpu=train_job("tasks_per_gpu"),
        cpus_per_task=train_job("cpus_per_task"),
        mpi=train_job("mpi"),
    shell:
        "fastadv train --resolved {params.resolved:q} --set runtime.threads={threads} --ranks {resources.tasks}"
        " --restart-if-changed --diverged-ok --out {params.out} > {log} 2>&1"

rule prepare_data:
    output:
        npz="data/{dataset}.npz",
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "benchmarks/prepare_data/{dataset}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        # Source: $FASTADV_DATA_SOURCE (a .npz, an official file, a folder) or torchvision download.
        "fastadv prepare --dataset {wildcards.dataset} --root data > {log} 2>&1"

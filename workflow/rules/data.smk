rule prepare_data:
    output:
        npz="data/{dataset}.npz",
    wildcard_constraints:
        dataset="|".join(d for d in DATASETS if d not in FOLDER_DATASETS),
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "benchmarks/prepare_data/{dataset}.tsv"
    conda:
        "../envs/fastadv.yaml"
    # A download (or a copy) and a hash check: on a cluster it runs where Snakemake runs, whose network compute
    # nodes often lack, not queued as a job.
    localrule: True
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        # Source: fastadv prepare's default (datasets.default_source): $FASTADV_DATA_SOURCE (a .npz, an official
        # file, a folder), else ../shared/data if it holds cifar10.npz, else torchvision download.
        "fastadv prepare --dataset {wildcards.dataset} --root data > {log} 2>&1"


rule prepare_image_folder:
    output:
        manifest="data/{dataset}.json",
    wildcard_constraints:
        dataset="|".join(FOLDER_DATASETS),
    log:
        "logs/prepare_image_folder/{dataset}.log",
    benchmark:
        "benchmarks/prepare_image_folder/{dataset}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        # Source: $FASTADV_DATA_SOURCE, an ImageFolder tree (train/, val/) or a folder holding imagenet/. The manifest
        # only (--resize without sizes): rule resize_image_folder makes the copies the phases read.
        "fastadv prepare --dataset {wildcards.dataset} --root data --resize > {log} 2>&1"


rule resize_image_folder:
    input:
        manifest="data/{dataset}.json",
    output:
        manifest="data/{dataset}-{images}.json",
    wildcard_constraints:
        dataset="|".join(FOLDER_DATASETS),
        images=r"\d+",
    log:
        "logs/resize_image_folder/{dataset}-{images}.log",
    benchmark:
        "benchmarks/resize_image_folder/{dataset}-{images}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=600,
    shell:
        # Wong et al.'s resize.py: copies with the shorter side at {images} px, for the phases that read them.
        "fastadv prepare --dataset {wildcards.dataset} --root data --copies-only --resize {wildcards.images}"
        " --workers {threads} > {log} 2>&1"

rule plot_fig1:
    input:
        table="results/{scale}/fig1/results.csv",
    output:
        pdf=report("results/{scale}/fig1.pdf", caption="../report/fig1.rst", category="Figures"),
        png="results/{scale}/fig1.png",
        clean="results/{scale}/fig1_clean.pdf",
        clean_png="results/{scale}/fig1_clean.png",
        data="results/{scale}/fig1_data.csv",
    params:
        config=PARAMS,
    log:
        "logs/plot_fig1/{scale}.log",
    benchmark:
        "benchmarks/plot_fig1/{scale}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure fig1 --config {params.config} --scale {wildcards.scale} --experiment fig1"
        " --results {input.table} --out {output.pdf} > {log} 2>&1"

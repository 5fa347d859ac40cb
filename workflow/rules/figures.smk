rule plot_fig1:
    # Fig. 1 of the paper, and the same plot for the methods_comparison experiment.
    input:
        table="results/{scale}/{accuracy_experiment}/results.csv",
    output:
        pdf=report("results/{scale}/{accuracy_experiment}.pdf", caption="../report/fig1.rst", category="Figures"),
        png="results/{scale}/{accuracy_experiment}.png",
        clean="results/{scale}/{accuracy_experiment}_clean.pdf",
        clean_png="results/{scale}/{accuracy_experiment}_clean.png",
        data="results/{scale}/{accuracy_experiment}_data.csv",
    params:
        resolved=experiment_config(),
    log:
        "logs/plot_fig1/{scale}/{accuracy_experiment}.log",
    benchmark:
        "benchmarks/plot_fig1/{scale}/{accuracy_experiment}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure fig1 --resolved {params.resolved:q} --results {input.table} --published"
        " --out {output.pdf} > {log} 2>&1"


rule plot_grad_alignment:
    input:
        table="results/{scale}/fig1/results.csv",
    output:
        pdf=report("results/{scale}/grad_alignment.pdf", caption="../report/grad_alignment.rst", category="Figures"),
        png="results/{scale}/grad_alignment.png",
        data="results/{scale}/grad_alignment_data.csv",
    params:
        resolved=experiment_config("fig1"),
    log:
        "logs/plot_grad_alignment/{scale}.log",
    benchmark:
        "benchmarks/plot_grad_alignment/{scale}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure grad_alignment --resolved {params.resolved:q} --results {input.table}"
        " --out {output.pdf} > {log} 2>&1"


rule plot_figA:
    input:
        histories=histories_of("figA"),
    output:
        pdf=report("results/{scale}/figA.pdf", caption="../report/figA.rst", category="Figures"),
        png="results/{scale}/figA.png",
        data="results/{scale}/figA_data.csv",
    params:
        resolved=experiment_config("figA"),
    log:
        "logs/plot_figA/{scale}.log",
    benchmark:
        "benchmarks/plot_figA/{scale}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure figA --resolved {params.resolved:q} --histories {input.histories}"
        " --out {output.pdf} > {log} 2>&1"


rule table_runtime:
    # runtime.md: the fig1 runs; methods_comparison_runtime.md: that experiment's runs.
    input:
        table=runtime_results,
    output:
        md=report("results/{scale}/{runtime_table}.md", caption="../report/runtime.rst", category="Tables"),
        csv="results/{scale}/{runtime_table}.csv",
    params:
        resolved=experiment_config(),
    log:
        "logs/table_runtime/{scale}/{runtime_table}.log",
    benchmark:
        "benchmarks/table_runtime/{scale}/{runtime_table}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure runtime --resolved {params.resolved:q} --results {input.table} --published"
        " --out {output.md} > {log} 2>&1"


rule table_autoattack:
    input:
        table="results/{scale}/autoattack/results.csv",
    output:
        md=report("results/{scale}/autoattack.md", caption="../report/autoattack.rst", category="Tables"),
        csv="results/{scale}/autoattack.csv",
        tex="results/{scale}/autoattack.tex",
    params:
        resolved=experiment_config("autoattack"),
    log:
        "logs/table_autoattack/{scale}.log",
    benchmark:
        "benchmarks/table_autoattack/{scale}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure autoattack --resolved {params.resolved:q} --results {input.table} --published"
        " --out {output.md} > {log} 2>&1"


rule plot_learning_curves:
    input:
        histories=histories_of("fig1"),
    output:
        pdf=report("results/{scale}/fig1_curves_eps{eps}.pdf", caption="../report/curves.rst", category="Figures"),
        png="results/{scale}/fig1_curves_eps{eps}.png",
        data="results/{scale}/fig1_curves_eps{eps}_data.csv",
    params:
        resolved=experiment_config("fig1"),
    log:
        "logs/plot_learning_curves/{scale}/eps{eps}.log",
    benchmark:
        "benchmarks/plot_learning_curves/{scale}/eps{eps}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure figA --resolved {params.resolved:q} --eps {wildcards.eps} --histories {input.histories}"
        " --out {output.pdf} > {log} 2>&1"


rule table_methods:
    # The author response's Table 7: FGSM, FGSM+CURE, FGSM+GradAlign (, FGSM+LLR) at ε = 8, 16/255.
    input:
        table="results/{scale}/table7/results.csv",
    output:
        md=report("results/{scale}/table7.md", caption="../report/table7.rst", category="Tables"),
        csv="results/{scale}/table7.csv",
        tex="results/{scale}/table7.tex",
    params:
        resolved=experiment_config("table7"),
    log:
        "logs/table_methods/{scale}.log",
    benchmark:
        "benchmarks/table_methods/{scale}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure table7 --resolved {params.resolved:q} --results {input.table} --out {output.md} > {log} 2>&1"


rule plot_fig8:
    # Fig. 8: clean and PGD-50-10 accuracy vs ε, CIFAR-10 (fig1) and SVHN (fig1_svhn), published values beside.
    input:
        cifar10="results/{scale}/fig1/results.csv",
        svhn="results/{scale}/fig1_svhn/results.csv",
    output:
        pdf=report("results/{scale}/fig8.pdf", caption="../report/fig8.rst", category="Figures"),
        png="results/{scale}/fig8.png",
        data="results/{scale}/fig8_data.csv",
    params:
        resolved=experiment_config("fig1", others=["fig1_svhn"]),
    log:
        "logs/plot_fig8/{scale}.log",
    benchmark:
        "benchmarks/plot_fig8/{scale}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure fig8 --resolved {params.resolved:q} --results {input.cifar10} {input.svhn} --published"
        " --out {output.pdf} > {log} 2>&1"


rule table_vs_published:
    # Every (method, ε, model kind) of Fig. 1 with a published value: measured, published, difference.
    input:
        table="results/{scale}/fig1/results.csv",
    output:
        md=report("results/{scale}/vs_published.md", caption="../report/vs_published.rst", category="Tables"),
        csv="results/{scale}/vs_published.csv",
    params:
        resolved=experiment_config("fig1"),
    log:
        "logs/table_vs_published/{scale}.log",
    benchmark:
        "benchmarks/table_vs_published/{scale}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure vs_published --resolved {params.resolved:q} --results {input.table} --out {output.md}"
        " > {log} 2>&1"


rule plot_training_metrics:
    # Fig. 4 (PreActResNet-18: standard, FGSM, PGD-10) and Fig. 11 (single-layer CNN: FGSM, GradAlign):
    # test accuracy, loss and the two cosines at every evaluation.
    input:
        histories=metrics_histories,
    output:
        pdf=report("results/{scale}/{metrics_figure}.pdf", caption="../report/metrics.rst", category="Figures"),
        png="results/{scale}/{metrics_figure}.png",
        data="results/{scale}/{metrics_figure}_data.csv",
    params:
        resolved=experiment_config(),
    log:
        "logs/plot_training_metrics/{scale}/{metrics_figure}.log",
    benchmark:
        "benchmarks/plot_training_metrics/{scale}/{metrics_figure}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure metrics --resolved {params.resolved:q} --histories {input.histories}"
        " --out {output.pdf} > {log} 2>&1"


rule plot_cnn_filters:
    # Figs. 5-7: the noise-sensitive filter before/after CO, filter and outgoing-weight norms, feature maps.
    input:
        history=cnn_run("history.csv"),
        snapshots=cnn_run("snapshots.npz"),
        summary=cnn_run("summary.json"),
        data=dataset_of("cnn4"),
    output:
        pdf=report("results/{scale}/{cnn_figure}.pdf", caption="../report/cnn4.rst", category="Figures"),
        png="results/{scale}/{cnn_figure}.png",
        data="results/{scale}/{cnn_figure}_data.csv",
    params:
        resolved=experiment_config("cnn4"),
        figure=lambda wildcards: CNN_FIGURES[wildcards.cnn_figure],
    log:
        "logs/plot_cnn_filters/{scale}/{cnn_figure}.log",
    benchmark:
        "benchmarks/plot_cnn_filters/{scale}/{cnn_figure}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure {params.figure} --resolved {params.resolved:q} --histories {input.history}"
        " --data-root data --out {output.pdf} > {log} 2>&1"


rule table_cnn4:
    # Per method and seed of the single-layer CNN: CO, final / early-stopped accuracy, the grown filter.
    input:
        table="results/{scale}/cnn4/results.csv",
        histories=histories_of("cnn4"),
    output:
        md=report("results/{scale}/cnn4.md", caption="../report/cnn4.rst", category="Tables"),
        csv="results/{scale}/cnn4.csv",
    params:
        resolved=experiment_config("cnn4"),
    log:
        "logs/table_cnn4/{scale}.log",
    benchmark:
        "benchmarks/table_cnn4/{scale}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure cnn_table --resolved {params.resolved:q} --results {input.table}"
        " --histories {input.histories} --out {output.md} > {log} 2>&1"


rule check_lemma2:
    # Lemma 2 (gradient alignment at initialisation) against freshly initialised single-layer CNNs.
    output:
        md=report("results/{scale}/lemma2.md", caption="../report/lemma2.rst", category="Tables"),
        csv="results/{scale}/lemma2.csv",
        pdf="results/{scale}/lemma2.pdf",
        png="results/{scale}/lemma2.png",
        data="results/{scale}/lemma2_data.csv",
    log:
        "logs/check_lemma2/{scale}.log",
    benchmark:
        "benchmarks/check_lemma2/{scale}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "fastadv lemma2 --out {output.md} > {log} 2>&1"


rule check_fidelity:
    # The effect of each switch of parity with the official code, on the fig1 FGSM model at the largest ε.
    input:
        model=fidelity_model,
        history=lambda wildcards: fidelity_model(wildcards).replace("model_final.pt", "history.csv"),
    output:
        md=report("results/{scale}/fidelity.md", caption="../report/fidelity.rst", category="Tables"),
        csv="results/{scale}/fidelity.csv",
    log:
        "logs/check_fidelity/{scale}.log",
    benchmark:
        "benchmarks/check_fidelity/{scale}.tsv"
    conda:
        "../envs/fastadv.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "fastadv fidelity --model {input.model} --out {output.md} > {log} 2>&1"


rule select_default_scale:
    # results/<name> is results/<scale>/<name> of the configured scale (params.yaml `scale`, or
    # --config scale=...): the unscaled targets of the paper's figures and tables. A copy, rebuilt
    # when the scale (hence the input) changes.
    input:
        scaled=scaled_result,
    output:
        unscaled="results/{name}",
    wildcard_constraints:
        name=r"[^/]+\.(pdf|png|md|csv|tex)",
    log:
        "logs/select_default_scale/{name}.log",
    benchmark:
        "benchmarks/select_default_scale/{name}.tsv"
    conda:
        "../envs/fastadv.yaml"
    localrule: True
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "fastadv copy {input.scaled} {output.unscaled} > {log} 2>&1"

rule draw_figure:
    # Every figure of the paper (`fastadv targets`; fastadv.paper.targets says what each is drawn from).
    # draw_accuracy_figure and make_table below are this rule with other outputs.
    input:
        unpack(target_inputs),
    output:
        out=report("results/{scale}/{target}.pdf", caption="../report/target.rst", category=report_category, subcategory="{scale} scale"),
        png="results/{scale}/{target}.png",
        data="results/{scale}/{target}_data.csv",
    wildcard_constraints:
        target=FIGURE_TARGETS,
    params:
        draw=target_field("draw"),
        caption=target_field("caption"),
        resolved=target_experiments,
        options=target_options,
    log:
        "logs/draw/{scale}/{target}.log",
    benchmark:
        "benchmarks/draw/{scale}/{target}.tsv"
    conda:
        "../envs/fastadv.yaml"
    # Seconds of drawing from tables already here (and so the rules made from it below): on a cluster it runs where Snakemake runs, not queued as a job.
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fastadv figure {params.draw} --resolved {params.resolved:q} --results {input.results}"
        " --histories {input.histories} {params.options} --out {output.out} > {log} 2>&1"


use rule draw_figure as draw_accuracy_figure with:
    # Figures like Fig. 1: final and early-stopped robust accuracy, and a clean-accuracy panel beside.
    output:
        out=report("results/{scale}/{target}.pdf", caption="../report/target.rst", category=report_category, subcategory="{scale} scale"),
        png="results/{scale}/{target}.png",
        clean="results/{scale}/{target}_clean.pdf",
        clean_png="results/{scale}/{target}_clean.png",
        data="results/{scale}/{target}_data.csv",
    wildcard_constraints:
        target=ACCURACY_TARGETS,
    localrule: True  # not inherited by `use rule`


use rule draw_figure as draw_figure_and_table with:
    # Figures with a table beside (sweep: the onsets of catastrophic overfitting).
    output:
        out=report("results/{scale}/{target}.pdf", caption="../report/target.rst", category=report_category, subcategory="{scale} scale"),
        png="results/{scale}/{target}.png",
        data="results/{scale}/{target}_data.csv",
        md=report("results/{scale}/{target}.md", caption="../report/target.rst", category=report_category, subcategory="{scale} scale"),
        csv="results/{scale}/{target}.csv",
    wildcard_constraints:
        target=FIGURE_TABLE_TARGETS,
    localrule: True  # not inherited by `use rule`


use rule draw_figure as make_table with:
    output:
        out=report("results/{scale}/{target}.md", caption="../report/target.rst", category=report_category, subcategory="{scale} scale"),
        csv="results/{scale}/{target}.csv",
        tex="results/{scale}/{target}.tex",
    wildcard_constraints:
        target=TABLE_TARGETS,
    localrule: True  # not inherited by `use rule`


rule check_lemma2:
    # Lemma 2 (gradient alignment at initialisation) against freshly initialised single-layer CNNs.
    output:
        md=report("results/{scale}/lemma2.md", caption="../report/target.rst", category="lemma2", subcategory="{scale} scale"),
        csv="results/{scale}/lemma2.csv",
        pdf="results/{scale}/lemma2.pdf",
        png="results/{scale}/lemma2.png",
        data="results/{scale}/lemma2_data.csv",
    params:
        caption=CHECK_CAPTIONS["lemma2"],
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
        md=report("results/{scale}/fidelity.md", caption="../report/target.rst", category="fidelity", subcategory="{scale} scale"),
        csv="results/{scale}/fidelity.csv",
    params:
        caption=CHECK_CAPTIONS["fidelity"],
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

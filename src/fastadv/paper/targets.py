"""The one table of the paper's figures and tables that the workflow builds, ``results/<scale>/<name>.<ext>``.

Each :class:`Target` says what it shows, which renderer draws it (``fastadv figure <draw>``, fastadv.paper.render)
and from what (results tables of experiments, run histories, the prepared data); the command line's choices,
the Snakemake rules (workflow/rules/figures.smk: one rule for all figures, one for all tables), the report
captions and the docs' targets reference (``fastadv targets``) all read it. Torch- and pandas-free: the
workflow imports it to plan.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from fastadv.errors import FastAdvError, unknown_choice

# What a renderer reads its runs from (``histories``):
#   all        the history.csv of every run of the experiment
#   per_eps    of the runs at the ε in the target's name, first seed ({eps} in the name)
#   first_run  of the runs at the experiment's first ε and seed (optionally only ``variants``)
#   fgsm_run   the FGSM run of the first seed, with its snapshots, summary and the prepared data
HISTORIES = ("all", "per_eps", "first_run", "fgsm_run")


@dataclass(frozen=True)
class Target:
    name: str                      # results/<scale>/<name>.<ext>; "{eps}" in it: one target per training ε
    draw: str                      # the renderer: `fastadv figure <draw>` (fastadv.paper.render.FIGURES)
    what: str                      # one line for the targets reference (docs)
    caption: str                   # the Snakemake report's caption
    experiment: str | None = None  # the experiment it is drawn for (None: the first of ``results``)
    results: tuple = ()            # experiments whose results.csv it reads, in --results order
    histories: str | None = None   # which runs' history.csv it reads (HISTORIES)
    variants: tuple | None = None  # first_run: the variants drawn (None: all)
    published: bool = False        # published values beside (--published)
    clean_panel: bool = False      # a figure like Fig. 1 also draws <name>_clean.pdf

    def __post_init__(self):
        if self.histories not in (None, *HISTORIES):
            raise ValueError(f"target {self.name}: histories {self.histories!r}; valid: {', '.join(HISTORIES)}")

    @property
    def kind(self) -> str:
        """``table`` (<name>.md, .csv, .tex), ``figure`` (<name>.pdf, .png, <name>_data.csv) or ``figure_table``
        (a figure and <name>.md, .csv)."""
        if self.draw in TABLE_RENDERERS:
            return "table"
        return "figure_table" if self.draw in FIGURE_TABLE_RENDERERS else "figure"

    @property
    def source(self) -> str:
        """The experiment whose resolved settings (methods, ε, seeds) the renderer is given."""
        return self.experiment or self.results[0]

    def pattern(self) -> re.Pattern:
        return re.compile(re.escape(self.name).replace(re.escape("{eps}"), r"(?P<eps>[0-9.]+)") + "$")


# Renderers that write a table (Markdown, CSV and LaTeX); every other renderer draws a figure.
TABLE_RENDERERS = ("runtime", "autoattack", "attacks_table", "table7", "vs_published", "cnn_table", "table6",
                   "r2_targeted")
# Renderers that draw a figure and write a table beside it.
FIGURE_TABLE_RENDERERS = ("sweep",)

TARGETS = (
    Target("fig1", "fig1", "Fig. 1: PGD-50-10 vs ε, final and early-stopped, published values beside",
           "PGD-50-10 robust accuracy versus training ε on CIFAR-10 for each method (mean ± std over seeds), final "
           "models (left) and early-stopped models (right), as in Fig. 1 of Andriushchenko & Flammarion (2020); "
           "the scale it was made at is printed on the figure.",
           results=("fig1",), published=True, clean_panel=True),
    Target("fig1_curves_eps{eps}", "figA", "learning curves of the Fig. 1 runs at one ε",
           "Fig. A-style learning curves of the Fig. 1 runs at one training ε (first seed): PGD accuracy and "
           "gradient alignment per epoch, crosses at epochs flagged as catastrophic overfitting.",
           experiment="fig1", histories="per_eps"),
    Target("grad_alignment", "grad_alignment", "final gradient alignment vs ε",
           "Final gradient alignment (cosine of input gradients at x and x+η, η uniform in the ε-ball, on the "
           "monitoring test points) versus training ε per method; catastrophic overfitting shows as a collapse "
           "towards 0.",
           results=("fig1",)),
    Target("runtime", "runtime", "training time per method, ratio to FGSM",
           "Measured training time per run for each method and its ratio to FGSM on the same hardware (the "
           "rebuttal reports FGSM 9.5 min vs FGSM+GradAlign 30.9 min on a V100, 3.25x).",
           results=("fig1",), published=True),
    Target("figA", "figA", "author response Fig. A: curves at 14/255, 60 epochs",
           "Learning curves at ε = 14/255 (rebuttal Fig. A): PGD accuracy (top) and gradient alignment (bottom) "
           "per epoch; crosses mark epochs flagged as catastrophic overfitting.",
           experiment="figA", histories="all"),
    Target("fig4", "metrics", "Fig. 4: PreActResNet-18 at 8/255, statistics every 200 iterations",
           "Training statistics at every evaluation on the fixed test points (Fig. 4 of Andriushchenko & "
           "Flammarion, NeurIPS 2020): FGSM (solid) and PGD (dashed) accuracy and loss, and the gradient alignment "
           "cos(∇ℓ(x), ∇ℓ(x+η)) (solid) beside cos(δ_FGSM, δ_PGD) (dashed); × marks catastrophic overfitting.",
           experiment="fig4", histories="first_run"),
    Target("cnn4_fig11", "metrics", "Fig. 11: the single-layer CNN's statistics, FGSM and GradAlign",
           "Training statistics of the single-layer CNN at every evaluation (Fig. 11 of Andriushchenko & "
           "Flammarion, NeurIPS 2020), FGSM and FGSM+GradAlign: accuracy, loss and the two cosines; × marks "
           "catastrophic overfitting.",
           experiment="cnn4", histories="first_run", variants=("fgsm", "gradalign")),
    Target("cnn4_fig5", "filter_weights", "Fig. 5: the single-layer CNN's noise-sensitive filter across CO",
           "The filter of the single-layer CNN (Sec. 3, ε = 10/255) whose norm grows most, before and after "
           "catastrophic overfitting (Fig. 5).",
           experiment="cnn4", histories="fgsm_run"),
    Target("cnn4_fig6", "filter_norms", "Fig. 6: its filter and outgoing-weight norms",
           "Norms of the single-layer CNN's filters and of their outgoing weights per epoch (Fig. 6).",
           experiment="cnn4", histories="fgsm_run"),
    Target("cnn4_fig7", "feature_maps", "Fig. 7: its feature maps on x and x + η",
           "Feature maps of the single-layer CNN on a test image x and on x + η before and after catastrophic "
           "overfitting (Fig. 7).",
           experiment="cnn4", histories="fgsm_run"),
    Target("cnn4", "cnn_table", "Sec. 3: the single-layer CNN per method and seed",
           "The single-layer CNN with 4 filters of Sec. 3 at ε = 10/255, per method and seed: CO epoch, final and "
           "early-stopped accuracy, the filter whose norm grows most.",
           results=("cnn4",), histories="all"),
    Target("fig8", "fig8", "Fig. 8: clean and robust accuracy, CIFAR-10 and SVHN",
           "Fig. 8 of Andriushchenko & Flammarion (NeurIPS 2020): clean (dashed) and PGD-50-10 (solid) accuracy of "
           "final models vs training ε on CIFAR-10 and SVHN, mean ± std over seeds, with the published values beside.",
           results=("fig1", "fig1_svhn"), published=True),
    Target("table7", "table7", "author response Table 7: FGSM, FGSM+CURE, FGSM+GradAlign, FGSM+LLR",
           "Author response, Table 7: FGSM, FGSM+CURE, FGSM+GradAlign (and FGSM+LLR) at ε = 8 and 16/255, clean and "
           "PGD-50-10 accuracy (mean ± std over seeds) of final and early-stopped models, training time relative "
           "to FGSM.",
           results=("table7",)),
    Target("autoattack", "autoattack", "author response: AutoAttack at 8/255",
           "Clean, PGD-50-10 and AutoAttack accuracy at ε = 8/255, mean ± std over seeds (the rebuttal reports "
           "FGSM+GradAlign 44.54±0.24 vs FGSM-RS 42.80±0.58 AutoAttack accuracy).",
           results=("autoattack",), published=True),
    Target("attacks_table", "attacks_table", "author response: stronger attacks (AutoAttack per attack, "
           "MultiTargeted) at 8/255",
           "Clean, PGD-50-10 under both restart rules, AutoAttack after each of its attacks and MultiTargeted (Gowal "
           "et al. 2019) on the same final models at ε = 8/255, mean ± std over seeds, the author response's "
           "AutoAttack numbers beside (reviewer 2 asked for AutoAttack or MultiTargeted).",
           results=("autoattack",), published=True),
    Target("vs_published", "vs_published", "every measured value with a published one beside, and the difference",
           "Every (method, ε, model kind) with both a measured and a published value (the paper, read off its "
           "figures or printed, and a third-party reproduction): the two and their difference.",
           results=("fig1",)),
    Target("published", "published", "the paper's published values as read off its figures",
           "The published values of the paper's figures (fastadv/paper/published_values.yaml: digitised from the "
           "official figures, with their reading uncertainty) redrawn, to check the digitisation by eye.",
           experiment="fig1"),
    Target("methods_comparison", "fig1", "later single-step methods, drawn like Fig. 1",
           "PGD-50-10 robust accuracy versus training ε of the later single-step methods (N-FGSM, ELLE, ...) beside "
           "FGSM+GradAlign, final and early-stopped models, mean ± std over seeds.",
           results=("methods_comparison",), published=True, clean_panel=True),
    Target("methods_comparison_runtime", "runtime", "their training time",
           "Measured training time per run of the later single-step methods and its ratio to FGSM.",
           results=("methods_comparison",), published=True),
    Target("imagenet", "fig1", "ImageNet, drawn like Fig. 1",
           "PGD accuracy versus training ε on ImageNet per method, final and early-stopped models.",
           results=("imagenet",), published=True, clean_panel=True),
    Target("sweep", "sweep", "Fig. 1's shape over seeds: PGD-50-10 vs ε and the ε at which each method overfits",
           "PGD-50-10 accuracy versus training ε over a grid crossing each method's onset of catastrophic overfitting "
           "(mean ± std over seeds, final and early-stopped models), and in sweep.md the share of seeds that overfit "
           "per method and ε and the onset (the smallest ε where at least half do) beside the paper's Fig. 1.",
           results=("sweep",), published=True),
    Target("r2_targeted", "r2_targeted", "author response R2: targeted AT at 16/255 on ImageNet, random-targeted PGD",
           "Reviewer 2's setting: FGSM-RS, FGSM+GradAlign (λ = 2, an assumption) and PGD-10 trained toward random "
           "targets at ε = 16/255 with Wong et al.'s ImageNet recipe, evaluated by Xie et al.'s random-targeted "
           "PGD-10/100/1000 (accuracy and attack success) and untargeted PGD-50-10, final and best-clean models; "
           "beside, what the authors reported (no robust enough model in 15 epochs).",
           results=("imagenet_targeted16",)),
    Target("imagenet_alignment", "imagenet_alignment", "ImageNet: gradient alignment and PGD accuracy over training",
           "ImageNet, Wong et al.'s three-phase recipe: PGD accuracy and gradient alignment on the monitoring points "
           "(at each phase's crop) against epochs, per method and ε; × marks catastrophic overfitting. The author "
           "response: without CO (ε = 2, 4/255) the alignment decreases gradually, without the sharp drop of CO.",
           experiment="imagenet", histories="all"),
    Target("table6", "table6", "Table 6: ImageNet, clean and PGD per method × ε, both protocols",
           "ImageNet (Table 6): clean and PGD accuracy of final models per method and ε, under the paper's "
           "PGD-50-10 (α = ε/4, 1,000 points) and Wong et al.'s protocol (α = 1/255, the whole validation set), "
           "published values beside where they exist.",
           results=("imagenet",), published=True),
)

# The results of their own commands (not `fastadv figure`); listed here for the targets reference.
CHECKS = {
    "lemma2": ("Lemma 2's bound against measured alignment at initialisation (+ `lemma2.pdf`)",
               "Lemma 2 of Andriushchenko & Flammarion (NeurIPS 2020): the gradient alignment of freshly initialised "
               "single-layer CNNs, measured, against the lemma's lower bound (Monte Carlo), for several ε and "
               "numbers of filters."),
    "fidelity": ("each switch of parity with the official code run both ways on one model",
                 "Each switch of parity with the official GradAlign code run both ways on the same trained model "
                 "and points: the size of its effect (share of pixels, cosine of parameter gradients, accuracy "
                 "points)."),
    "zoo": ("published models (params.yaml `zoo:`) with the paper's protocol and AutoAttack, published beside",
            "Published models (the official GradAlign checkpoints, Wong et al.'s, RobustBench's) imported with "
            "`fastadv import` and evaluated with the paper's protocol (PGD-50-10, both restart rules) and standard "
            "AutoAttack, beside the values published for them and the difference; a listed file that is absent is "
            "reported as not downloaded."),
}


def renderers() -> tuple[str, ...]:
    """The names ``fastadv figure`` accepts."""
    return tuple(sorted({t.draw for t in TARGETS}))


def find(name: str) -> tuple[Target, float | None]:
    """The target whose name matches ``name`` (e.g. ``fig1_curves_eps16``) and its ε, if it has one."""
    for t in TARGETS:
        m = t.pattern().match(name)
        if m:
            return t, float(m["eps"]) if "eps" in m.groupdict() else None
    raise unknown_choice("target", name, [t.name for t in TARGETS])


def known(name: str) -> bool:
    """Whether ``name`` names a figure or table the workflow builds (a target, e.g. ``fig1_curves_eps16``, or a
    check's table, e.g. ``lemma2``); the clean-accuracy panels ``*_clean`` are part of their figure."""
    try:
        find(name)
    except FastAdvError:
        return name in CHECKS
    return True


def names(kind: str, experiments, clean_panel: bool | None = None) -> list[str]:
    """Names of targets of ``kind`` whose experiments all exist in the study (wildcard constraints)."""
    return [t.name for t in TARGETS if t.kind == kind and (clean_panel is None or t.clean_panel == clean_panel)
            and {t.source, *t.results} <= set(experiments)]


def name_regex(target_names) -> str:
    """A wildcard constraint matching exactly these target names."""
    return "|".join(re.escape(n).replace(re.escape("{eps}"), r"[0-9.]+") for n in target_names) or "(?!)"


def runs_drawn(target: Target, runs: list[dict], eps: float | None = None) -> list[dict]:
    """Which of the experiment's runs ({variant, eps, seed}, in the study's order) a target reads histories of."""
    first = runs[0]
    if target.histories == "all":
        return runs
    if target.histories == "per_eps":
        return [r for r in runs if r["eps"] == eps and r["seed"] == first["seed"]]
    if target.histories == "first_run":
        return [r for r in runs if r["eps"] == first["eps"] and r["seed"] == first["seed"]
                and (target.variants is None or r["variant"] in target.variants)]
    if target.histories == "fgsm_run":
        return [next(r for r in runs if r["variant"] == "fgsm")]
    return []


def options(target: Target, eps: float | None = None) -> list[str]:
    """``fastadv figure`` options besides its inputs: published values, the ε of the title, the data."""
    return ((["--published"] if target.published else []) + ([f"--eps={eps:g}"] if eps is not None else [])
            + (["--data-root=data"] if target.histories == "fgsm_run" else []))


def targets_table() -> str:
    """The targets reference's table (Markdown; docs/reference/targets.md, ``fastadv targets``)."""
    rows = ["| target `results/<scale>/…` | what | drawn from |", "|---|---|---|"]
    for t in TARGETS:
        files = {"table": f"`{t.name}.md` (+ `.csv`, `.tex`)",
                 "figure_table": f"`{t.name}.pdf` (+ `.png`, `_data.csv`, `.md`, `.csv`)",
                 "figure": f"`{t.name}.pdf` (+ `.png`, `_data.csv`{', `_clean.pdf`' if t.clean_panel else ''})"}
        sources = (", ".join(f"`{e}` results" for e in t.results) + (" and runs" if t.results and t.histories else "")
                   or (f"`{t.source}` runs" if t.histories else "`published_values.yaml`"))
        rows.append(f"| {files[t.kind]} | {t.what} | {sources} |")
    rows += [f"| `{n}.md` (+ `.csv`) | {what} | `fastadv {n}` |" for n, (what, _) in CHECKS.items()]
    return "\n".join(rows)

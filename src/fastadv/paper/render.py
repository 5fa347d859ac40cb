"""What ``fastadv figure NAME`` draws: one function per figure or table of the paper. Each writes its
file(s) atomically and, beside a figure, ``<stem>_data.csv`` with every number drawn."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fastadv import atomic
from fastadv.paper import figures as F
from fastadv.paper.reporting import reported, second_series
from fastadv.errors import FastAdvError
from fastadv.evaluation.results import COLUMNS
from fastadv.units import eps_absolute


def read_table(path, columns, what: str) -> pd.DataFrame:
    """A CSV a figure reads, refused in one line when missing, unreadable or without the columns it needs."""
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise FastAdvError(f"{str(path)!r} is not readable as {what} ({type(e).__name__})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        shown = ", ".join(missing[:4]) + (f" … ({len(missing)} in all)" if len(missing) > 4 else "")
        raise FastAdvError(f"{str(path)!r} is not {what}: no column(s) {shown}")
    return df


@dataclass
class FigureJob:
    name: str
    scale: str
    experiment: dict            # the resolved experiment (dataset, methods, eps, seeds, models …)
    out: Path
    results: list = field(default_factory=list)  # tidy results CSVs (fastadv collect), one per experiment
    histories: list = field(default_factory=list)  # history.csv of runs: …/{variant}/eps{e}/seed{s}/history.csv
    eps: float | None = None
    published: bool = False
    data_root: str | None = None
    others: list = field(default_factory=list)  # further resolved experiments, for results[1:]

    def table(self, i: int = 0) -> pd.DataFrame:
        """The i-th results table, refused unless it holds every run of its experiment."""
        experiments = [self.experiment] + self.others
        if len(self.results) != len(experiments):
            raise FastAdvError(f"figure {self.name} needs --results with {len(experiments)} tidy results CSV(s), "
                               f"one per experiment; got {len(self.results)}")
        df = read_table(self.results[i], COLUMNS, "a tidy results table (fastadv collect)")
        e = experiments[i]
        F.require_runs(df, e["methods"], e["eps"], e["seeds"], e["models"])
        return df

    def by_variant(self) -> dict[str, pd.DataFrame]:
        if not self.histories:
            raise FastAdvError(f"figure {self.name} needs --histories (history.csv of each run)")
        return {Path(p).parents[2].name: read_table(p, ("epoch", "test_pgd_acc"), "a run's history.csv")
                for p in self.histories}

    def run_dir(self) -> Path:
        if len(self.histories) != 1:
            raise FastAdvError(f"figure {self.name} draws one run: pass its history.csv as --histories")
        return Path(self.histories[0]).parent

    def hardware(self, df: pd.DataFrame) -> str:
        return f"{df['device'].iloc[0]}, torch {df['torch'].iloc[0]}, {self.scale} scale"

    def save_data(self, drawn: pd.DataFrame) -> None:
        atomic.write_text(self.out.with_name(self.out.stem + "_data.csv"), drawn.to_csv(index=False))

    def published_values(self):
        from fastadv.paper.reference import load_published

        return load_published() if self.published else None

    @property
    def eps_shown(self) -> float:
        return self.eps if self.eps is not None else self.experiment["eps"][0]


def draw_fig1(job: FigureJob) -> None:
    (df, note), ref, dataset = reported(job.table(), job.scale), job.published_values(), job.experiment["dataset"]
    drawn = F.accuracy_vs_eps(df, "pgd_acc", job.out, job.scale, "PGD-50-10 accuracy (%)", published=ref,
                              dataset=dataset, second=second_series(job.scale), note=note)
    clean = F.accuracy_vs_eps(df, "clean_acc", job.out.with_name(job.out.stem + "_clean.pdf"), job.scale,
                              "clean accuracy (%)", published=ref, dataset=dataset, note=note)
    job.save_data(pd.concat([drawn.assign(metric="pgd_acc"), clean.assign(metric="clean_acc")]))


def draw_grad_alignment(job: FigureJob) -> None:
    df = job.table()
    job.save_data(F.accuracy_vs_eps(df[df["model_kind"] == "final"], "final_grad_alignment", job.out, job.scale,
                                    "gradient alignment (final)", factor=1.0))


def draw_runtime(job: FigureJob) -> None:
    df = job.table()
    F.write_table(F.runtime_table(df, job.published_values(), job.experiment["dataset"]), job.out,
                  f"Training time per run and ratio to FGSM ({job.hardware(df)}).", latex=True)


def draw_autoattack(job: FigureJob) -> None:
    df, note = reported(job.table(), job.scale)
    if df["autoattack_acc"].isna().any():
        raise FastAdvError(f"{job.results} has runs without AutoAttack; set autoattack: true in the experiment")
    eps = job.experiment["eps"][0]
    F.write_table(F.accuracy_table(df, eps, job.published_values(), job.experiment["dataset"]), job.out,
                  f"Accuracy (%) at eps = {eps:g}/255, mean ± std over seeds, final models ({note}; "
                  f"{job.hardware(df)}).",
                  latex=True)


def draw_attacks_table(job: FigureJob) -> None:
    from fastadv.paper.attacks_table import caption, stronger_attacks_table

    df, eps = job.table(), job.experiment["eps"][0]
    F.write_table(stronger_attacks_table(df, eps, job.published_values(), job.experiment["dataset"]), job.out,
                  caption(eps, f"the first {int(df['n_points'].max())} test points", job.hardware(df)), latex=True)


def draw_r2_targeted(job: FigureJob) -> None:
    from fastadv.paper.imagenet import R2_AUTHORS, r2_targeted

    df = job.table()
    F.write_table(r2_targeted(df), job.out,
                  f"Targeted adversarial training at eps = {job.experiment['eps'][0]:g}/255 on "
                  f"{job.experiment['dataset']}, evaluated by random-targeted PGD-k (one wrong class per point, Xie et "
                  f"al. 2019; acc: the prediction is the label, success: it is the target) and untargeted PGD, on the "
                  f"first {int(df['n_points'].max())} validation points, % ({job.hardware(df)}). Author response: "
                  f"{R2_AUTHORS}.", latex=True)


def draw_fig8(job: FigureJob) -> None:
    """Fig. 8: clean and PGD-50-10 accuracy, one panel per experiment (CIFAR-10: fig1, SVHN: fig1_svhn)."""
    reports = {e["dataset"]: reported(job.table(i), job.scale) for i, e in enumerate([job.experiment] + job.others)}
    notes = "; ".join(dict.fromkeys(note for _, note in reports.values()))
    job.save_data(F.clean_and_robust_vs_eps({d: df for d, (df, _) in reports.items()}, job.out, job.scale,
                                            job.published_values(), notes))


def draw_table7(job: FigureJob) -> None:
    df, note = reported(job.table(), job.scale)
    F.write_table(F.methods_table(df), job.out,
                  f"Clean / PGD-50-10 accuracy (%, mean ± std over seeds) and training time relative to FGSM at the "
                  f"same ε, final and early-stopped models ({note}; {job.hardware(df)}). Author response, Table 7: "
                  "FGSM+CURE stabilises FGSM training but performs worse than FGSM+GradAlign.", latex=True)


def draw_vs_published(job: FigureJob) -> None:
    from fastadv.paper.reference import load_published

    df, note = reported(job.table(), job.scale)
    title = (f"Measured ({note}; {job.hardware(df)}) against published values (%). "
             + ("The paper's setting: the difference is the reproduction gap." if job.scale == "paper" else
                f"At the {job.scale} scale (smaller data, model, schedule) the numbers are expected to differ: "
                "compare trends, not values."))
    F.write_table(F.vs_published_table(df, load_published(), job.experiment["dataset"]), job.out, title, latex=True)


def draw_published(job: FigureJob) -> None:
    from fastadv.paper.reference import load_published

    job.save_data(F.published_figures(load_published(), job.out))


def draw_figA(job: FigureJob) -> None:
    """Fig. A, or the curves of another experiment's runs at one ε (``job.eps``: fig1_curves_eps16). A CPU scale
    notes Fig. A's own experiment (what it dropped); another experiment's description is about its own figure."""
    note = job.experiment.get("description") if job.scale != "paper" and job.eps is None else None
    job.save_data(F.learning_curves(job.by_variant(), job.out, job.scale, job.eps_shown, note=note))


def draw_metrics(job: FigureJob) -> None:
    """Figs. 4 and 11: accuracy, loss and the two cosines at every evaluation."""
    job.save_data(F.training_metrics(job.by_variant(), job.out, job.scale, job.eps_shown))


def draw_filter_weights(job: FigureJob) -> None:
    from fastadv.paper.cnn_analysis import filter_weights_figure, load_run

    job.save_data(filter_weights_figure(load_run(job.run_dir()), job.out, job.scale))


def draw_filter_norms(job: FigureJob) -> None:
    from fastadv.paper.cnn_analysis import filter_norms_figure, load_run

    job.save_data(filter_norms_figure(load_run(job.run_dir()), job.out, job.scale))


def draw_feature_maps(job: FigureJob) -> None:
    from fastadv.paper.cnn_analysis import feature_maps_figure, load_run
    from fastadv.data.datasets import load_split

    run = load_run(job.run_dir())
    cfg = run["summary"]["config"]
    x, _ = load_split(job.data_root or cfg["data"]["root"], cfg["data"]["dataset"], "test", "cpu").head(1)
    job.save_data(feature_maps_figure(run, x[0], eps_absolute(cfg["method"]["eps"]), job.out, job.scale))


def draw_cnn_table(job: FigureJob) -> None:
    """Per method and seed of the single-layer CNN experiment: CO, accuracies, the grown filter."""
    from fastadv.paper.cnn_analysis import load_run, run_table

    df = job.table()
    runs = {(Path(p).parents[2].name, int(Path(p).parent.name.removeprefix("seed"))): load_run(Path(p).parent)
            for p in job.histories}
    F.write_table(run_table(df, runs), job.out,
                  f"Single-layer CNN, eps = {job.experiment['eps'][0]:g}/255, per method and seed: CO epoch and "
                  f"iteration (none: no CO), clean / PGD-50-10 accuracy (%) of the final and the early-stopped model "
                  f"on {int(df['n_points'].iloc[0])} test points, the filter whose norm grows most across CO and the "
                  f"growth of its outgoing weights' norm from CO to the end ({job.hardware(df)}). "
                  "Paper (Fig. 11, one FGSM run): CO around epoch 6, FGSM accuracy ≈ 45 % after it, PGD ≈ 18 % before.",
                  latex=True)


def draw_imagenet_alignment(job: FigureJob) -> None:
    """Gradient alignment and PGD accuracy over training on ImageNet, per method and ε."""
    from fastadv.paper.imagenet import alignment_over_training, read_histories

    if not job.histories:
        raise FastAdvError(f"figure {job.name} needs --histories (history.csv of each run)")
    job.save_data(alignment_over_training(read_histories(job.histories), job.out, job.scale))


def draw_sweep(job: FigureJob) -> None:
    """Fig. 1's shape over seeds (fastadv.paper.sweep): the figure, and ``<name>.md`` with the onsets of CO (measured
    by code from the runs' CO flags, the paper's from its Fig. 1 values) and each (method, ε)'s share of seeds that
    overfit (also ``<name>.csv``)."""
    from fastadv.paper.sweep import co_shares, onset_table, per_seed

    (df, note), ref = reported(job.table(), job.scale), job.published_values()
    job.save_data(F.accuracy_vs_eps(df, "pgd_acc", job.out, job.scale, "PGD-50-10 accuracy (%)", published=ref,
                                    dataset=job.experiment["dataset"], second=second_series(job.scale), note=note))
    shares = co_shares(df)
    seeds = ", ".join(str(s) for s in job.experiment["seeds"])
    md = (F.markdown(onset_table(shares, ref),
                     f"Onset of catastrophic overfitting: the smallest training eps (/255) at which at least half of "
                     f"the seeds ({seeds}) that learned overfit, by the runs' CO flags (at any evaluation, also "
                     f"transient; recomputed from each run's history under the monitor rule) and by "
                     f"collapse at the end (the final model's PGD accuracy below half the early-stopped one's), "
                     f"beside the paper's onset under the second rule (from its Fig. 1 values); shift = our onset "
                     f"by collapse - the paper's. {note}; {job.hardware(df)}.")
          + "\n" + F.markdown(shares, "Per method and eps: seeds that learned, seeds that did not (clean accuracy "
                                      "never clearly above chance: counted apart), seeds flagged CO and their share "
                                      "of those that learned, seeds collapsed at the end and their share, PGD "
                                      "accuracy (%) of the final and the early-stopped models (means over all seeds).")
          + "\n" + F.markdown(per_seed(df), "Per run: its status, the epoch of its first CO flag, whether it collapsed at the end, "
                                             "clean and PGD accuracy (%) of the final model, epoch and PGD accuracy of "
                                             "the early-stopped model, the final gradient alignment (monitoring "
                                             "points) and the training seconds."))
    atomic.write_text(job.out.with_suffix(".md"), md)
    atomic.write_text(job.out.with_suffix(".csv"), shares.to_csv(index=False))


def draw_table6(job: FigureJob) -> None:
    from fastadv.paper.imagenet import table6

    df = job.table()
    F.write_table(table6(df, job.published_values()), job.out,
                  f"ImageNet (Table 6 of Andriushchenko & Flammarion 2020, Wong et al.'s recipe): accuracy (%) per method, "
                  f"eps and model — final, and early-stopped by the rule in brackets (clean: the best clean accuracy "
                  f"on the monitored validation points, Wong et al.'s model_best.pth.tar, which their run_eval.sh "
                  f"evaluates): clean on the evaluated points and on the whole validation set, PGD "
                  f"under the paper's protocol (pgd_*) and under Wong et al.'s (also_*: alpha = 1/255, 10 restarts), "
                  f"published values beside where they exist (RobustBench, Wong2020Fast: their model, their PGD); "
                  f"the paper's own Table 6 numbers are not in the sources this project can reach ({job.hardware(df)}).",
                  latex=True)


FIGURES = {
    "fig1": draw_fig1, "fig8": draw_fig8, "published": draw_published, "table7": draw_table7, "vs_published": draw_vs_published, "grad_alignment": draw_grad_alignment, "runtime": draw_runtime, "autoattack": draw_autoattack,
    "attacks_table": draw_attacks_table, "r2_targeted": draw_r2_targeted,
    "figA": draw_figA, "metrics": draw_metrics, "filter_weights": draw_filter_weights,
    "filter_norms": draw_filter_norms, "feature_maps": draw_feature_maps, "cnn_table": draw_cnn_table,
    "imagenet_alignment": draw_imagenet_alignment, "table6": draw_table6, "sweep": draw_sweep,
}

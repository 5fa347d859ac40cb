"""The digitiser recovers known values from a plot drawn like the paper's (seaborn darkgrid look:
grey face, white grid, filled circles with a white edge, shaded ± std bands), within its stated
uncertainty; hidden markers are reported as such, not guessed; the published values load."""
import numpy as np
import pytest

from fastadv.paper.digitize import Axis, digitize, load_image, to_published
from fastadv.errors import FastAdvError
from fastadv.paper.reference import load_published

FACE, TEXT = (234, 234, 241), (38, 38, 38)
COLOURS = {"a": (0, 0, 0), "b": (235, 51, 35), "c": (0, 33, 245)}


def draw(path, values: dict, std: dict, dpi=150):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hexc = lambda c: "#%02x%02x%02x" % c  # noqa: E731
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=dpi)
    for ax in axes:
        ax.set_facecolor(hexc(FACE))
        ax.grid(color="white", lw=1.2)
        ax.set_axisbelow(True)
        for sp in ax.spines.values():
            sp.set_visible(False)
        ax.tick_params(colors=hexc(TEXT), length=0)
        x = np.arange(1, 11)
        for name, v in values.items():
            ax.fill_between(x, v - std[name], v + std[name], color=hexc(COLOURS[name]), alpha=0.2, lw=0)
            ax.plot(x, v, color=hexc(COLOURS[name]), lw=1, marker="o", ms=3.4, mec="white", mew=0.5)  # 7 px, as Fig. 1
        ax.set_xticks([2, 4, 6, 8, 10])
        ax.set_yticks([0, 20, 40, 60, 80])
        ax.set_ylim(-5, 90)
    fig.savefig(path, dpi=dpi, facecolor="white")
    plt.close(fig)


def spec(diameter=7):
    series = [{"name": n, "colour": list(c), "band_alpha": 0.2, "x": list(range(1, 11))} for n, c in COLOURS.items()]
    panel = {"x_ticks": [2, 4, 6, 8, 10], "y_ticks": [0, 20, 40, 60, 80], "series": series,
             "dataset": "cifar10", "model": "final", "metric": "pgd_acc"}
    return {"background": list(FACE), "gridline": [255, 255, 255], "text": list(TEXT), "band_tol": 10,
            "marker": {"diameter": diameter, "tol": 25, "window": 3, "min_width": 3},
            "panels": [{**panel, "name": "left"}, {**panel, "name": "right"}],
            "source": "synthetic", "origin": "paper", "figure": "fig1", "seeds": 5}


def test_axis_fit_is_least_squares_through_the_ticks():
    ax = Axis.fit([100, 200, 300], [0, 10, 20])
    assert ax.value(250) == pytest.approx(15) and ax.pixel(5) == pytest.approx(150) and ax.residual < 1e-9
    with pytest.raises(FastAdvError, match="≥ 2"):
        Axis.fit([1], [2])


def test_known_values_are_recovered_within_the_stated_uncertainty(tmp_path):
    rng = np.random.default_rng(0)
    values = {"a": np.linspace(80, 10, 10) + rng.uniform(-2, 2, 10), "b": np.linspace(60, 40, 10),
              "c": 20 + 10 * np.sin(np.arange(10))}
    std = {"a": np.full(10, 6.0), "b": np.full(10, 1.0), "c": np.full(10, 1.0)}
    draw(tmp_path / "plot.png", values, std)
    df = digitize(load_image(tmp_path / "plot.png"), spec())
    read = df[df["value"].notna()]
    assert len(read) >= 0.9 * len(df)  # the curves are apart: almost every marker is visible
    for _, r in read.iterrows():
        truth = values[r["series"]][int(r["x"]) - 1]
        assert abs(r["value"] - truth) <= r["uncertainty"] + 0.5, r.to_dict()  # 0.5: marker rendering
    wide = read[(read["series"] == "a") & read["std"].notna()]
    assert len(wide) and np.allclose(wide["std"], 6.0, atol=1.0)  # a band clear of the others is read
    rows = to_published(df, spec())
    assert len(rows) == len(read) and {r["origin"] for r in rows} == {"paper"}


def test_a_hidden_marker_is_reported_not_guessed(tmp_path):
    values = {"a": np.full(10, 50.0), "b": np.full(10, 50.0), "c": np.linspace(10, 30, 10)}  # b drawn over a
    draw(tmp_path / "plot.png", values, {k: np.zeros(10) for k in values})
    df = digitize(load_image(tmp_path / "plot.png"), spec())
    assert df[df["series"] == "a"]["value"].isna().all()
    assert (df[df["series"] == "a"]["how"] == "not visible").all()
    assert np.allclose(df[df["series"] == "b"]["value"], 50, atol=1.5)


def test_published_values_load_with_their_sources():
    p = load_published()
    assert set(p["origin"]) == {"paper", "third_party"}
    digitised = p[p["figure"].isin(["fig1", "fig8"])]
    assert len(digitised) > 200 and digitised["uncertainty"].notna().all()
    assert digitised["source"].str.contains("read off Fig").all()
    # A value printed in the paper's text agrees with what was read off Fig. 1 (GradAlign, 8/255, final).
    printed = p[(p["method"] == "gradalign") & (p["eps"] == 8) & (p["metric"] == "pgd_acc") & p["figure"].isna()
                & (p["origin"] == "paper")]["mean"].iloc[0]
    read = p[(p["method"] == "gradalign") & (p["eps"] == 8) & (p["figure"] == "fig1") & (p["model"] == "final")]
    assert abs(read["mean"].iloc[0] - printed) <= read["uncertainty"].iloc[0] + 0.5
    with pytest.raises(FastAdvError, match="origin 'blog'"):
        load_published("- {dataset: cifar10, method: fgsm, eps: 8, model: final, metric: pgd_acc, mean: 1, "
                       "std: null, seeds: null, origin: blog, source: x}")


def test_a_published_model_file_is_one_record_that_the_value_tables_read_only_where_it_says_so():
    """One store for published numbers (issue 41): a checkpoint record holds a file's clean, reported and AutoAttack
    accuracy; with ``method_values`` its numbers are also its method's value rows (Wong et al.'s ImageNet model, for
    Table 6), written out here by hand; without, they stay out of the method's values (the GradAlign file's
    RobustBench AutoAttack 43.93 must not stand beside the author response's 44.54 ± 0.24 over 5 seeds)."""
    from fastadv.paper.reference import load_checkpoints, published_value

    checkpoints, p = load_checkpoints(), load_published()
    assert {"Andriushchenko2020Understanding", "Wong2020Fast", "Wong2020Fast_imagenet"} <= set(checkpoints)
    wong = checkpoints["Wong2020Fast_imagenet"]
    rows = p[(p["dataset"] == "imagenet") & (p["method"] == "fgsm_rs") & (p["eps"] == 4)].set_index("metric")["mean"]
    assert rows.to_dict() == {"clean_acc": wong["clean_acc"], "pgd_acc": wong["reported_acc"],  # "PGD, as …"
                              "autoattack_acc": wong["autoattack_acc"]}
    ga = checkpoints["Andriushchenko2020Understanding"]
    assert not ga.get("method_values") and ga["autoattack_acc"] != ga["reported_acc"]
    assert published_value(p, "cifar10", "gradalign", "autoattack_acc", 8.0) == (ga["reported_acc"], 0.24)
    assert len(p[(p["method"] == "gradalign") & (p["eps"] == 8) & (p["metric"] == "autoattack_acc")]) == 1
    record = ("- {checkpoint: x, dataset: cifar10, method: fgsm, eps: 8, clean_acc: 1, reported_acc: null, "
              "reported_metric: PGD, autoattack_acc: null, origin: paper, source: s}\n")
    with pytest.raises(FastAdvError, match="published checkpoint 'x' is recorded twice"):
        load_checkpoints(record * 2)
    with pytest.raises(FastAdvError, match=r"published checkpoint #0: fields .*; required"):
        load_checkpoints(record.replace("clean_acc: 1, ", ""))


def test_a_marker_drawn_at_zero_is_recorded_at_zero_not_below():
    """Pixel quantisation reads a marker at 0 % as −0.05 %: the entry records the axis limit, says so, and
    keeps its uncertainty; an accuracy outside [0, 100] in the data file is refused."""
    import pandas as pd

    df = pd.DataFrame([{"panel": "left", "series": "a", "x": 8.0, "value": v, "std": float("nan"), "uncertainty": 0.36,
                        "how": "marker centre", "calibration_residual": 0.12} for v in (-0.05, 42.0, 100.3)])
    rows = to_published(df, spec())
    assert [r["mean"] for r in rows] == [0.0, 42.0, 100.0] and [r["uncertainty"] for r in rows] == [0.36] * 3
    assert rows[0]["read_off"] == ("marker centre; read -0.05, beyond the axis limit, recorded at 0; "
                                   "axis fit residual 0.12")
    assert rows[1]["read_off"] == "marker centre; axis fit residual 0.12"
    accuracies = load_published().query("metric.str.endswith('_acc')", engine="python")["mean"]
    assert accuracies.between(0, 100).all()
    with pytest.raises(FastAdvError, match=r"published value #0: pgd_acc -0.05 %; valid: \[0, 100\]"):
        load_published("- {dataset: cifar10, method: fgsm, eps: 8, model: final, metric: pgd_acc, mean: -0.05, "
                       "std: null, seeds: null, origin: paper, source: x}")

"""Sec. 3 of the paper: the single-layer CNN's figures draw exactly their data; Lemma 2's bound
against an independent integration and against measured alignment."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from fastadv.paper.cnn_analysis import (co_epochs, feature_maps, feature_maps_figure, filter_norms_figure,
                                  filter_weights_figure, load_run, noise_sensitive_filter, run_table)
from fastadv.config.params import deep_merge
from fastadv.config.study import resolve_config
from fastadv.paper.figures import training_metrics
from fastadv.paper.lemma2 import alignment_bound, lemma2_figure, lemma2_table
from fastadv.training.loop import train
from tests.helpers import PARAMS, write_separable_dataset


def synthetic_run(co_epoch=3, grown=2, epochs=5, m=4, seed=0):
    """A run as load_run() returns it, with filter ``grown`` jumping ×5 in norm at ``co_epoch``."""
    g = np.random.default_rng(seed)
    w = np.repeat(g.normal(size=(1, m, 3, 3, 3)), epochs + 1, axis=0) * np.linspace(1, 1.2, epochs + 1)[:, None, None, None, None]
    if co_epoch:
        w[co_epoch:, grown] *= 5
    h = pd.DataFrame({"epochs": np.arange(epochs + 1, dtype=float), "iteration": 10 * np.arange(epochs + 1)})
    for k in range(m):
        h[f"filter_norm_{k + 1}"] = np.linalg.norm(w[:, k].reshape(epochs + 1, -1), axis=1)
        h[f"outgoing_norm_{k + 1}"] = g.uniform(1, 2, epochs + 1)
    return {"history": h, "snapshots": {"epoch": np.arange(epochs + 1), "conv_weight": w,
                                        "conv_bias": g.normal(size=(epochs + 1, m))},
            "summary": {"co_epoch": co_epoch, "co_iteration": 10 * co_epoch if co_epoch else None,
                        "iterations_per_epoch": 10, "best_iteration": 10}}


def test_noise_sensitive_filter_is_the_one_that_grows_across_co():
    run = synthetic_run(co_epoch=3, grown=2)
    assert co_epochs(run) == (2, 3) and noise_sensitive_filter(run) == 2
    no_co = synthetic_run(co_epoch=None)
    no_co["snapshots"]["conv_weight"][5, 1] *= 3  # grows most from epoch 1 to the end
    assert co_epochs(no_co) == (1, 5) and noise_sensitive_filter(no_co) == 1


def test_filter_figures_draw_exactly_the_snapshots_and_history(tmp_path):
    run = synthetic_run(co_epoch=3, grown=2)
    drawn = filter_weights_figure(run, tmp_path / "f5.pdf", "test")
    for epoch in (2, 3):
        got = drawn[drawn["epoch"] == epoch].sort_values(["row", "col"])["weight"].to_numpy().reshape(3, 3)
        np.testing.assert_array_equal(got, run["snapshots"]["conv_weight"][epoch, 2, 1])  # filter w3, green
    assert set(drawn["filter"]) == {3}
    norms = filter_norms_figure(run, tmp_path / "f6.pdf", "test")
    pd.testing.assert_frame_equal(norms, run["history"][norms.columns])
    assert (tmp_path / "f5.pdf").read_bytes().startswith(b"%PDF") and (tmp_path / "f6.png").is_file()


def test_feature_maps_are_the_convolution_and_the_figure_draws_them(tmp_path):
    run = synthetic_run(co_epoch=3, grown=2)
    torch.manual_seed(0)
    x = torch.rand(3, 32, 32, dtype=torch.float64)
    w, b = run["snapshots"]["conv_weight"][3], run["snapshots"]["conv_bias"][3]
    maps = feature_maps(w, b, x[None])[0]
    for k in range(4):  # the map of filter k at pixel (i, j): ⟨w_k, 3×3 patch (zero-padded)⟩ + b_k
        padded = F.pad(x, (1, 1, 1, 1))
        i, j = 5, 0
        want = float((torch.as_tensor(w[k]) * padded[:, i:i + 3, j:j + 3]).sum() + b[k])
        assert float(maps[k, i, j]) == pytest.approx(want, rel=1e-12)
    drawn = feature_maps_figure(run, x, 10 / 255, tmp_path / "f7.pdf", "test", seed=4)
    eta = torch.empty_like(x[None]).uniform_(-10 / 255, 10 / 255, generator=torch.Generator().manual_seed(4))
    noisy = feature_maps(w, b, (x[None] + eta).clamp(0, 1))[0]
    row = drawn[(drawn["input"] == "x+eta") & (drawn["role"] == "noise-sensitive")].iloc[0]
    assert row["filter"] == 3 and row["std"] == pytest.approx(float(noisy[2].std(unbiased=False)), rel=1e-12)
    assert set(drawn["role"]) == {"regular", "noise-sensitive"}


def test_training_metrics_figure_draws_the_history(tmp_path):
    h = pd.DataFrame({"epochs": [0, 0.5, 1.0], "co": [False, False, True]})
    for col in ("test_fgsm_acc", "test_pgd_acc", "test_fgsm_loss", "test_pgd_loss", "grad_alignment",
                "test_cos_fgsm_pgd"):
        h[col] = np.random.default_rng(len(col)).uniform(0, 1, 3)
    drawn = training_metrics({"fgsm": h, "gradalign": h.assign(co=False)}, tmp_path / "m.pdf", "test", 10)
    acc = drawn[(drawn["method_label"] == "fgsm") & (drawn["metric"] == "test_pgd_acc")]["value"].to_numpy()
    np.testing.assert_allclose(acc, 100 * h["test_pgd_acc"])
    loss = drawn[(drawn["method_label"] == "gradalign") & (drawn["metric"] == "test_fgsm_loss")]["value"].to_numpy()
    np.testing.assert_array_equal(loss, h["test_fgsm_loss"])
    assert len(drawn) == 2 * 6 * 3


def test_run_table_from_a_real_single_layer_cnn_run(tmp_path):
    root = tmp_path / "data"
    write_separable_dataset(root)
    cfg = deep_merge(resolve_config(PARAMS, "train", "smoke"), {
        "data": {"root": str(root), "dataset": "svhn", "subset": None}, "model": {"name": "one_layer_cnn", "width": 4},
        "optim": {"name": "adam", "lr_max": 0.003}, "monitor": {"every_iterations": 3},
        "runtime": {"threads": 1, "progress": "never"}})
    train(cfg, tmp_path / "run")
    run = load_run(tmp_path / "run")
    results = pd.DataFrame([{"method_label": "fgsm", "train_seed": 0, "model_kind": k, "clean_acc": a, "pgd_acc": b}
                            for k, a, b in (("final", 0.9, 0.4), ("best", 0.8, 0.5))])
    table = run_table(results, {("fgsm", 0): run})
    row = table.iloc[0]
    assert (row["clean_final"], row["pgd_final"], row["clean_best"], row["pgd_best"]) == (90.0, 40.0, 80.0, 50.0)
    assert row["grown_filter"] == noise_sensitive_filter(run) + 1 and row["co_epoch"] == run["summary"]["co_epoch"]
    w = run["snapshots"]["conv_weight"]
    before, after = co_epochs(run)
    k = noise_sensitive_filter(run)
    assert row["filter_growth"] == pytest.approx(float(np.linalg.norm(w[after, k]) / np.linalg.norm(w[before, k])))
    h = run["history"]
    start = h[h["iteration"] == run["summary"]["co_iteration"]] if run["summary"]["co_epoch"] else h[h["epochs"] >= 1]
    col = f"outgoing_norm_{k + 1}"
    assert row["outgoing_growth_to_end"] == pytest.approx(h[col].iloc[-1] / start[col].iloc[0])


def test_lemma2_bound_matches_an_independent_integration():
    """p = 2: w/‖w‖ = (cos θ, sin θ) uniform on the circle, z uniform on the unit square, by quadrature."""
    eps = 0.1
    theta = (np.arange(720) + 0.5) / 720 * 2 * np.pi
    z = (np.arange(200) + 0.5) / 200
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    inner = np.cos(theta)[:, None, None] * z1 + np.sin(theta)[:, None, None] * z2
    expectation = np.exp(-inner ** 2 / eps ** 2).mean()
    want = max(1 - math.sqrt(2 * expectation), 0.5)
    got, se = alignment_bound(eps, p=2, samples=400_000, seed=1)
    assert abs(got - want) < 4 * se + 1e-4


def test_measured_alignment_at_init_is_never_below_the_lemma2_bound(tmp_path):
    table = lemma2_table(eps_grid=(4, 16), widths=(1, 4, 16), samples=100_000, images=16, inits=2)
    assert len(table) == 6 and (table["margin_in_se"] >= -3).all(), table
    assert (table["bound"] >= 0.5).all() and (table["measured"] <= 1).all()
    drawn = lemma2_figure(table, tmp_path / "l2.pdf")
    pd.testing.assert_frame_equal(drawn, table)

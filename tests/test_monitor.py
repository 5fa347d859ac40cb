"""Monitoring statistics (the official code's train.py block) against independent computations;
the per-iteration evaluation schedule; the single-layer CNN's diagnostics and snapshots."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from fastadv.config.params import deep_merge
from fastadv.models import build_model
from fastadv.training.monitor import statistics
from fastadv.training.loop import Preempted, train
from tests.helpers import toy_model


def test_statistics_match_an_independent_computation():
    torch.manual_seed(0)
    x = torch.rand(20, 3, 2, 2, dtype=torch.float64)
    x[0, 0, 0, 0], x[1, 1, 1, 1] = 0.0, 1.0  # pixels on the box edge
    y = torch.randint(0, 3, (20,))
    model, eps, steps = toy_model(seed=2), 0.1, 4
    got = statistics(model, x, y, eps, steps, torch.Generator().manual_seed(9), batch_size=7)

    def per_example_grad(z):  # ∇ of Σᵢ ℓᵢ at z (each row is that example's own gradient)
        z = z.clone().requires_grad_(True)
        return torch.autograd.grad(F.cross_entropy(model(z), y, reduction="sum"), z)[0]

    # Draws as statistics() makes them, per chunk of 7: the PGD start, then η.
    gen, starts, etas = torch.Generator().manual_seed(9), [], []
    for s in (slice(0, 7), slice(7, 14), slice(14, 20)):
        starts.append(torch.empty_like(x[s]).uniform_(-eps, eps, generator=gen))
        etas.append(torch.empty_like(x[s]).uniform_(-eps, eps, generator=gen))
    start, eta = torch.cat(starts), torch.cat(etas)
    x_fgsm = (x + eps * per_example_grad(x).sign()).clamp(0, 1)
    delta = (x + start).clamp(0, 1) - x
    for _ in range(steps):
        delta = (delta + eps / 4 * per_example_grad(x + delta).sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    x_pgd = x + delta
    with torch.no_grad():
        for name, z in (("clean", x), ("fgsm", x_fgsm), ("pgd", x_pgd)):
            assert got[f"{name}_loss"] == pytest.approx(float(F.cross_entropy(model(z), y)), rel=1e-10), name
            assert got[f"{name}_acc"] == float((model(z).argmax(1) == y).double().mean()), name
    cos = F.cosine_similarity((x_fgsm - x).flatten(1), delta.flatten(1), dim=1)
    assert got["cos_fgsm_pgd"] == pytest.approx(float(cos.mean()), rel=1e-10)
    # Both gradients go through the clip to [0,1]: zero where the input is not strictly inside the
    # box (torch's clamp passes no gradient at the bounds: a pixel at exactly 0 or 1 gets none).
    g1 = per_example_grad(x) * ((x > 0) & (x < 1))
    g2 = per_example_grad((x + eta).clamp(0, 1)) * ((x + eta > 0) & (x + eta < 1))
    assert got["grad_alignment"] == pytest.approx(float(F.cosine_similarity(g1.flatten(1), g2.flatten(1)).mean()),
                                                  rel=1e-10)
    assert got["grad_norm"] == pytest.approx(float(g1.flatten(1).norm(dim=1).mean()), rel=1e-10)
    assert g1[0, 0, 0, 0] == 0 and g1[1, 1, 1, 1] == 0 and per_example_grad(x)[0, 0, 0, 0] != 0
    assert got["fgsm_delta_norm"] == pytest.approx(float((x_fgsm - x).flatten(1).norm(dim=1).mean()), rel=1e-10)
    assert got["pgd_delta_norm"] == pytest.approx(float(delta.flatten(1).norm(dim=1).mean()), rel=1e-10)


def test_zero_gradient_counts_as_aligned():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double()
    with torch.no_grad():
        model[1].weight.zero_()  # constant logits: both gradients are 0
    x, y = torch.rand(4, 3, 2, 2, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    got = statistics(model, x, y, 0.1, 2, torch.Generator().manual_seed(0))
    assert got["grad_alignment"] == 1.0 and got["grad_norm"] == 0.0 and got["cos_fgsm_pgd"] == 1.0


def _cfg(tiny_cfg, **over):
    return deep_merge(tiny_cfg, {"data": {"subset": 96}, "optim": {"batch_size": 32, "epochs": 2}, **over})


@pytest.mark.parametrize("every, rows", [(0, [0, 3, 6]), (2, [0, 2, 4, 6]), (4, [0, 4, 6])])
def test_statistics_every_n_iterations_and_after_the_last(tmp_path, tiny_cfg, every, rows):
    s = train(_cfg(tiny_cfg, monitor={"every_iterations": every}), tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist["iteration"]) == rows
    assert list(hist["epochs"]) == [r / 3 for r in rows] and list(hist["epoch"]) == [-(-r // 3) for r in rows]
    assert s["iterations_done"] == 6 and s["iterations_per_epoch"] == 3
    assert s["best_iteration"] == hist.loc[hist["train_pgd_acc"].idxmax(), "iteration"]
    for col in ("test_clean_loss", "test_fgsm_loss", "test_pgd_loss", "test_cos_fgsm_pgd", "test_grad_norm",
                "test_fgsm_delta_norm", "test_pgd_delta_norm", "train_delta_norm", "train_grad_norm"):
        assert col in hist
    # Training statistics are running means since the previous row (FGSM: ‖δ‖₂ = ε√d at most).
    assert np.isnan(hist.loc[0, "train_loss"]) and (hist.loc[1:, "train_loss"] > 0).all()
    assert (hist.loc[1:, "train_delta_norm"] <= 8 / 255 * np.sqrt(3 * 32 * 32) + 1e-6).all()


def test_drop_last_drops_the_incomplete_batch(tmp_path, tiny_cfg):
    s = train(_cfg(tiny_cfg, data={"subset": 100}, optim={"drop_last": True, "epochs": 1, "batch_size": 32}), tmp_path)
    assert s["iterations_per_epoch"] == 3
    s = train(_cfg(tiny_cfg, data={"subset": 100}, optim={"drop_last": False, "epochs": 1, "batch_size": 32}),
              tmp_path / "keep")
    assert s["iterations_per_epoch"] == 4


def test_resume_with_per_iteration_statistics_is_bit_exact(tmp_path, tiny_cfg):
    cfg = _cfg(tiny_cfg, monitor={"every_iterations": 2}, model={"name": "one_layer_cnn", "width": 4},
               runtime={"checkpoint_every": 1})
    ref = train(cfg, tmp_path / "ref")
    for cut in (1, 2, 2):  # stops right after an evaluation row, mid-epoch, and across the epoch boundary
        with pytest.raises(Preempted):
            train(cfg, tmp_path / "cut", max_iterations=cut)
    resumed = train(cfg, tmp_path / "cut")
    a = torch.load(tmp_path / "ref/model_final.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut/model_final.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = (pd.read_csv(tmp_path / d / "history.csv") for d in ("ref", "cut"))
    cols = [c for c in ha if c != "train_seconds"]
    pd.testing.assert_frame_equal(ha[cols], hb[cols])
    assert resumed["best_iteration"] == ref["best_iteration"]
    sa, sb = (np.load(tmp_path / d / "snapshots.npz") for d in ("ref", "cut"))
    assert all(np.array_equal(sa[k], sb[k]) for k in sa.files)


def test_single_layer_cnn_diagnostics_and_epoch_snapshots(tmp_path, tiny_cfg):
    cfg = _cfg(tiny_cfg, model={"name": "one_layer_cnn", "width": 4}, monitor={"every_iterations": 2})
    train(cfg, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    snaps = np.load(tmp_path / "snapshots.npz")
    assert list(snaps["epoch"]) == [0, 1, 2] and snaps["conv_weight"].shape == (3, 4, 3, 3, 3)
    final = torch.load(tmp_path / "model_final.pt", weights_only=True)["state_dict"]
    w, u = final["net.1.weight"], final["net.4.weight"]
    assert np.array_equal(snaps["conv_weight"][-1], w.numpy()) and np.array_equal(snaps["conv_bias"][-1],
                                                                                  final["net.1.bias"].numpy())
    last = hist.iloc[-1]
    for k in range(4):  # filter k reads 3×3×3 pixels; the linear layer reads channel k's 32×32 map
        assert last[f"filter_norm_{k + 1}"] == pytest.approx(float(w[k].norm()), rel=1e-6)
        block = u[:, k * 1024:(k + 1) * 1024]
        assert last[f"outgoing_norm_{k + 1}"] == pytest.approx(float(block.norm()), rel=1e-6)
    # Epoch-0 snapshot = the initialisation (He init of the official code: std √(2/(3·3·4)) for the conv).
    init = build_model("one_layer_cnn", width=4, num_classes=10, in_shape=(3, 32, 32))
    assert snaps["conv_weight"][0].shape == tuple(init.conv.weight.shape)
    assert float(np.std(snaps["conv_weight"][0])) == pytest.approx((2 / 36) ** 0.5, rel=0.35)

"""The single-layer CNN analysis of Andriushchenko & Flammarion (NeurIPS 2020, Sec. 3): after
catastrophic overfitting (CO) one filter of a CNN with 4 filters becomes a noise-sensitive,
Laplace-like filter whose norm, and that of its outgoing weights, jumps (Figs. 5, 6), and whose
feature map on x + η is dominated by the noise η (Fig. 7).

Inputs are what ``fastadv train`` writes for ``model.name: one_layer_cnn``: ``snapshots.npz``
(filters at every epoch end), ``history.csv`` (filter and outgoing-weight norms at every
evaluation, the CO flag) and ``summary.json``. Each figure function returns the numbers it drew.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fastadv.errors import FastAdvError
from fastadv.paper.figures import _plt, save_figure
from fastadv.units import eps_in_255ths

GREEN = 1  # RGB channel index shown in Fig. 5


def load_run(run_dir: str | Path) -> dict:
    """history, snapshots, summary of a single-layer-CNN run directory."""
    run_dir = Path(run_dir)
    missing = [f for f in ("history.csv", "snapshots.npz", "summary.json") if not (run_dir / f).is_file()]
    if missing:
        raise FastAdvError(f"run {str(run_dir)!r} lacks {', '.join(missing)} (train it with fastadv train)")
    snaps = np.load(run_dir / "snapshots.npz")
    if "conv_weight" not in snaps.files:
        raise FastAdvError(f"run {str(run_dir)!r} has no filter snapshots: its model is not one_layer_cnn")
    return {"history": pd.read_csv(run_dir / "history.csv"), "snapshots": {k: snaps[k] for k in snaps.files},
            "summary": json.loads((run_dir / "summary.json").read_text())}


def co_epochs(run: dict) -> tuple[int, int]:
    """(epoch before, epoch after) catastrophic overfitting: the epoch ends around the first CO
    evaluation; without CO, the first and the last epoch."""
    co = run["summary"]["co_epoch"]
    last = int(run["snapshots"]["epoch"][-1])
    return (co - 1, co) if co else (1, last)


def noise_sensitive_filter(run: dict) -> int:
    """Index (0-based) of the filter whose norm grows most across CO (without CO: from epoch 1 to the end)."""
    before, after = co_epochs(run)
    w, epochs = run["snapshots"]["conv_weight"], list(run["snapshots"]["epoch"])
    norms = np.linalg.norm(w.reshape(len(w), w.shape[1], -1), axis=2)
    return int(np.argmax(norms[epochs.index(after)] / norms[epochs.index(before)]))


def filter_weights_figure(run: dict, out_pdf, scale: str) -> pd.DataFrame:
    """Fig. 5: the noise-sensitive filter's green channel (3×3) the epoch before and after CO."""
    plt = _plt()
    k = noise_sensitive_filter(run)
    before, after = co_epochs(run)
    epochs = list(run["snapshots"]["epoch"])
    fig, axes = plt.subplots(1, 2, figsize=(4.4, 2.2))
    drawn = []
    for ax, epoch, tag in zip(axes, (before, after), ("before CO", "after CO")):
        w = run["snapshots"]["conv_weight"][epochs.index(epoch), k, GREEN]
        lim = float(np.abs(w).max()) or 1.0
        im = ax.imshow(w, cmap="bwr", vmin=-lim, vmax=lim)
        ax.set_title(f"epoch {epoch} ({tag})" if run["summary"]["co_epoch"] else f"epoch {epoch}")
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
        drawn += [{"epoch": epoch, "filter": k + 1, "row": i, "col": j, "weight": float(w[i, j])}
                  for i in range(3) for j in range(3)]
    fig.suptitle(f"filter w{k + 1}, green channel ({scale} scale)", fontsize=8)
    save_figure(fig, out_pdf)
    plt.close(fig)
    return pd.DataFrame(drawn)


def filter_norms_figure(run: dict, out_pdf, scale: str) -> pd.DataFrame:
    """Fig. 6: ℓ2 norms of the filters and of their outgoing weights at every evaluation, CO epoch dashed."""
    plt = _plt()
    h = run["history"]
    m = len([c for c in h if c.startswith("filter_norm_")])
    fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.6))
    for ax, prefix, title in zip(axes, ("filter_norm_", "outgoing_norm_"),
                                 ("norm of the filters", "norm of the outgoing weights")):
        for k in range(1, m + 1):
            ax.plot(h["epochs"], h[f"{prefix}{k}"], label=f"w{k}")
        if run["summary"]["co_epoch"]:
            ax.axvline(run["summary"]["co_iteration"] / run["summary"]["iterations_per_epoch"], ls="--", color="k", lw=0.8)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best")
    fig.suptitle(f"{scale} scale" + ("; dashed: catastrophic overfitting" if run["summary"]["co_epoch"] else
                                     "; no catastrophic overfitting"), fontsize=7, x=0.99, ha="right")
    save_figure(fig, out_pdf)
    plt.close(fig)
    cols = ["epochs"] + [f"{p}{k}" for p in ("filter_norm_", "outgoing_norm_") for k in range(1, m + 1)]
    return h[cols]


def feature_maps(weight: np.ndarray, bias: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """Pre-activation feature maps conv(x) + b of a single-layer CNN (3×3, stride 1, zero padding 1)."""
    return F.conv2d(x, torch.as_tensor(weight, dtype=x.dtype), torch.as_tensor(bias, dtype=x.dtype), padding=1)


def feature_maps_figure(run: dict, image: torch.Tensor, eps: float, out_pdf, scale: str, seed: int = 0) -> pd.DataFrame:
    """Fig. 7: feature maps of a regular filter (the one whose norm grows least) and of the
    noise-sensitive filter on x and on x + η, η ~ U[-ε, ε] (drawn with ``seed``), after CO."""
    plt = _plt()
    k = noise_sensitive_filter(run)
    _, after = co_epochs(run)
    epochs = list(run["snapshots"]["epoch"])
    i = epochs.index(after)
    w, b = run["snapshots"]["conv_weight"][i], run["snapshots"]["conv_bias"][i]
    norms = np.linalg.norm(w.reshape(len(w), -1), axis=1) / np.linalg.norm(
        run["snapshots"]["conv_weight"][0].reshape(len(w), -1), axis=1)
    regular = int(np.argmin(norms))
    x = image[None].double()
    eta = torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(seed))
    noisy = (x + eta).clamp(0, 1)
    maps = {name: feature_maps(w, b, z)[0] for name, z in (("x", x), ("x+eta", noisy))}
    fig, axes = plt.subplots(2, 3, figsize=(6.0, 4.0))
    drawn = []
    for row, (name, z) in enumerate((("x", x), ("x+eta", noisy))):
        axes[row, 0].imshow(z[0].permute(1, 2, 0).numpy())
        axes[row, 0].set_title(name.replace("eta", "η"))
        for col, f in enumerate((regular, k), start=1):
            fmap = maps[name][f].numpy()
            axes[row, col].imshow(fmap, cmap="gray")
            axes[row, col].set_title(f"w{f + 1} * {name.replace('eta', 'η')} + b{f + 1}")
            drawn.append({"input": name, "filter": f + 1, "role": "noise-sensitive" if f == k else "regular",
                          "mean": float(fmap.mean()), "std": float(fmap.std()), "min": float(fmap.min()),
                          "max": float(fmap.max())})
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"pre-activation feature maps at epoch {after}, ε = {eps_in_255ths(eps):g}/255 ({scale} scale)", fontsize=8)
    save_figure(fig, out_pdf)
    plt.close(fig)
    return pd.DataFrame(drawn)


def run_table(results: pd.DataFrame, runs: dict) -> pd.DataFrame:
    """Per method and seed: CO (epoch, iteration), clean / PGD-50-10 of the final and the early-stopped
    model, the filter whose norm grows most across CO (without CO: from epoch 1 to the end), that growth,
    and how much the norm of its outgoing weights grows from CO (epoch 1) to the end (the paper's Fig. 6).
    ``runs``: (label, seed) → load_run()."""
    rows = []
    for (label, seed), run in sorted(runs.items()):
        r = results[(results["method_label"] == label) & (results["train_seed"] == seed)].set_index("model_kind")
        s = run["summary"]
        before, after = co_epochs(run)
        k = noise_sensitive_filter(run)
        w, epochs = run["snapshots"]["conv_weight"], list(run["snapshots"]["epoch"])
        growth = float(np.linalg.norm(w[epochs.index(after), k]) / np.linalg.norm(w[epochs.index(before), k]))
        h = run["history"]
        start = h[h["iteration"] == s["co_iteration"]] if s["co_iteration"] is not None else h[h["epochs"] >= 1]
        outgoing = float(h[f"outgoing_norm_{k + 1}"].iloc[-1] / start[f"outgoing_norm_{k + 1}"].iloc[0])
        rows.append({"method_label": label, "seed": seed, "co_epoch": s["co_epoch"], "co_iteration": s["co_iteration"],
                     "clean_final": 100 * r.loc["final", "clean_acc"], "pgd_final": 100 * r.loc["final", "pgd_acc"],
                     "clean_best": 100 * r.loc["best", "clean_acc"], "pgd_best": 100 * r.loc["best", "pgd_acc"],
                     "best_iteration": s["best_iteration"], "grown_filter": k + 1,
                     "filter_growth": growth, "growth_epochs": f"{before}->{after}",
                     "outgoing_growth_to_end": outgoing})
    return pd.DataFrame(rows)

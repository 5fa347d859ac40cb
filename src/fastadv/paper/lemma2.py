"""Lemma 2 of Andriushchenko & Flammarion (NeurIPS 2020), checked numerically.

Lemma 2 (gradient alignment at initialisation): for a single-layer CNN with filters w ~ N(0, σ_w² I_p)
(p = 3·3·3 = 27 pixels per patch), outgoing weights ~ N(0, σ_u²), zero biases, image patches
z ~ U([0,1]^p) and η ~ U([-ε, ε]^d),

    lim_{k,m→∞} cos(∇ₓℓ(x, y), ∇ₓℓ(x + η, y)) ≥ max{1 − √2 · E_{w,z}[exp(−⟨w/‖w‖₂, z⟩² / ε²)]^{1/2}, 0.5}

(k patches, m filters; the official repository shows the statement as img/lemma2_grad_alignment_at_init.png).

:func:`alignment_bound` estimates the right-hand side by Monte Carlo over (w, z); :func:`measured_alignment`
measures the left-hand side on freshly initialised :class:`~fastadv.models.OneLayerCNN` models (the
official He init, zero biases) with m filters on uniform random 32×32 RGB images, η ~ U[-ε, ε] added
without clipping, as the lemma has it. Both come with their Monte-Carlo standard errors.
"""
from __future__ import annotations

import math

import pandas as pd
import torch
import torch.nn.functional as F

from fastadv.models import build_model, init_weights
from fastadv.training.runtime import derived_seed
from fastadv.units import eps_absolute

PATCH_PIXELS = 27          # p: a 3×3 patch of an RGB image
EPS_GRID = (2, 4, 8, 12, 16)  # ε in /255 (the paper's range)
WIDTHS = (1, 2, 4, 16, 64, 256)  # m, number of filters
BOUND_SAMPLES = 400_000    # (w, z) pairs for the expectation
IMAGES, INITS = 64, 4      # per (ε, m): images per model × freshly initialised models


def alignment_bound(eps: float, p: int = PATCH_PIXELS, samples: int = BOUND_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """(Lemma 2's lower bound, its Monte-Carlo standard error) for absolute ``eps``."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(samples, p, generator=g, dtype=torch.float64)
    w = w / w.norm(dim=1, keepdim=True)  # σ_w cancels: only the direction of w matters
    z = torch.rand(samples, p, generator=g, dtype=torch.float64)
    v = torch.exp(-((w * z).sum(1) ** 2) / eps ** 2)
    mean, se = float(v.mean()), float(v.std()) / math.sqrt(samples)
    bound = 1 - math.sqrt(2 * mean)
    if bound < 0.5:
        return 0.5, 0.0
    return bound, math.sqrt(2) / (2 * math.sqrt(mean)) * se  # delta method through 1 − √(2E)


def measured_alignment(eps: float, width: int, images: int = IMAGES, inits: int = INITS,
                       seed: int = 0) -> tuple[float, float]:
    """(mean, standard error) over images and initialisations of cos(∇ₓℓ(x,y), ∇ₓℓ(x+η,y)) for
    single-layer CNNs with ``width`` filters at initialisation; x ~ U[0,1]^(3×32×32), random labels."""
    cos = []
    for i in range(inits):
        torch.manual_seed(derived_seed(seed, "lemma2", width, i))
        model = build_model("one_layer_cnn", width=width, num_classes=10, in_shape=(3, 32, 32)).double()
        model.apply(init_weights)
        g = torch.Generator().manual_seed(seed * 1000 + i)
        x = torch.rand(images, 3, 32, 32, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (images,), generator=g)
        eta = (2 * torch.rand(x.shape, generator=g, dtype=torch.float64) - 1) * eps

        def grad(z):
            z = z.clone().requires_grad_(True)
            return torch.autograd.grad(F.cross_entropy(model(z), y, reduction="sum"), z)[0].flatten(1)

        cos.append(F.cosine_similarity(grad(x), grad(x + eta), dim=1))
    c = torch.cat(cos)
    return float(c.mean()), float(c.std()) / math.sqrt(len(c))


def lemma2_table(eps_grid=EPS_GRID, widths=WIDTHS, samples: int = BOUND_SAMPLES, images: int = IMAGES,
                 inits: int = INITS, seed: int = 0) -> pd.DataFrame:
    """One row per (ε, m): the bound, the measured alignment, their standard errors and the margin
    measured − bound in units of the combined standard error."""
    rows = []
    for e in eps_grid:
        bound, bound_se = alignment_bound(eps_absolute(e), samples=samples, seed=seed)
        for m in widths:
            mean, se = measured_alignment(eps_absolute(e), m, images, inits, seed)
            combined = math.hypot(se, bound_se)
            rows.append({"eps": e, "filters": m, "bound": bound, "bound_se": bound_se, "measured": mean,
                         "measured_se": se, "margin_in_se": (mean - bound) / combined if combined else math.inf})
    return pd.DataFrame(rows)


def lemma2_figure(table: pd.DataFrame, out_pdf) -> pd.DataFrame:
    """Measured alignment at initialisation vs number of filters, one colour per ε, the bound dashed."""
    from fastadv.paper.figures import _plt, save_figure

    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.6, 2.6))
    for i, (e, t) in enumerate(table.groupby("eps")):
        colour = f"C{i}"
        ax.errorbar(t["filters"], t["measured"], yerr=t["measured_se"], marker="o", ms=3, color=colour,
                    label=f"ε = {e:g}/255")
        ax.axhline(t["bound"].iloc[0], ls="--", color=colour, lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of filters m")
    ax.set_ylabel("cos(∇ℓ(x), ∇ℓ(x+η)) at init")
    ax.set_title("Lemma 2: measured (solid) ≥ bound (dashed)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=6)
    save_figure(fig, out_pdf)
    plt.close(fig)
    return table


def write_lemma2(out, seed: int = 0, **sizes) -> pd.DataFrame:
    """``fastadv lemma2``: the table (Markdown at ``out``), its data (``<out>_data.csv``) and the figure (PDF/PNG
    beside it); ``sizes``: samples, images, inits (their defaults above when left out)."""
    from pathlib import Path

    from fastadv import atomic
    from fastadv.paper.figures import write_table

    out = Path(out)
    table = lemma2_table(seed=seed, **sizes)
    lemma2_figure(table, out.with_suffix(".pdf"))
    write_table(table, out, "Lemma 2: gradient alignment of single-layer CNNs at initialisation (measured, mean ± "
                "standard error over images and initialisations) against the lemma's lower bound (Monte Carlo).")
    atomic.write_text(out.with_name(out.stem + "_data.csv"), table.to_csv(index=False))
    return table

"""ε has one unit inside the code: absolute, as a fraction of the pixel range [0, 1] (8/255 ≈ 0.0314).

Params files, the command line, result files and figure labels state ε in units of 1/255, as the paper
does ("ε = 8/255" is written ``eps: 8``). These two functions are the only conversion between the two.
Torch-free."""
from __future__ import annotations

PIXEL_LEVELS = 255  # 8-bit images: ε = k/255 moves a pixel by k intensity levels


def eps_absolute(eps_in_255ths: float) -> float:
    """ε as written in params files and results (units of 1/255) → absolute ([0,1] pixel units)."""
    return eps_in_255ths / PIXEL_LEVELS


def eps_in_255ths(eps: float) -> float:
    """Absolute ε → units of 1/255, for what users read (labels, results) and for formulas the papers
    state in those units (GradAlign's λ(ε), ELLE's λ)."""
    return eps * PIXEL_LEVELS

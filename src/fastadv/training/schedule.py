"""Learning-rate and warm-up schedules, as functions of training progress."""
from __future__ import annotations

from fastadv.errors import unknown_choice

SCHEDULES = ("cyclic", "piecewise", "constant", "interpolated")


def learning_rate(schedule: str, progress: float, lr_max: float, peak: float = 0.4, epochs: float = 1.0,
                  lr_epochs=None, lr_values=None) -> float:
    """Learning rate at ``progress`` = fraction of all training iterations done, in [0, 1].

    cyclic (Smith & Topin 2019; Wong et al. 2020; GradAlign code): piecewise-linear
        0 → lr_max at progress ``peak`` → 0 at the end, updated every iteration. The
        GradAlign code places the peak at ⌊2·epochs/5⌋ epochs, which is exactly 2/5
        for the paper's 30 epochs; N-FGSM's and ELLE's code at 1/2.
    piecewise: lr_max, then lr_max/10 from 1/2 and lr_max/100 from 3/4 of training.
    constant: lr_max.
    interpolated (Wong et al. 2020, ImageNet/main_fast.py): linear between the points (``lr_epochs``,
        ``lr_values``) at the epoch reached, ``progress · epochs`` (= epoch + (i+1)/iterations at iteration
        i), constant beyond the first and last point (np.interp); ``lr_max`` unused.
    """
    if schedule == "cyclic":
        if progress <= peak:
            return lr_max * progress / peak
        return lr_max * max(0.0, 1.0 - progress) / (1.0 - peak)
    if schedule == "piecewise":
        return lr_max if progress < 0.5 else lr_max / 10 if progress < 0.75 else lr_max / 100
    if schedule == "constant":
        return lr_max
    if schedule == "interpolated":
        return _interp(progress * epochs, lr_epochs, lr_values)
    raise unknown_choice("lr schedule", schedule, SCHEDULES)


def epochs_done(step: int, phases, iterations) -> float:
    """Epochs of training done after ``step`` iterations in all (fractional within an epoch) when ``phases``
    (each with ``start`` and ``end`` epochs) take ``iterations[k]`` iterations per epoch: Wong et al.'s
    ``epoch + (i + 1) / len(train_loader)`` at iteration i of an epoch, whatever its phase's batch size."""
    for ph, k in zip(phases, iterations):
        span = (ph.end - ph.start) * k
        if step <= span:
            return ph.start + step / k
        step -= span
    return float(phases[-1].end)


def _interp(t: float, xs, ys) -> float:
    """np.interp for one point, in plain Python (the workflow imports this module without numpy)."""
    if t <= xs[0]:
        return float(ys[0])
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if t <= x1:
            return float(y1) if x1 == x0 else y0 + (y1 - y0) * (t - x0) / (x1 - x0)
    return float(ys[-1])


def warmup_factor(iteration: int, warmup_iterations: int) -> float:
    """Linear warm-up w = min(iteration / warmup_iterations, 1); 1 when there is no warm-up.

    SVHN in the GradAlign code: ε of PGD and the FGSM step grow linearly over the
    first 5 epochs (w scales them).
    """
    if warmup_iterations <= 0:
        return 1.0
    return min(iteration / warmup_iterations, 1.0)

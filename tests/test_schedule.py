import numpy as np
import pytest

from fastadv.training.schedule import learning_rate, warmup_factor


def test_cyclic_matches_official_interpolation_and_peaks_at_two_fifths():
    epochs, iters = 30, 391
    total = epochs * iters
    lrs = [learning_rate("cyclic", (i + 1) / total, 0.2) for i in range(total)]
    # GradAlign code: np.interp(t, [0, epochs*2//5, epochs], [0, lr_max, 0]) at t = epoch fraction.
    ref = [np.interp((i + 1) / iters, [0, epochs * 2 // 5, epochs], [0, 0.2, 0]) for i in range(total)]
    assert np.allclose(lrs, ref, atol=1e-12)
    peak = int(np.argmax(lrs)) + 1
    assert peak == round(0.4 * total) and max(lrs) == pytest.approx(0.2)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_piecewise_and_warmup():
    assert learning_rate("piecewise", 0.49, 0.1) == 0.1
    assert learning_rate("piecewise", 0.6, 0.1) == pytest.approx(0.01)
    assert learning_rate("piecewise", 0.8, 0.1) == pytest.approx(0.001)
    assert warmup_factor(0, 10) == 0 and warmup_factor(5, 10) == 0.5 and warmup_factor(50, 10) == 1
    assert warmup_factor(3, 0) == 1

"""The demo's expected time on this machine (fastadv.performance.estimate): the arithmetic by hand, the reference
in step with the targets it timed, calibration and the line a user reads."""
import math
import shutil

import pytest
import yaml

from fastadv.cli import main
from fastadv.config.params import deep_merge, read_params
from fastadv.config.study import Study, validate_study
from fastadv.errors import FastAdvError
from fastadv.performance.estimate import (REFERENCE, calibrate, estimate, expected_seconds, read_reference,
                                         target_digest)
from tests.helpers import PARAMS


def test_expected_time_is_the_reference_time_times_the_geometric_mean_slowdown():
    ref = {"probe_seconds": {"fgsm": 0.1, "gradalign": 0.3}, "targets": {"demo": {"wall_seconds": 1000.0}}}
    assert expected_seconds(ref, "demo", {"fgsm": 0.2, "gradalign": 0.6}) == pytest.approx((2000.0, 2.0))
    # FGSM 4x slower, GradAlign as fast: sqrt(4 * 1) = 2
    assert expected_seconds(ref, "demo", {"fgsm": 0.4, "gradalign": 0.3}) == pytest.approx((2000.0, 2.0))
    assert expected_seconds(ref, "demo", {"fgsm": 0.05, "gradalign": 0.15})[1] == pytest.approx(0.5)


def test_the_packaged_reference_timed_the_targets_as_they_are_now():
    """A target whose configs changed since its timing fails here: time it again and recalibrate
    (`fastadv estimate TARGET --calibrate --wall-seconds S`, the module docstring)."""
    ref = read_reference()
    assert ref["machine"] and set(ref["probe_seconds"]) == {"fgsm", "gradalign"}
    for name, t in ref["targets"].items():
        study = Study.load(PARAMS, t["scale"])
        assert t["wall_seconds"] > 0, name
        assert t["config_digest"] == target_digest(study, t["experiments"]), f"{name}: configs changed since timed"


def test_the_digest_follows_every_config_but_the_threads():
    doc = read_params(PARAMS)

    def digest(over):
        return target_digest(Study(validate_study(deep_merge(doc, over)), "quick"), ["fig1"])

    base = digest({})
    assert digest({"scales": {"quick": {"train": {"runtime": {"threads": 2}}}}}) == base
    assert digest({"scales": {"quick": {"train": {"optim": {"epochs": 9}}}}}) != base
    assert digest({"scales": {"quick": {"evaluate": {"n_points": 100}}}}) != base


def test_calibrate_then_estimate_and_a_changed_target_is_said(tmp_path, capsys):
    path = tmp_path / "reference.yaml"
    shutil.copy(REFERENCE, path)
    ref = calibrate("demo", 1200.0, path=path, params=PARAMS)
    on_disk = read_reference(path)
    assert on_disk == ref and path.read_text().startswith("# Wall times")
    assert on_disk["targets"]["demo"]["wall_seconds"] == 1200.0
    assert all(v > 0 and math.isfinite(v) for v in on_disk["probe_seconds"].values())
    assert on_disk["targets"]["demo"]["config_digest"] == target_digest(Study.load(PARAMS, "quick"), ["fig1"])
    assert on_disk["targets"]["sweep"] == read_reference()["targets"]["sweep"]  # the other target kept

    changed = tmp_path / "params.yaml"
    changed.write_text(yaml.safe_dump(deep_merge(read_params(PARAMS), {"scales": {"quick": {"experiments": {
        "fig1": {"seeds": [0, 1]}}}}})))
    line = estimate("demo", on_disk, params=changed)
    assert line.startswith("demo: expected about ") and "min on this machine" in line
    assert "`make demo (from a fresh clone, venv setup included)` took 20.0 min" in line
    assert "Its configs changed since that timing" in line
    assert "changed" not in estimate("demo", on_disk, params=PARAMS)


def test_unknown_target_and_a_missing_wall_time_are_one_line_errors(capsys):
    with pytest.raises(FastAdvError, match="unknown target to estimate 'fig9'.*demo, sweep"):
        estimate("fig9", read_reference())
    assert main(["estimate", "demo", "--calibrate"]) == 2
    assert "--calibrate needs --wall-seconds" in capsys.readouterr().err

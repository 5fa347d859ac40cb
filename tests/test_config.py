"""Config: every key typed, unknown keys and bad values rejected with the valid choices."""
import pytest

from fastadv.config import parse_set, resolve_train_config
from fastadv.errors import FastAdvError
from tests.helpers import PARAMS


def test_params_yaml_resolves_and_scales_apply():
    paper = resolve_train_config(PARAMS)
    smoke = resolve_train_config(PARAMS, "smoke")
    assert paper["optim"]["epochs"] == 30 and paper["optim"]["lr_max"] == 0.2 and paper["model"]["width"] == 64
    assert smoke["optim"]["epochs"] == 2 and smoke["data"]["subset"] == 512 and smoke["optim"]["lr_max"] == 0.05
    assert smoke["method"] == paper["method"]


@pytest.mark.parametrize("sets, message", [
    (["optim.lr_mx=0.1"], r"unknown config key 'train.optim.lr_mx'; valid keys in train.optim: name, epochs"),
    (["method.name=fgsm_rss"], r"invalid train.method.name 'fgsm_rss'; valid: standard, fgsm, fgsm_rs"),
    (["method.eps=0"], r"train.method.eps=0.0 out of range; valid: \(0, 128\]"),
    (["method.eps=-3"], r"out of range"),
    (["method.eps=1000"], r"out of range"),
    (["optim.epochs=-1"], r"train.optim.epochs=-1 out of range; valid: \[1, inf"),
    (["optim.epochs=ten"], r"train.optim.epochs must be int, got 'ten'"),
    (["optim.epochs=2.5"], r"must be int"),
    (["runtime.device=tpu"], r"valid: auto, cpu, cuda"),
    (["nonsense=1"], r"unknown config key 'train.nonsense'"),
    (["method.eps"], r"--set expects key=value"),
    (["method.eps=.nan"], r"must be finite"),
])
def test_bad_overrides_are_one_line_errors(sets, message):
    with pytest.raises(FastAdvError, match=message) as e:
        resolve_train_config(PARAMS, None, sets)
    assert "\n" not in str(e.value)


def test_unknown_scale_and_section(tmp_path):
    with pytest.raises(FastAdvError, match="unknown scale 'huge'; valid: paper, quick, smoke"):
        resolve_train_config(PARAMS, "huge")
    bad = tmp_path / "p.yaml"
    bad.write_text(PARAMS.read_text() + "\ntrian: {}\n")
    with pytest.raises(FastAdvError, match="unknown config section 'trian'"):
        resolve_train_config(bad)
    missing = tmp_path / "m.yaml"
    missing.write_text(PARAMS.read_text().replace("    momentum: 0.9", ""))
    with pytest.raises(FastAdvError, match="missing config key.*train.optim: momentum"):
        resolve_train_config(missing)


def test_set_values_are_yaml_never_code():
    assert parse_set("method.gradalign.lambda=null") == {"method": {"gradalign": {"lambda": None}}}
    assert parse_set("train.optim.lr_max=3e-1") == {"optim": {"lr_max": 0.3}}
    assert parse_set("data.root=__import__('os')") == {"data": {"root": "__import__('os')"}}

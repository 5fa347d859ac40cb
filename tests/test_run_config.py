"""The typed run config (fastadv.config.run_config) and the one unit of ε (fastadv.units)."""
import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

import fastadv
from fastadv.config.params import deep_merge, schema, validate_section
from fastadv.config.run_config import EvalConfig, MethodConfig, TrainConfig
from fastadv.config.study import resolve_config
from fastadv.errors import FastAdvError
from fastadv.methods import build_method
from fastadv.units import eps_absolute, eps_in_255ths

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.mark.parametrize("scale", ["smoke", "quick", "paper"])
def test_typed_config_gives_back_the_validated_dict(scale):
    d = resolve_config(PARAMS, "train", scale)
    cfg = TrainConfig.from_dict(d)
    assert cfg.to_dict() == validate_section(d, "train")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    e = resolve_config(PARAMS, "evaluate", scale)
    assert EvalConfig.from_dict(e).to_dict() == e


def test_sections_have_exactly_the_schemas_keys():
    cfg = TrainConfig.from_dict(resolve_config(PARAMS, "train", "smoke"))
    train = schema("train")
    for section, spec in train.items():
        typed = getattr(cfg, section)
        if section == "method":
            assert set(typed.to_dict()) == set(spec), "the method section round-trips every key of its schema"
        else:
            assert [f.name for f in dataclasses.fields(typed)] == list(spec), section
    assert [f.name for f in dataclasses.fields(EvalConfig)] == list(schema("evaluate"))


def test_typed_config_is_frozen_to_the_leaves():
    cfg = TrainConfig.from_dict(resolve_config(PARAMS, "train", "smoke"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.epochs = 3
    with pytest.raises(TypeError):  # a method's parameter block is a read-only mapping
        cfg.method.blocks["gradalign"]["lambda"] = 1.0
    with pytest.raises(TypeError):
        cfg.method.params["alpha"] = 2.0


def test_bad_value_names_its_dotted_path_and_replace_validates_again():
    d = resolve_config(PARAMS, "train", "smoke")
    with pytest.raises(FastAdvError, match=r"config key train\.method\.gradalign\.alpha must be float"):
        TrainConfig.from_dict(deep_merge(d, {"method": {"gradalign": {"alpha": "big"}}}))
    with pytest.raises(FastAdvError, match=r"invalid train\.method\.name 'fgsmm'; valid: .*fgsm_rs"):
        TrainConfig.from_dict(d).replace(method={"name": "fgsmm"})
    with pytest.raises(FastAdvError, match=r"unknown config key 'evaluate\.n_point'"):
        EvalConfig.from_dict({**resolve_config(PARAMS, "evaluate", "smoke"), "n_point": 3})


def test_eps_is_converted_once_and_methods_get_it_absolute():
    d = deep_merge(resolve_config(PARAMS, "train", "smoke"), {"method": {"name": "gradalign", "eps": 16}})
    cfg = TrainConfig.from_dict(d)
    assert cfg.method.eps == 16 and cfg.method.eps_abs == 16 / 255
    m = build_method(cfg.method, "cifar10")
    assert m.eps == 16 / 255
    # λ(ε) is stated in /255 (the official scripts' sh/exps_diff_eps_cifar10.sh): 2.0 at ε = 16/255
    assert m.lam == pytest.approx(2.0, rel=1e-12)
    # a dict in params-file units builds the same method (the Python API's other door)
    assert build_method(d["method"], "cifar10").eps == m.eps
    assert eps_in_255ths(eps_absolute(8)) == pytest.approx(8) and eps_absolute(255) == 1.0
    # MethodConfig made by hand: switches default off, params are the chosen method's block
    mc = MethodConfig("fgsm", 8, {"fgsm": {"alpha": 1.0}, "pgd": {"steps": 2}})
    assert mc.params == {"alpha": 1.0} and not mc.clamp_in_graph and not mc.extra_clean_forward


def _arithmetic_with_255(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in (255, 255.0):
                    found.append(f"{path.name}:{node.lineno}")
    return found


def test_eps_unit_conversion_lives_in_one_place():
    pkg = Path(fastadv.__file__).parent
    found = [hit for p in sorted(pkg.rglob("*.py")) if p.name != "units.py" for hit in _arithmetic_with_255(p)]
    assert not found, f"multiply/divide by 255 outside fastadv.units: {found}"


def test_a_run_stores_and_uses_the_typed_configs_values(tiny_cfg, tmp_path):
    """train() given a dict or the TrainConfig made from it: the same stored config, the same weights."""
    import torch

    from fastadv.training.loop import train

    a = train(tiny_cfg, tmp_path / "a")
    b = train(TrainConfig.from_dict(tiny_cfg), tmp_path / "b")
    assert a["config"] == b["config"] == TrainConfig.from_dict(tiny_cfg).to_dict()
    assert yaml.safe_load((tmp_path / "a" / "config.yaml").read_text()) == a["config"]
    wa, wb = (torch.load(tmp_path / r / "model_final.pt", weights_only=True)["state_dict"] for r in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

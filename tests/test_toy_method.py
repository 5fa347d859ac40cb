"""A method registered at run time (a notebook's, a test's): a spec and a class, nothing else edited."""
import pytest
import torch
import yaml

from fastadv.cli import main
from fastadv.config.params import deep_merge, validate_section
from fastadv.errors import FastAdvError
from fastadv.methods.registry import MethodSpec, Param, register, unregister
from fastadv.methods import Method, StepOutput
from fastadv.methods.base import ce_step
from fastadv.config.schema import json_schema
from fastadv.training.loop import FINISHED, train
from tests.helpers import PARAMS


@pytest.fixture
def toy():
    class ToyNoise(Method):
        def step(self, model, x, y, ctx) -> StepOutput:
            noise = torch.empty_like(x).uniform_(-1, 1, generator=ctx.gen) * self.params["scale"] * self.eps
            return ce_step(model, (x + noise).clamp(0, 1), y)

    register(MethodSpec("toy_noise", summary="training on x + U[−sε, sε] noise (a test's method)", impl="",
                        params={"scale": Param("float", 0.5, "noise / ε", min=0)}), ToyNoise)
    yield ToyNoise
    unregister("toy_noise")


def test_a_registered_method_trains_validates_and_documents_itself(toy, tiny_cfg, tmp_path, capsys):
    cfg = validate_section(deep_merge(tiny_cfg, {"method": {"name": "toy_noise"}}), "train")
    assert cfg["method"]["toy_noise"] == {"scale": 0.5}  # its declared default
    assert train(cfg, tmp_path / "run")["status"] in FINISHED
    capsys.readouterr()
    assert "toy_noise" in json_schema()["properties"]["train"]["properties"]["method"]["properties"]["name"]["enum"]
    with pytest.raises(FastAdvError, match=r"train.method.toy_noise.scale=-1.0 out of range; valid: \[0, inf\)"):
        validate_section(deep_merge(cfg, {"method": {"toy_noise": {"scale": -1.0}}}), "train")
    assert main(["config", "--params", str(PARAMS), "--set", "method.name=toy_noise", "--set", "method.toy_noise.scale=2"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["method"]["toy_noise"]["scale"] == 2
    assert main(["methods"]) == 0 and "| `toy_noise` | training on x" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "my-method"}, "method name 'my-method' is not an identifier"),
    ({"passes_param": "steps"}, "method 'toy': passes_param 'steps' is not one of its parameters; valid: scale"),
])
def test_a_malformed_spec_is_refused_naming_what_is_wrong(kwargs, message):
    base = {"name": "toy", "summary": "s", "impl": "m:C", "params": {"scale": Param("float", 0.5, "noise / ε")}}
    with pytest.raises(FastAdvError, match=message):
        MethodSpec(**{**base, **kwargs})

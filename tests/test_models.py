"""Models: architecture as published, registry errors, safe loading."""
import os
import pickle

import pytest
import torch

from fastadv import load_model
from fastadv.training.checkpoint import save_model
from fastadv.errors import FastAdvError
from fastadv.models import build_model
from fastadv.models.preact_resnet import PreActResNet18


def test_preact_resnet18_matches_published_architecture():
    m = build_model("preact_resnet18", width=64, num_classes=10, in_shape=(3, 32, 32))
    # 11,171,146 parameters: the standard CIFAR PreActResNet-18 (He et al. 2016) of the GradAlign code.
    assert sum(p.numel() for p in m.parameters()) == 11_171_146
    assert not any(c.bias is not None for c in m.modules() if isinstance(c, torch.nn.Conv2d))
    assert isinstance(m.layers[-1].conv2, torch.nn.Conv2d)  # ends in a conv: no final BN+ReLU
    assert [b.conv1.out_channels for b in m.layers] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_mnist_cnn_matches_wong_et_al():
    m = build_model("mnist_cnn", width=16, num_classes=10, in_shape=(1, 28, 28))
    # conv16 4x4 s2 → conv32 4x4 s2 → fc100 → fc10: 272 + 8224 + 156900 + 1010 parameters.
    assert sum(p.numel() for p in m.parameters()) == 166_406
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_normalisation_lives_inside_the_model():
    m = PreActResNet18(width=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(m.normalize(x), (x - 0.5) / 0.25)
    ident = PreActResNet18(width=4)
    assert torch.equal(ident.normalize(x), x)


def test_unknown_model_lists_valid_names():
    with pytest.raises(FastAdvError, match="unknown model 'vit'; valid: mnist_cnn, one_layer_cnn, preact_resnet18, preact_resnet18_final_bn, preact_resnet18_wong, resnet50"):
        build_model("vit", width=4, num_classes=10, in_shape=(3, 32, 32))


def test_resnet50_is_torchvisions_with_its_own_normalisation_and_init(tiny_cfg):
    from torchvision.models import resnet50

    from fastadv.config.run_config import TrainConfig
    from fastadv.training.step import make_model as _model

    cfg = TrainConfig.from_dict(tiny_cfg).replace(data={"dataset": "imagenet"},
                                                  model={"name": "resnet50", "width": 64, "normalize": True},
                                                  runtime={"seed": 0})
    model = _model(cfg, "cpu")
    ref = resnet50(weights=None)
    assert [k.removeprefix("net.") for k in model.state_dict() if k.startswith("net.")] == list(ref.state_dict())
    assert not any(m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU))
    # torchvision's init is kept: its Linear default is U(±1/√fan_in), not our He-normal
    assert model.net.fc.weight.abs().max() <= 1 / 2048 ** 0.5
    x = torch.rand(2, 3, 64, 64)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    model.eval()
    torch.testing.assert_close(model(x), model.net((x - mean[:, None, None]) / std[:, None, None]))


@pytest.fixture
def saved(tmp_path, tiny_cfg):
    m = build_model("preact_resnet18", width=4, num_classes=10, in_shape=(3, 32, 32))
    path = tmp_path / "m.pt"
    save_model(path, m, tiny_cfg, "final", 1)
    return m, path


def test_load_model_roundtrip_eval_mode(saved):
    m, path = saved
    loaded = load_model(path)
    assert not loaded.training
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), m.eval()(x))


def test_crafted_pickle_is_refused_and_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "fastadv-model-v1", "x": Evil()}, path)
    with pytest.raises(FastAdvError, match="refused by weights_only load"):
        load_model(path)
    assert not marker.exists()
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(FastAdvError):
        load_model(tmp_path / "plain.pkl")
    assert not marker.exists()


def test_truncated_and_foreign_checkpoints_are_clear_errors(tmp_path, saved):
    _, path = saved
    raw = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(FastAdvError, match="corrupt, truncated"):
        load_model(tmp_path / "trunc.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(FastAdvError, match="has format None; expected 'fastadv-model-v1'"):
        load_model(tmp_path / "other.pt")
    obj = torch.load(path, weights_only=True)
    obj["spec"]["width"] = 8  # claims another architecture than its weights
    torch.save(obj, tmp_path / "mismatch.pt")
    with pytest.raises(FastAdvError, match="does not fit its declared model"):
        load_model(tmp_path / "mismatch.pt")

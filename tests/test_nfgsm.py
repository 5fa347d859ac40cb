"""N-FGSM (de Jorge et al., NeurIPS 2022): noise of radius kε, step α = ε, no ε-ball projection."""
import torch
import torch.nn.functional as F

from fastadv.methods import StepContext, build_method
from tests.helpers import toy_model


def captured_inputs(model):
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    return seen


def test_perturbation_exceeds_eps_up_to_k_plus_one_eps_and_stays_in_the_box():
    torch.manual_seed(0)
    model = toy_model(dtype=torch.float32)
    x = torch.rand(256, 3, 2, 2)
    y = torch.randint(0, 3, (256,))
    eps = 16 / 255
    m = build_method({"name": "nfgsm", "eps": 16, "nfgsm": {"noise": 2.0, "alpha": 1.0}}, "cifar10")
    seen = captured_inputs(model)
    m.step(model, x, y, StepContext(torch.Generator().manual_seed(7)))
    x_noisy, x_adv = seen  # gradient point, then the training input
    dist = (x_adv - x).abs()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert dist.max() <= 3 * eps + 1e-6 and dist.max() > 2.5 * eps  # beyond ε: not projected
    # Independent recomputation from the same noise draw: η ~ U[-2ε, 2ε], one signed step of ε.
    eta = torch.empty_like(x).uniform_(-2 * eps, 2 * eps, generator=torch.Generator().manual_seed(7))
    z = (x + eta).clamp(0, 1).requires_grad_(True)
    assert torch.equal(z.detach(), x_noisy)
    (g,) = torch.autograd.grad(F.cross_entropy(model(z), y), z)
    torch.testing.assert_close(x_adv, (z.detach() + eps * g.sign()).clamp(0, 1))

"""One training step and what it needs, built from a run's config: the model (seeded He init), the optimiser, the
mixed-precision context. Training (``loop``) and the performance tools (``bench-train``, the estimate probe,
``gpu-check``) share them, so a benchmark times exactly the step a run takes."""
from __future__ import annotations

import torch

from fastadv.attacks.double_backward import double_backward_as
from fastadv.attacks.grad import loss_scaling
from fastadv.config.run_config import TrainConfig
from fastadv.data.registry import dataset_spec
from fastadv.methods import StepContext
from fastadv.models import build_model, init_weights
from fastadv.training.runtime import derived_seed


def make_model(cfg: TrainConfig, device) -> torch.nn.Module:
    """The run's model, initialised from the run's seed (He init of the GradAlign code)."""
    d, norm = dataset_spec(cfg.data.dataset), cfg.model.normalize
    torch.manual_seed(derived_seed(cfg.runtime.seed, "init"))
    model = build_model(cfg.model.name, width=cfg.model.width, num_classes=d.num_classes, in_shape=d.shape,
                        mean=d.mean if norm else None, std=d.std if norm else None)
    if not getattr(model, "own_init", False):  # ResNet-50 keeps torchvision's init (Wong et al.)
        model.apply(init_weights)
    return model.to(device)


def make_optimizer(cfg: TrainConfig, model) -> torch.optim.Optimizer:
    o = cfg.optim
    params = model.parameters()
    if o.no_decay_on_batchnorm:  # Wong et al.'s ImageNet code: no weight decay on batch-norm weights and biases
        bn = {id(p) for m in model.modules() if "BatchNorm" in type(m).__name__ for p in m.parameters(recurse=False)}
        params = [{"params": [p for p in model.parameters() if id(p) not in bn]},
                  {"params": [p for p in model.parameters() if id(p) in bn], "weight_decay": 0.0}]
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr_max, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.Adam(params, lr=o.lr_max, weight_decay=o.weight_decay)


def mixed_precision(precision: str, device: torch.device):
    """(autocast context, gradient scaler) of ``runtime.precision``: fp16 is the GradAlign code's apex
    O1 (autocast to float16, dynamic loss scaling); bf16 needs no scaling; fp32 disables both."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    autocast = torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
    return autocast, torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def train_step(model, opt, method, x, y, ctx: StepContext, lr: float, autocast, scaler,
               loss_weight: float = 1.0, double_backward: str = "native") -> "StepOutput":  # noqa: F821
    """One optimisation step of ``method`` on a batch (training and ``bench-train`` share it). With fp16
    the loss is scaled, and so are the input gradients the method takes (attacks.grad.loss_scaling); an overflow
    in those skips the step and lowers the scale, as one in the training backward does (apex O1).
    ``loss_weight``: a data-parallel shard's share of the global batch × the world size (1 alone);
    ``double_backward``: how input gradients with ``create_graph`` build their graph (the run's
    ``double_backward_path(...)["used"]``)."""
    for g in opt.param_groups:
        g["lr"] = lr
    scale = scaler.get_scale() if scaler.is_enabled() else 1.0
    with autocast, loss_scaling(scale) as scaling, double_backward_as(double_backward):
        res = method.step(model, x, y, ctx)
    opt.zero_grad(set_to_none=True)
    scaler.scale(scaling.poison(res.loss if loss_weight == 1.0 else res.loss * loss_weight)).backward()
    method.after_backward()
    scaler.step(opt)
    scaler.update()
    return res

"""fastadv: fast adversarial training and GradAlign (Andriushchenko & Flammarion, NeurIPS 2020).

The public API (imported on first use, so ``import fastadv.config.study`` stays free of torch)::

    model = fastadv.load_model(path)                    # eval mode, inputs in [0,1]
    model = fastadv.load_model("Andriushchenko2020Understanding", dataset="cifar10")  # by name (zoo, RobustBench)
    x, y = fastadv.load_cifar10(n=1000, root="data")    # the first n test images, verified
    fastadv.robust_accuracy(model, x, y, eps=8/255)     # PGD-50-10, the paper's protocol
    fastadv.evaluate_model(model, x, y, eps=8/255)      # clean, PGD-50-10 (both restart rules), AutoAttack
    fastadv.benchmark(model, "cifar10", eps=8/255, n_examples=1000)  # the same on a prepared dataset, one call
    x, y = fastadv.load_dataset("svhn", n=1000)         # cifar10, svhn, mnist, imagenet (prepared, verified)
    x_adv = fastadv.PGD(model, eps=8/255)(x, y)         # attack objects: PGD, FGSM
    fastadv.gradient_alignment(model, x, y, eps=8/255)  # E cos(∇ℓ(x), ∇ℓ(x+η))
    fastadv.grad_align_penalty(model, x, y, eps=8/255)  # differentiable, for your own training loop
    run = fastadv.train("gradalign", eps=8/255, scale="smoke")  # as `fastadv train --variant gradalign --eps 8 ...`
    run.model, run.history, run.summary                 # the final model (eval mode), history.csv, summary.json
    cfg = fastadv.TrainConfig.from_dict(d)              # a run's config, typed and validated
"""
from importlib import import_module

__version__ = "0.1.0"
_API = {
    "FGSM": "attacks.fgsm", "PGD": "attacks.pgd", "fgsm_attack": "attacks.fgsm", "pgd_attack": "attacks.pgd",
    "load_model": "api", "load_cifar10": "data.datasets", "robust_accuracy": "evaluation.protocol",
    "evaluate_model": "evaluation.protocol", "load_dataset": "data.datasets", "import_model": "zoo.registry",
    "gradient_alignment": "training.monitor", "grad_align_penalty": "methods.gradalign",
    "default_lambda": "methods.gradalign",
    "TrainConfig": "config.run_config", "EvalConfig": "config.run_config",
    "train": "api", "TrainResult": "api", "benchmark": "api",
    "FastAdvError": "errors",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'fastadv' has no attribute {name!r}; public API: {', '.join(__all__)}")
    return getattr(import_module(f".{_API[name]}", __name__), name)

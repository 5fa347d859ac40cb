"""fastadv's training step against the official GradAlign code's, side by side (not part of the package).

The official step is re-implemented here from tml-epfl/understanding-fast-adv-training (commit ceed494,
train.py L141-207 and utils.get_input_grad), fp32, for ``--attack=fgsm``:

* FGSM / GradAlign: δ = 0; X_adv = clamp(X + δ, 0, 1); ∇_δ CE(model(X_adv)) — taken with
  ``create_graph=True`` whenever GradAlign is on (``double_bp``), although it is then detached;
  δ = clamp(δ + α·ε·sign(∇), −ε, ε), projected to the box; the loss at X + δ;
* GradAlign: grad2 = ∇_δ CE(model(X + η)), η ~ U[−ε, ε], ``create_graph=True`` (get_input_grad with
  ``backprop=True``); reg = λ·(1 − mean cos(grad1, grad2)) over rows where both are non-zero;
* FGSM-RS: δ ~ U[−ε, ε] (not clipped), the same clamp in the graph, α = 1.25ε.
* ``gradalign_readme``: GradAlign as the official README's snippet writes it (since commit 250265e):
  grad1 = get_input_grad(δ = 0, ``backprop=True``), an extra forward/backward at X that is kept in the
  graph, so the penalty backpropagates through both gradients. train.py itself reuses the FGSM
  gradient as grad1 (detached), which is what ``gradalign`` times.

Both run in the same process on the same model architecture, batch and optimizer; timings are medians
[min, max] of interleaved repeats (fastadv.performance.benchmark.interleaved), and the ratio is fastadv's samples/s
over the official step's. Usage (from the repository root, after `make setup`):

    .venv/bin/python benchmarks/official_step.py --width 16 --threads 2 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from fastadv.performance.benchmark import interleaved, spread
from fastadv.config.params import deep_merge
from fastadv.methods import StepContext, build_method
from fastadv.models import build_model, init_weights
from fastadv.training.runtime import hardware_stamp
from fastadv.config.study import resolve_train_config
from fastadv.training.step import make_optimizer, mixed_precision, train_step


def official_step(model, opt, x, y, eps: float, method: str, lam: float, gen: torch.Generator) -> None:
    """One iteration of the official train.py (fp32) for FGSM, FGSM-RS or FGSM + GradAlign."""
    double_bp = method.startswith("gradalign")
    if method == "fgsm_rs":
        delta = torch.empty_like(x).uniform_(-eps, eps, generator=gen).requires_grad_(True)
    else:
        delta = torch.zeros_like(x, requires_grad=True)
    loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
    grad = torch.autograd.grad(loss, delta, create_graph=double_bp)[0].detach()
    delta = (delta.detach() + 1.25 * eps * grad.sign()).clamp(-eps, eps)
    delta = (x + delta).clamp(0, 1) - x
    loss = F.cross_entropy(model(x + delta), y)
    if double_bp:
        eta = torch.empty_like(x).uniform_(-eps, eps, generator=gen).requires_grad_(True)
        grad2 = torch.autograd.grad(F.cross_entropy(model(x + eta), y), eta, create_graph=True)[0]
        grad1 = grad
        if method == "gradalign_readme":
            zero = torch.zeros_like(x, requires_grad=True)
            grad1 = torch.autograd.grad(F.cross_entropy(model(x + zero), y), zero, create_graph=True)[0]
        keep = (grad1.flatten(1).norm(dim=1) != 0) & (grad2.flatten(1).norm(dim=1) != 0)
        g1, g2 = grad1[keep].flatten(1), grad2[keep].flatten(1)
        cos = ((g1 / g1.norm(dim=1, keepdim=True)) * (g2 / g2.norm(dim=1, keepdim=True))).sum(1)
        loss = loss + lam * (1.0 - cos.mean())
    opt.zero_grad()
    loss.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=16, help="PreActResNet-18 width (64 = paper; slow on a CPU)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--eps", type=float, default=8.0, help="ε in /255")
    ap.add_argument("--iterations", type=int, default=5, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = deep_merge(resolve_train_config("params.yaml"), {"model": {"width": args.width}, "method": {"eps": args.eps}})
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(args.batch_size, 3, 32, 32, generator=gen, device=device)
    y = torch.randint(0, 10, (args.batch_size,), generator=gen, device=device)
    eps = args.eps / 255
    pairs = [("fgsm", "fgsm"), ("fgsm_rs", "fgsm_rs"), ("gradalign", "gradalign"), ("gradalign", "gradalign_fd"),
             ("gradalign_readme", "gradalign"), ("gradalign_readme", "gradalign_fd")]
    contenders = {}
    for official, ours in pairs:
        for who, name in (("official", official), ("fastadv", ours)):
            if f"{who}:{name}" in contenders:
                continue
            torch.manual_seed(0)
            model = build_model("preact_resnet18", width=args.width, num_classes=10, in_shape=(3, 32, 32)).to(device)
            model.apply(init_weights)
            opt = make_optimizer(cfg, model)
            if who == "official":
                lam = build_method({**cfg["method"], "name": "gradalign"}, "cifar10").lam
                run = (lambda m=model, o=opt, n=name, lam=lam: [official_step(m, o, x, y, eps, n, lam, gen)
                                                                 for _ in range(args.iterations)])
            else:
                method = build_method({**cfg["method"], "name": name}, "cifar10")
                autocast, scaler = mixed_precision("fp32", device)
                run = (lambda m=model, o=opt, me=method: [train_step(m, o, me, x, y, StepContext(gen), 0.1, autocast,
                                                                     scaler) for _ in range(args.iterations)])
            run()  # warm-up
            contenders[f"{who}:{name}"] = run
    seconds = interleaved(contenders, args.repeats, device)
    hw = hardware_stamp(device)
    print(f"training step, PreActResNet-18 width {args.width}, batch {args.batch_size}, ε {args.eps:g}/255, "
          f"{hw['gpu'] or hw['cpu']}, {hw['torch_threads']} threads, torch {hw['torch']}; "
          f"median [min, max] of {args.repeats} interleaved repeats of {args.iterations} steps")
    for official, ours in pairs:
        a, b = seconds[f"official:{official}"], seconds[f"fastadv:{ours}"]
        speed = spread([x_ / y_ for x_, y_ in zip(a, b)])  # official seconds / fastadv seconds = samples/s ratio
        per = lambda s: args.batch_size * args.iterations / statistics.median(s)  # noqa: E731
        print(f"  official {official:<16} {per(a):8.1f} samples/s   fastadv {ours:<13} {per(b):8.1f} samples/s   "
              f"fastadv / official {speed['median']:.2f}x [{speed['min']:.2f}, {speed['max']:.2f}]")


if __name__ == "__main__":
    main()

"""``fastadv gpu-check`` (``make gpu-check``): what the first person with a GPU runs, in minutes, to check the claims
this project could only prepare on CPUs. Three checks, each PASS / FAIL (or MEASURED, for numbers to read):

precision   GradAlign's penalty gradient (the double backprop) under fp16 and bf16 autocast against fp32, on a
            briefly trained model: cosine, PASS ≥ 0.999 (the condition for ``runtime.precision: fp16``, the
            paper scripts' apex O1, as the paper-scale default).
speed       ``bench-train`` at the config's width: samples/s of FGSM, FGSM-RS, GradAlign, GradAlign-FD, PGD-10,
            GradAlign / FGSM beside the paper's 3.25 (30.9 / 9.5 min on a V100), projected minutes per 30-epoch
            run beside 9.5 and 30.9; ``bench-eval`` (PGD-50-10) on the model of the next check.
one_epoch   one epoch of FGSM and of GradAlign: finite losses, a history row written, and SIGTERM → exit 75 →
            rerun resumes and completes.

Writes ``report.json`` and ``report.md`` into the output folder. On a CPU the same code runs at the size the
config says (the test suite: the smoke scale, tiny), and the report says which checks are about CUDA.
"""
from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from fastadv import atomic
from fastadv.attacks.grad import input_grad, loss_scaling
from fastadv.config.run_config import TrainConfig
from fastadv.data.datasets import load_split
from fastadv.performance.benchmark import bench_eval, bench_train
from fastadv.methods import StepContext, build_method, grad_align_penalty
from fastadv.training.loop import FINISHED
from fastadv.training.step import make_model, make_optimizer, mixed_precision, train_step
from fastadv.training.runtime import hardware_stamp, select_device

PASS_COSINE = 0.999
PAPER_MINUTES = {"fgsm": 9.5, "gradalign": 30.9}  # author response, 30 epochs on a V100
BENCH_METHODS = ["fgsm", "fgsm_rs", "gradalign", "gradalign_fd", "pgd"]


def penalty_grad_cosine(model, x, y, eps: float, dtype: torch.dtype, seed: int = 0) -> tuple[float | str, str]:
    """Cosine of GradAlign's penalty gradient (parameters; ∇ₓℓ(x) and η fixed) under ``dtype`` autocast against
    fp32, with loss scaling from 2¹⁶ down as dynamic scaling would go (fp16); 'non-finite' when no scale works."""
    m = copy.deepcopy(model).train()
    params = list(m.parameters())
    gen = torch.Generator(device=x.device).manual_seed(seed)
    eta = torch.empty_like(x).uniform_(-eps, eps, generator=gen)
    g1, _ = input_grad(m, x, y)

    def grad(loss):
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    exact = grad(grad_align_penalty(m, x, y, eps, eta, g1))
    scales = [2.0 ** k for k in range(16, -1, -4)] if dtype == torch.float16 else [1.0]
    for scale in scales:
        with torch.autocast(x.device.type, dtype=dtype), loss_scaling(scale):
            low = grad_align_penalty(m, x, y, eps, eta, g1)
        low = grad(low * scale) / scale
        if torch.isfinite(low).all():
            return float(F.cosine_similarity(low.double(), exact.double(), dim=0)), f"loss scale {scale:g}"
    return "non-finite", f"at every loss scale {scales[0]:g} … {scales[-1]:g}"


def _briefly_trained(cfg: TrainConfig, device, steps: int = 20):
    """The config's model after ``steps`` FGSM steps in fp32 (out of its initialisation), and a batch."""
    cfg = cfg.replace(method={"name": "fgsm"}, runtime={"precision": "fp32"})
    data = load_split(cfg.data.root, cfg.data.dataset, "train", device, cfg.data.subset, cfg.data.subset_mode,
                      cfg.runtime.seed)
    model, method = make_model(cfg, device), build_method(cfg.method, cfg.data.dataset)
    opt = make_optimizer(cfg, model)
    autocast, scaler = mixed_precision("fp32", device)
    bs = min(cfg.phases[0].batch_size, len(data))
    gen = torch.Generator(device=device).manual_seed(0)
    for i in range(steps):
        idx = (torch.arange(bs, device=device) + i * bs) % len(data)
        x, y = data.batch(idx)
        train_step(model.train(), opt, method, x, y, StepContext(gen), cfg.optim.lr_max * 0.1, autocast, scaler)
    return model, data.batch(torch.arange(bs, device=device))


def check_precision(cfg: TrainConfig, device) -> dict:
    model, (x, y) = _briefly_trained(cfg, device)
    rows = {}
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        value, note = penalty_grad_cosine(model, x, y, cfg.method.eps_abs, dtype)
        rows[name] = {"cosine": value, "note": note,
                      "status": "PASS" if isinstance(value, float) and value >= PASS_COSINE else "FAIL"}
    return {"check": "precision", "rows": rows, "about_cuda": True,
            "status": "PASS" if all(r["status"] == "PASS" for r in rows.values()) else "FAIL"}


def check_speed(cfg_dict: dict, iterations: int, repeats: int, model_path: Path | None, eval_points: int) -> dict:
    rows = bench_train(cfg_dict, BENCH_METHODS, iterations=iterations, warmup=1, repeats=repeats)
    by = {r["method"]: r for r in rows}
    epochs = 30
    out = {"check": "speed", "about_cuda": True, "status": "MEASURED", "train": rows,
           "gradalign_over_fgsm": by["gradalign"]["ratio_to_fgsm"], "paper_gradalign_over_fgsm": 30.9 / 9.5,
           "minutes_per_30_epochs": {m: by[m]["seconds_per_epoch"] * epochs / 60 for m in PAPER_MINUTES},
           "paper_minutes_per_30_epochs": PAPER_MINUTES}
    if model_path is not None:
        out["eval"] = bench_eval(model_path, n_points=eval_points, repeats=repeats, data_root=cfg_dict["data"]["root"])
    return out


def _train_args(cfg_dict: dict, out: Path, method: str) -> list[str]:
    resolved = copy.deepcopy(cfg_dict)
    resolved["method"]["name"] = method
    resolved["optim"]["epochs"] = 1
    resolved["runtime"]["progress"] = "never"
    return [sys.executable, "-m", "fastadv", "train", "--resolved", json.dumps(resolved), "--out", str(out)]


def check_one_epoch(cfg_dict: dict, out: Path) -> dict:
    """One epoch each of FGSM and GradAlign, GradAlign interrupted by SIGTERM after its first history row."""
    rows = {}
    for method in ("fgsm", "gradalign"):
        run = out / f"epoch_{method}"
        proc = subprocess.Popen(_train_args(cfg_dict, run, method), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        interrupted = None
        if method == "gradalign":
            while proc.poll() is None and not (run / "state.pt").is_file():
                time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                interrupted = proc.wait()
                proc = subprocess.Popen(_train_args(cfg_dict, run, method), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        code, err = proc.wait(), proc.stderr.read()
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
        history = pd.read_csv(run / "history.csv") if (run / "history.csv").is_file() else pd.DataFrame()
        finite = bool(len(history) > 1 and history["train_loss"].iloc[1:].notna().all()
                      and (history["train_loss"].iloc[1:].abs() < float("inf")).all())
        ok = code == 0 and summary.get("status") in FINISHED and finite and interrupted in (None, 75)
        rows[method] = {"exit": code, "status": summary.get("status"), "finite_losses": finite,
                        "history_rows": len(history), "sigterm_exit": interrupted,
                        "seconds_per_epoch": summary.get("seconds_per_epoch"),
                        "stderr_tail": err.strip().splitlines()[-1:] if code else [],
                        "status_check": "PASS" if ok else "FAIL"}
    return {"check": "one_epoch", "rows": rows, "about_cuda": False,
            "status": "PASS" if all(r["status_check"] == "PASS" for r in rows.values()) else "FAIL"}


def gpu_check(cfg_dict: dict, out: str | Path, iterations: int, repeats: int, eval_points: int) -> dict:
    """Run the three checks on the config's device and scale; write report.json / report.md into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig.from_dict(cfg_dict)
    device = select_device(cfg.runtime.device)
    checks = [check_precision(cfg, device), check_one_epoch(cfg_dict, out)]
    model = out / "epoch_fgsm" / "model_final.pt"
    checks.append(check_speed(cfg_dict, iterations, repeats, model if model.is_file() else None, eval_points))
    report = {"hardware": hardware_stamp(device), "cuda": device.type == "cuda", "checks": checks,
              "scale": {"model": f"{cfg.model.name}-w{cfg.model.width}", "batch_size": cfg.phases[0].batch_size}}
    atomic.write_json(out / "report.json", report)
    atomic.write_text(out / "report.md", report_markdown(report))
    return report


def report_markdown(report: dict) -> str:
    hw = report["hardware"]
    lines = [f"# fastadv gpu-check: {hw['gpu'] or hw['cpu']}, torch {hw['torch']}, {report['scale']['model']}, "
             f"batch {report['scale']['batch_size']}", ""]
    if not report["cuda"]:
        lines += ["**No CUDA device: this ran on the CPU.** The checks marked *about CUDA* state nothing about GPUs "
                  "here; run `make gpu-check` on a machine with one.", ""]
    lines += ["| check | status | about CUDA | result |", "|---|---|---|---|"]
    for c in report["checks"]:
        if c["check"] == "precision":
            result = "; ".join(f"{k}: cosine {r['cosine'] if isinstance(r['cosine'], str) else round(r['cosine'], 6)} "
                               f"({r['note']})" for k, r in c["rows"].items())
        elif c["check"] == "speed":
            m = c["minutes_per_30_epochs"]
            result = (f"GradAlign/FGSM {c['gradalign_over_fgsm']:.2f}x (paper {c['paper_gradalign_over_fgsm']:.2f}x); "
                      f"30 epochs: FGSM {m['fgsm']:.1f} min (paper 9.5), GradAlign {m['gradalign']:.1f} min (paper 30.9)")
        else:
            result = "; ".join(f"{k}: {r['status_check']} (exit {r['exit']}, SIGTERM exit {r['sigterm_exit']}, "
                               f"{r['history_rows']} history rows)" for k, r in c["rows"].items())
        lines.append(f"| {c['check']} | {c['status']} | {'yes' if c['about_cuda'] else 'no'} | {result} |")
    return "\n".join(lines) + "\n"

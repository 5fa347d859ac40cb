"""Wong et al.'s ImageNet recipe as a run of its own (ICLR 2020; locuslab/fast_adversarial ImageNet/): three
resolution phases on resized copies, the per-iteration lr across them, both evaluation protocols, and the
experiment at a CPU size (a small ImageNet-layout tree of real CIFAR-10 images) through the workflow on two
gloo ranks. Values from their files are written out here; formulas are recomputed independently (numpy)."""
import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fastadv.config.params import deep_merge, validate_section
from fastadv.config.run_config import Phase, TrainConfig
from fastadv.paper.reference import load_checkpoints
from fastadv.config.study import Study, resolve_config
from fastadv.data import image_folder
from fastadv.data.resized_copies import prepare_resized, resized_size
from fastadv.errors import FastAdvError
from fastadv.evaluation.protocol import robust_flags, split_robust_flags
from fastadv.training.launch import rank_command, strip_ranks
from fastadv.training.plan import Plan
from fastadv.training.schedule import learning_rate
from fastadv.training.loop import FINISHED
from tests.helpers import PARAMS, copy_workflow, snakemake, write_cifar_image_tree

# configs_fast_4px_phase{1,2,3}.yml (TRAIN.start_epoch, epochs, lr_epochs, lr_values; DATA.batch_size,
# crop_size) and run_fast_4px.sh (the data folder of each phase: imagenet-sz/160, /352, the originals).
WONG_PHASES = [
    {"start": 0, "end": 6, "images": 160, "crop": 128, "batch": 512, "lr": ((0, 1, 6), (0, 0.4, 0.04))},
    {"start": 6, "end": 12, "images": 352, "crop": 224, "batch": 224, "lr": ((6, 12), (0.04, 0.004))},
    {"start": 12, "end": 15, "images": None, "crop": 288, "batch": 128, "lr": ((12, 15), (0.004, 0.0004))},
]
IMAGENET_TRAIN = 1_281_167


@pytest.fixture(scope="module")
def tree(tmp_path_factory, source):
    return write_cifar_image_tree(tmp_path_factory.mktemp("tree") / "imagenet", source / "cifar10.npz",
                                  train_per_class=6, val_per_class=3)


@pytest.fixture(scope="module")
def tree_root(tree, tmp_path_factory):
    """The tree prepared, with copies resized to 40 and 56 px."""
    root = tmp_path_factory.mktemp("prepared")
    image_folder.prepare(tree, root)
    for size in (40, 56):
        prepare_resized(root, "imagenet", size)
    return root


def test_imagenet_experiment_resolves_to_wong_et_al_phases():
    cfg = TrainConfig.from_dict(Study.load(PARAMS).train_config("imagenet", "fgsm_rs", 4.0, 0))
    assert cfg.phases == tuple(Phase(p["start"], p["end"], p["images"], p["crop"], p["batch"]) for p in WONG_PHASES)
    # main_fast.py: the DataLoader keeps the last partial batch; TRAIN.half (apex O1); 4 GPUs (their README)
    assert not cfg.optim.drop_last and cfg.optim.batch_size is None and cfg.runtime.precision == "fp16"
    assert Study.load(PARAMS).resources("imagenet")["ranks"] == 4
    ev = Study.load(PARAMS).eval_config("imagenet")
    # configs_fast_4px_evaluate.yml: crop_size 288, img_size 0 (no resize); run_eval.sh: the whole val set
    assert (ev["crop"], ev["also_protocol"], ev["also_n_points"]) == (288, "wong_imagenet_pgd50_10", None)
    assert (ev["protocol"], ev["n_points"]) == ("pgd50_10", 1000)


def test_lr_across_phases_is_wong_et_al_per_iteration_lr():
    """At iteration i of epoch e (0-based) each phase's main_fast.py sets np.interp(e + (i+1)/len(loader)) of
    its own config's points, len(loader) = ⌈1,281,167 / its batch⌉; the run's lr after that step must match."""
    cfg = TrainConfig.from_dict(Study.load(PARAMS).train_config("imagenet", "fgsm_rs", 4.0, 0))
    plan = Plan(cfg, IMAGENET_TRAIN)
    assert plan.phase_iters == [math.ceil(IMAGENET_TRAIN / p["batch"]) for p in WONG_PHASES]
    step = 0
    for p, iters in zip(WONG_PHASES, plan.phase_iters):
        i = np.arange(iters)
        for e in range(p["start"], p["end"]):
            want = np.interp(e + (i + 1) / iters, *p["lr"])
            got = [plan.lr(step + k + 1) for k in range(iters)]
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=f"epoch {e}")
            assert plan.iterations(e + 1) == iters
            step += iters
    assert step == plan.total_iters and plan.epochs_at(step) == 15.0


def test_one_phase_keeps_the_single_schedule_bit_for_bit(tiny_cfg):
    """Without data.phases the lr is computed as before phases existed (progress = step / all steps)."""
    cfg = TrainConfig.from_dict(tiny_cfg)
    plan = Plan(cfg, 640)
    o = cfg.optim
    for step in range(plan.total_iters + 1):
        assert plan.lr(step) == learning_rate(o.lr_schedule, step / plan.total_iters, o.lr_max, o.lr_peak, o.epochs)


def test_bad_phases_are_refused_in_one_line():
    d = resolve_config(PARAMS, "train", "paper")
    phases = [{"epochs": 2, "images": None, "crop": 64, "batch_size": 8}]
    with pytest.raises(FastAdvError, match=r"train\.optim\.batch_size 128 and train\.data\.phases both set"):
        validate_section(deep_merge(d, {"data": {"dataset": "imagenet", "phases": phases}}), "train")
    with pytest.raises(FastAdvError, match=r"phases crop image-folder datasets \(imagenet\); 'cifar10' has none"):
        validate_section(deep_merge(d, {"data": {"phases": phases}, "optim": {"batch_size": None}}), "train")
    with pytest.raises(FastAdvError, match=r"end at epochs \[2\]: they must increase and the last must be"):
        validate_section(deep_merge(d, {"data": {"dataset": "imagenet", "phases": phases},
                                        "optim": {"batch_size": None}}), "train")
    with pytest.raises(FastAdvError, match=r"unknown config key train\.data\.phases\[0\]\.size"):
        validate_section(deep_merge(d, {"data": {"dataset": "imagenet", "phases": [{"size": 1}]}}), "train")


@pytest.mark.parametrize("w, h, n, want", [(500, 375, 160, (213, 160)), (375, 500, 160, (160, 213)),
                                            (100, 50, 160, (320, 160)), (352, 352, 352, (352, 352))])
def test_resized_size_is_resize_py(w, h, n, want):
    """resize.py: ratio = min(h/sz, w/sz); (int(w/ratio), int(h/ratio)) — worked out by hand."""
    assert resized_size(w, h, n) == want


def test_resized_copies_are_complete_checked_and_resumable(tree, tmp_path):
    root = tmp_path / "data"
    image_folder.prepare(tree, root)
    man = prepare_resized(root, "imagenet", 40)
    copies = json.loads(man.read_text())
    for rel, _, _, w, h in copies["splits"]["train"][:5]:  # each copy: the original resized as resize.py does
        with Image.open(tree / rel) as src, Image.open(root / "imagenet-40" / rel) as dst:
            assert dst.size == (w, h) == resized_size(*src.size, 40) and min(w, h) == 40 and dst.format == "JPEG"
    # interrupted: some copies and the manifest missing; the rerun redoes those only
    files = sorted((root / "imagenet-40").rglob("*.JPEG"))
    kept = {p: p.stat().st_mtime_ns for p in files[3:]}
    for p in files[:3]:
        p.unlink()
    man.unlink()
    prepare_resized(root, "imagenet", 40)
    assert all(p.is_file() for p in files[:3]) and all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert json.loads(man.read_text()) == copies
    # a copy folder holding other files than the originals is refused
    Image.new("RGB", (50, 50)).save(root / "imagenet-40" / "train" / "cat" / "stray.JPEG")
    with pytest.raises(FastAdvError, match="do not hold exactly the files of"):
        prepare_resized(root, "imagenet", 40)


def test_decoding_in_workers_or_in_shards_gives_the_same_batches(tree_root):
    """DataLoader workers decode what the thread pool decodes; ranks decode only their shard of the global batch,
    with the crops drawn for the whole of it (so shards concatenate to the single process's batch)."""
    from fastadv.data.datasets import load_split
    from fastadv.training.runtime import generator

    def batches(seed):
        return [(torch.arange(i, i + 12), generator(torch.device("cpu"), seed, i, "augment")) for i in (0, 12, 24)]

    kw = dict(augment=True, images=40, crop=32)
    alone = list(load_split(tree_root, "imagenet", "train", "cpu", **kw).iterate(batches(0)))
    pool = load_split(tree_root, "imagenet", "train", "cpu", workers=2, **kw)
    workers = list(pool.iterate(batches(0)))
    again = list(pool.iterate(batches(1)))  # a second pass (epoch) through the same persistent workers
    for (x, *_), (x1, *_) in zip(again, load_split(tree_root, "imagenet", "train", "cpu", **kw).iterate(batches(1))):
        torch.testing.assert_close(x, x1, rtol=0, atol=0)
    shards = [list(load_split(tree_root, "imagenet", "train", "cpu", **kw).iterate(batches(0), (r, 2)))
              for r in range(2)]
    for k, (x, y, bounds) in enumerate(alone):
        assert x.shape == (12, 3, 32, 32) and bounds == (0, 12)
        torch.testing.assert_close(workers[k][0], x, rtol=0, atol=0)
        torch.testing.assert_close(torch.cat([shards[0][k][0], shards[1][k][0]]), x, rtol=0, atol=0)
        assert [s[k][2] for s in shards] == [(0, 12), (6, 12)]


def _phase_cfg(tiny_cfg, root, epochs=3):
    return deep_merge(tiny_cfg, {
        "data": {"dataset": "imagenet", "root": str(root), "subset": None,
                 "phases": [{"epochs": 1, "images": 40, "crop": 32, "batch_size": 16},
                            {"epochs": 2, "images": 56, "crop": 48, "batch_size": 12},
                            {"epochs": epochs, "images": None, "crop": 64, "batch_size": 8}]},
        "model": {"name": "resnet50", "width": 4, "normalize": True},
        "method": {"name": "fgsm_rs", "eps": 4},
        "optim": {"epochs": epochs, "batch_size": None, "drop_last": False, "lr_schedule": "interpolated",
                  "lr_epochs": [0, 1, 3], "lr_values": [0.0, 0.02, 0.0]},
        "monitor": {"every_iterations": 4, "test_points": 8, "train_points": 8, "batch_size": 8}})


def test_a_run_crosses_its_phases_and_resumes_bit_for_bit_across_a_boundary(tiny_cfg, tree_root, tmp_path):
    from fastadv.training.loop import Preempted, train

    cfg = _phase_cfg(tiny_cfg, tree_root)
    whole = train(cfg, tmp_path / "whole")
    # 60 images: ⌈60/16⌉ = 4, ⌈60/12⌉ = 5, ⌈60/8⌉ = 8 iterations per epoch (the last batches kept)
    assert [(p["crop"], p["iterations_per_epoch"]) for p in whole["phases"]] == [(32, 4), (48, 5), (64, 8)]
    assert whole["iterations_done"] == 4 + 5 + 8
    with pytest.raises(Preempted):
        train(cfg, tmp_path / "cut", max_iterations=6)  # stops in phase 2 (iterations 5-9)
    resumed = train(cfg, tmp_path / "cut")
    a, b = (torch.load(tmp_path / d / "model_final.pt", weights_only=True)["state_dict"] for d in ("whole", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["final"] == whole["final"]
    h = pd.read_csv(tmp_path / "whole" / "history.csv")
    # rows every 4 iterations: the fractional epochs count each phase's own iterations per epoch
    want = {0: 0.0, 4: 1.0, 8: 1 + 4 / 5, 12: 2 + 3 / 8, 16: 2 + 7 / 8, 17: 3.0}
    assert dict(zip(h["iteration"], h["epochs"])) == pytest.approx(want)


def test_both_protocols_and_the_crop_reach_the_result(tiny_cfg, tree_root, tmp_path):
    from fastadv.evaluation.protocol import evaluate
    from fastadv.data.datasets import load_split
    from fastadv.training.checkpoint import load_model
    from fastadv.training.loop import train

    train(_phase_cfg(tiny_cfg, tree_root, epochs=3), tmp_path / "run")
    ev = deep_merge(resolve_config(PARAMS, "evaluate", "smoke"), {
        "n_points": 8, "batch_size": 4, "crop": 40, "also_protocol": "wong_imagenet_pgd50_10", "also_n_points": 12,
        "restart_rule": "worst_case"})
    res = evaluate(tmp_path / "run" / "model_final.pt", tmp_path / "r.json", ev)
    assert res["pgd"]["protocol"] == "pgd50_10" and res["n_points"] == 8
    assert res["also"]["protocol"] == "wong_imagenet_pgd50_10" and res["also"]["n_points"] == 12
    assert res["also"]["alpha"] == pytest.approx(1.0)
    # the second protocol's flags are those of its points in memory (loaded batch by batch or at once)
    model = load_model(tmp_path / "run" / "model_final.pt")
    test = load_split(tree_root, "imagenet", "test", "cpu", crop=40)
    x, y = test.head(12)
    assert x.shape[-1] == 40
    eps = 4 / 255
    a = split_robust_flags(model, test, 12, eps, "wong_imagenet_pgd50_10", 4, 0, torch.device("cpu"))["worst_case"]
    b = robust_flags(model, x, y, eps, "wong_imagenet_pgd50_10", 4, 0, torch.device("cpu"))["worst_case"]
    assert torch.equal(a, b) and res["also"]["acc"] == pytest.approx(float(a.float().mean()))


def test_a_crop_for_a_dataset_without_one_is_refused(tiny_cfg, tmp_path):
    from fastadv.evaluation.protocol import evaluate
    from fastadv.training.loop import train

    train(tiny_cfg, tmp_path / "svhn")
    ev = {**resolve_config(PARAMS, "evaluate", "smoke"), "crop": 40}
    with pytest.raises(FastAdvError, match=r"evaluate\.crop 40 crops image-folder datasets \(imagenet\); 'svhn' has "
                                           "none: set it null"):
        evaluate(tmp_path / "svhn" / "model_final.pt", tmp_path / "t.json", ev)
    assert not (tmp_path / "t.json").exists()


def test_ranks_are_started_by_torchrun_or_srun(tmp_path):
    argv = ["train", "--scale", "smoke", "--ranks", "2", "--out", "o", "--ranks=2"]
    assert strip_ranks(argv) == ["train", "--scale", "smoke", "--out", "o"]
    cmd, env = rank_command(argv, 2, 4, {"PATH": ""})
    assert cmd[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[-2:] == ["--set", "runtime.threads=2"] and env["OMP_NUM_THREADS"] == "2"
    srun = tmp_path / "srun"
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    cmd, _ = rank_command(argv, 2, 2, {"PATH": str(tmp_path), "SLURM_JOB_ID": "7"})
    assert cmd[:3] == ["srun", "--ntasks=2", "--cpus-per-task=1"] and cmd[-1] == "runtime.threads=1"
    assert rank_command(argv, 2, 2, {"WORLD_SIZE": "2"}) is None  # inside a rank: train
    assert rank_command(argv, 1, 2, {}) is None


@pytest.mark.slow
def test_the_imagenet_experiment_at_cpu_size_on_two_ranks_through_the_workflow(tmp_path, source):
    """The smoke scale's imagenet experiment from a fresh workflow copy: the tree prepared and resized by its rules,
    two methods trained on two gloo ranks each (fastadv train --ranks 2 under torchrun) over three phases,
    both protocols evaluated, the alignment figure and Table 6 drawn."""
    # 80 training images (each phase a few steps a rank) and 50 validation images (more than the protocols' 4 and 6)
    tree = write_cifar_image_tree(tmp_path / "tree" / "imagenet", source / "cifar10.npz", train_per_class=8,
                                  val_per_class=5)
    wf = tmp_path / "wf"
    wf.mkdir()
    copy_workflow(wf)
    snakemake(wf, "--cores", "2", "results/smoke/table6.md", "results/smoke/imagenet_alignment.pdf",
              "results/smoke/r2_targeted.md", env={"FASTADV_DATA_SOURCE": str(tree)})
    for variant in ("fgsm_rs", "gradalign_l0.1"):
        s = json.loads((wf / f"runs/smoke/imagenet/{variant}/eps4/seed0/summary.json").read_text())
        assert s["status"] in FINISHED and s["distributed"] == {"world_size": 2, "backend": "gloo"}
        assert [(p["images"], p["crop"]) for p in s["phases"]] == [(40, 32), (56, 48), (None, 64)]
        assert s["config"]["runtime"]["threads"] == 1  # the job's 2 threads shared by its 2 ranks
        res = json.loads((wf / f"results/smoke/imagenet/evals/{variant}/eps4/seed0/final.json").read_text())
        assert (res["n_points"], res["also"]["n_points"], res["eval_config"]["crop"]) == (4, 6, 64)
    table = (wf / "results/smoke/table6.md").read_text()
    wong = load_checkpoints()["Wong2020Fast_imagenet"]  # Wong et al.'s model's values stand for FGSM-RS at 4/255
    assert "wong_imagenet_pgd50_10" in table and "FGSM+GradAlign (l0.1)" in table and f"{wong['clean_acc']:.2f}" in table
    # Both models, the early-stopped one kept as Wong et al. keep model_best.pth.tar (best clean accuracy)
    assert table.count("| final |") == 2 and table.count("| best (clean) |") == 2
    drawn = (wf / "results/smoke/imagenet_alignment_data.csv").read_text()
    assert all(v in drawn for v in ("fgsm_rs", "gradalign_l0.1"))
    assert {p.name for p in (wf / "data").iterdir()} >= {"imagenet.json", "imagenet-40.json", "imagenet-56.json"}
    # The rebuttal's R2 experiment on the same tree (its prepared copies shared): targeted AT at 16/255, evaluated by
    # random-targeted PGD-2 and PGD-5 beside the untargeted protocol (the smoke scale's two single-step methods;
    # pgd10_targeted's config: test_a_hand_set_lambda_names_the_run_only_on_imagenet, its training:
    # tests/test_targeted_training.py).
    for variant in ("fgsm_rs_targeted", "gradalign_l2_targeted"):
        run = wf / f"runs/smoke/imagenet_targeted16/{variant}/eps16/seed0"
        s = json.loads((run / "summary.json").read_text())
        assert s["status"] in FINISHED and s["config"]["method"]["objective"] == "random_target"
        res = json.loads((wf / f"results/smoke/imagenet_targeted16/evals/{variant}/eps16/seed0/final.json").read_text())
        assert res["method_label"] == variant and set(res["targeted"]["runs"]) == {"2", "5"}
        assert res["targeted"]["classes"] == 1000
    r2 = pd.read_csv(wf / "results/smoke/r2_targeted.csv")
    assert set(r2["method_label"]) == {"fgsm_rs_targeted", "gradalign_l2_targeted"}
    assert len(r2) == 2 and ((r2["targeted5_acc"] + r2["targeted5_success"]) <= 100).all()  # final models only
    assert "LLR used 110 epochs" in (wf / "results/smoke/r2_targeted.md").read_text()


def test_a_hand_set_lambda_names_the_run_only_on_imagenet():
    """ImageNet has no λ(ε) rule, so its λ is part of the label (a λ grid's runs stay apart in the results); on
    CIFAR-10 a λ set on the gradalign variant keeps its label (the workflow matches labels to variants)."""
    from fastadv.methods.registry import method_label

    m = {"name": "gradalign", "eps": 6.0, "gradalign": {"lambda": 0.3, "alpha": 1.25}}
    assert method_label(m, {}, {"dataset": "imagenet"}) == "gradalign_l0.3"
    assert method_label(m, {}, {"dataset": "cifar10"}) == "gradalign"
    study = Study.load(PARAMS)
    for experiment in ("imagenet", "imagenet_lambda", "imagenet_targeted16"):
        for variant in study.experiment(experiment)["methods"]:
            cfg = study.train_config(experiment, variant, 6.0, 0)
            assert method_label(cfg["method"], cfg["model"], cfg["data"]) == variant


def test_prepare_writes_the_copies_the_scales_phases_read(tree, tmp_path):
    from fastadv.cli import main

    base = ["prepare", "--dataset", "imagenet", "--source", str(tree), "--params", str(PARAMS), "--workers", "0"]
    assert main(base + ["--root", str(tmp_path / "a"), "--scale", "smoke"]) == 0
    assert sorted(p.name for p in (tmp_path / "a").glob("*.json")) == ["imagenet-40.json", "imagenet-56.json",
                                                                        "imagenet.json"]
    assert main(base + ["--root", str(tmp_path / "b"), "--resize"]) == 0  # the manifest only (the workflow's rule)
    assert sorted(p.name for p in (tmp_path / "b").glob("*.json")) == ["imagenet.json"]
    assert main(["prepare", "--dataset", "cifar10", "--root", str(tmp_path / "c"), "--resize", "40"]) == 2

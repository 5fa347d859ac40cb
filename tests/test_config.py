"""Config: every key typed, unknown keys and bad values rejected with the valid choices."""
import json

import pytest
import yaml

from fastadv.cli import main
from fastadv.config.params import deep_merge, parse_set
from fastadv.config.study import resolve_train_config
from fastadv.config.study import Study
from fastadv.errors import FastAdvError
from tests.helpers import PARAMS


def test_params_yaml_resolves_and_scales_apply():
    paper = resolve_train_config(PARAMS)
    smoke = resolve_train_config(PARAMS, "smoke")
    assert paper["optim"]["epochs"] == 30 and paper["optim"]["lr_max"] == 0.2 and paper["model"]["width"] == 64
    assert smoke["optim"]["epochs"] == 2 and smoke["data"]["subset"] == 256 and smoke["optim"]["lr_max"] == 0.05
    assert smoke["method"] == paper["method"]


@pytest.mark.parametrize("sets, message", [
    (["optim.lr_mx=0.1"], r"unknown config key 'train.optim.lr_mx'; valid keys in train.optim: name, epochs"),
    (["method.name=fgsm_rss"], r"invalid train.method.name 'fgsm_rss'; valid: cure, elle, elle_a, fgsm, fgsm_rs, free"),
    (["method.eps=0"], r"train.method.eps=0.0 out of range; valid: \(0, 128\]"),
    (["method.eps=-3"], r"out of range"),
    (["method.eps=1000"], r"out of range"),
    (["optim.epochs=-1"], r"train.optim.epochs=-1 out of range; valid: \[1, inf\)$"),
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


def test_resolved_config_is_used_as_it_is_and_excludes_other_sources(capsys):
    """What the workflow passes (`--resolved`) is the config the command uses and shows; --set still applies."""
    cfg = Study.load(PARAMS, "smoke").train_config("fig1", "gradalign", 16.0, 3)
    assert main(["config", "--all", "--resolved", json.dumps(cfg), "--set", "optim.epochs=5"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == deep_merge(cfg, {"optim": {"epochs": 5}})
    assert main(["config", "--resolved", json.dumps(cfg), "--scale", "quick"]) == 2
    assert "--resolved is the whole config; drop --scale" in capsys.readouterr().err
    assert main(["config", "--resolved", "{not json"]) == 2
    assert "--resolved is not valid JSON" in capsys.readouterr().err
    assert main(["config", "--resolved", json.dumps(deep_merge(cfg, {"optim": {"epochs": 0}}))]) == 2
    assert "train.optim.epochs=0 out of range" in capsys.readouterr().err
    # The workflow leaves out the threads (they are the rule's) and passes them with --set.
    del cfg["runtime"]["threads"]
    assert main(["config", "--resolved", json.dumps(cfg), "--set", "runtime.threads=2"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["runtime"]["threads"] == 2
    assert main(["config", "--resolved", json.dumps(cfg)]) == 2
    assert "missing config key(s) in train.runtime: threads" in capsys.readouterr().err


def test_top_level_scale_is_every_command_default(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.read_text().replace("\nscale: paper ", "\nscale: smoke "))
    assert Study.load(params).scale == "smoke"
    assert main(["config", "--params", str(params)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["optim"]["epochs"] == 2  # the smoke scale's
    assert main(["config", "--params", str(params), "--scale", "paper"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["optim"]["epochs"] == 30
    params.write_text(PARAMS.read_text().replace("\nscale: paper ", "\nscale: huge "))
    with pytest.raises(FastAdvError, match="unknown scale \\(top-level key scale\\) 'huge'; valid: paper, quick, smoke"):
        Study.load(params)


def test_gpu_scale_guard_estimates_and_exemptions():
    from fastadv.workflow.guard import CPU_SECONDS_PER_PASS, cpu_refusal

    studies = {s: Study.load(PARAMS, s) for s in ("paper", "smoke")}
    job = ("train_model", {"scale": "paper", "experiment": "fig1", "variant": "fgsm", "eps": "8", "seed": "0"})
    evaluation = ("evaluate_model", {**job[1], "kind": "final"})
    msg = cpu_refusal([job, evaluation], studies.get, has_cuda=lambda: False, allow_cpu=False)
    # FGSM at paper scale: 30 epochs × ⌈50000/128⌉ = 391 iterations × 2 passes; PGD-50-10 on 1000 points.
    train_h, eval_h = 30 * 391 * 2 * CPU_SECONDS_PER_PASS / 3600, 1000 * 501 * CPU_SECONDS_PER_PASS / 128 / 3600
    assert "1 training(s) and 1 evaluation(s) at scale paper" in msg
    assert f"roughly {train_h:,.0f} h of training and up to {eval_h:,.0f} h of evaluation" in msg
    assert cpu_refusal([job], studies.get, has_cuda=lambda: True, allow_cpu=False) is None
    assert cpu_refusal([job], studies.get, has_cuda=lambda: False, allow_cpu=True) is None
    smoke = ("train_model", {**job[1], "scale": "smoke"})

    def never_asked():
        raise AssertionError("CUDA asked for although no job needs a GPU")  # asking imports torch (~1.6 s)

    assert cpu_refusal([smoke], studies.get, has_cuda=never_asked, allow_cpu=False) is None  # a CPU scale (gpu: 0)
    assert cpu_refusal([evaluation], studies.get, has_cuda=never_asked, allow_cpu=False) is None  # nothing to train
    # An experiment sized for CPUs (the single-layer CNN) asks for no GPU even at the paper scale.
    assert studies["paper"].resources("cnn4")["gpu"] == 0 and studies["paper"].resources("fig1")["gpu"] == 1
    cnn = ("train_model", {"scale": "paper", "experiment": "cnn4", "variant": "fgsm", "eps": "10", "seed": "0"})
    assert cpu_refusal([cnn], studies.get, has_cuda=never_asked, allow_cpu=False) is None


@pytest.mark.parametrize("old, new, where", [
    ("optim: {epochs: 2, batch_size: 64, lr_max: 0.05}", "optim: {epochs: 0, batch_size: 64, lr_max: 0.05}",
     r"scales.smoke.train.optim.epochs=0 out of range; valid: \[1, inf\)"),
    ("pgd2: {method: {name: pgd, pgd: {steps: 2, alpha: 0.5}}}", "pgd2: {method: {name: pgd, pgd: {steps: 0, alpha: 0.5}}}",
     r"variants.pgd2.method.pgd.steps=0 out of range"),
    ("    train: {optim: {epochs: 60}}", "    train: {optim: {epochs: -60}}", r"experiments.figA.train.optim.epochs=-60"),
    ("      free: {optim: {epochs: 45, lr_max: 0.01}}", "      free: {optim: {epochs: 45, lr_max: -0.01}}",
     r"experiments.fig1_svhn.variants.free.optim.lr_max=-0.01 out of range"),
])
def test_errors_name_the_real_dotted_path_even_when_another_scale_runs(tmp_path, old, new, where):
    params = tmp_path / "params.yaml"
    text = PARAMS.read_text()
    assert old in text
    params.write_text(text.replace(old, new))
    with pytest.raises(FastAdvError, match=where):
        Study.load(params, "quick")


def test_defaults_ship_in_the_package_and_a_local_params_file_wins(tmp_path, monkeypatch, capsys):
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)  # no params.yaml here: the packaged defaults (= the repository's file)
    assert main(["config", "--all", "--scale", "quick"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == Study.load(PARAMS, "quick").train_config()
    (tmp_path / "params.yaml").write_text(PARAMS.read_text().replace("    epochs: 30 ", "    epochs: 7 "))
    assert main(["config", "--all"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["optim"]["epochs"] == 7
    # An installed package (not this checkout) carries the file itself, not a link.
    r = subprocess.run([sys.executable, "-c", "from importlib import resources; "
                        "print(len(resources.files('fastadv').joinpath('params.yaml').read_text()))"],
                       capture_output=True, text=True, check=True)
    assert int(r.stdout) == len(PARAMS.read_text())


def test_every_resolved_experiment_is_accepted_by_the_figure_command(capsys):
    """What the workflow passes to `fastadv figure --resolved` (Study.experiment, with its variants)."""
    from fastadv.config.study import validate_experiment_scalars

    study = Study.load(PARAMS, "paper")
    for name in study.doc["experiments"]:
        exp = study.experiment(name)
        assert validate_experiment_scalars(json.loads(json.dumps(exp)), name)["methods"] == exp["methods"]


def test_quick_scale_layout_and_double_backward_and_one_pgd_batch():
    """The quick scale trains every method channels-last and exact GradAlign with the fused double backward (its
    fastest step, docs/performance.md; the other methods' configs, and so their runs, stay as they were) while
    the paper's settings keep autograd's own; its evaluation batch holds all its PGD points, so the random
    starts (drawn per batch) are those of any larger batch size."""
    s = Study.load(PARAMS, "quick")
    runtime = {v: s.train_config("fig1", v, 16.0, 0)["runtime"] for v in ("fgsm", "fgsm_rs", "gradalign", "pgd2",
                                                                          "gradalign_fd")}
    assert {v: (r["channels_last"], r["double_backward"]) for v, r in runtime.items()} == {
        **dict.fromkeys(runtime, (True, "native")), "gradalign": (True, "fused")}
    assert Study.load(PARAMS, "paper").train_config("fig1", "gradalign", 16.0, 0)["runtime"]["double_backward"] \
        == "native"
    ev = s.eval_config("fig1")
    assert ev["n_points"] <= ev["batch_size"] < 1024

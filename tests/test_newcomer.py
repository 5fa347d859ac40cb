"""A newcomer's first commands: --version, the effective config, and bad input of the kinds a first hour
meets — each one line naming the value and what to do, exit 2, nothing left behind."""
import pickle

import pytest
import torch
import yaml

from fastadv import __version__
from fastadv.cli import main
from tests.helpers import PARAMS


def _tree(root):
    return sorted(p.relative_to(root) for p in root.rglob("*"))


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"fastadv {__version__}"


def test_config_shows_the_effective_values_and_all_of_it_on_request(capsys):
    assert main(["config", "--params", str(PARAMS), "--scale", "quick", "--set", "method.name=gradalign",
                 "--set", "method.eps=16"]) == 0
    method = yaml.safe_load(capsys.readouterr().out)["method"]
    # λ(ε) of the official CIFAR-10 scripts at 16/255: 0.02 · 10^(16/8) = 2
    assert method == {"name": "gradalign", "eps": 16.0, "gradalign": {"lambda": pytest.approx(2.0), "alpha": 1.25},
                      "clamp_in_graph": True, "extra_clean_forward": True, "objective": "untargeted"}
    assert main(["config", "--params", str(PARAMS), "--scale", "quick", "--all"]) == 0
    whole = yaml.safe_load(capsys.readouterr().out)["method"]
    assert {"fgsm", "pgd", "gradalign", "elle"} <= set(whole) and whole["gradalign"]["lambda"] is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_train_at_a_gpu_scale_on_a_cpu_refuses_like_the_workflow(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--params", str(PARAMS), "--out", str(out)]) == 2
    msg = _error(capsys)
    assert msg.startswith("fastadv: error: refusing to train at scale paper (it asks for GPUs: resources.gpu = 1) "
                          "without a CUDA device: on this machine's CPU that is roughly ")
    assert msg.endswith("for a CPU run use --scale quick (or smoke), to run this anyway add --allow-cpu")
    assert not out.exists()
    # --allow-cpu passes the guard: the run gets as far as its data
    assert main(["train", "--params", str(PARAMS), "--out", str(out), "--allow-cpu", "--set",
                 f"data.root={tmp_path / 'nodata'}"]) == 2
    assert "refusing" not in _error(capsys) and not out.exists()


def test_cuda_without_cuda_leaves_no_run_folder(tmp_path, capsys, synthetic_sets):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    args = ["train", "--params", str(PARAMS), "--scale", "smoke", "--out", str(out), "--set", "runtime.device=cuda"]
    assert main(args + [a for s in synthetic_sets for a in ("--set", s)]) == 2
    assert _error(capsys) == ("fastadv: error: runtime.device 'cuda' requested but no CUDA device is available; "
                              "valid here: auto, cpu")
    assert not out.exists()


def test_figure_inputs_missing_or_of_the_wrong_kind(tmp_path, capsys):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    before = _tree(tmp_path)
    base = ["figure", "fig1", "--params", str(PARAMS), "--scale", "smoke", "--out", str(tmp_path / "f.pdf")]
    assert main(base + ["--results", str(tmp_path / "missing.csv")]) == 2
    assert _error(capsys) == (f"fastadv: error: {str(tmp_path / 'missing.csv')!r} is not readable as a tidy results "
                              "table (fastadv collect) (FileNotFoundError)")
    assert main(base + ["--results", str(tmp_path / "other.csv")]) == 2
    assert _error(capsys) == (f"fastadv: error: {str(tmp_path / 'other.csv')!r} is not a tidy results table "
                              "(fastadv collect): no column(s) dataset, method, method_label, train_eps … (30 in all)")
    assert main(["figure", "figA", "--params", str(PARAMS), "--scale", "smoke", "--out", str(tmp_path / "f.pdf"),
                 "--histories", str(tmp_path / "other.csv")]) == 2
    assert _error(capsys) == (f"fastadv: error: {str(tmp_path / 'other.csv')!r} is not a run's history.csv: no "
                              "column(s) epoch, test_pgd_acc")
    assert _tree(tmp_path) == before


def test_model_files_that_are_not_model_files(tmp_path, capsys):
    (tmp_path / "notes.pt").write_text("hello world\n")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module, as torch.save(model) writes
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"a": 1}, f)
    before = _tree(tmp_path)
    for name, reason in [
        ("notes.pt", "not a complete torch archive (refused by weights_only load)"),
        ("module.pt", "it holds pickled Python objects (torch.nn.modules.linear.Linear), which weights-only loading "
                      "refuses to run (refused by weights_only load)"),
    ]:
        assert main(["evaluate", "--params", str(PARAMS), "--model", str(tmp_path / name),
                     "--out", str(tmp_path / "r.json")]) == 2
        msg = _error(capsys)
        assert msg == (f"fastadv: error: checkpoint {str(tmp_path / name)!r} is corrupt, truncated or not a "
                       f"plain-weights file: {reason}")
        assert "\x1b" not in msg and "weights_only=False" not in msg and "weights_only` set to `False" not in msg
    assert main(["evaluate", "--params", str(PARAMS), "--model", str(tmp_path / "plain.pkl"),
                 "--out", str(tmp_path / "r.json")]) == 2
    assert "\x1b" not in _error(capsys)
    assert _tree(tmp_path) == before

"""Issue 26: published checkpoints imported (official GradAlign code, Wong et al., RobustBench), checked
against each source's own forward (tests/foreign_models.py rebuilds each source's module with its key names),
evaluated like our own models, malformed files refused in one line, and the smoke zoo table."""
import json
import os
import subprocess

import pytest
import torch

import fastadv
from fastadv.paper.reference import load_checkpoints
from fastadv.errors import FastAdvError
from fastadv.training.checkpoint import load_model
from fastadv.zoo.registry import import_model
from tests.foreign_models import (OfficialCNN, OfficialPreActResNet, WongPreActResNet, randomize,
                                  robustbench_resnet50, write_smoke_zoo)
from tests.command_server import command_path
from tests.helpers import REPO, copy_workflow, data_source, snakemake, write_separable_dataset

torch.set_num_threads(1)


def same_logits(imported, source, x):
    """Logits of the imported model and of the source's own module: float64 to 1e-6 (the acceptance bound)
    and float32 to float round-off."""
    with torch.no_grad():
        d32 = (imported(x) - source(x)).abs().max().item()
        d64 = (imported.double()(x.double()) - source.double()(x.double())).abs().max().item()
    imported.float(), source.float()
    assert d64 <= 1e-6, d64
    assert d32 <= 1e-4, d32


def cli(*args, cwd=None):
    """``fastadv`` as a command (a fork of the command server: tests/command_server.py)."""
    return subprocess.run(["fastadv", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PATH": command_path()})


@pytest.fixture(scope="module")
def x():
    return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("which", ["last", "best"])
def test_official_preact_resnet_last_and_best(tmp_path, x, which):
    last, best = randomize(OfficialPreActResNet(8), 1), randomize(OfficialPreActResNet(8), 2)
    src = tmp_path / "2020-03-19 dataset=cifar10 model=resnet18 eps=8.0 seed=0.pth"
    torch.save({"last": last.state_dict(), "best": best.state_dict()}, src)  # train.py's format
    origin = import_model("official", str(src), tmp_path / "m.pt", which=which)
    assert origin["eps"] == 8.0 and origin["dataset"] == "cifar10" and origin["kind"] == ("best" if which == "best" else "final")
    same_logits(load_model(tmp_path / "m.pt"), best if which == "best" else last, x)


def test_official_single_layer_cnn_and_plain_state_dict(tmp_path, x):
    cnn = randomize(OfficialCNN(4), 3)
    torch.save(cnn.state_dict(), tmp_path / "cnn.pth")  # eval.py also reads a plain state dict
    import_model("official", str(tmp_path / "cnn.pth"), tmp_path / "m.pt", eps=10)
    same_logits(load_model(tmp_path / "m.pt"), cnn, x)
    with pytest.raises(FastAdvError, match="plain state dict .*no 'best' model"):
        import_model("official", str(tmp_path / "cnn.pth"), tmp_path / "m2.pt", which="best")


@pytest.mark.parametrize("final_bn", [False, True])
def test_wong_cifar10_with_dataparallel_prefixes_and_their_normalisation(tmp_path, x, final_bn):
    wong = randomize(WongPreActResNet(8, final_bn=final_bn), 4)
    torch.save({"module." + k: v for k, v in wong.state_dict().items()}, tmp_path / "model.pth")
    import_model("wong", str(tmp_path / "model.pth"), tmp_path / "m.pt")
    model = load_model(tmp_path / "m.pt")
    assert torch.allclose(model.normalize.std.flatten(), torch.tensor(WongPreActResNet.STD))
    same_logits(model, wong, x)


def test_wong_imagenet_resnet50_records_the_288_crop(tmp_path):
    src = randomize(robustbench_resnet50(), 5)  # torchvision ResNet-50 behind ImageNet standardisation
    inner = {"module." + k[len("model."):]: v for k, v in src.state_dict().items() if k.startswith("model.")}
    torch.save({"state_dict": inner, "epoch": 15, "arch": "resnet50", "best_prec1": 0.0}, tmp_path / "ckpt.pth")
    origin = import_model("wong", str(tmp_path / "ckpt.pth"), tmp_path / "m.pt", eps=4)
    assert origin["dataset"] == "imagenet" and origin["eval_crop"] == 288
    same_logits(load_model(tmp_path / "m.pt"), src, torch.rand(2, 3, 64, 64))


def test_robustbench_files_in_its_model_dir_layout(tmp_path, x):
    rb = tmp_path / "models/cifar10/Linf"
    rb.mkdir(parents=True)
    last, best = randomize(OfficialPreActResNet(8), 6), randomize(OfficialPreActResNet(8), 7)
    torch.save({"last": last.state_dict(), "best": best.state_dict()}, rb / "Andriushchenko2020Understanding.pt")
    wong = randomize(WongPreActResNet(8, buffers=True), 8)  # Wong2020FastNet: mu, sigma as buffers
    torch.save({"state_dict": {"module." + k: v for k, v in wong.state_dict().items()}}, rb / "Wong2020Fast.pt")
    import_model("robustbench", "Andriushchenko2020Understanding", tmp_path / "a.pt", model_dir=tmp_path / "models")
    same_logits(load_model(tmp_path / "a.pt"), last, x)  # RobustBench takes 'last'
    origin = import_model("robustbench", "Wong2020Fast", tmp_path / "w.pt", model_dir=tmp_path / "models")
    assert origin["eps"] == 8.0
    same_logits(load_model(tmp_path / "w.pt"), wong, x)


def test_robustbench_missing_or_unknown_model_is_one_line_naming_where_and_what(tmp_path):
    r = cli("import", "--from", "robustbench", "Wong2020Fast", "--model-dir", str(tmp_path / "m"),
            "--out", str(tmp_path / "o.pt"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(tmp_path / "m/cifar10/Linf/Wong2020Fast.pt") in r.stderr and not (tmp_path / "o.pt").exists()
    r = cli("import", "--from", "robustbench", "Carmon2019Unlabeled", "--out", str(tmp_path / "o.pt"))
    assert r.returncode == 2 and "Andriushchenko2020Understanding, Wong2020Fast" in r.stderr, r.stderr


def test_malformed_files_get_one_line_errors_exit_2(tmp_path):
    (tmp_path / "text.pth").write_text("not a checkpoint")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "foreign.pth")
    good = randomize(OfficialPreActResNet(8), 1).state_dict()
    torch.save({"last": {k: v for k, v in good.items() if k != "linear.bias"}}, tmp_path / "cut.pth")
    torch.save({"last": good}, tmp_path / "onlylast.pth")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"last": Evil()}, tmp_path / "evil.pth")
    cases = {"text.pth": "refused by weights_only load", "foreign.pth": "unrecognised layout",
             "cut.pth": "linear.bias", "evil.pth": "pickled Python objects", "onlylast.pth": "no 'best' model"}
    for name, message in cases.items():
        r = cli("import", "--from", "official", str(tmp_path / name), "--out", str(tmp_path / "o.pt"), "--which",
                "best" if name == "onlylast.pth" else "last")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, (name, r.stderr)
        assert "pwned" not in r.stdout and not (tmp_path / "o.pt").exists()
    r = cli("import", "--from", "nowhere", str(tmp_path / "cut.pth"), "--out", str(tmp_path / "o.pt"))
    assert r.returncode == 2 and "official" in r.stderr and "robustbench" in r.stderr


def test_evaluate_on_an_unconverted_file_says_the_import_command(tmp_path):
    torch.save({"last": randomize(OfficialPreActResNet(8)).state_dict()}, tmp_path / "official.pth")
    r = cli("evaluate", "--model", str(tmp_path / "official.pth"), "--out", str(tmp_path / "r.json"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"fastadv import --from official '{tmp_path / 'official.pth'}' --out official.fastadv.pt" in r.stderr


@pytest.mark.slow  # PGD-50-10 and AutoAttack twice (30-35 s on 2 cores)
def test_fastadv_evaluate_on_the_imported_file_equals_evaluate_model_on_the_source(tmp_path):
    """The same numbers from the command on the converted file and from the Python API on the source's own
    module (same points, seeds and batch sizes); SVHN-shaped synthetic data stands in for the real set."""
    root = tmp_path / "data"
    write_separable_dataset(root, n_test=24)
    src = randomize(OfficialPreActResNet(4), 9)
    torch.save({"last": src.state_dict(), "best": src.state_dict()}, tmp_path / "svhn eps=8.0.pth")
    r = cli("import", "--from", "official", str(tmp_path / "svhn eps=8.0.pth"), "--dataset", "svhn",
            "--out", str(tmp_path / "m.pt"))
    assert r.returncode == 0 and "next: fastadv evaluate" in r.stdout, r.stderr
    r = cli("evaluate", "--scale", "smoke", "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "r.json"),
            "--data-root", str(root), "--set", "n_points=16", "--set", "batch_size=8", "--set", "restart_rule=both",
            "--set", "threads=1", "--set", "autoattack=true", "--set", "autoattack_batch_size=8", cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "AutoAttack square: robust accuracy" in r.stderr and "pgd50_10: robust accuracy" in r.stderr
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["origin"]["source"] == "official" and res["train_eps"] == 8.0 and res["train_config"] is None
    x, y = fastadv.load_dataset("svhn", n=16, root=root)  # two batches
    api = fastadv.evaluate_model(src.eval(), x, y, 8 / 255, batch_size=8, autoattack_batch_size=8, progress="never")
    assert api["clean_acc"] == res["clean_acc"]
    assert api["pgd"] == res["pgd"] and api["autoattack"] == res["autoattack"]


def test_load_dataset_names_the_valid_choices(tmp_path):
    with pytest.raises(FastAdvError, match="unknown dataset 'cifar100'; valid: cifar10, imagenet, mnist, svhn"):
        fastadv.load_dataset("cifar100")
    with pytest.raises(FastAdvError, match="not found; run: fastadv prepare --dataset mnist"):
        fastadv.load_dataset("mnist", root=tmp_path)


@pytest.mark.slow
def test_smoke_zoo_table_from_generated_checkpoints(tmp_path):
    if data_source() is None:
        pytest.skip("offline data copy not found (../shared/data or $FASTADV_DATA_SOURCE)")
    wf = copy_workflow(tmp_path)
    sources = write_smoke_zoo(wf / "models/smoke")
    snakemake(wf, "--cores", "2", "results/smoke/zoo.md")
    md = (wf / "results/smoke/zoo.md").read_text()
    assert "| Wong2020Fast_imagenet | imagenet | 4 | not downloaded: not generated at the smoke scale" in md
    import csv
    rows = {r["name"]: r for r in csv.DictReader((wf / "results/smoke/zoo.csv").open())}
    assert [n for n, r in rows.items() if r["status"] == "evaluated"] == list(sources)
    x, y = fastadv.load_dataset("cifar10", n=int(rows["official_preact"]["n_points"]), root=wf / "data")
    for name, module in sources.items():  # the table's clean accuracy is the source module's
        with torch.no_grad():
            clean = (module(x).argmax(1) == y).float().mean().item()
        assert float(rows[name]["clean"]) == pytest.approx(round(100 * clean, 2)), name
    r = rows["Andriushchenko2020Understanding"]
    published = load_checkpoints()["Andriushchenko2020Understanding"]  # the store's record, under the entry's name
    assert float(r["published_clean"]) == published["clean_acc"] and r["published_source"] == published["source"]
    assert float(r["clean_diff"]) == pytest.approx(float(r["clean"]) - published["clean_acc"], abs=0.011)
    assert not rows["official_preact"]["published_clean"]  # a file with no record: no published value
    # Nothing changed: nothing reruns.
    assert "Nothing to be done" in snakemake(wf, "--cores", "2", "results/smoke/zoo.md").stdout + \
        snakemake(wf, "-n", "results/smoke/zoo.md").stdout


def test_commands_needing_a_training_config_refuse_an_imported_model_in_one_line(tmp_path):
    torch.save({"last": randomize(OfficialPreActResNet(4)).state_dict()}, tmp_path / "o eps=8.pth")
    import_model("official", str(tmp_path / "o eps=8.pth"), tmp_path / "m.pt")
    for command in (["bench-eval", "--model", str(tmp_path / "m.pt")],
                    ["fidelity", "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "f.md")]):
        r = cli(*command)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "imported from official" in r.stderr and "no fastadv training config" in r.stderr

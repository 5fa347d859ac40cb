"""The public Python API: attack objects, robust accuracy on tensors, the README's example."""
import re
import subprocess
import sys

import pytest
import torch

import fastadv
from fastadv.evaluation import protocol as ev
from fastadv.attacks import fgsm_attack, pgd_attack
from fastadv.training.checkpoint import save_model
from fastadv.config.params import deep_merge
from fastadv.config.study import resolve_config
from fastadv.data.datasets import load_split, prepare
from fastadv.models import build_model
from tests.helpers import (PARAMS, REPO, data_source, save_separable_threshold_model, toy_model,
                           write_separable_dataset)


def test_attack_objects_are_the_attack_functions_with_seeded_starts():
    torch.manual_seed(0)
    x, y = torch.rand(16, 3, 2, 2, dtype=torch.float64), torch.randint(0, 3, (16,))
    model = toy_model()
    got = fastadv.PGD(model, eps=0.1, steps=5, restarts=3, seed=4)(x, y)
    want = pgd_attack(model, x, y, 0.1, 0.025, 5, 3, gen=torch.Generator().manual_seed(4))  # α = ε/4
    assert torch.equal(got, want) and torch.equal(got, fastadv.PGD(model, eps=0.1, steps=5, restarts=3, seed=4)(x, y))
    rs = fastadv.FGSM(model, eps=0.1, alpha=0.125, random_init=True, seed=2)(x, y)
    assert torch.equal(rs, fgsm_attack(model, x, y, 0.1, 0.125, True, torch.Generator().manual_seed(2)))
    assert torch.equal(fastadv.FGSM(model, eps=0.1)(x, y), fgsm_attack(model, x, y, 0.1))
    with pytest.raises(ValueError, match="eps 8 out of range; valid: \\(0, 0.5\\]"):
        fastadv.PGD(model, eps=8)


def test_attack_objects_take_torchattacks_names_with_the_papers_defaults():
    torch.manual_seed(0)
    x, y = torch.rand(16, 3, 2, 2, dtype=torch.float64), torch.randint(0, 3, (16,))
    model = toy_model()
    # torchattacks.PGD(model, eps, alpha, steps, random_start): one run from a random start (restarts stays ours).
    got = fastadv.PGD(model, eps=0.1, alpha=0.02, steps=4, restarts=1, random_start=False)(x, y)
    assert torch.equal(got, pgd_attack(model, x, y, 0.1, 0.02, 4, 1, random_init=False))
    rs = fastadv.FGSM(model, eps=0.1, alpha=0.125, random_start=True, seed=2)(x, y)
    assert torch.equal(rs, fgsm_attack(model, x, y, 0.1, 0.125, True, torch.Generator().manual_seed(2)))
    assert fastadv.PGD(model, eps=0.1).random_init is True and fastadv.FGSM(model, eps=0.1).random_init is False
    assert fastadv.PGD(model, eps=0.1, random_init=False, random_start=False).random_init is False  # agreeing: fine
    with pytest.raises(ValueError, match="random_init=True and random_start=False disagree"):
        fastadv.FGSM(model, eps=0.1, random_init=True, random_start=False)


def test_robust_accuracy_on_tensors_equals_the_evaluation_command(tmp_path):
    root = tmp_path / "data"
    write_separable_dataset(root)
    save_separable_threshold_model(tmp_path / "m.pt", root)
    eval_cfg = deep_merge(resolve_config(PARAMS, "evaluate", "smoke"), {"n_points": 24, "batch_size": 8})
    res = ev.evaluate(tmp_path / "m.pt", tmp_path / "r.json", eval_cfg, eps255=16)
    x, y = load_split(root, "svhn", "test", "cpu").head(24)
    model = fastadv.load_model(tmp_path / "m.pt")
    got = fastadv.robust_accuracy(model, x, y, 16 / 255, batch_size=8, seed=eval_cfg["seed"])
    assert got == res["pgd"]["acc"] and 0 < got < res["clean_acc"]  # some points within 16 levels of the threshold
    with pytest.warns(UserWarning, match="train mode"):
        fastadv.robust_accuracy(model.train(), x[:2], y[:2], 0.01)
    with pytest.raises(fastadv.FastAdvError, match="unknown protocol 'pgd7'; valid: pgd50_10, wong_pgd50_10"):
        fastadv.robust_accuracy(model, x, y, 0.01, protocol="pgd7")


def test_the_workflow_side_of_the_package_imports_without_torch():
    code = ("import sys, fastadv.config.study, fastadv.workflow.guard, fastadv.workflow.schema, fastadv.config.params, "
            "fastadv.paper.targets; print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
    with pytest.raises(AttributeError, match="public API: EvalConfig, FGSM, FastAdvError, PGD, TrainConfig"):
        fastadv.nonsense


@pytest.mark.parametrize("page", ["README.md", "docs/guide/api.md"])
def test_python_example_runs(page, tmp_path):
    """The README's and the API guide's example, each run as written in a folder laid out as after `make demo`
    (prepared CIFAR-10; an untrained quick-scale model file where the demo writes its model)."""
    src = data_source()
    if src is None:
        pytest.skip("offline CIFAR-10 copy not found (../shared/data or $FASTADV_DATA_SOURCE)")
    prepare("cifar10", str(src), tmp_path / "data")
    cfg = resolve_config(PARAMS, "train", "quick")
    model = build_model("preact_resnet18", width=cfg["model"]["width"], num_classes=10, in_shape=(3, 32, 32))
    save_model(tmp_path / "runs/quick/fig1/gradalign/eps16/seed0/model_final.pt", model, cfg, "final", 10)
    blocks = re.findall(r"```python\n(.*?)```", (REPO / page).read_text(), flags=re.S)
    assert len(blocks) == 1
    r = subprocess.run([sys.executable, "-c", "import torch; torch.set_num_threads(1)\n" + blocks[0]],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "PGD-50-10 accuracy:" in r.stdout and "gradient alignment:" in r.stdout


def test_notebook_train_is_the_cli_run_and_returns_model_history_summary(tmp_path, synthetic_root, monkeypatch):
    """fastadv.train(method, eps, ...) (issue 41): ε absolute, overrides as dotted keys or sections; the same run
    as `fastadv train --variant ... --eps ...` (the same resolved config, the same weights); finished runs are read
    back, not retrained; bad input is one line naming the value and the choices."""
    from fastadv.cli import main

    monkeypatch.chdir(REPO)  # both read ./params.yaml
    tiny = {"data.root": str(synthetic_root), "data.subset": 64, "model.width": 4, "optim.batch_size": 32,
            "optim.epochs": 2, "monitor.test_points": 32, "monitor.train_points": 32, "monitor.pgd_steps": 2,
            "runtime.threads": 1, "runtime.progress": "never"}
    run = fastadv.train("gradalign", eps=16 / 255, dataset="svhn", scale="smoke", seed=1, out=tmp_path / "api",
                        runtime={"device": "cpu"}, **tiny)
    sets = [a for k, v in {**tiny, "runtime.device": "cpu", "data.dataset": "svhn"}.items() for a in ("--set", f"{k}={v}")]
    assert main(["train", "--scale", "smoke", "--variant", "gradalign", "--eps", "16", "--seed", "1",
                 "--out", str(tmp_path / "cli"), *sets]) == 0
    cli_record = torch.load(tmp_path / "cli/model_final.pt", weights_only=True)
    assert run.summary["config"] == cli_record["config"]
    cfg = run.summary["config"]
    assert (cfg["method"]["name"], cfg["method"]["eps"], cfg["runtime"]["seed"], cfg["optim"]["epochs"]) == (
        "gradalign", 16.0, 1, 2)  # ε in 1/255 in the config; the overrides applied
    assert (run.history["lr"] > 0).any()  # steps that moved the weights: equal weights are equal training
    want = fastadv.load_model(tmp_path / "cli/model_final.pt").state_dict()
    assert all(torch.equal(v, want[k]) for k, v in run.model.state_dict().items())
    assert not run.model.training and run.out == tmp_path / "api"
    assert list(run.history["iteration"]) == list(
        __import__("pandas").read_csv(tmp_path / "cli/history.csv")["iteration"])
    assert run.summary["status"] in ("completed", "not_learned")
    mtime = (tmp_path / "api/model_final.pt").stat().st_mtime_ns
    again = fastadv.train("gradalign", eps=16 / 255, dataset="svhn", scale="smoke", seed=1, out=tmp_path / "api",
                          runtime={"device": "cpu"}, **tiny)
    assert (tmp_path / "api/model_final.pt").stat().st_mtime_ns == mtime and again.summary == run.summary
    with pytest.raises(fastadv.FastAdvError, match="^unknown method variant 'gradalignn'; valid: .*gradalign, gradalign_fd"):
        fastadv.train("gradalignn", eps=8 / 255, scale="smoke", out=tmp_path / "x")
    with pytest.raises(fastadv.FastAdvError, match="optim.epochs"):
        fastadv.train("fgsm", eps=8 / 255, scale="smoke", out=tmp_path / "y", **{"optim.epochs": -1})
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_benchmark_is_evaluate_model_on_the_prepared_points_and_autoattack_only_when_installed(tmp_path, monkeypatch):
    """fastadv.benchmark(model, dataset, eps, n_examples) (issue 41): the first n points of the prepared dataset
    through evaluate_model; autoattack="auto" (also evaluate_model's default) runs AutoAttack where pyautoattack
    imports and otherwise says so once and reports PGD-50-10, instead of raising."""
    root = tmp_path / "data"
    write_separable_dataset(root)
    save_separable_threshold_model(tmp_path / "m.pt", root)
    model = fastadv.load_model(tmp_path / "m.pt")
    x, y = load_split(root, "svhn", "test", "cpu").head(12)

    def strip(r):
        return {k: v for k, v in r.items() if k != "seconds"}

    got = fastadv.benchmark(model, "svhn", eps=16 / 255, n_examples=12, data_root=root, batch_size=8)
    want = fastadv.evaluate_model(model, x, y, 16 / 255, batch_size=8, autoattack=True)
    assert {k: v for k, v in strip(got).items() if k in want} == strip(want)
    assert got["autoattack"] is not None and got["robust_acc"] == want["autoattack"]["acc"]
    assert got["robust_by"] == "autoattack" and got["robust_acc"] <= got["pgd"]["acc"] < got["clean_acc"]

    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # as on a plain install: the import fails
    with pytest.warns(UserWarning, match="pyautoattack is not installed, so AutoAttack is skipped"):
        plain = fastadv.benchmark(model, "svhn", eps=16 / 255, n_examples=12, data_root=root, batch_size=8)
    assert plain["autoattack"] is None and plain["robust_acc"] == want["pgd"]["acc"] == plain["pgd"]["acc"]
    assert plain["robust_by"].startswith("pgd50_10")
    with pytest.raises(fastadv.FastAdvError, match="AutoAttack requested but the 'pyautoattack' package"):
        fastadv.evaluate_model(model, x, y, 16 / 255, autoattack=True)
    with pytest.raises(fastadv.FastAdvError, match="autoattack 'yes'; valid: True, False, 'auto'"):
        fastadv.evaluate_model(model, x, y, 16 / 255, autoattack="yes")


def test_load_model_by_name_file_or_foreign_checkpoint_converts_once(tmp_path):
    """fastadv.load_model (issue 41): a RobustBench name in its model_dir layout, a foreign checkpoint with its
    source, a fastadv file; foreign weights converted once into a cache that a changed source file replaces."""
    from tests.foreign_models import write_smoke_zoo

    models = tmp_path / "models"
    sources = write_smoke_zoo(models)
    x = torch.rand(6, 3, 32, 32)
    m = fastadv.load_model("Andriushchenko2020Understanding", dataset="cifar10", threat_model="Linf",
                           model_dir=models)
    assert not m.training
    torch.testing.assert_close(m(x), sources["Andriushchenko2020Understanding"](x), rtol=1e-4, atol=1e-5)
    cache = models / "fastadv/cifar10/Andriushchenko2020Understanding_last.pt"
    stamp = cache.stat().st_mtime_ns
    fastadv.load_model("Andriushchenko2020Understanding", model_dir=models)
    assert cache.stat().st_mtime_ns == stamp  # the converted copy is reused
    rb = models / "cifar10/Linf/Andriushchenko2020Understanding.pt"
    new = {k: v for k, v in torch.load(rb, weights_only=True).items()}
    new["last"] = new["best"]
    torch.save(new, rb)
    again = fastadv.load_model("Andriushchenko2020Understanding", model_dir=models)(x)
    assert cache.stat().st_mtime_ns != stamp  # a changed source file is converted again
    fastadv.import_model("robustbench", "Andriushchenko2020Understanding", tmp_path / "check.pt", model_dir=models)
    torch.testing.assert_close(again, fastadv.load_model(tmp_path / "check.pt")(x))
    assert not torch.allclose(again, m(x))
    torch.testing.assert_close(fastadv.load_model(cache)(x), again)  # the cache is a fastadv model file
    best = fastadv.load_model(models / "official/preact_eps8.pth", source="official", which="best", model_dir=models)
    torch.testing.assert_close(best(x), sources["official_preact"](x), rtol=1e-4, atol=1e-5)
    with pytest.raises(fastadv.FastAdvError, match="^unknown model file or name for cifar10 'Wong2020Fats'; valid: "
                                                   ".*Andriushchenko2020Understanding.*Wong2020Fast"):
        fastadv.load_model("Wong2020Fats", model_dir=models)
    with pytest.raises(fastadv.FastAdvError, match="threat_model 'L2'; valid: Linf"):
        fastadv.load_model("Wong2020Fast", threat_model="L2", model_dir=models)


def test_a_notebook_trains_loads_benchmarks_and_loads_a_published_model_with_import_fastadv_only(tmp_path,
                                                                                                   synthetic_root):
    """Issue 41's acceptance, as a notebook cell would do it: nothing but ``import fastadv``."""
    from tests.foreign_models import write_smoke_zoo

    write_smoke_zoo(tmp_path / "models")  # the files a user would have downloaded
    run = fastadv.train("fgsm_rs", eps=8 / 255, dataset="svhn", scale="smoke", out=tmp_path / "run",
                        params=PARAMS, data={"root": str(synthetic_root), "subset": 128},
                        **{"model.width": 4, "optim.epochs": 2, "runtime.progress": "never"},
                        monitor={"test_points": 32, "train_points": 32, "pgd_steps": 2})
    model = fastadv.load_model(run.out / "model_final.pt")
    scores = fastadv.benchmark(model, "svhn", eps=8 / 255, n_examples=16, data_root=synthetic_root,
                               autoattack=False)  # AutoAttack's part: the test above
    assert scores["n_points"] == 16 and 0 <= scores["robust_acc"] <= scores["clean_acc"] <= 1
    assert len(run.history) >= 2 and run.summary["status"] in ("completed", "not_learned")
    published = fastadv.load_model("Andriushchenko2020Understanding", model_dir=tmp_path / "models")
    assert published(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_load_model_by_name_gives_robustbenchs_own_models_logits(tmp_path):
    """For every RobustBench name fastadv knows: a file in RobustBench's model_dir layout, written from RobustBench's
    own architecture with random weights, read by ``robustbench.utils.load_model`` and by ``fastadv.load_model``:
    the same logits (RobustBench 1.1.1's loader, offline: a file already there is not downloaded)."""
    from fastadv.zoo.robustbench import KNOWN, model_path, robustbench_loader

    robustbench_load_model = robustbench_loader()  # robustbench.utils.load_model (see there for the import)
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    from tests.foreign_models import randomize

    models = tmp_path / "models"
    for seed, (dataset, name) in enumerate(sorted(KNOWN)):
        entry = model_dicts[BenchmarkDataset(dataset)][ThreatModel.Linf][name]
        weights = randomize(entry["model"](), seed).state_dict()
        path = model_path(name, models, dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "Andriushchenko2020Understanding":  # the authors' file: the last and the best model
            other = randomize(entry["model"](), seed + 100).state_dict()
            torch.save({"last": weights, "best": other}, path)
        elif dataset == "imagenet":  # Wong et al.'s torchvision ResNet-50 without RobustBench's normaliser
            torch.save({k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")}, path)
        else:  # DataParallel's prefixes, as saved by their training script
            torch.save({"state_dict": {"module." + k: v for k, v in weights.items()}}, path)
        x = torch.rand(2, 3, *((32, 32) if dataset == "cifar10" else (64, 64)), generator=torch.Generator().manual_seed(seed))
        theirs = robustbench_load_model(name, model_dir=str(models), dataset=dataset, threat_model="Linf")
        ours = fastadv.load_model(name, dataset=dataset, threat_model="Linf", model_dir=models)
        assert not ours.training and not theirs.training
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4, msg=f"{dataset} {name}")

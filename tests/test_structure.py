"""The package's shape: no import cycle (function-level imports included), no long functions, the
method registry and the config agree."""
import ast
from pathlib import Path

import pytest

import fastadv

PKG = Path(fastadv.__file__).parent


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Modules of the package imported anywhere in ``path`` (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("fastadv"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fastadv"))
    return found


def test_no_import_cycles():
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    graph = {m: {t for t in imports_of(p) if t in modules and t != m} for m, p in modules.items()}
    # A package's __init__ importing its own submodules is the package, not a cycle.
    graph = {m: {t for t in deps if not (modules[m].name == "__init__.py" and t.startswith(m + "."))}
             for m, deps in graph.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


# The code map (docs/reference/code-map.md): which package may import which (besides atomic, errors, lazy, units, shard and the package root).
BELOW_TRAINING = {"config", "methods", "data", "models", "attacks"}
MAY_IMPORT = {
    "config": {"methods", "models", "data"}, "methods": {"config", "attacks", "data"}, "data": set(), "models": set(),
    "attacks": set(),
    "training": BELOW_TRAINING, "evaluation": BELOW_TRAINING | {"training"},
    "performance": BELOW_TRAINING | {"training", "evaluation", "workflow"},
    "paper": BELOW_TRAINING | {"training", "evaluation", "performance"}, "workflow": {"config", "methods"},
    "zoo": BELOW_TRAINING | {"training", "evaluation"},
}
ANYWHERE = {"atomic", "errors", "lazy", "units", "shard", "fastadv"}


def test_packages_import_only_what_the_code_map_allows():
    def package(module: str) -> str:
        return module.split(".")[1] if "." in module else "fastadv"

    wrong = []
    for p in PKG.rglob("*.py"):
        src = package(module_name(p))
        if src not in MAY_IMPORT:
            continue  # cli, __main__, the package root: the top of the pipeline
        for target in imports_of(p):
            dst = package(target)
            if dst != src and dst not in ANYWHERE | MAY_IMPORT[src]:
                wrong.append(f"{module_name(p)} imports {target}")
    assert not wrong, wrong


def test_no_function_over_50_lines_and_no_class_over_120():
    long = []
    for p in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            limit = 120 if isinstance(node, ast.ClassDef) else 50
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and node.end_lineno - node.lineno + 1 > limit:
                long.append(f"{p.relative_to(PKG)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def test_method_registry_config_schema_and_docs_agree():
    """The specs the registry finds, the config's method names and defaults, the generated schema and the
    docs' methods reference (generated from the specs: tests/test_docs.py) all name the same methods and
    parameters; every spec's ``impl`` is a Method subclass in the file that declares it."""
    from fastadv.config.params import method_defaults, schema
    from fastadv.config.sections import method_names
    from fastadv.config.schema import json_schema
    from fastadv.methods import Method
    from fastadv.methods.registry import method_class, specs

    files = {p.stem for p in (PKG / "methods").glob("*.py")} - {"__init__", "base", "registry"}
    assert set(specs()) == set(method_names()) == files  # one file per method, each found unlisted
    for name, spec in specs().items():
        cls = method_class(name)
        assert issubclass(cls, Method) and cls.__module__ == f"fastadv.methods.{name}", name
    generated = json_schema()["properties"]["train"]["properties"]["method"]["properties"]
    assert set(generated["name"]["enum"]) == set(specs())
    with_params = {n for n, s in specs().items() if s.params}
    assert {k for k in schema("train")["method"] if k in specs()} == set(method_defaults()) == with_params == \
        {k for k in generated if k in specs()}


def test_reading_the_method_model_and_dataset_specs_imports_no_torch():
    """The workflow plans with the specs (names, schema, cost, labels) without paying torch's import."""
    import subprocess
    import sys

    code = ("import sys; from fastadv.methods.registry import specs, method_label; import fastadv.config.study, "
            "fastadv.workflow.guard; specs(); method_label({'name': 'pgd', 'pgd': {'steps': 2}}); "
            "from fastadv.models import MODELS, model_spec; from fastadv.data.registry import dataset_spec; "
            "[model_spec(m) for m in MODELS]; dataset_spec('imagenet'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_every_variant_label_is_what_results_call_it():
    """Tables and figures find a run by the label its evaluation records: it must be the variant's label."""
    from fastadv.config.study import Study
    from fastadv.methods.registry import label_style, method_label
    from tests.helpers import PARAMS

    study = Study.load(PARAMS)
    for variant in study.doc["variants"]:
        # as each experiment listing the variant runs it (its dataset may name the run: ImageNet's λ), else alone
        runs = [(e, x["eps"][0], x["seeds"][0]) for e, x in study.doc["experiments"].items() if variant in x["methods"]]
        for cfg in [study.train_config(e, variant, eps, seed) for e, eps, seed in runs] or [
                study.train_config(variant=variant)]:
            assert method_label(cfg["method"], cfg["model"], cfg["data"]) == variant, variant
        assert label_style(variant)[1] != "#000000", f"{variant}: no colour in its method's SPEC.styles"


def test_every_benchmark_script_the_docs_name_is_in_the_repository():
    """/benchmarks/* is Snakemake's output folder, ignored but for listed scripts: a script the README or docs/
    tell users to run must be one of them (two were written and documented, but never committed)."""
    import re
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    docs = [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]
    named = {m for p in docs for m in re.findall(r"benchmarks/[\w.]+\.(?:py|sh)", p.read_text())}
    assert named, "the docs name no benchmark script: the pattern above is stale"
    tracked = set(subprocess.run(["git", "ls-files", "benchmarks"], cwd=repo, capture_output=True, text=True,
                                 check=True).stdout.split())
    assert sorted(named - tracked) == []


def test_tables_figures_and_curves_import_no_torch():
    """The workflow's collect, draw and curves jobs read JSON and CSV: importing torch would add seconds to each of
    them (a third of a smoke job's time on a slow CPU), so their modules keep it out of reach."""
    import subprocess
    import sys

    code = ("import sys, fastadv.evaluation.results, fastadv.paper.render, fastadv.training.outcome; "
            "print(sorted(m for m in sys.modules if m == 'torch'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_no_module_over_400_lines():
    """A module is read in one sitting: none of the package's is over 400 lines (issue 41)."""
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_model_and_dataset_registries_are_what_the_config_accepts_and_the_code_builds():
    """One registry pattern for methods, models and datasets: the config's choices are the specs' names, every
    model spec builds its class, and an unknown name is one line listing the valid ones."""
    import torch

    from fastadv.config.params import schema
    from fastadv.data.registry import SPECS as DATASET_SPECS
    from fastadv.errors import FastAdvError
    from fastadv.models import SPECS as MODEL_SPECS, build_model, model_spec
    from fastadv.models.preact_resnet import PreActResNet18

    train = schema("train")
    assert train["model"]["name"].choices == tuple(MODEL_SPECS) and train["data"]["dataset"].choices == tuple(DATASET_SPECS)
    for name, spec in MODEL_SPECS.items():
        shape = (1, 28, 28) if name == "mnist_cnn" else (3, 32, 32)
        m = build_model(name, width=2, num_classes=3, in_shape=shape)
        assert isinstance(m, torch.nn.Module) and type(m).__name__ == spec.impl.split(":")[1], name
        assert m(torch.rand(2, *shape)).shape == (2, 3), name
    # a variant's fixed arguments reach its class
    assert isinstance(build_model("preact_resnet18_final_bn", width=2, num_classes=3, in_shape=(3, 32, 32)).final[0],
                      torch.nn.BatchNorm2d)
    assert isinstance(build_model("preact_resnet18", width=2, num_classes=3, in_shape=(3, 32, 32)).final, torch.nn.Identity)
    assert isinstance(build_model("preact_resnet18_wong", width=2, num_classes=3, in_shape=(3, 32, 32)), PreActResNet18)
    with pytest.raises(FastAdvError, match="^unknown model 'vit'; valid: mnist_cnn, one_layer_cnn, preact_resnet18"):
        model_spec("vit")


def test_every_config_key_is_declared_once_as_a_typed_field():
    """The validation schema of each section is read from the fields of the dataclass that declares it
    (fastadv.config.sections), and the typed config holds exactly those fields: a key added to a section class is
    validated, typed and stored, and params.yaml must then set it."""
    import dataclasses

    from fastadv.config.params import schema
    from fastadv.config.run_config import EvalConfig
    from fastadv.config.sections import TRAIN_SECTIONS, EvalSettings, Resources, Section

    train = schema("train")
    for name, cls in TRAIN_SECTIONS.items():
        if issubclass(cls, Section):
            assert list(train[name]) == [f.name for f in dataclasses.fields(cls)], name
            assert all(train[name][f.name] is f.metadata["spec"] for f in dataclasses.fields(cls)), name
    assert list(schema("evaluate")) == [f.name for f in dataclasses.fields(EvalConfig)] == \
        [f.name for f in dataclasses.fields(EvalSettings)]
    assert list(schema("resources")) == [f.name for f in dataclasses.fields(Resources)]

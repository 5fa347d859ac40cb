"""The package's shape: no import cycle (function-level imports included), no long functions, the
method registry and the config agree."""
import ast
from pathlib import Path

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


def test_no_function_is_longer_than_60_lines():
    long = []
    for p in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 >= 60:
                long.append(f"{p.relative_to(PKG)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def test_method_registry_config_schema_and_readme_agree():
    """A method added in one place and forgotten in another is caught here: the registry of classes, the
    config's method names and parameter sections, the generated schema, params.yaml and the README table."""
    import re

    import yaml

    from fastadv.config import METHODS, TRAIN_SCHEMA
    from fastadv.methods import REGISTRY
    from fastadv.study import json_schema
    from tests.helpers import PARAMS, REPO

    assert set(REGISTRY) == set(METHODS)
    schema = json_schema()["properties"]["train"]["properties"]["method"]["properties"]
    assert set(schema["name"]["enum"]) == set(METHODS)
    params = yaml.safe_load(PARAMS.read_text())["train"]["method"]
    with_params = {m for m in METHODS if m in TRAIN_SCHEMA["method"]}
    assert with_params == {m for m in METHODS if m in params} == {m for m in METHODS if m in schema}
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("### Methods"):]
    table = table[:table.index("\n\n", table.index("|"))]
    assert set(re.findall(r"^\| `(\w+)` \|", table, flags=re.M)) == set(METHODS)


def test_every_variant_label_is_what_results_call_it():
    """Tables and figures find a run by the label its evaluation records: it must be the variant's label."""
    from fastadv.evaluate import method_label
    from fastadv.study import Study
    from tests.helpers import PARAMS

    study = Study.load(PARAMS)
    for variant in study.doc["variants"]:
        cfg = study.train_config(variant=variant)
        assert method_label(cfg["method"], cfg["model"]) == variant, variant

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
    """The registered classes, the declarations the torch-free config reads from their decorators, the
    generated schema and the README's table (`fastadv methods`) all name the same methods and parameters."""
    from fastadv.config import method_defaults, method_names, schema
    from fastadv.method_registry import _builtin, methods_table
    from fastadv.methods import REGISTRY
    from fastadv.study import json_schema
    from tests.helpers import REPO

    assert set(REGISTRY) == set(method_names()) == set(_builtin())
    for name, cls in REGISTRY.items():  # what the decorator registered = what its source declares
        from fastadv.method_registry import _RUNTIME

        assert _RUNTIME[name]["params"] == _builtin()[name].params, name
        assert cls.registered_name == name
    generated = json_schema()["properties"]["train"]["properties"]["method"]["properties"]
    assert set(generated["name"]["enum"]) == set(REGISTRY)
    assert {k for k in schema("train")["method"] if k in REGISTRY} == set(method_defaults()) == \
        {k for k in generated if k in REGISTRY}
    assert methods_table() in (REPO / "README.md").read_text(), "README: paste the output of `fastadv methods`"


def test_every_variant_label_is_what_results_call_it():
    """Tables and figures find a run by the label its evaluation records: it must be the variant's label."""
    from fastadv.evaluate import method_label
    from fastadv.study import Study
    from tests.helpers import PARAMS

    study = Study.load(PARAMS)
    for variant in study.doc["variants"]:
        cfg = study.train_config(variant=variant)
        assert method_label(cfg["method"], cfg["model"]) == variant, variant

"""MkDocs hook: the reference pages' generated parts, made from the code at build time so that they cannot
drift from it. A page asks for one with a line ``<!-- generated: NAME -->``; NAME is a key of ``GENERATORS``.
An unknown name fails the build (MkDocs reports the exception)."""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import yaml

MARKER = re.compile(r"^<!-- generated: ([a-z_]+) -->$", re.M)
REPO = Path(__file__).resolve().parents[1]


def _cli() -> str:
    """``fastadv --help`` and every command's ``--help``, as a 100-column terminal prints them, by group."""
    from fastadv.cli import GROUPS, build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: fixed, so the page is reproducible
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = ["```text", parser.format_help().rstrip(), "```", ""]
    for group, names in GROUPS.items():
        out += [f"## {group}", ""]
        for name in names:
            p = sub.choices[name]
            out += [f"### `fastadv {name}`", "", p.description, "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def _readme() -> str:
    """The README, its links made relative to this folder (the site's home page says what the README says)."""
    return re.sub(r"\]\(docs/", "](", (REPO / "README.md").read_text())


def _methods() -> str:
    from fastadv.methods.registry import methods_table

    return methods_table()


def _targets() -> str:
    from fastadv.paper.targets import targets_table

    return targets_table()


def _params() -> str:
    """params.yaml as shipped (every default once, with its comment), then the JSON schema made from the specs."""
    from fastadv.config.schema import json_schema

    text = (REPO / "params.yaml").read_text()
    schema = yaml.safe_dump(json_schema(), sort_keys=False)
    return "\n".join(["```yaml", text.rstrip(), "```", "", "## The schema (`fastadv schema`)", "",
                      "??? note \"JSON schema, as YAML (what the workflow validates the config with)\"", "",
                      "    ```yaml", *("    " + line for line in schema.rstrip().splitlines()), "    ```"])


def _api() -> str:
    """One mkdocstrings block per name of ``fastadv``'s public API (its ``_API`` table), in its module."""
    import fastadv

    return "\n\n".join(f"::: fastadv.{module}.{name}" for name, module in sorted(fastadv._API.items()))


GENERATORS = {"readme": _readme, "cli": _cli, "methods": _methods, "targets": _targets, "params": _params, "api": _api}


def on_page_markdown(markdown: str, **kwargs) -> str:
    def replace(m: re.Match) -> str:
        name = m.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated section {name!r}; valid: {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)

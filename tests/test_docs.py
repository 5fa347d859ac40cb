"""The documentation site (`make docs`: MkDocs, strict) builds with no warning, and its generated reference pages
hold what the code declares; the README stays a front door (short, a picture first, tables that are the code's)."""
import argparse
import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.helpers import REPO


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs") / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                       capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def page(site, path: str) -> str:
    return (site / path / "index.html").read_text() if path else (site / "index.html").read_text()


def test_every_page_of_the_nav_is_built_and_every_docs_page_is_in_the_nav(site):
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text().replace("!!python", ""))["nav"]

    def files(item):
        if isinstance(item, str):
            return [item]
        if isinstance(item, list):
            return [f for i in item for f in files(i)]
        return [f for v in item.values() for f in files(v)]

    listed = files(nav)
    on_disk = sorted(str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md"))
    assert sorted(listed) == on_disk
    for f in listed:
        assert (site / ("" if f == "index.md" else f[:-3]) / "index.html").exists(), f


def test_reference_pages_are_generated_from_the_code(site):
    from fastadv import _API
    from fastadv.cli import build_parser
    from fastadv.methods.registry import specs
    from fastadv.paper.targets import TARGETS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    cli = page(site, "reference/cli")
    for name, parser in sub.choices.items():
        assert f"fastadv {name}</code>" in cli, name
        for action in parser._actions:  # every option of every subcommand, as its --help prints it
            for flag in action.option_strings:
                assert flag in cli, (name, flag)
    methods = page(site, "reference/methods")
    for name, spec in specs().items():
        assert f"<code>{name}</code>" in methods and all(f"<code>{k}</code>" in methods for k in spec.params), name
    targets = page(site, "reference/targets")
    assert all(f"<code>{t.name}." in targets for t in TARGETS)
    api = page(site, "reference/api")
    for name, module in _API.items():  # mkdocstrings' heading anchor: the object's full path
        assert f'id="fastadv.{module}.{name}"' in api, name
    params = page(site, "reference/params")
    assert "learned_clean_ratio" in params and "additionalProperties" in params


def test_home_page_is_the_readme_with_its_links_into_the_site(site):
    home = page(site, "")
    assert 'src="demo_fig1.png"' in home and 'href="guide/install/"' in home
    assert "docs/" not in re.sub(r"<code>.*?</code>", "", home.split('<article', 1)[1], flags=re.S)


def test_readme_is_a_front_door():
    """Issue 40: at most 200 lines, a picture within the first 40, and its paper-scale table the code's, whose
    published numbers are declared once (published_values.yaml, params.yaml's zoo)."""
    from fastadv.paper.reference import paper_scale_table

    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    assert any(line.startswith("![") for line in lines[:40])
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", "\n".join(lines)):
        assert (REPO / image).is_file(), image
    zoo = yaml.safe_load((REPO / "params.yaml").read_text())["zoo"]["models"]
    assert paper_scale_table(zoo) in "\n".join(lines), ("README: paste paper_scale_table()'s output:\n"
                                                          + paper_scale_table(zoo))

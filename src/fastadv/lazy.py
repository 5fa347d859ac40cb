"""Modules and functions imported on first use.

The method files (fastadv/methods/) are imported to read their ``SPEC`` where torch is not wanted: the
workflow validates configs and plans jobs with them, and torch's import alone takes about 1.5 s per
parse. So they name torch and the attacks through these proxies: the import happens at the first
attribute access or call, i.e. when a run first takes a training step (tests/test_structure.py checks
that reading every spec imports no torch).
"""
from __future__ import annotations

import importlib


class LazyModule:
    """Stands for module ``name``; imports it at the first attribute access."""

    def __init__(self, name: str):
        self.__dict__["_name"] = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self.__dict__["_name"]), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_name']!r}>"


def lazy(name: str) -> LazyModule:
    return LazyModule(name)


def deferred(module: str, name: str):
    """Function ``name`` of ``module``, imported when first called (a drop-in for ``from module import name``)."""
    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{module}.{name}, imported on first call."
    return call


def import_object(path: str):
    """The object ``"module:name"`` names, imported now (a registry spec's ``impl``)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)

"""Name -> spec registries for tasks and methods, filled by importing plugin files.

A plugin is one module in `tasks/` or `baselines/`, a `.py` file in a folder listed in
$BENCH_PLUGINS (os.pathsep-separated), or a third-party package exposing an entry point in the group
`rnn_dropout_bench.methods` / `rnn_dropout_bench.tasks`, that calls `register_task` or
`register_method` at import time. A plugin that fails to import is recorded by name in
`import_errors()` and does not break the others.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
import traceback
from pathlib import Path
from typing import Any

from bench.errors import choose

_REGISTRIES: dict[str, dict[str, Any]] = {"task": {}, "method": {}}
_IMPORT_ERRORS: dict[str, str] = {}
_LOADED = False
ENTRY_POINT_GROUPS = {"method": "rnn_dropout_bench.methods", "task": "rnn_dropout_bench.tasks"}


def _register(kind: str, spec):
    reg = _REGISTRIES[kind]
    if spec.name in reg and reg[spec.name] is not spec:
        raise ValueError(f"duplicate {kind} name {spec.name!r}: already registered by "
                         f"{reg[spec.name].module}, again by {spec.module}")
    reg[spec.name] = spec
    return spec


def register_method(spec):
    """Register a MethodSpec; a second method with the same name is an error."""
    return _register("method", spec)


def register_task(spec):
    """Register a TaskSpec; a second task with the same name is an error."""
    return _register("task", spec)


def unregister(kind: str, name: str) -> None:
    """Remove a registered plugin (used by tests that load throw-away plugins)."""
    _REGISTRIES[kind].pop(name, None)


def _import(modname: str) -> None:
    try:
        importlib.import_module(modname)
    except Exception as exc:  # a broken plugin must not take the others down
        _IMPORT_ERRORS[modname] = f"{type(exc).__name__}: {exc}"
        if "--traceback" in sys.argv:
            traceback.print_exc()


def load_package(package: str) -> None:
    """Import every module of a plugin package (`tasks`, `baselines`), recording failures."""
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            _import(f"{package}.{info.name}")


def load_directory(folder: str) -> None:
    """Import every `*.py` file of a folder as a plugin (files starting with `_` are skipped)."""
    for path in sorted(Path(folder).glob("*.py")):
        if path.name.startswith("_"):
            continue
        modname = f"bench_plugin_{path.stem}"
        try:
            spec = importlib.util.spec_from_file_location(modname, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(modname, None)
            _IMPORT_ERRORS[str(path)] = f"{type(exc).__name__}: {exc}"


def load_entry_points() -> None:
    for kind, group in ENTRY_POINT_GROUPS.items():
        for ep in importlib.metadata.entry_points(group=group):
            try:
                ep.load()
            except Exception as exc:
                _IMPORT_ERRORS[f"{ep.name} (entry point {ep.value})"] = f"{type(exc).__name__}: {exc}"


def load_all() -> None:
    """Import the built-in plugins and those of installed packages (once)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    load_package("tasks")
    load_package("baselines")
    for folder in filter(None, os.environ.get("BENCH_PLUGINS", "").split(os.pathsep)):
        load_directory(folder)
    load_entry_points()


def import_errors() -> dict[str, str]:
    load_all()
    return dict(_IMPORT_ERRORS)


def list_tasks() -> list[str]:
    load_all()
    return sorted(_REGISTRIES["task"])


def list_methods() -> list[str]:
    load_all()
    return sorted(_REGISTRIES["method"])


def get_task(name: str):
    load_all()
    choose("task", name, _REGISTRIES["task"])
    return _REGISTRIES["task"][name]


def get_method(name: str):
    load_all()
    if name not in _REGISTRIES["method"]:
        broken = [m for m in _IMPORT_ERRORS if Path(m).stem.rsplit(".", 1)[-1] == name]
        if broken:
            from bench.errors import UsageError
            raise UsageError(f"method {name!r} failed to import: {_IMPORT_ERRORS[broken[0]]}")
    choose("method", name, _REGISTRIES["method"])
    return _REGISTRIES["method"][name]

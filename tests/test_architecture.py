"""The code's shape, checked statically: data flows one way through the stage packages, and the
component registry knows every built-in implementation module."""

from __future__ import annotations

import importlib

from architecture import all_modules, imports_of

from ragkit.components import BUILTIN_MODULES, STAGES, components

# Data-flow order; a module may import its own layer and earlier ones only. `api` (the façade
# over the stages) comes after them; evaluation and the server drive pipelines through it, and the
# CLI, outermost, drives all of them (`ragkit serve` starts the server).
LAYERS = [
    ("core", ("ragkit.schema", "ragkit.errors", "ragkit.redaction", "ragkit.progress", "ragkit.components",
              "ragkit.protocols", "ragkit.models", "ragkit.config")),
    ("load", ("ragkit.loaders",)),
    ("chunk", ("ragkit.chunkers",)),
    ("index", ("ragkit.indexes",)),
    ("retrieve", ("ragkit.retrieval",)),
    ("generate", ("ragkit.generation",)),
    ("executors", ("ragkit.executors",)),  # where an ingest loads, chunks and embeds (Ray)
    ("api", ("ragkit.api",)),
    ("evaluate", ("ragkit.eval",)),
    ("server", ("ragkit.server",)),
    ("cli", ("ragkit.cli",)),
]  # fmt: skip


def layer_of(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    if module == "ragkit":
        return len(LAYERS)  # the package's lazy re-exports
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def test_no_stage_imports_a_later_stage() -> None:
    problems = []
    for module in all_modules():
        rank = layer_of(module)
        for imported in imports_of(module):
            if imported != "ragkit" and layer_of(imported) > rank:
                problems.append(f"{module} ({LAYERS[rank][0]}) imports {imported} ({LAYERS[layer_of(imported)][0]})")
    assert not problems, "\n".join(problems)


def test_every_builtin_module_registers_a_component_and_every_stage_has_one() -> None:
    registered_modules = {c.module for c in components()}
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
        assert module in registered_modules, f"{module} is listed as built-in but registers nothing"
    assert {c.stage for c in components()} == set(STAGES)


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """The registry imports every built-in component when ragkit.config is first imported; a
    component module that (transitively) imports ragkit.config at module level would be a cycle.
    Importing each module first, in its own interpreter, proves there is none."""
    import subprocess
    import sys

    modules = [m for m in all_modules() if not m.startswith("ragkit.server")]  # server: needs its extra
    script = (
        "import importlib, subprocess, sys\n"
        "bad = []\n"
        "procs = {m: subprocess.Popen([sys.executable, '-c', f'import {m}'], stderr=subprocess.PIPE, text=True)"
        " for m in sys.argv[1:]}\n"
        "for m, p in procs.items():\n"
        "    _, err = p.communicate()\n"
        "    if p.returncode: bad.append(m + ': ' + err.strip().splitlines()[-1])\n"
        "print('\\n'.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, *modules], capture_output=True, text=True, timeout=600)
    assert result.stdout.strip() == "", result.stdout

"""The package graph DESIGN.md draws: dependencies run one way, and nothing heavy loads early.

`cog/cli → builders → derivations → store` (with `cuda_channels`, channel data, beside
`derivations`), and apart from those: the `cog` SDK and its worker (`cog/server`), which run in
the model's environment with the standard library alone, and `runtime`, which runs in its own.
Every import counts, also one inside a function.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from builders.registry import KNOWN, Builders
from cog.cli.main import COMMANDS

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("cog", "builders", "derivations", "store", "runtime", "cuda_channels")
# The parts of `cog/` that are layers of their own: the worker (`server`), and the command, its
# services and its doctor (the model's environment holds none of these three).
SUBLAYERS = ("cli", "server", "project", "doctor")

# Which layers each layer may import (besides itself and third-party libraries).
ALLOWED: dict[str, set[str]] = {
    "store": set(),
    "cuda_channels": {"store"},  # the error root only
    "derivations": {"store", "cuda_channels"},
    "builders": {"derivations", "store", "cuda_channels"},
    # The application: the project's services (lock, one plan, build, run, weights), and the
    # doctor beside them; the command line parses, calls one of them and prints.
    "cog.project": {"builders", "derivations", "store", "cuda_channels", "cog"},
    "cog.doctor": {"cog.project", "builders", "derivations", "store", "cuda_channels", "cog"},
    "cog.cli": {
        "cog.project",
        "cog.doctor",
        "builders",
        "derivations",
        "store",
        "cuda_channels",
        "cog",
        "cog.server",
    },
    "cog": set(),  # the SDK
    # The worker imports the SDK; `python -m cog.server.http` (Cog's entry point) hands over to
    # the runtime installed beside it.
    "cog.server": {"cog", "runtime"},
    "runtime": set(),
}
# What the runtime's environment holds besides `runtime/` (derivations.lock's
# RUNTIME_REQUIREMENTS and what they bring).
RUNTIME_LIBRARIES = {"trio", "h11", "pydantic", "pydantic_core", "httpx", "typing_extensions"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] == "cog" and len(parts) > 1 and parts[1] in SUBLAYERS:
        return f"cog.{parts[1]}"
    return parts[0]


def _modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield ".".join(path.relative_to(REPO).with_suffix("").parts), path


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def test_the_allowed_graph_has_no_circle() -> None:
    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
            for nxt in ALLOWED[start]
        )

    assert not [layer for layer in ALLOWED if reaches(layer, layer)]


def test_imports_run_one_way() -> None:
    wrong = []
    for module, path in _modules():
        source = _layer(module)
        assert source is not None
        for line, imported in _imports(path):
            target = _layer(imported)
            if target is not None and target != source and target not in ALLOWED[source]:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {source} imports {imported}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def _module_graph() -> dict[str, set[str]]:
    """Which of our modules each of our modules imports (a function's imports too); `from
    package import name` counts as importing the module `package.name` where that is one."""
    modules = {m.removesuffix(".__init__"): path for m, path in _modules()}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[module] |= {name for name in names if name in modules and name != module}
    return graph


def test_no_module_imports_itself_through_others() -> None:
    """No file-level import circle, counting imports inside functions: each module can be
    read, and moved, without the ones that import it."""
    graph = _module_graph()

    def path_back(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            module, trail = stack.pop()
            for nxt in sorted(graph[module]):
                if nxt == start:
                    return [*trail, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

    circles = [" -> ".join(trail) for m in sorted(graph) if (trail := path_back(m))]
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_no_command_imports_another() -> None:
    """A command parses its flags, calls a service and prints: what two commands share lives
    in the services (`cog/project`) or a flag helper of `cog/cli`, never in another command,
    nor reached through a helper."""
    graph = _module_graph()
    commands = {f"cog.cli.{module}" for module, _ in COMMANDS.values()}

    def reached(start: str) -> set[str]:
        found, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - found:
                found.add(nxt)
                if nxt.startswith("cog.cli.") and nxt not in commands:
                    todo.append(nxt)  # a helper of the command line: look through it
        return found

    wrong = [
        f"{command} reaches {other}"
        for command in sorted(commands)
        for other in sorted(reached(command) & commands - {command})
    ]
    assert not wrong, "commands importing commands:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("layer", "allowed"),
    [("cog", set()), ("cog.server", set()), ("runtime", RUNTIME_LIBRARIES)],
)
def test_environment_packages_need_only_what_their_environment_holds(
    layer: str, allowed: set[str]
) -> None:
    """The SDK and worker run on the standard library alone; the runtime on its locked set."""
    wrong = []
    for module, path in _modules():
        if _layer(module) != layer:
            continue
        for line, imported in _imports(path):
            top = imported.split(".")[0]
            if top in sys.stdlib_module_names or top in allowed or _layer(imported):
                continue
            if top == "exceptiongroup":  # the backport, imported only below Python 3.11
                continue
            wrong.append(f"{path.relative_to(REPO)}:{line}: {imported}")
    assert not wrong, f"{layer} imports what its environment lacks:\n" + "\n".join(wrong)


def test_every_known_builder_is_of_its_kind() -> None:
    builders = Builders()
    for kind in KNOWN:
        assert builders[kind].kind == kind
    assert sorted(builders) == sorted(KNOWN)
    with pytest.raises(KeyError):
        builders["no-such-kind"]


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout
    return set(out.split())


HEAVY = {"trio", "httpx", "pydantic", "docker", "rich", "cryptography", "builders.image"}


@pytest.mark.parametrize(
    ("statement", "heavy"),
    [
        # `cog --help`, `cog store add`: argument parsing and the store, nothing else.
        ("import cog.cli.main", HEAVY | {"builders.realise"}),
        ("import cog.cli.store_cmd", HEAVY | {"builders.realise"}),
        # `cog --help` lists every command without importing one.
        ("from cog.cli.main import parser; parser(None)", HEAVY | {"cog.cli.build_cmd"}),
        # The realiser imports a builder when its kind is first built.
        ("import builders.realise", {"builders.image", "builders.run_step", "docker"}),
        # Running or building an image without a signing key: no cryptography (the GPU device
        # check carries the CLI without it).
        ("import cog.cli.predict_cmd, cog.cli.build_cmd", {"cryptography", "uv"}),
    ],
)
def test_startup_loads_nothing_heavy(statement: str, heavy: set[str]) -> None:
    assert not heavy & _loaded_after(statement)


def test_each_command_module_registers_the_commands_listed_for_it() -> None:
    for module in {m for m, _ in COMMANDS.values()}:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"cog.cli.{module}").register(sub)
        assert set(sub.choices) == {name for name, (m, _) in COMMANDS.items() if m == module}

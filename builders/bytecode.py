"""Bytecode compiled at build time, for a store that is read-only at run time.

Python cannot write a `__pycache__` into the store, so a module without one is compiled from
source on every start. Each tree of Python code is compiled once, in the sandbox, by the
interpreter that will load it, with `--invalidation-mode unchecked-hash` (imports never look
at mtimes, so they never try to rewrite it) and a fixed hash seed, so the .pyc bytes never vary.
"""

from __future__ import annotations

# compileall's walk and bytes (same dfile, same mode), one file at a time in a fixed order, but
# a file that does not compile (one meant for another Python, as torch ships) is left without
# bytecode, as pip and installer leave it, rather than failing the tree, and a link that leads
# nowhere in the tree (to a file of a lower root layer) is passed over; an OSError still fails.
_COMPILE = (
    "import os, py_compile, sys\n"
    "root, ddir = sys.argv[1], sys.argv[2]\n"
    "mode = py_compile.PycInvalidationMode.UNCHECKED_HASH\n"
    "for top, dirs, files in os.walk(root):\n"
    "    dirs.sort()\n"
    "    for name in sorted(f for f in files if f.endswith('.py')):\n"
    "        path = os.path.join(top, name)\n"
    "        if not os.path.exists(path):\n"
    "            continue\n"
    "        dfile = os.path.join(ddir, os.path.relpath(path, root))\n"
    "        try:\n"
    "            py_compile.compile(path, dfile=dfile, doraise=True, invalidation_mode=mode)\n"
    "        except py_compile.PyCompileError as e:\n"
    "            print(f'left without bytecode: {e.msg}', file=sys.stderr)\n"
)

# What a derivation that compiles bytecode sets: the hash seed orders sets and frozensets in
# the marshalled constants.
COMPILE_ENV = {"PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"}


def compile_argv(interpreter: str, tree: str, final: str) -> list[str]:
    """The command that compiles every .py under `tree` (a path in the sandbox), naming each
    file in its bytecode by where it will be at run time, under `final`."""
    return [interpreter, "-c", _COMPILE, tree, final]

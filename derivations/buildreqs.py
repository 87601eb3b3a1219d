"""What an sdist needs to become a wheel, found at lock time without trusting its code.

An sdist's build requirements are its `[build-system] requires` (read from pyproject.toml:
data, no code), plus what its backend's `get_requires_for_build_wheel` hook answers. The hook
is the package's own code, so it runs under bubblewrap (a `HookRoot`): over the project's own
root, as pip runs after apt under Cog (its base, Python, toolchain and system packages, so a
hook that looks for a system package's headers or pkg-config file finds them), no network, a
private /tmp and $HOME, and only a scratch directory writable. uv, when it builds an sdist's
metadata during resolution, runs the same way but with the network (it reads the index).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from derivations.downloads import client, get
from derivations.errors import DerivationError
from store.errors import ArchiveError
from store.extract import extract_archive

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# PEP 517's fallback for a project without [build-system] (pip's too).
LEGACY_REQUIRES = ("setuptools>=40.8.0", "wheel")
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"


class SdistError(DerivationError):
    pass


@dataclass(frozen=True)
class BuildSystem:
    requires: tuple[str, ...]
    backend: str
    backend_path: tuple[str, ...]


def build_system(src: Path) -> BuildSystem:
    """The `[build-system]` table of the unpacked sdist at `src`, with PEP 517's defaults."""
    pyproject = src / "pyproject.toml"
    table: dict[str, object] = {}
    if pyproject.is_file() and not pyproject.is_symlink():
        try:
            table = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("build-system", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SdistError(f"{src.name}: pyproject.toml cannot be read ({e})") from None
    requires = table.get("requires", LEGACY_REQUIRES if "build-backend" not in table else ())
    backend = table.get("build-backend", LEGACY_BACKEND)
    path = table.get("backend-path", ())
    if not (isinstance(requires, (list, tuple)) and all(isinstance(r, str) for r in requires)):
        raise SdistError(f"{src.name}: pyproject.toml's build-system.requires is not a list")
    if not isinstance(backend, str) or not isinstance(path, (list, tuple)):
        raise SdistError(f"{src.name}: pyproject.toml's build-system table is malformed")
    return BuildSystem(tuple(requires), backend, tuple(str(p) for p in path))


def unpack_sdist(archive: Path, dest: Path) -> Path:
    """Extracts an sdist safely (no links out, no devices) and returns its source tree: its
    one top directory, or the archive's root when the project is there itself (a user's
    `tar -czf pkg.tar.gz setup.py pkg/`, which pip also builds)."""
    try:
        extract_archive(archive, dest)
    except ArchiveError as e:
        raise SdistError(str(e)) from None
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    if any((dest / name).is_file() for name in ("pyproject.toml", "setup.py")):
        return dest
    raise SdistError(
        f"{archive.name} holds no Python project (no pyproject.toml or setup.py at its top, "
        "nor one top-level directory)"
    )


def fetch(url: str, sha256: str, dest: Path) -> Path:
    """The file at `url` (http(s) or file://) at `dest`, checked against `sha256`."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        data = Path(urllib.parse.unquote(parsed.path)).read_bytes()
    else:
        with client() as http:
            data = get(http, url)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise SdistError(f"{url} has sha256 {actual}, not the {sha256} the index gave")
    dest.write_bytes(data)
    return dest


def local_paths(requirements: Sequence[str]) -> list[Path]:
    """The local directories and files that requirement options name (`--find-links DIR`,
    `file://` URLs), which a sandbox must show although /tmp and $HOME are private there."""
    found = []
    for line in requirements:
        if line.startswith("/"):  # a local wheel or sdist, made absolute for the resolver
            value = line.split(";")[0].strip()
        elif line.startswith("-"):
            value = line.replace("=", " ", 1).split(maxsplit=1)[-1].strip()
        else:
            continue
        if value.startswith("file://"):
            value = urllib.parse.unquote(urllib.parse.urlparse(value).path)
        path = Path(value).expanduser().absolute()
        if path.exists():
            found.append(path)
    return found


# How long a package's lock-time code (a backend's hook, uv's metadata build) may run.
HOOK_TIMEOUT = 600


class Sandboxed(Protocol):
    """A sandboxed command ready to run (builders.sandbox.jail.Launch)."""

    def run(self, env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Runs it to the end, its output captured as text; subprocess.TimeoutExpired past
        `timeout` seconds, once it is killed."""
        ...


class HostSandbox(Protocol):
    """Runs a tool over a package's code, sandboxed: `argv` (a host program, shown read-only),
    `writable` alone writable, `readable` and the working directory `cwd` read-only, the
    network only if asked (one of its own), and `env` as its whole environment.
    builders.sandbox.jail makes them (over the host's programs, or over a project's root);
    derivations, below the builders, is handed one by whoever locks."""

    def __call__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        writable: Sequence[Path],
        network: bool,
        cwd: Path | None = None,
        readable: Sequence[Path] = (),
    ) -> Sandboxed: ...


@dataclass(frozen=True)
class HookRoot:
    """Where a package's code runs at lock time: `sandbox` makes its command lines, and
    `python` is the interpreter there that runs build backends (the project's; None: this
    cog's own, over the host's programs)."""

    sandbox: HostSandbox
    python: str | None = None


# A HookRoot made on first use: only an sdist's metadata needs one, and over a project's root
# it is that root realised (its .debs fetched and unpacked), which wheels never need.
Hooks = Callable[[], HookRoot]


def on_host(sandbox: HostSandbox) -> Hooks:
    """Hooks that run over the host's programs (a resolve with no project, such as the test
    fixtures' `--update`)."""
    return lambda: HookRoot(sandbox)


def needs_sandbox(hooks: Hooks | None, what: str) -> HookRoot:
    """Where `what` runs; one sentence where it runs a package's code and bubblewrap, which
    that needs, is missing."""
    if hooks is None or shutil.which("bwrap") is None:
        raise SdistError(
            f"{what} runs a package's code, which needs bubblewrap (bwrap), missing here",
            hint="install bubblewrap, or pin a version that publishes a wheel",
        )
    return hooks()


# The PEP 517 backend a spec names, and its get_requires hook: the lock-time hook run and the
# build's frontend (builders/sdist.py) both start so (scripts for another interpreter).
LOAD_BACKEND = """\
for p in reversed(spec["backend_path"]):
    sys.path.insert(0, os.path.abspath(p))
module, _, attr = spec["backend"].partition(":")
backend = importlib.import_module(module)
for part in filter(None, attr.split(".")):
    backend = getattr(backend, part)
hook = getattr(backend, "get_requires_for_build_wheel", None)
"""
_HOOK = (
    """\
import importlib, json, os, site, sys
env, spec, answer = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]  # setup.py rewrites argv
site.addsitedir(env)
"""
    + LOAD_BACKEND
    + """\
found = list(hook({})) if hook is not None else []
with open(answer, "w") as f:
    json.dump(found, f)
"""
)


def backend_requires(
    name: str,
    src: Path,
    system: BuildSystem,
    wheels: Sequence[Path],
    root: HookRoot,
) -> list[str]:
    """What the backend's get_requires_for_build_wheel asks for, beyond `system.requires`:
    the hook runs in `root`, by its interpreter, without network, over the installed build
    requirements (wheels for the target's Python, which that interpreter is)."""
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    work = src.parent
    site = work / "build-env"
    scheme = {k: str(site) for k in ("purelib", "platlib", "headers", "data")}
    destination = SchemeDictionaryDestination(
        {**scheme, "scripts": str(work / "build-env-bin")}, sys.executable, "posix"
    )
    for wheel in wheels:  # installing a wheel runs none of its code
        with WheelFile.open(wheel) as source:
            install(source, destination, additional_metadata={})
    answer = work / "requires.json"
    spec = json.dumps({"backend": system.backend, "backend_path": list(system.backend_path)})
    # -S: the hook sees the build requirements, never the packages of an environment around
    # the interpreter (cog's own, or what the root's Python has in dist-packages).
    argv = [root.python or sys.executable, "-S", "-c", _HOOK, str(site), spec, str(answer)]
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0", "HOME": "/tmp"}
    try:
        proc = root.sandbox(argv, env, [work], network=False, cwd=src).run(env, HOOK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise SdistError(
            f"the build backend of {name} ({system.backend}) did not say what it needs within "
            f"{HOOK_TIMEOUT // 60} minutes",
            hint=f"pin a version of {name} that publishes a wheel",
        ) from None
    if proc.returncode != 0:
        tail = "\n".join(f"    {line}" for line in (proc.stdout + proc.stderr).splitlines()[-15:])
        raise SdistError(
            f"the build backend of {name} ({system.backend}) failed to say what it needs:\n{tail}"
        )
    # Read without following a link the sandboxed code may have left in its place.
    fd = os.open(answer, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as f:
        found = json.loads(f.read(1 << 20))
    if not (isinstance(found, list) and all(isinstance(r, str) for r in found)):
        raise SdistError(f"the build backend of {name} answered {found!r}, not a list")
    return sorted(set(found) - set(system.requires))

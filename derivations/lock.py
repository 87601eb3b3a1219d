"""cog.lock: everything a build reads, pinned; written deterministically; checked for drift.

The lock records the inputs it was resolved from (Python version, requirement lines,
system packages, channel revision, architecture), so `--check` and `cog build --locked` can
name exactly what drifted without resolving anything. The runtime's own packages are
resolved separately from the model's, so a user's pins can never conflict with ours.

`Lock` is the file's schema (version `LOCK_VERSION`). Its sections were added over time
without a new version, so each optional one is left out of the file while unset: every lock
written before a section existed keeps its bytes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Protocol

import httpx
from packaging.utils import canonicalize_name
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

from cuda_channels.channel import Channel, available, default_for
from cuda_channels.channel import load as load_channel
from cuda_channels.cuda import (
    Choice,
    installed,
    load_cuda,
    pytorch_indexes,
    requirement_names,
    select,
    wheel_layer,
)
from derivations.apt import DebPin, RootPins, resolve_root, resolve_toolchain
from derivations.buildreqs import HookRoot
from derivations.config import CogConfig, RunItem, requirement_lines
from derivations.downloads import client
from derivations.errors import DerivationError
from derivations.pylock import Wheel, resolve
from derivations.requirements import (
    Pinned,
    absolute_url,
    check_hashes,
    folder_url,
    local_files,
    relative_url,
    resolver_lines,
    with_included,
)
from store.errors import CogError

LOCK_FILE = "cog.lock"
LOCK_VERSION = 1
REWRITE_HINT = "run `cog lock` to rewrite it"
NESTED = f"{LOCK_FILE} is nested too deeply to be a lock"
# What Cog's own SDK package depends on (replicate/cog pyproject.toml): in a Cog image these are
# in the model's environment, and models import them without naming them (cog-examples'
# hello-train imports requests). They are resolved with the model's requirements, as pip
# installs the cog wheel beside them.
SDK_REQUIREMENTS = (
    "requests>=2.25.0",
    "pyyaml>=6.0",
    "structlog>=21.0.0",
    "typing_extensions>=4.0",
)
# What the Python of Cog's images brings on 3.11 and older (python:3.11-slim and
# python-build-standalone ship setuptools; 3.12 stopped): models import pkg_resources without
# naming setuptools (lightning 2.1 does), and setuptools 82 removed it. Resolved with the
# model's requirements unless they name setuptools themselves.
BUNDLED_REQUIREMENTS = ("setuptools<82",)
# pip, which every Cog image's Python has (a `run:` step's `pip install` runs it), resolved
# with the model's requirements unless they name pip themselves.
PIP_REQUIREMENTS = ("pip",)
# The runtime environment (the server), locked on its own: see DESIGN.md, "Images".
RUNTIME_REQUIREMENTS = (
    "trio>=0.25",
    "h11>=0.14",
    "pydantic>=2.6",
    "httpx>=0.27",
)


# requirements.txt options that say where packages come from (the runtime is resolved there too).
INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--no-index")


def mirrored(lines: list[str]) -> list[str]:
    """Requirement lines with COG_PYPI_MIRROR in front where they name no index of their
    own: a PyPI mirror's simple index (an http(s) URL), or a folder of wheels (a path or a
    file:// URL) instead of PyPI. The lock pins the same files by sha256 either way."""
    mirror = os.environ.get("COG_PYPI_MIRROR", "")
    if not mirror or any(line.startswith(INDEX_OPTIONS) for line in lines):
        return lines
    if mirror.startswith(("http://", "https://")):
        return [f"--index-url {mirror}", *lines]
    return ["--no-index", f"--find-links {mirror.removeprefix('file://')}", *lines]


class LockError(DerivationError):
    pass


PYTORCH_INDEX = "https://download.pytorch.org/whl"


def bundled(python: str, lines: Sequence[str]) -> list[str]:
    """PIP_REQUIREMENTS, and BUNDLED_REQUIREMENTS where Cog's image Python has them (3.11 and
    older), unless the requirement `lines` name pip or setuptools."""
    names = requirement_names(lines)
    found = [] if "pip" in names else list(PIP_REQUIREMENTS)
    if tuple(int(p) for p in python.split(".")[:2]) >= (3, 12) or "setuptools" in names:
        return found
    return [*found, *BUNDLED_REQUIREMENTS]


def pytorch_index_lines(
    lines: list[str], gpu: Choice | None, warn: Callable[[str], None]
) -> list[str]:
    """`--extra-index-url` lines for PyTorch's own builds of the torch and torchvision that
    `lines` pin, as Cog adds them (`COG_PYTORCH_MIRROR` in place of download.pytorch.org).
    An index that cannot be reached is left out, as pip leaves it out, and said; a mirror
    that cannot be read is an error."""
    names = pytorch_indexes(load_cuda(), lines, gpu.cuda if gpu is not None else None)
    if not names:
        return []
    mirror = os.environ.get("COG_PYTORCH_MIRROR", "").rstrip("/")
    found = []
    with client() as http:
        for name in names:
            url = f"{mirror or PYTORCH_INDEX}/{name}/"
            if any(url.rstrip("/") in line for line in lines):  # named already
                continue
            problem = _unreadable(http, f"{url}torch/")
            if problem is None:
                found.append(f"--extra-index-url {url}")
            elif mirror:
                raise LockError(
                    f"the PyTorch mirror {url} cannot be read ({problem})",
                    hint="check COG_PYTORCH_MIRROR, or unset it to use download.pytorch.org",
                )
            else:
                warn(
                    f"PyTorch's index {url} cannot be reached ({problem}), so torch comes "
                    f"from PyPI, not from PyTorch's {name} build as in Cog; set "
                    f"COG_PYTORCH_MIRROR to a mirror of {PYTORCH_INDEX}"
                )
    return found


def _kept(previous: Sequence[Wheel], pytorch: Sequence[str]) -> list[Wheel]:
    """The previous pins uv may keep. With PyTorch's index at hand, a torch or torchvision
    pinned from PyPI (locked while that index was out of reach) is not kept: it would be
    preferred over PyTorch's own build, which Cog installs."""
    if not pytorch:
        return list(previous)
    return [w for w in previous if w.name not in ("torch", "torchvision") or "+" in w.version]


def _unreadable(http: httpx.Client, url: str, folder: bool = True) -> str | None:
    """Why the index page (a folder, for file://) or, without `folder`, the file at `url`
    (http(s) or file://) cannot be read; None when it can. Nothing past the answer's status
    is read."""
    if url.startswith("file://"):
        page = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
        if folder:
            return None if page.is_dir() else f"{page} is not a folder"
        return None if page.is_file() else f"{page} is not a file"
    try:
        with http.stream("GET", url) as response:
            status = response.status_code
    except httpx.HTTPError as e:
        return f"{type(e).__name__}: {e}"
    return None if status == 200 else f"HTTP {status}"


# --- the schema ----------------------------------------------------------------------------------


def _absent() -> Any:
    """An optional section: None while unset, and then not written at all."""
    return Field(default=None, exclude_if=lambda value: value is None)


# Wheels and .debs stay their resolvers' dataclasses (what the builders take): pydantic checks
# their fields, and their own to_json writes them, so their entries keep their bytes.
WheelPin = Annotated[Wheel, PlainSerializer(Wheel.to_json)]
DebEntry = Annotated[DebPin, PlainSerializer(DebPin.to_json)]


class _Section(BaseModel):
    """Immutable, and strict about keys: a key this cog does not know is a pin it would
    silently not honour, so such a lock is refused (and `cog lock` rewrites it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Revision(_Section):
    """A data set by name and content hash (a channel, the CUDA data)."""

    name: str
    revision: str


class Secret(_Section):
    """Where a build.run step mounts a secret; never its source or bytes."""

    id: str
    target: str


class Step(_Section):
    """A build.run step as cog.yaml asks for it."""

    command: str
    secrets: tuple[Secret, ...] | None = _absent()


class StepPin(Step):
    """A build.run step as `cog lock` pinned it: whether it needs the network and, when it
    does, the sha256 of its output (a fixed-output step)."""

    network: bool
    sha256: str | None = _absent()


class Gpu(_Section):
    """cog.yaml's GPU settings (null when it leaves them to the requirements)."""

    cuda: str | None
    cudnn: str | None
    data: Revision


class Inputs(_Section):
    """What the lock was resolved from: what `drift` compares with the project now."""

    arch: str
    channel: Revision
    python_version: str
    requirements: tuple[str, ...]
    system_packages: tuple[str, ...]
    requirement_files: dict[str, str] | None = _absent()  # local file -> its sha256
    run: tuple[Step, ...] | None = _absent()
    gpu: Gpu | None = _absent()


class Platform(_Section):
    os: str
    arch: str
    glibc: str


class Interpreter(_Section):
    """The Python: Debian's (its .debs are under `system.python`) or a python-build-standalone
    archive, pinned by URL and sha256."""

    source: str
    version: str
    url: str | None = _absent()
    sha256: str | None = _absent()


class System(_Section):
    """The .debs of the root layers, and the toolchain that builds sdists (no image holds it).
    `tools` are the channel's tool_packages (apt, curl, git …), a layer of every image."""

    base: tuple[DebEntry, ...]
    python: tuple[DebEntry, ...]
    packages: tuple[DebEntry, ...]
    toolchain: tuple[DebEntry, ...] | None = _absent()
    tools: tuple[DebEntry, ...] | None = _absent()


class Cuda(_Section):
    """The CUDA and cuDNN a GPU project gets, what chose them, and NVIDIA's wheels for them."""

    version: str
    cudnn: str
    from_: str = Field(validation_alias="from", serialization_alias="from")
    wheels: tuple[str, ...]

    @classmethod
    def of(cls, choice: Choice, wheels: Sequence[str]) -> Cuda:
        return cls.model_validate(choice.to_json() | {"wheels": wheels})


class Lock(_Section):
    """The whole of cog.lock."""

    version: int = LOCK_VERSION
    inputs: Inputs
    platform: Platform
    python: Interpreter
    system: System
    python_packages: tuple[WheelPin, ...]
    runtime_packages: tuple[WheelPin, ...]
    cuda: Cuda | None = _absent()
    run: tuple[StepPin, ...] | None = _absent()

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# --- resolving -----------------------------------------------------------------------------------


def channel_name(config: CogConfig, previous: Lock | None) -> str:
    """The channel to lock on when none is asked for: the lock's, while its Python version is
    still the project's; otherwise the channel that suits the project's Python
    (`cuda_channels.default_for`: trixie's Debian ships 3.13)."""
    was = previous.inputs if previous is not None else None
    if was is not None and was.channel.name and was.python_version == config.build.python_version:
        return was.channel.name
    return default_for(config.build.python_version)


def step_input(item: RunItem) -> Step:
    """A build.run step as the lock records it: its command and where its secrets are
    mounted (never a secret's source or bytes)."""
    secrets = tuple(Secret(id=m.id, target=m.target) for m in item.mounts)
    return Step(command=item.command.strip(), secrets=secrets or None)


def inputs(config: CogConfig, project: Path, channel: Channel, arch: str) -> Inputs:
    requirements = requirement_lines(config, project)
    gpu = None
    if config.build.gpu:
        data = load_cuda()
        gpu = Gpu(
            cuda=config.build.cuda,
            cudnn=config.build.cudnn,
            data=Revision(name=data.name, revision=data.revision),
        )
    return Inputs(
        arch=arch,
        channel=Revision(name=channel.name, revision=channel.revision),
        python_version=config.build.python_version,
        requirements=tuple(requirements),
        system_packages=tuple(sorted(config.build.system_packages)),
        requirement_files=local_files(requirements, project) or None,
        run=tuple(step_input(item) for item in config.build.steps) or None,
        gpu=gpu,
    )


class ProjectRoots(Protocol):
    """What locking asks of the store the build realises into: builders.hook_root.LockRoots
    (derivations, below the builders, realises nothing itself)."""

    def interpreter_in_store(self, channel: Channel, python_version: str, arch: str) -> bool:
        """Whether the channel's standalone interpreter for the target needs no fetch."""
        ...

    def hook_root(
        self,
        channel: Channel,
        arch: str,
        python_version: str,
        pins: RootPins,
        toolchain: tuple[DebPin, ...],
    ) -> AbstractContextManager[HookRoot]:
        """The project's root (its layers realised) where package code runs while locking."""
        ...


def create(
    config: CogConfig,
    project: Path,
    channel: Channel,
    arch: str,
    previous: Lock | None = None,
    upgrade: Sequence[str] | bool = False,
    *,
    warn: Callable[[str], None],
    roots: ProjectRoots | None = None,
) -> Lock:
    """Resolves every input for the target; `previous` pins are kept where they still fit.
    What the lock goes on without (PyTorch's index, unreachable) is said through `warn`. A
    package's code that resolving runs (an sdist's metadata) runs over the project's root,
    which `roots` realises only when an sdist needs it; without `roots`, sdists are refused."""
    recorded = inputs(config, project, channel, arch)
    requirements = list(recorded.requirements)
    python = config.build.python_version
    interpreter = pin_interpreter(channel, python, arch, roots)  # before anything is resolved
    gpu: Choice | None = None
    cuda_wheels: list[str] = []
    if config.build.gpu:
        # The CUDA and cuDNN the project gets (a `cuda:` that contradicts the torch pin fails
        # here, before anything is fetched), and the CUDA layer: NVIDIA's wheels, resolved
        # and pinned with the model's requirements.
        data = load_cuda()
        gpu = select(data, requirements, config.build.cuda, config.build.cudnn)
    lines = mirrored(resolver_lines(requirements, project))
    if gpu is not None:
        gpu, cuda_wheels = wheel_layer(data, gpu, lines, config.build.cudnn)
    pytorch = pytorch_index_lines(lines, gpu, warn)
    roots_pins = resolve_root(channel, arch, python, config.build.system_packages)

    @functools.cache
    def toolchain() -> tuple[DebPin, ...]:
        if not channel.toolchain_packages:
            return ()
        return resolve_toolchain(channel, arch, python)

    def pins(found: Sequence[Wheel]) -> list[Wheel]:
        return [replace(w, url=absolute_url(w.url, project)) for w in found]

    included = with_included(requirements, project)
    with contextlib.ExitStack() as stack:

        @functools.cache
        def hook_root() -> HookRoot:  # realised once, for the model's sdists and the runtime's
            assert roots is not None
            place = roots.hook_root(channel, arch, python, roots_pins, toolchain())
            return stack.enter_context(place)

        hooks = hook_root if roots is not None else None
        model = resolve(
            [*pytorch, *lines, *SDK_REQUIREMENTS, *bundled(python, included), *cuda_wheels],
            python,
            arch,
            channel.glibc,
            pins(_kept(previous.python_packages if previous else (), pytorch)),
            upgrade,
            hooks=hooks,
        )
        check_hashes(included, [Pinned(w.name, w.sha256) for w in model])
        model = [replace(w, url=folder_url(relative_url(w.url, project))) for w in model]
        # The runtime comes from the same indexes the project names (a company mirror, say),
        # and from nothing else the requirements say (constraints are the model's).
        index_options = [line for line in lines if line.startswith(INDEX_OPTIONS)]
        runtime = resolve(
            [*index_options, *RUNTIME_REQUIREMENTS],
            python,
            arch,
            channel.glibc,
            pins(previous.runtime_packages if previous else ()),
            upgrade,
            hooks=hooks,
        )
    sdists = [w.name for w in (*model, *runtime) if w.is_sdist]
    if sdists and not channel.toolchain_packages:  # their compilers: a build-only layer
        raise LockError(
            f"{', '.join(sdists)} must be built from source, but channel {channel.name} "
            "names no toolchain_packages to build with",
            hint="pin versions that publish wheels, or use a channel with a toolchain",
        )
    return Lock(
        inputs=recorded,
        platform=Platform(os="linux", arch=arch, glibc=channel.glibc),
        python=interpreter,
        system=System(
            base=roots_pins.base,
            python=roots_pins.python,
            packages=roots_pins.system,
            toolchain=toolchain() if sdists else None,
            tools=roots_pins.tools or None,
        ),
        python_packages=tuple(model),
        runtime_packages=tuple(runtime),
        cuda=Cuda.of(_as_installed(gpu, model, warn), cuda_wheels) if gpu is not None else None,
    )


def _as_installed(choice: Choice, model: Sequence[Wheel], warn: Callable[[str], None]) -> Choice:
    """The CUDA and cuDNN the locked `model` packages install (cuda_channels.cuda.installed),
    which the lock and the image's labels record; where that is not what was chosen (torch
    pinned from PyPI, built for 12.8, while PyTorch's index for 12.9 was out of reach), said."""
    found = installed(choice, {canonicalize_name(w.name): w.version for w in model})
    if found != choice:
        warn(
            f"the locked packages install CUDA {found.cuda} with cuDNN {found.cudnn} "
            f"({found.reason}), not the CUDA {choice.cuda} with cuDNN {choice.cudnn} that "
            f"{choice.reason} chose: cog.lock and the image's labels say CUDA {found.cuda}"
        )
    return found


# --- the interpreter -----------------------------------------------------------------------------


def pin_interpreter(
    channel: Channel, python: str, arch: str, roots: ProjectRoots | None = None
) -> Interpreter:
    """The interpreter's pin: Debian's (its .debs are pinned with the root), or a standalone
    archive by URL and sha256. A standalone one that is not in the store and that none of its
    places serves is one sentence now, before anything is resolved, not when a build fetches
    it."""
    source = channel.python_source(python)
    if source.source != "python-build-standalone":
        return Interpreter(source=source.source, version=source.version)
    platform = source.platforms.get(arch)
    if platform is None:
        raise LockError(
            f"channel {channel.name} has no Python {python} for {arch}",
            hint=f"use a Python that {channel.name} has for {arch}",
        )
    if roots is None or not roots.interpreter_in_store(channel, python, arch):
        _check_fetchable(channel, source.version, python, platform["url"])
    return Interpreter(
        source=source.source, version=source.version, url=platform["url"], sha256=platform["sha256"]
    )


def _check_fetchable(channel: Channel, version: str, python: str, url: str) -> None:
    """Nothing when one of the places `url` is fetched from (COG_PYTHON_INSTALL_MIRROR's
    first, then the URL, then the channel's mirrors) answers; else a LockError that names
    each place and why it did not."""
    tried = []
    with client() as http:
        for place in channel.standalone.urls(url):
            problem = _unreadable(http, place, folder=False)
            if problem is None:
                return
            tried.append(f"{place} ({problem})")
    raise LockError(
        f"Python {version} (python_version {python}, a python-build-standalone interpreter) "
        f"cannot be fetched from {' or '.join(tried)}",
        hint="set COG_PYTHON_INSTALL_MIRROR to a mirror of python-build-standalone's releases "
        "(space-separated base URLs; file:// works), or use a python_version that a "
        f"channel's Debian ships: {_debian_pythons()}",
    )


def _debian_pythons() -> str:
    """The Python versions channels here take from Debian, as `3.11 (debian-bookworm)`."""
    found = []
    for name in available():
        with contextlib.suppress(CogError):
            channel = load_channel(name)
            found += [
                (tuple(int(p) for p in version.split(".")), f"{version} ({name})")
                for version, source in channel.python.items()
                if source.source == "debian"
            ]
    return ", ".join(text for _, text in sorted(found)) or "none here"


# --- the file ------------------------------------------------------------------------------------


def dumps(lock: Lock) -> str:
    """The same lock always gives the same bytes."""
    return json.dumps(lock.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def loads(text: str | bytes) -> Lock:
    """The lock `text` holds; a LockError (one sentence) where it is not one this cog writes."""
    try:
        data = json.loads(text)
    except ValueError as e:  # not JSON, or not text at all
        raise LockError(f"{LOCK_FILE} is not valid JSON ({e})", hint=REWRITE_HINT) from None
    except RecursionError:  # arrays nested past Python's stack: no lock is shaped so
        raise LockError(NESTED, hint=REWRITE_HINT) from None
    if not isinstance(data, dict):
        raise LockError(f"{LOCK_FILE} does not hold a JSON object", hint=REWRITE_HINT)
    if data.get("version") != LOCK_VERSION:  # before the schema: a newer cog's lock
        raise LockError(
            f"{LOCK_FILE} has schema version {data.get('version')!r}; "
            f"this cog writes {LOCK_VERSION}",
            hint=REWRITE_HINT,
        )
    try:
        lock = Lock.model_validate(data)
    except ValidationError as e:
        raise LockError(f"{LOCK_FILE} is malformed: {_first_error(e)}", hint=REWRITE_HINT) from None
    except RecursionError:
        raise LockError(NESTED, hint=REWRITE_HINT) from None
    for pin in pins(lock):
        _check_pin(pin)
    return lock


def _first_error(error: ValidationError) -> str:
    """Pydantic's first complaint, as `where: what`, and how many more there are."""
    errors = error.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "the top level"
    cause = first.get("ctx", {}).get("error")
    what = str(cause) if isinstance(cause, Exception) else first["msg"]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {what[:1].lower()}{what[1:]}{more}"


def read(project: Path) -> Lock | None:
    """The project's lock, or None; a LockError where it is malformed or fetches a local
    file from outside the places the project and the environment name (`check_sources`)."""
    path = project / LOCK_FILE
    if not path.is_file():
        return None
    lock = loads(path.read_bytes())
    check_sources(lock, project)
    return lock


# --- what a lock may fetch -----------------------------------------------------------------------

_SHA256 = re.compile(r"[0-9a-f]{64}")
# Environment variables that name a mirror, which may be a local folder (docs/cog-yaml.md, Mirrors).
MIRROR_VARIABLES = ("COG_PYPI_MIRROR", "COG_PYTORCH_MIRROR", "COG_PYTHON_INSTALL_MIRROR")


@dataclass(frozen=True)
class Pin:
    """One file a lock fetches (or a step's output): where in the lock, and what it pins."""

    where: str  # the field path, `python_packages.3`
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None


def pins(lock: Lock) -> Iterator[Pin]:
    def wheels(where: str, found: Sequence[Wheel]) -> Iterator[Pin]:
        for i, w in enumerate(found):
            yield Pin(f"{where}.{i}", (w.url,), w.sha256, w.size)
            yield from wheels(f"{where}.{i}.build_requires", w.build_requires)

    yield from wheels("python_packages", lock.python_packages)
    yield from wheels("runtime_packages", lock.runtime_packages)
    for section in ("base", "python", "packages", "toolchain", "tools"):
        for i, deb in enumerate(getattr(lock.system, section) or ()):
            yield Pin(f"system.{section}.{i}", deb.urls, deb.sha256, deb.size)
    python = lock.python
    if python.url is not None or python.sha256 is not None:
        yield Pin("python", (python.url,) if python.url else (), python.sha256, None)
    for i, step in enumerate(lock.run or ()):
        yield Pin(f"run.{i}", (), step.sha256, None)


def _refuse(where: str, what: str) -> LockError:
    return LockError(f"{LOCK_FILE} is malformed: {where}: {what}", hint=REWRITE_HINT)


def _check_pin(pin: Pin) -> None:
    """A pin's hash is 64 hex digits and its size a count of bytes (what a fetch stops at);
    each URL is http(s), a file of the project (`file:REL`) or an absolute `file://` path."""
    if pin.sha256 is not None and not _SHA256.fullmatch(pin.sha256):
        raise _refuse(f"{pin.where}.sha256", f"{pin.sha256!r} is not 64 lowercase hex digits")
    if pin.size is not None and pin.size < 0:
        raise _refuse(f"{pin.where}.size", f"{pin.size} is not a size in bytes")
    for i, url in enumerate(pin.urls):
        field = f"{pin.where}.urls.{i}" if pin.where.startswith("system.") else f"{pin.where}.url"
        problem = _url_problem(url)
        if problem is not None:
            raise _refuse(field, f"{_shown(url)} {problem}")


def _shown(text: str) -> str:
    """`text` quoted, with anything invisible escaped, and cut where it runs long."""
    quoted = ascii(text)
    return quoted if len(quoted) <= 120 else quoted[:117] + "..."


def _url_problem(url: str) -> str | None:
    """Why a lock may not fetch `url`; None when it may (so far as its text tells)."""
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):
        return "holds spaces or control characters"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https"):
        return None if parts.hostname else "names no host"
    if parts.scheme != "file":
        return f"is not an https, http or file URL (scheme {parts.scheme or 'none'!r})"
    if url.startswith("file://"):
        if parts.netloc not in ("", "localhost"):
            return "names a host, which a file URL cannot be fetched from"
        path = urllib.parse.unquote(parts.path)
    else:  # `file:REL`: a file of the project
        path = urllib.parse.unquote(url.removeprefix("file:"))
        if path.startswith("/"):
            return "is not relative to the project"
    if ".." in PurePosixPath(path).parts or "\0" in path:
        return "leaves its folder through `..`"
    return None


def check_sources(lock: Lock, project: Path) -> None:
    """Every absolute `file://` URL is in a place the user named: the project, a local index
    or find-links folder or file its requirements name, a local mirror in the environment
    (MIRROR_VARIABLES) or the channel's. A lock that names `file:///etc/shadow` is refused,
    never read."""
    roots = _sources(lock, project)
    for pin in pins(lock):
        for url in pin.urls:
            if not url.startswith("file://"):
                continue
            path = Path(os.path.normpath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)))
            if not any(path.is_relative_to(root) for root in roots):
                field = f"{pin.where}.urls" if pin.where.startswith("system.") else pin.where
                raise LockError(
                    f"{LOCK_FILE}: {field} fetches {_shown(url)}, which is outside the project "
                    "and every folder its requirements, the channel or "
                    f"{', '.join(MIRROR_VARIABLES)} name",
                    hint="set the mirror variable it was locked with, or run `cog lock`",
                )


def _sources(lock: Lock, project: Path) -> set[Path]:
    """The local places a lock may fetch from, as written and as resolved."""
    values: list[str] = []
    try:
        lines = with_included(lock.inputs.requirements, project)
    except (DerivationError, OSError, UnicodeDecodeError):
        lines = list(lock.inputs.requirements)
    for line in lines:
        values += re.findall(r"(?:^|(?<=[\s=]))(file://[^\s;]+|[~/][^\s;]*)", line)
    for variable in MIRROR_VARIABLES:
        values += os.environ.get(variable, "").split()
    with contextlib.suppress(CogError):  # no such channel here: `cog build` says so itself
        values += [a.mirror for a in load_channel(lock.inputs.channel.name).archives]
    roots = {project.absolute(), project.resolve()}
    for value in values:
        if value.startswith("file://"):
            value = urllib.parse.unquote(urllib.parse.urlsplit(value).path)
        elif not value.startswith(("/", "~")):
            continue  # an http(s) mirror
        path = Path(os.path.normpath(Path(value).expanduser()))
        roots |= {path, path.resolve()}
    return roots


def write(project: Path, lock: Lock) -> bool:
    """Writes the lock atomically; False when it was already identical."""
    path = project / LOCK_FILE
    text = dumps(lock)
    if path.is_file() and path.read_bytes() == text.encode():
        return False
    tmp = path.with_name(f".{LOCK_FILE}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


# --- drift ---------------------------------------------------------------------------------------


def _listed(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "nothing"


def drift(lock: Lock, config: CogConfig, project: Path, channel: Channel, arch: str) -> list[str]:
    """What changed since the lock was written, one sentence each; empty when it is fresh."""
    was = lock.inputs
    now = inputs(config, project, channel, arch)
    changes = []
    if was.python_version != now.python_version:
        changes.append(f"python_version changed from {was.python_version} to {now.python_version}")
    if was.arch != now.arch:
        changes.append(f"the target architecture changed from {was.arch} to {now.arch}")
    if was.channel != now.channel:
        if was.channel.name != now.channel.name:
            changes.append(f"the channel changed from {was.channel.name} to {now.channel.name}")
        else:
            changes.append(
                f"channel {now.channel.name} changed (revision "
                f"{was.channel.revision[:12]} -> {now.channel.revision[:12]})"
            )
    for old, new, label in (
        (was.requirements, now.requirements, "Python requirements"),
        (was.system_packages, now.system_packages, "system_packages"),
    ):
        if old != new:
            added = [r for r in new if r not in old]
            removed = [r for r in old if r not in new]
            changes.append(f"{label} changed: added {_listed(added)}; removed {_listed(removed)}")
    if was.gpu != now.gpu:
        if was.gpu is None or now.gpu is None:
            changes.append(f"gpu changed to {str(now.gpu is not None).lower()}")
        elif was.gpu.data != now.gpu.data:
            changes.append(f"the CUDA data changed (now {now.gpu.data.name})")
        else:
            changes.append("build.cuda or build.cudnn changed")
    old_files, new_files = was.requirement_files or {}, now.requirement_files or {}
    for path in sorted(set(old_files) | set(new_files)):
        if path in old_files and path in new_files and old_files[path] != new_files[path]:
            changes.append(f"{path}, which the requirements name, changed")
    old_steps, new_steps = was.run or (), now.run or ()
    if old_steps != new_steps:
        added = [s.command for s in new_steps if s not in old_steps]
        removed = [s.command for s in old_steps if s not in new_steps]
        changes.append(
            f"build.run changed: added {_listed(added)}; removed {_listed(removed)}"
            if added or removed
            else "build.run changed order"
        )
    elif len(lock.run or ()) != len(new_steps):
        changes.append("cog.lock does not pin every build.run step")
    return changes

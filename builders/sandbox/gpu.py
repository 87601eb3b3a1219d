"""The host's NVIDIA GPU for a native run (`--gpus`), passed in as nvidia-container-toolkit
passes it into a container: the device nodes, and the driver's user-space libraries bound
read-only into one folder, /usr/local/nvidia/lib64, which a GPU image's LD_LIBRARY_PATH names.

The driver is never in an image: it must match the host's kernel module, so it comes from the
host at run time. Where the host has a Container Device Interface spec for `nvidia.com/gpu`
(`nvidia-ctk cdi generate` writes one into /etc/cdi or /var/run/cdi), the devices and files
come from it; otherwise they are found here (device nodes in /dev, libraries in the ld cache
and the usual folders). Discovery takes a `root` so tests can give it a fake tree.

A spec is written for a container runtime, which mounts each file at its place in a writable
root and then runs the spec's hooks there. A native run's root is read-only (or an overlay
whose lower layers must not gain mount points), so a spec is applied as follows:
- device nodes are bound at their paths in the run's fresh /dev;
- shared libraries are bound into /usr/local/nvidia/lib64 whatever folder the spec names
  (the `update-ldcache` hook, which makes that folder known to the loader, is thereby
  LD_LIBRARY_PATH's job), each also under the names the host's links give it there (the
  SONAME links ldconfig makes), and `create-symlinks` links in those folders become names in
  it too; programs in a bin folder go into /usr/local/nvidia/bin, on PATH;
- other files are bound at their paths where the run makes the place fresh (/dev, /tmp); the
  rest are left out: what nvidia-ctk lists beyond libraries and programs is for graphics
  (Vulkan, EGL, GLVND, X), OptiX, the GSP firmware (which the kernel reads from its own root,
  not the run's) and nvidia-persistenced's socket (which CUDA does without);
- its environment is the run's too (builders.sandbox.model.with_driver);
- `create-symlinks` links under /dev are made there; the other hooks are not run: they would
  write into the root (`update-ldcache`, `chmod` of /dev folders, which bubblewrap makes
  0755 anyway), or set up CUDA's forward compatibility or the kernel's node creation, which
  belong to a runtime that owns the container.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from builders.errors import BuildError

DRIVER_DIR = "/usr/local/nvidia/lib64"
DRIVER_BIN = "/usr/local/nvidia/bin"  # nvidia-smi, on PATH in the nvidia/cuda images
# nvidia-container-toolkit's libraries for the `utility` and `compute` capabilities
# (libnvidia-container's nvc_info.c): what CUDA, NVML and nvidia-smi load from the driver.
DRIVER_LIBRARIES = (
    "libnvidia-ml",
    "libnvidia-cfg",
    "libnvidia-nscq",
    "libcuda",
    "libcudadebugger",
    "libnvidia-opencl",
    "libnvidia-gpucomp",
    "libnvidia-ptxjitcompiler",
    "libnvidia-fatbinaryloader",
    "libnvidia-allocator",
    "libnvidia-compiler",
    "libnvidia-pkcs11",
    "libnvidia-pkcs11-openssl3",
    "libnvidia-nvvm",
)
_LIBRARY = re.compile(rf"^({'|'.join(map(re.escape, DRIVER_LIBRARIES))})\.so(\.[0-9.]+)?$")
# Where distributions and GKE-style hosts put the driver, for a host without an ld cache entry.
LIBRARY_DIRS = (
    "usr/local/nvidia/lib64",
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "usr/lib",
    "lib/x86_64-linux-gnu",
    "lib64",
)
# Nodes every GPU needs (control, unified memory, modesetting); /dev/nvidiaN are the GPUs.
SHARED_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
BINARY_DIRS = ("usr/local/nvidia/bin", "usr/bin", "usr/local/bin", "bin")
# CDI's spec folders, in rising precedence: a device /var/run/cdi defines (generated at boot)
# replaces one of the same name from /etc/cdi. Only *.json and *.yaml files there are specs.
CDI_DIRS = ("etc/cdi", "var/run/cdi")
CDI_KIND = "nvidia.com/gpu"
_SHARED_OBJECT = re.compile(r"\.so(\.[0-9]+)*$")
# Places every run has fresh (`--dev /dev`, `--tmpfs /tmp`): a mount point can be made there.
FRESH = ("/dev/", "/tmp/")


class GpuUnavailable(BuildError):
    """`--gpus` cannot be honoured here; said before anything is built or started."""


@dataclass(frozen=True)
class HostGpu:
    devices: dict[str, Path]  # path in the run -> the host's node
    libraries: dict[str, Path]  # file name in DRIVER_DIR -> the host's file
    binaries: dict[str, Path]  # file name in DRIVER_BIN -> the host's program
    env: dict[str, str] = field(default_factory=dict)  # a CDI spec's variables
    mounts: dict[str, tuple[Path, bool]] = field(default_factory=dict)  # path -> (host's, rw)
    links: dict[str, str] = field(default_factory=dict)  # path in the run -> its target

    @property
    def smi(self) -> Path | None:
        """The host's nvidia-smi, if it has one."""
        return self.binaries.get("nvidia-smi")


def _gpu_nodes(dev: Path) -> list[str]:
    found = [p.name for p in dev.glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)]
    return sorted(found, key=lambda name: int(name[6:]))


def _request(gpus: str) -> int | list[str] | None:
    """`--gpus` as `docker run` reads it: all (None), a count, or device=0,2 (the names)."""
    if gpus == "all":
        return None
    if gpus.isdigit():
        return int(gpus)
    if gpus.startswith("device="):
        picked = [d.strip() for d in gpus.removeprefix("device=").split(",") if d.strip()]
        if not picked:
            raise GpuUnavailable(f"--gpus {gpus} names no device", hint="e.g. --gpus device=0,1")
        return picked
    raise GpuUnavailable(
        f"--gpus {gpus!r} is not all, a count or device=INDEX,...", hint="e.g. --gpus all"
    )


def _too_many(gpus: str, count: int, have: int, where: str) -> GpuUnavailable:
    return GpuUnavailable(
        f"--gpus {gpus} asks for {count} GPUs, but {where} {have}",
        hint="pass --gpus all, or a count up to that",
    )


def _chosen(gpus: str, nodes: list[str]) -> list[str]:
    """The /dev/nvidiaN nodes `--gpus` picks."""
    request = _request(gpus)
    if request is None:
        return nodes
    if isinstance(request, int):
        if not 1 <= request <= len(nodes):
            raise _too_many(gpus, request, len(nodes), "this host has")
        return nodes[:request]
    if not all(d.isdigit() for d in request):
        raise GpuUnavailable(
            f"--gpus {gpus}: native runs name devices by index (or by a CDI spec's names, "
            "where the host has one)",
            hint="e.g. --gpus device=0,1",
        )
    missing = [d for d in request if f"nvidia{d}" not in nodes]
    if missing:
        raise GpuUnavailable(
            f"--gpus {gpus}: this host has no GPU {', '.join(missing)} (it has "
            f"{', '.join(n[6:] for n in nodes)})"
        )
    return [f"nvidia{d}" for d in request]


def ld_cache() -> str:
    """`ldconfig -p`, or nothing where there is no ldconfig."""
    for tool in ("ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        try:
            return subprocess.run(
                [tool, "-p"], capture_output=True, text=True, check=False, timeout=30
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
    return ""


def _libraries(root: Path, cache: str) -> dict[str, Path]:
    """The driver's libraries by file name: the ld cache's entries first (`name (…) => path`),
    then the usual folders. Every name a loader may ask for (libcuda.so.1, and the fully
    versioned file it links to) gets an entry."""
    found: dict[str, Path] = {}
    for line in cache.splitlines():
        name, arrow, path = line.strip().partition(" => ")
        name, _, flags = name.partition(" (")
        # 64-bit entries only: a multilib host lists the 32-bit driver as `(libc6)` too.
        if arrow and re.search("x86-64|AArch64", flags) and _LIBRARY.match(name):
            found.setdefault(name, root / path.strip().lstrip("/"))
    for folder in LIBRARY_DIRS:
        where = root / folder
        if where.is_dir():
            for entry in sorted(where.iterdir()):
                if _LIBRARY.match(entry.name):
                    found.setdefault(entry.name, entry)
    # Files that are there, as what they point to (a bind of a link would follow it anyway).
    return {name: Path(os.path.realpath(path)) for name, path in found.items() if path.exists()}


def discover(gpus: str, root: Path = Path("/"), cache: str | None = None) -> HostGpu:
    """The device nodes and driver libraries of the host at `root` for `--gpus gpus`; one
    sentence when there is no GPU or driver. `cache` is `ldconfig -p`'s text (read from the
    host when `root` is /). A CDI spec for nvidia.com/gpu, where there is one, says it all."""
    from_spec = _from_cdi(gpus, root)
    if from_spec is not None:
        return from_spec
    dev = root / "dev"
    if not (dev / "nvidiactl").exists():
        raise GpuUnavailable(
            "no NVIDIA GPU here: /dev/nvidiactl is missing, so --gpus has nothing to pass in",
            hint="run without --gpus (the model runs on CPU), or on a host with NVIDIA's driver",
        )
    nodes = _gpu_nodes(dev)
    if not nodes:
        raise GpuUnavailable(
            "no NVIDIA GPU here: /dev/nvidiactl is there but no /dev/nvidia0",
            hint="check `nvidia-smi` on this host",
        )
    names = [name for name in SHARED_NODES if (dev / name).exists()] + _chosen(gpus, nodes)
    if (dev / "nvidia-caps").is_dir():  # MIG and capability nodes
        names.append("nvidia-caps")
    devices = {f"/dev/{name}": dev / name for name in names}
    if cache is None:
        cache = ld_cache() if root == Path("/") else ""
    libraries = _libraries(root, cache)
    if not any(name.startswith("libcuda.so") for name in libraries):
        raise GpuUnavailable(
            "NVIDIA's driver libraries are not on this host: no libcuda.so in the ld cache or "
            f"in /{', /'.join(LIBRARY_DIRS)}",
            hint="install the NVIDIA driver's user-space libraries, or run without --gpus",
        )
    smi = next(
        (root / d / "nvidia-smi" for d in BINARY_DIRS if (root / d / "nvidia-smi").is_file()),
        None,
    )
    return HostGpu(devices, libraries, {} if smi is None else {"nvidia-smi": smi})


# The Container Device Interface: https://github.com/cncf-tags/container-device-interface


class _Malformed(Exception):
    """A part of a spec that is not as CDI defines it; the message names the part."""


@dataclass(frozen=True)
class _Mount:
    host: str
    target: str
    writable: bool


@dataclass(frozen=True)
class _Edits:
    """A spec's `containerEdits`, as far as a native run uses them."""

    env: tuple[tuple[str, str], ...] = ()
    nodes: tuple[tuple[str, str], ...] = ()  # (path in the run, the host's node)
    mounts: tuple[_Mount, ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (path in the run, target): create-symlinks


@dataclass(frozen=True)
class _Spec:
    shown: str  # its file as the host names it
    edits: _Edits  # made when any of its devices is chosen
    devices: dict[str, _Edits]


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _fields(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise _Malformed(f"{where or 'the document'} is not a mapping")
    return value


def _items(raw: dict[str, object], key: str, where: str) -> list[object]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Malformed(f"{_at(where, key)} is not a list")
    return value


def _strings(raw: dict[str, object], key: str, where: str) -> list[str]:
    items = _items(raw, key, where)
    if not all(isinstance(item, str) for item in items):
        raise _Malformed(f"{_at(where, key)} is not a list of strings")
    return [str(item) for item in items]


def _absolute(raw: dict[str, object], key: str, where: str, default: str = "") -> str:
    value = raw.get(key, default) or default
    if not value:
        raise _Malformed(f"{where} has no {key}")
    if not isinstance(value, str) or not value.startswith("/"):
        raise _Malformed(f"{_at(where, key)} is not an absolute path")
    return os.path.normpath(value)


def _symlinks(args: list[str], where: str) -> list[tuple[str, str]]:
    """The `--link TARGET::PATH` arguments of a create-symlinks hook."""
    links: list[tuple[str, str]] = []
    for i, arg in enumerate(args):
        if arg == "--link" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--link="):
            value = arg.removeprefix("--link=")
        else:
            continue
        target, sep, path = value.partition("::")
        if not sep or not target or not path.startswith("/"):
            raise _Malformed(f"{where} links {value!r}, not TARGET::/PATH")
        links.append((os.path.normpath(path), target))
    return links


def _edits(value: object, where: str) -> _Edits:
    raw = _fields({} if value is None else value, where)
    env: list[tuple[str, str]] = []
    for i, variable in enumerate(_strings(raw, "env", where)):
        name, sep, setting = variable.partition("=")
        if not sep or not name:
            raise _Malformed(f"{where}.env[{i}] is not NAME=VALUE")
        env.append((name, setting))
    nodes: list[tuple[str, str]] = []
    for i, item in enumerate(_items(raw, "deviceNodes", where)):
        at = f"{where}.deviceNodes[{i}]"
        node = _fields(item, at)
        path = _absolute(node, "path", at)
        nodes.append((path, _absolute(node, "hostPath", at, default=path)))
    mounts: list[_Mount] = []
    for i, item in enumerate(_items(raw, "mounts", where)):
        at = f"{where}.mounts[{i}]"
        mount = _fields(item, at)
        options = _strings(mount, "options", at)
        kind = mount.get("type")
        if kind not in (None, "", "bind", "rbind", "none") and not {"bind", "rbind"} & {*options}:
            continue  # a file system of its own (a tmpfs, say): no NVIDIA spec has one
        host, target = _absolute(mount, "hostPath", at), _absolute(mount, "containerPath", at)
        mounts.append(_Mount(host, target, "rw" in options and "ro" not in options))
    links: list[tuple[str, str]] = []
    for i, item in enumerate(_items(raw, "hooks", where)):
        at = f"{where}.hooks[{i}]"
        hook = _fields(item, at)
        _absolute(hook, "path", at)
        args = _strings(hook, "args", at)
        # nvidia-cdi-hook create-symlinks, or the older nvidia-ctk hook create-symlinks; the
        # other hooks are not run (see the module's docstring).
        if "create-symlinks" in args:
            links += _symlinks(args[args.index("create-symlinks") + 1 :], at)
    return _Edits(tuple(env), tuple(nodes), tuple(mounts), tuple(links))


def _spec(raw: object, shown: str) -> _Spec | None:
    """The spec in a file's document, or None for another kind of device's."""
    top = _fields(raw, "")
    kind = top.get("kind")
    if not isinstance(kind, str):
        raise _Malformed("it has no kind")
    if kind != CDI_KIND:
        return None
    if not isinstance(top.get("cdiVersion"), str):
        raise _Malformed("it has no cdiVersion")
    devices: dict[str, _Edits] = {}
    for i, item in enumerate(_items(top, "devices", "")):
        device = _fields(item, f"devices[{i}]")
        name = device.get("name")
        if not isinstance(name, str) or not name:
            raise _Malformed(f"devices[{i}] has no name (a string: quote a number)")
        if name in devices:
            raise _Malformed(f"it defines device {name} twice")
        devices[name] = _edits(device.get("containerEdits"), f"devices[{i}].containerEdits")
    if not devices:
        raise _Malformed("it defines no devices")
    return _Spec(shown, _edits(top.get("containerEdits"), "containerEdits"), devices)


def _regenerate(shown: str) -> str:
    return (
        f"regenerate it (`nvidia-ctk cdi generate --output={shown}`), or remove it to have "
        "the driver found without it"
    )


def _load(path: Path, shown: str) -> _Spec | None:
    """The spec in one file, or None for another kind; one sentence if it cannot be read."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise GpuUnavailable(f"cannot read the CDI spec {shown}: {e}") from None
    problem = None
    raw: object = None
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        problem = f"it is not JSON (line {e.lineno}: {e.msg})"
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = "it is not YAML" + (f" (line {mark.line + 1})" if mark is not None else "")
    try:
        if problem is None:
            return _spec(raw, shown)
    except _Malformed as e:
        problem = str(e)
    raise GpuUnavailable(f"the CDI spec {shown} is malformed: {problem}", hint=_regenerate(shown))


def _cdi_devices(root: Path) -> tuple[dict[str, tuple[_Spec, _Edits]], dict[str, list[str]]]:
    """NVIDIA's CDI devices by name, each with its spec; and, as CDI has it, the names two
    specs of the same folder define (unusable, even where the other folder defines them),
    with the files that do."""
    devices: dict[str, tuple[int, _Spec, _Edits]] = {}
    clashes: dict[str, list[str]] = {}
    for rank, folder in enumerate(CDI_DIRS):
        where = root / folder
        if not where.is_dir():
            continue
        for path in sorted(where.iterdir()):
            if path.suffix not in (".json", ".yaml") or path.is_dir():
                continue
            spec = _load(path, f"/{folder}/{path.name}")
            if spec is None:
                continue
            for name, edits in spec.devices.items():
                had = devices.get(name)
                if had is not None and had[0] == rank:
                    clashes.setdefault(name, [had[1].shown]).append(spec.shown)
                    continue
                devices[name] = (rank, spec, edits)
    return {name: (spec, edits) for name, (_, spec, edits) in devices.items()}, clashes


def _cdi_chosen(gpus: str, names: list[str], clashes: dict[str, list[str]]) -> list[str]:
    """The CDI devices `--gpus` picks: `all` (or, where no spec defines it, every device), the
    first N of those named by an index, or the names given."""
    request = _request(gpus)
    if request is None:
        picked = ["all"] if "all" in names else names
    elif isinstance(request, int):
        # nvidia-ctk names each GPU twice, by index and by UUID: a count takes indexes.
        indexed = sorted((n for n in names if n.isdigit()), key=int)
        ordered = indexed or [n for n in names if n != "all"]
        if not 1 <= request <= len(ordered):
            raise _too_many(gpus, request, len(ordered), f"the CDI specs for {CDI_KIND} define")
        picked = ordered[:request]
    else:
        missing = [n for n in request if n not in names]
        if missing:
            raise GpuUnavailable(
                f"--gpus {gpus}: no CDI spec for {CDI_KIND} defines device "
                f"{', '.join(missing)} (they define {', '.join(names)})",
                hint="`nvidia-ctk cdi list` lists them; regenerate the spec if GPUs changed",
            )
        picked = request
    for name in picked:
        if name in clashes:
            raise GpuUnavailable(
                f"CDI device {CDI_KIND}={name} is defined twice, in {' and '.join(clashes[name])}",
                hint="remove one of them",
            )
    return picked


def _from_cdi(gpus: str, root: Path) -> HostGpu | None:
    """The GPU as the host's CDI specs for nvidia.com/gpu describe it; None with no spec."""
    devices, clashes = _cdi_devices(root)
    if not devices:
        return None
    edits: list[tuple[str, _Edits]] = []
    for name in _cdi_chosen(gpus, list(devices), clashes):
        spec, own = devices[name]
        if not any(shown == spec.shown for shown, _ in edits):
            edits.append((spec.shown, spec.edits))  # once, however many of its devices
        edits.append((spec.shown, own))
    return _apply(edits, root)


def _apply(edits: list[tuple[str, _Edits]], root: Path) -> HostGpu:
    """HostGpu for a spec's edits (see the module's docstring for where each part goes)."""

    def host(path: str, shown: str) -> Path:
        found = root / path.lstrip("/")
        if not os.path.lexists(found):
            raise GpuUnavailable(
                f"the CDI spec {shown} names {path}, which this host does not have",
                hint=f"the driver or the GPUs changed since it was made: {_regenerate(shown)}",
            )
        return found

    gpu = HostGpu({}, {}, {})
    folders: set[str] = set()  # where the spec puts libraries
    listed: dict[Path, list[Path]] = {}  # the host's folders of libraries, read once each
    links: list[tuple[str, str]] = []
    for shown, edit in edits:
        gpu.env.update(edit.env)
        for target, node in edit.nodes:
            gpu.devices.setdefault(target, host(node, shown))
        for mount in edit.mounts:
            source, place = host(mount.host, shown), PurePosixPath(mount.target)
            if _SHARED_OBJECT.search(place.name) and source.is_file():
                folders.add(str(place.parent))
                if source.parent not in listed:
                    listed[source.parent] = sorted(source.parent.iterdir())
                for name in [place.name, *_names(source, listed[source.parent])]:
                    gpu.libraries.setdefault(name, Path(os.path.realpath(source)))
            elif place.parent.name in ("bin", "sbin") and source.is_file():
                gpu.binaries.setdefault(place.name, Path(os.path.realpath(source)))
            elif mount.target.startswith(FRESH):
                gpu.mounts.setdefault(mount.target, (source, mount.writable))
        links += edit.links
    for path, target in links:
        place = PurePosixPath(path)
        if str(place.parent) in folders and target in gpu.libraries:
            gpu.libraries.setdefault(place.name, gpu.libraries[target])  # libcuda.so
        elif path.startswith("/dev/"):
            gpu.links.setdefault(path, target)  # /dev/dri/by-path/…
    if not any(name.startswith("libcuda.so") for name in gpu.libraries):
        shown = ", ".join(dict.fromkeys(shown for shown, _ in edits))
        raise GpuUnavailable(
            f"the CDI spec {shown} mounts no libcuda.so, so CUDA could not load in the run",
            hint=_regenerate(shown),
        )
    return gpu


def _names(library: Path, folder: list[Path]) -> list[str]:
    """The other names the host's folder (its entries, `folder`) gives `library` by links to
    it: the SONAME links ldconfig makes (libcuda.so.1 -> libcuda.so.575.64.03). A spec mounts
    the file only, and its update-ldcache hook makes those links in the container."""
    stem = library.name.split(".so", 1)[0] + ".so"
    real = os.path.realpath(library)
    return [
        entry.name
        for entry in folder
        if entry.name.startswith(stem)
        and entry.name != library.name
        and entry.is_symlink()
        and os.path.realpath(entry) == real
    ]


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _driver_mount(root: Path) -> tuple[list[str], str]:
    """bwrap arguments for a writable tmpfs that /usr/local/nvidia can be made in, under a
    read-only root that may lack it (a minimal userland has no /usr/local): over the nearest
    folder the root has, showing what it had there (links as links); and that folder."""
    if _is_folder(root / "usr/local/nvidia"):  # the host driver's place: nothing to show
        return ["--tmpfs", "/usr/local/nvidia"], "/usr/local/nvidia"
    target = next((t for t in ("/usr/local", "/usr") if _is_folder(root / t[1:])), None)
    if target is None:
        raise GpuUnavailable("cannot pass the GPU in: the run's root has no /usr folder")
    argv = ["--tmpfs", target]
    for entry in sorted((root / target[1:]).iterdir()):
        if entry.is_symlink():
            argv += ["--symlink", os.readlink(entry), f"{target}/{entry.name}"]
        else:
            argv += ["--ro-bind", str(entry), f"{target}/{entry.name}"]
    return argv, target


def gpu_binds(host: HostGpu, root: Path) -> list[str]:
    """bwrap arguments that pass the GPU into a run over `root` (the run's read-only /): each
    device node (and a CDI spec's files and links in /dev and /tmp), each driver library
    read-only in /usr/local/nvidia/lib64, nvidia-smi (and a spec's other programs) in
    /usr/local/nvidia/bin; the tmpfs they are made in is made read-only again."""
    argv: list[str] = []
    for target, node in host.devices.items():
        argv += ["--dev-bind", str(node), target]
    for target, (source, writable) in host.mounts.items():  # in /dev or /tmp (FRESH)
        argv += ["--bind" if writable else "--ro-bind", str(source), target]
    for target, link in host.links.items():
        argv += ["--symlink", link, target]
    made, target = _driver_mount(root)
    argv += made
    for name, path in sorted(host.libraries.items()):
        argv += ["--ro-bind", str(path), f"{DRIVER_DIR}/{name}"]
    for name, path in sorted(host.binaries.items()):
        argv += ["--ro-bind", str(path), f"{DRIVER_BIN}/{name}"]
    return [*argv, "--remount-ro", target]

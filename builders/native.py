"""Running a built project natively: bubblewrap over its root layers, the store and the code.

The root layers are stacked into one read-only view at `/`, the model's closure (and nothing
else of the store) is mounted read-only at `/cog/store`, the code at `/src`; the network is
the host's (the server listens on it).
The runtime's environment runs the server, which starts the predictor's worker with the
model's environment: two environments over one interpreter, as in the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from builders.errors import SandboxUnavailable
from builders.nvidia import DRIVER_BIN, DRIVER_DIR, HostGpu, gpu_binds
from builders.project import Layers
from builders.rootview import add_mount_points, merge_view
from builders.sandbox import bwrap_path
from derivations.hashing import output_path
from store.local import Store
from store.paths import STORE_DIR

# What Docker writes into every container's /etc, so names resolve as they do there:
# `localhost`, and `host.docker.internal` for the host (the network is the host's).
HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "127.0.0.1\thost.docker.internal\n"
)


def network_binds(scratch: Path) -> list[str]:
    """bwrap arguments that bind /etc/hosts and the host's /etc/resolv.conf into the run;
    the root must have both as mount points (image_rootfs and merged views make them)."""
    hosts, resolv = scratch / "hosts", scratch / "resolv.conf"
    hosts.write_text(HOSTS)
    try:
        resolv.write_bytes(Path("/etc/resolv.conf").read_bytes())
    except OSError:  # no resolver configured here: names beyond /etc/hosts do not resolve
        resolv.write_text("")
    return ["--ro-bind", str(hosts), "/etc/hosts", "--ro-bind", str(resolv), "/etc/resolv.conf"]


# Where a model writes at run time, writable (and empty) in every native run: $HOME (/root,
# with ~/.cache for downloaded models), the temporary directories, and /home. The rest of / is
# the read-only view of the store's layers; a container's writable root has no counterpart
# without overlay mounts, which bubblewrap 0.8 lacks.
WRITABLE = (("/tmp", "1777"), ("/var/tmp", "1777"), ("/root", "0700"), ("/home", "0755"))


def writable_places(root: Path) -> list[str]:
    """bwrap arguments for a fresh tmpfs at each writable place the root has as a folder."""
    argv: list[str] = []
    for target, perms in WRITABLE:
        where = root / target.lstrip("/")
        if target == "/tmp" or (where.is_dir() and not where.is_symlink()):
            argv += ["--perms", perms, "--tmpfs", target]
    return argv


def _writable_over(directory: Path, target: str) -> list[str]:
    """bwrap arguments for `target` holding what `directory` holds, read-only, in a writable
    tmpfs: new files can be made there, and a store path (which cannot gain mount points)
    can be shown at a place that will."""
    argv = ["--tmpfs", target]
    for entry in sorted(directory.iterdir()):
        argv += ["--ro-bind", str(entry), f"{target}/{entry.name}"]
    return argv


def _mount_point(view: Path, target: str) -> None:
    """A directory at `target` in the (read-only bound) root view, for a bind outside /src:
    made as real directories of the view, never through one of its links."""
    where = view
    for part in Path(target).relative_to("/").parts:
        where = where / part
        if where.is_symlink() or (where.exists() and not where.is_dir()):
            raise SandboxUnavailable(f"cannot mount a weight at {target}: /{part} is not a folder")
        if not where.exists():
            where.mkdir()


def with_driver(env: dict[str, str], gpu: HostGpu | None) -> dict[str, str]:
    """`env` with the host driver's folders when a GPU is passed in: its libraries on
    LD_LIBRARY_PATH (a GPU image names them already; any other image gets them last, after
    its own) and nvidia-smi's on PATH, as the nvidia/cuda images have it."""
    if gpu is None:
        return env
    found = dict(env)
    for key, folder in (("LD_LIBRARY_PATH", DRIVER_DIR), ("PATH", DRIVER_BIN)):
        paths = [p for p in env.get(key, "").split(":") if p]
        if folder not in paths:
            found[key] = ":".join([*paths, folder])
    return found


def project_argv(
    store: Store,
    built: Layers,
    view: Path,
    env: dict[str, str],
    src: Path | None = None,
    interactive: bool = False,
    mounts: Sequence[tuple[Path, str]] = (),
    gpu: HostGpu | None = None,
) -> list[str]:
    """bubblewrap over the project's root layers, its closure at /cog/store, /src and a
    writable $HOME, ready for the command to run. /src is the built code (read-only) or, with
    `src`, that directory itself, writable, as `cog exec` mounts the project; with `gpu`, the
    host's GPU (builders.nvidia)."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable("running a model natively needs bubblewrap (bwrap)")
    layers = built.roots  # the build.run steps' layers too, as in the image
    roots = [store.real_path(output_path(d)) for d in layers]
    merge_view(roots, view)
    add_mount_points(view)
    model_env = output_path(built.model_env)
    runtime_env = output_path(built.runtime_env)
    argv = [bwrap, "--unshare-all", "--share-net", "--die-with-parent"]
    # A new session keeps the command from the terminal; an interactive one needs it.
    argv += [] if interactive else ["--new-session"]
    argv += ["--ro-bind", str(view), "/", "--proc", "/proc", "--dev", "/dev"]
    argv += writable_places(view)
    argv += gpu_binds(gpu, view) if gpu is not None else []
    argv += network_binds(view.parent)
    # Only the model's closure is in its /cog/store: never other projects' paths, the store's
    # database or its build logs.
    argv += ["--tmpfs", STORE_DIR]
    wanted = [model_env, runtime_env, built.code, *built.weights.values()]
    for path in store.closure(wanted):
        argv += ["--ro-bind", str(store.real_path(path)), str(path)]
    argv += ["--remount-ro", STORE_DIR]
    if src is not None:
        argv += ["--bind", str(src), "/src"]
    else:
        # The code, plus each weight file where the project had it.
        argv += _writable_over(store.real_path(built.code), "/src")
        for rel, path in built.weights.items():
            argv += ["--ro-bind", str(store.real_path(path)), f"/src/{rel}"]
    for source, target in mounts:  # managed weights (`cog weights`), read-only at their target
        if not target.startswith("/src/"):
            _mount_point(view, target)
        argv += ["--ro-bind", str(source), target]
    argv += ["--chdir", "/src", "--clearenv"]
    base_env = {
        "PATH": f"{model_env}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    for key, value in sorted(with_driver(base_env, gpu).items()):
        argv += ["--setenv", key, value]
    return [*argv, "--"]


def server_argv(
    store: Store,
    built: Layers,
    view: Path,
    env: dict[str, str],
    server_args: list[str],
    src: Path | None = None,
    mounts: Sequence[tuple[Path, str]] = (),
    gpu: HostGpu | None = None,
) -> list[str]:
    """The project's server: the runtime's environment, with the model's as its worker."""
    model_env = output_path(built.model_env)
    runtime_env = output_path(built.runtime_env)
    argv = project_argv(store, built, view, env, src, mounts=mounts, gpu=gpu)
    argv += [f"{runtime_env}/bin/python", "-m", "runtime", "--python", f"{model_env}/bin/python"]
    return argv + server_args


def image_argv(
    rootfs: Path,
    config: dict[str, Any],
    env: dict[str, str],
    server_args: list[str],
    scratch: Path,
    gpu: HostGpu | None = None,
) -> list[str]:
    """The command that runs an image's own `CMD` under bubblewrap, over its unpacked file
    system, with the image's environment and working directory (as `docker run` would); with
    `gpu`, the host's GPU (as `docker run --gpus` would)."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable("running an image natively needs bubblewrap (bwrap)")
    settings = config.get("config") or {}
    command = [*(settings.get("Entrypoint") or []), *(settings.get("Cmd") or [])]
    if not command:
        raise SandboxUnavailable("the image has no Entrypoint or Cmd to run")
    argv = [bwrap, "--unshare-all", "--share-net", "--die-with-parent", "--new-session"]
    argv += ["--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev"]
    argv += [*writable_places(rootfs), *network_binds(scratch)]
    argv += gpu_binds(gpu, rootfs) if gpu is not None else []
    src = rootfs / "src"
    if src.is_dir() and not src.is_symlink():
        # A container's /src takes new files (a model writing its output there).
        argv += _writable_over(src, "/src")
    argv += ["--chdir", settings.get("WorkingDir") or "/"]
    argv += ["--clearenv"]
    image_env = dict(item.split("=", 1) for item in settings.get("Env") or [] if "=" in item)
    for key, value in sorted(with_driver(image_env | {"HOME": "/root"} | env, gpu).items()):
        argv += ["--setenv", key, value]
    return argv + command + server_args

"""Running a built project natively: bubblewrap over its root layers, the store and the code.

The root layers are stacked into one view, and `/` is a writable overlay over it, as a
container's root is: the model may write anywhere (`/opt/models`, `/usr/local/share`, `/etc`…)
and what it writes lands in a throwaway upper directory in the run's scratch directory, gone
with it; the view and the store are never written (builders.sandbox.overlay). Where overlays
cannot be mounted, `/` is the view itself, read-only. Either way `$HOME`, `/tmp`, `/var/tmp`
and `/home` are fresh and empty. The model's closure (and nothing else of the store) is mounted
read-only at `/cog/store`; `/src` holds the code over what the `build.run` steps left there, as
the image's layers stack them, writable as the rest of `/` is (where overlays cannot be mounted,
it takes new files at its top only), the weights read-only in it; the network is one of its own
(builders.sandbox.network's OwnNetwork), its server's port published on this host as
`docker run -p` publishes it.
An image runs the same way over its unpacked file system.
The runtime's environment runs the server, which starts the predictor's worker with the
model's environment: two environments over one interpreter, as in the image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from builders.errors import SandboxUnavailable
from builders.launch import model_environment, server_command
from builders.layers import Layers
from builders.rootview import add_mount_points, merge_tree, merge_view
from builders.sandbox.gpu import DRIVER_BIN, DRIVER_DIR, HostGpu, gpu_binds
from builders.sandbox.jail import Jail, Launch
from builders.sandbox.network import OwnNetwork, network_binds
from builders.sandbox.overlay import writable_over, writable_root
from derivations.hashing import output_path
from store.local import Store
from store.paths import STORE_DIR

# Where a model writes at run time, fresh and empty in every native run: $HOME (/root, with
# ~/.cache for downloaded models), the temporary directories, and /home. The rest of / is the
# overlay we mount over the view of the store's layers (bubblewrap 0.8 mounts none), writable
# and thrown away after the run, as a container's root is; where overlays cannot be mounted it
# is the read-only view, and these places are the only writable ones.
WRITABLE = (("/tmp", "1777"), ("/var/tmp", "1777"), ("/root", "0700"), ("/home", "0755"))


def writable_places(root: Path) -> list[str]:
    """bwrap arguments for a fresh tmpfs at each writable place the root has as a folder."""
    argv: list[str] = []
    for target, perms in WRITABLE:
        where = root / target.lstrip("/")
        if target == "/tmp" or (where.is_dir() and not where.is_symlink()):
            argv += ["--perms", perms, "--tmpfs", target]
    return argv


def _root(lower: Path, scratch: Path) -> tuple[list[str], list[str], Path | None]:
    """The run's `/`: a writable overlay over `lower`, its upper and work directories in
    `scratch` (removed with it by the run's owner), or where overlays cannot be mounted here
    `lower` itself, read-only. Returns the command prefix that mounts it, bwrap's arguments
    for `/`, and the overlay's upper directory (None for a read-only root)."""
    overlay = writable_root([lower], scratch / "overlay")
    if overlay is None:
        return [], ["--ro-bind", str(lower), "/"], None
    return overlay.prefix, ["--bind", str(overlay.merged), "/"], overlay.upper


def _make_folder(root: Path, target: str, upper: Path | None = None) -> str | None:
    """Makes `target` a folder of the run's root `root`, as real directories of `root`, or
    with `upper` of the overlay's upper directory over it (with the modes `root` has there),
    never through one of its links; or says which part of it is not a folder."""
    where, made = root, upper
    for part in Path(target).relative_to("/").parts:
        where = where / part
        if where.is_symlink() or (where.exists() and not where.is_dir()):
            return f"/{part} is not a folder"
        if made is not None:
            made = made / part
            if not made.is_dir():
                made.mkdir()
                made.chmod(where.stat().st_mode & 0o7777 if where.is_dir() else 0o755)
        elif not where.exists():
            where.mkdir()
    return None


def _mount_point(view: Path, target: str) -> None:
    """A directory at `target` in the root view (the overlay's lower or the read-only root),
    for a bind outside /src, made before the run starts."""
    problem = _make_folder(view, target)
    if problem is not None:
        raise SandboxUnavailable(f"cannot mount a weight at {target}: {problem}")


def _code_at_src(view: Path, code: Path, weights: dict[str, Path]) -> None:
    """The code stacked on what the root layers (the build.run steps) have at /src in the
    view, as the image stacks its code layer, with a mount point for each weight: new hard
    links and folders of the view only, never a write through one."""
    problem = _make_folder(view, "/src")
    if problem is not None:
        raise SandboxUnavailable(f"cannot show the code at /src: {problem}")
    merge_tree(code, view / "src")
    for rel, weight in weights.items():
        target = f"/src/{rel}"
        problem = _make_folder(view, str(Path(target).parent))
        if problem is not None:
            raise SandboxUnavailable(f"cannot mount a weight at {target}: {problem}")
        where = view / target.lstrip("/")
        if weight.is_dir() and not where.exists():
            where.mkdir()
        elif not os.path.lexists(where):
            where.touch()


def _gpu_argv(gpu: HostGpu, root: Path, upper: Path | None) -> list[str]:
    """bwrap arguments that pass the GPU in. Over a writable root the driver's folder is made
    in the overlay, so that only /usr/local/nvidia is read-only (/usr/local stays writable);
    over a read-only root gpu_binds shows it in a tmpfs of its own."""
    if upper is not None and _make_folder(root, "/usr/local/nvidia", upper) is None:
        return gpu_binds(gpu, upper)  # which finds the folder there and mounts only it
    return gpu_binds(gpu, root)


def with_driver(env: dict[str, str], gpu: HostGpu | None) -> dict[str, str]:
    """`env` with the host driver's folders when a GPU is passed in: its libraries on
    LD_LIBRARY_PATH (a GPU image names them already; any other image gets them last, after
    its own) and nvidia-smi's on PATH, as the nvidia/cuda images have it; and the variables
    a CDI spec sets."""
    if gpu is None:
        return env
    found = env | gpu.env
    for key, folder in (("LD_LIBRARY_PATH", DRIVER_DIR), ("PATH", DRIVER_BIN)):
        paths = [p for p in found.get(key, "").split(":") if p]
        if folder not in paths:
            found[key] = ":".join([*paths, folder])
    return found


def project_jail(
    store: Store,
    built: Layers,
    view: Path,
    env: dict[str, str],
    src: Path | None = None,
    interactive: bool = False,
    mounts: Sequence[tuple[Path, str]] = (),
    gpu: HostGpu | None = None,
    publish: Sequence[tuple[str, int]] = (),
) -> Jail:
    """bubblewrap over the project's root layers (a writable overlay over their view, `view`,
    whose upper directory is made next to it in `view.parent`), its closure at /cog/store,
    /src and a fresh $HOME, ready for the command to run. /src is the built code over the
    steps' /src, writable as the root is, or with `src`, that directory itself, as `cog exec`
    mounts the project; with `gpu`, the host's GPU (builders.sandbox.gpu). Its network is its
    own, each (host address, port) of `publish` published on this host."""
    layers = built.roots  # the build.run steps' layers too, as in the image
    roots = [store.real_path(output_path(d)) for d in layers]
    merge_view(roots, view)
    add_mount_points(view)
    if src is None:
        weights = {rel: store.real_path(path) for rel, path in built.weights.items()}
        _code_at_src(view, store.real_path(built.code), weights)
    model_env = output_path(built.model_env)
    runtime_env = output_path(built.runtime_env)
    prefix, root, upper = _root(view, view.parent)
    argv = [*root, "--proc", "/proc", "--dev", "/dev"]
    argv += writable_places(view)
    argv += _gpu_argv(gpu, view, upper) if gpu is not None else []
    argv += network_binds(view.parent, OwnNetwork.NAMESERVER)
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
        # Over a read-only root, /src takes new files at least; then each weight where the
        # project had it.
        argv += writable_over(view / "src", "/src") if upper is None else []
        for rel, path in built.weights.items():
            argv += ["--ro-bind", str(store.real_path(path)), f"/src/{rel}"]
    for source, target in mounts:  # managed weights (`cog weights`), read-only at their target
        if not target.startswith("/src/"):
            _mount_point(view, target)
        argv += ["--ro-bind", str(source), target]
    environment = with_driver(model_environment(model_env, env), gpu)
    network = OwnNetwork(publish)
    return Jail(argv, environment, "/src", network, interactive=interactive, prefix=prefix)


def _listening(server_args: list[str], env: dict[str, str]) -> tuple[list[str], tuple[str, int]]:
    """The server's arguments inside its own network namespace, where it listens on every
    address, and where on this host its port is published: the address its `--host` named
    and the port `PORT` names."""
    args = list(server_args)
    at = args.index("--host") + 1 if "--host" in args else None
    host = args[at] if at is not None else "127.0.0.1"
    if at is not None:
        args[at] = "0.0.0.0"
    else:
        args += ["--host", "0.0.0.0"]
    return args, (host, int(env.get("PORT", "5000")))


def server_argv(
    store: Store,
    built: Layers,
    view: Path,
    env: dict[str, str],
    server_args: list[str],
    src: Path | None = None,
    mounts: Sequence[tuple[Path, str]] = (),
    gpu: HostGpu | None = None,
) -> Launch:
    """The project's server, started as the image starts it (builders.launch), its port
    published where its `--host` and `PORT` say."""
    server_args, published = _listening(server_args, env)
    jail = project_jail(store, built, view, env, src, mounts=mounts, gpu=gpu, publish=[published])
    command = server_command(output_path(built.model_env), output_path(built.runtime_env))
    return jail.launch(command + server_args)


def image_argv(
    rootfs: Path,
    config: dict[str, Any],
    env: dict[str, str],
    server_args: list[str],
    scratch: Path,
    gpu: HostGpu | None = None,
) -> Launch:
    """The command that runs an image's own `CMD` under bubblewrap, over its unpacked file
    system (a writable overlay over it, whose upper directory is made in `scratch`; its
    /cog/store read-only), with the image's environment and working directory (as `docker run`
    would); with `gpu`, the host's GPU (as `docker run --gpus` would)."""
    settings = config.get("config") or {}
    command = [*(settings.get("Entrypoint") or []), *(settings.get("Cmd") or [])]
    if not command:
        raise SandboxUnavailable("the image has no Entrypoint or Cmd to run")
    prefix, root, upper = _root(rootfs, scratch)
    argv = [*root, "--proc", "/proc", "--dev", "/dev"]
    argv += [*writable_places(rootfs), *network_binds(scratch, OwnNetwork.NAMESERVER)]
    argv += _gpu_argv(gpu, rootfs, upper) if gpu is not None else []
    store_dir = rootfs / STORE_DIR.lstrip("/")
    if upper is not None and store_dir.is_dir() and not store_dir.is_symlink():
        argv += ["--ro-bind", str(store_dir), STORE_DIR]  # the store stays read-only
    src = rootfs / "src"
    if upper is None and src.is_dir() and not src.is_symlink():
        # A container's /src takes new files (a model writing its output there); over a
        # writable root it does already.
        argv += writable_over(src, "/src")
    image_env = dict(item.split("=", 1) for item in settings.get("Env") or [] if "=" in item)
    environment = with_driver(image_env | {"HOME": "/root"} | env, gpu)
    chdir = settings.get("WorkingDir") or "/"
    server_args, published = _listening(server_args, env)
    jail = Jail(argv, environment, chdir, OwnNetwork([published]), prefix=prefix)
    return jail.launch(command + server_args)

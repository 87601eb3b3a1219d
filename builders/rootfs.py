"""Root layers from .deb files: unpacked in Python, configured without maintainer scripts.

A root layer is a store path holding a tree that goes at `/`. Its .debs are unpacked in a
fixed order (by package name) with Debian's merged /usr applied (`bin/x` lands in `usr/bin/x`
under a `bin -> usr/bin` link), absolute symlinks made relative so the tree is self-contained,
and nothing of dpkg run. What a working userland needs from maintainer scripts is produced
here, deterministically:

- `/etc/passwd`, `/etc/group` from base-passwd's master files, plus a `cog` user (uid 1000);
- the CA bundle `/etc/ssl/certs/ca-certificates.crt` (and its `.pem` links), from
  ca-certificates' certificates in name order, as update-ca-certificates would write it;
- `/usr/bin/python3` and `/usr/bin/python` links to a Debian interpreter;
- `/var/lib/dpkg/status`, so tools that read it see every package of the stack;
- in the layers that ask for it (the tools layer, for itself and the packages below it, which
  it lists; the system layer above it), the rest of dpkg's database (file lists, maintainer
  scripts, trigger interests: builders/dpkg_database.py), so apt and dpkg in a `run:` step
  work over the layers. The base and Python layers do not write it, so they, and every wheel
  compiled over them, are the same with or without it;
- for the layer that carries apt (the tools layer), its sources (the channel's archives) and
  the settings a sandboxed, reproducible `apt-get` needs (builders/apt_config.py);
- `/etc/ld.so.cache`, by the layer's own `ldconfig` run in the sandbox over the merged view of
  the layers below and this one (an upper layer's cache replaces the lower one's);
- bytecode for the layer's Python modules (`/usr/lib/python3.X`, `/usr/lib/python3/
  dist-packages`), as py3compile would make it, by the stack's own interpreter in the same
  sandbox (builders/bytecode.py): the store is read-only when the image runs, so a module
  without it would be compiled from source on every start.

Layers stack: the base set has no lower layer; Debian's Python sits on the base; the model's
system packages sit on both, so adding one system package never rebuilds the others.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import posixpath
import re
import shutil
import tarfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import zstandard
from debian.arfile import ArError, ArFile
from debian.debfile import DebError, DebFile

from builders import alternatives, apt_config, dpkg_database
from builders.base import Args, BuildContext, derive
from builders.bytecode import COMPILE_ENV, compile_argv
from builders.errors import BuildError, SandboxUnavailable
from builders.fetch import fetch_derivation
from builders.rootview import merge_view, write_fresh
from builders.sandbox.jail import read_result, run_command
from derivations.apt.pins import DebPin
from derivations.model import Derivation, DrvInput, SrcInput

USR_LINKS = {"amd64": ("bin", "sbin", "lib", "lib64"), "arm64": ("bin", "sbin", "lib")}
COG_UID = 1000
STATUS = "var/lib/dpkg/status"


def deb_derivation(pin: DebPin) -> Derivation:
    return fetch_derivation(pin.file_name, list(pin.urls), pin.sha256, size=pin.size)


def root_layer_derivation(
    name: str,
    pins: Sequence[DebPin],
    arch: str,
    lowers: Sequence[Derivation] = (),
    apt_sources: str = "",
    dpkg_database: bool = False,
    listed: Sequence[DebPin] = (),
) -> Derivation:
    """A root layer of `pins` (any order; unpacked by name) on top of `lowers` (lowest first);
    with `apt_sources` (deb822), the layer configures apt to fetch from there; with
    `dpkg_database`, it writes dpkg's records of its packages and of `listed`, the packages of
    lower layers that wrote none (read, not unpacked)."""
    ordered = sorted(pins, key=lambda p: p.name)
    inputs: dict[str, DrvInput | SrcInput] = {
        f"deb-{i:04d}": deb_derivation(p).dep() for i, p in enumerate(ordered)
    }
    for i, lower in enumerate(lowers):
        inputs[f"lower-{i:02d}"] = lower.dep()
    for i, pin in enumerate(sorted(listed, key=lambda p: p.name)):
        inputs[f"listed-{i:04d}"] = deb_derivation(pin).dep()
    args: dict[str, object] = {"packages": [p.name for p in ordered], "arch": arch}
    if apt_sources:
        args["apt_sources"] = apt_sources
    if dpkg_database:
        args["dpkg_database"] = True
    return derive(RootfsBuilder, name, inputs=inputs, args=args, env=COMPILE_ENV)


class RootfsArgs(Args):
    packages: tuple[str, ...]  # in unpack order
    arch: str
    apt_sources: str = ""  # deb822 sources for apt, in the layer that carries it
    dpkg_database: bool = False  # dpkg's records of the packages (and of the listed ones)


class RootfsBuilder:
    kind = "rootfs"
    # Bump whenever the bytes of a layer change (2: merged-/usr alternatives; 3: bytecode).
    # dpkg's database and apt's sources are written only where the arguments ask for them, so
    # a layer that asks for neither is what it was.
    version = "3"
    runs_foreign_code = True  # ldconfig and Python, from the packages themselves

    def build(self, ctx: BuildContext) -> None:
        if not ctx.sandbox:
            raise SandboxUnavailable(
                f"{ctx.drv.name} runs the layer's own ldconfig, which needs the sandbox",
                hint="install bubblewrap and build without --no-sandbox",
            )
        args = ctx.args(RootfsArgs)
        arch = args.arch
        lowers = [ctx.inputs[r] for r in sorted(r for r in ctx.inputs if r.startswith("lower-"))]
        lower = lowers[-1] if lowers else None  # it carries the records of all below it
        tree = ctx.scratch / "build" / "root"  # /build/root in the sandbox, to compile in
        tree.mkdir(parents=True)
        if lower is None:
            for link in USR_LINKS.get(arch, ("bin", "sbin", "lib")):
                (tree / "usr" / link).mkdir(parents=True, exist_ok=True)
                os.symlink(f"usr/{link}", tree / link)
        controls: list[str] = []
        installed: list[dpkg_database.Installed] = []
        offered: list[alternatives.Alternative] = []
        debs = [ctx.inputs[role] for role in sorted(r for r in ctx.inputs if r.startswith("deb-"))]
        started = time.monotonic()
        for contents in _read_ahead(debs, ctx):
            paths: list[str] = []
            control, postinst = unpack_contents(contents, tree, ctx, paths)
            controls.append(control)
            installed.append(dpkg_database.Installed(contents.control, contents.members, paths))
            found, skipped = alternatives.parse_postinst(postinst)
            offered += found
            for call in skipped:
                ctx.say(f"{contents.name}: skipped {call}")
        ctx.say(f"unpacked {len(debs)} packages in {time.monotonic() - started:.1f}s")
        if args.dpkg_database:
            listed = [
                ctx.inputs[r] for r in sorted(r for r in ctx.inputs if r.startswith("listed-"))
            ]
            for contents in _read_ahead(listed, ctx):
                paths = deb_paths(contents)
                installed.append(dpkg_database.Installed(contents.control, contents.members, paths))
        for alt in alternatives.apply(tree, lower, offered):
            ctx.say(f"alternative {alt.name}: {alt.link} -> {alt.path}")
        if lower is None:
            write_accounts(tree)
        write_ca_bundle(tree)
        link_python(tree, lowers)
        write_status(tree, lower, controls)
        if args.dpkg_database:
            dpkg_database.write(tree, lowers, installed)
        if args.apt_sources:
            apt_config.write(tree, args.apt_sources)
        view = merge_view([*lowers, tree], ctx.scratch / "view")
        self._ldconfig(ctx, tree, view)
        self._compile(ctx, tree, view)
        shutil.rmtree(view)
        os.rename(tree, ctx.out)

    def _ldconfig(self, ctx: BuildContext, tree: Path, view: Path) -> None:
        if not (view / "sbin" / "ldconfig").exists():
            raise BuildError(f"{ctx.drv.name} has no /sbin/ldconfig (libc-bin) in its layers")
        started = time.monotonic()
        argv = ["/sbin/ldconfig", "-X", "-C", "/build/ld.so.cache"]
        run_command(ctx, argv, rootfs=view, output=False)
        ctx.say(f"ldconfig over the merged view in {time.monotonic() - started:.1f}s")
        # An empty layer (no system packages) has no /etc yet: write_fresh makes it.
        write_fresh(tree, "etc/ld.so.cache", read_result(ctx, "ld.so.cache"))

    def _compile(self, ctx: BuildContext, tree: Path, view: Path) -> None:
        """This layer's Python modules compiled by the interpreter of the stack that loads them:
        `python3.X` for its own standard library, `python3` for dist-packages."""
        started, compiled = time.monotonic(), 0
        for lib in sorted((tree / "usr/lib").glob("python3*")):
            interpreter = "/usr/bin/python3" if lib.name == "python3" else f"/usr/bin/{lib.name}"
            if not lib.is_dir() or not os.path.lexists(view / interpreter.lstrip("/")):
                continue  # no Debian interpreter of that version in the stack
            rel = f"usr/lib/{lib.name}"
            run_command(
                ctx,
                compile_argv(interpreter, f"/build/root/{rel}", f"/{rel}"),
                rootfs=view,
                output=False,
            )
            compiled += 1
        if compiled:
            ctx.say(
                f"compiled the bytecode of {compiled} trees in {time.monotonic() - started:.1f}s"
            )


def _read_ahead(debs: list[Path], ctx: BuildContext) -> Iterator[DebContents]:
    """The .debs read in order, a few ahead on other threads; memory is bounded by the window."""
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[DebContents]] = deque(
            pool.submit(read_deb, deb) for deb in debs[: 2 * workers]
        )
        rest = deque(debs[2 * workers :])
        try:
            while pending:
                ctx.check_cancelled()
                contents = pending.popleft().result()
                if rest:
                    pending.append(pool.submit(read_deb, rest.popleft()))
                yield contents
        finally:
            for future in pending:
                future.cancel()


def _normalised(rel_from_root: str) -> str:
    """A path relative to the root, `..` clamped at the root as the kernel does at `/`."""
    parts: list[str] = []
    for part in rel_from_root.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def relative_target(link_rel: str, target: str) -> str:
    """`target` of the link at `link_rel`, rewritten relative and unable to leave the root."""
    link_dir = posixpath.dirname(link_rel)
    absolute = target.lstrip("/") if target.startswith("/") else f"{link_dir}/{target}"
    resolved = _normalised(absolute)
    return posixpath.relpath(resolved or ".", link_dir or ".")


def _inside(tree: Path, path: Path) -> Path:
    """`path`'s parent resolved through the tree's symlinks; refuses anything leaving the tree."""
    parent = Path(os.path.realpath(path.parent))
    if parent != tree and tree not in parent.parents:
        raise BuildError(f"a package writes outside its root through a symlink: {path}")
    return parent / path.name


def _replace(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        raise BuildError(f"a package replaces the directory {path} with a file")
    if path.is_symlink() or path.exists():
        path.unlink()


@dataclass(frozen=True)
class DebContents:
    name: str
    control: str  # the control stanza
    postinst: str  # "" when there is none
    data: bytes  # the uncompressed data tar
    members: dict[str, bytes] = field(default_factory=dict)  # every control member, by name


_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda b: b,
    ".gz": gzip.decompress,
    ".xz": lzma.decompress,
    ".lzma": lzma.decompress,
    ".bz2": bz2.decompress,
    ".zst": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
}


def read_deb(deb: Path) -> DebContents:
    """Reads a .deb: its control data, and its data tar decompressed in memory.

    The decompressors release the GIL, so several .debs are read at once in threads while one
    thread writes files: decompressing xz is most of the cost of a layer.
    """
    try:
        scripts = DebFile(filename=str(deb)).control
        control = (scripts.get_content("control") or b"").decode("utf-8")
        postinst = (scripts.get_content("postinst") if scripts.has_file("postinst") else b"") or b""
        members = _control_members(scripts.tgz())
        archive = ArFile(str(deb))
        member = next(n for n in archive.getnames() if n.startswith("data.tar"))
        decompress = _DECOMPRESS[member.removeprefix("data.tar")]
        data = decompress(archive.getmember(member).read())
    except (DebError, ArError, OSError, KeyError, StopIteration, ValueError, tarfile.TarError) as e:
        raise BuildError(f"{deb.name} is not a readable .deb: {e or 'no data.tar'}") from None
    except (lzma.LZMAError, zstandard.ZstdError, EOFError) as e:
        raise BuildError(f"{deb.name} has a corrupt data archive: {e}") from None
    return DebContents(deb.name, control, postinst.decode("utf-8", "replace"), data, members)


def _control_members(archive: tarfile.TarFile) -> dict[str, bytes]:
    """The regular files of a control archive (`./postinst` …), by name."""
    found: dict[str, bytes] = {}
    for member in archive:
        name = _normalised(member.name)
        if member.isfile() and name and "/" not in name:
            extracted = archive.extractfile(member)
            if extracted is not None:
                found[name] = extracted.read(16 << 20)
    return found


def deb_paths(deb: DebContents) -> list[str]:
    """Every path `deb` holds, as dpkg lists them, without unpacking it."""
    try:
        with tarfile.open(fileobj=io.BytesIO(deb.data), mode="r:") as data:
            return [dpkg_database.listed_path(_normalised(m.name)) for m in data]
    except tarfile.TarError as e:
        raise BuildError(f"{deb.name} has an unreadable data tar: {e}") from None


def unpack_deb(deb: Path, tree: Path, ctx: BuildContext) -> tuple[str, str]:
    """Unpacks one .deb's data into `tree`; returns its control stanza with an install status,
    and its postinst script ("" when it has none)."""
    return unpack_contents(read_deb(deb), tree, ctx)


def unpack_contents(
    deb: DebContents, tree: Path, ctx: BuildContext, paths: list[str] | None = None
) -> tuple[str, str]:
    """Unpacks `deb` into `tree`, as `unpack_deb`; every path it holds is appended to `paths`,
    as dpkg lists them (dpkg_database.listed_path)."""
    tree = Path(os.path.realpath(tree))
    try:
        data = tarfile.open(fileobj=io.BytesIO(deb.data), mode="r:")  # noqa: SIM115 (with below)
    except tarfile.TarError as e:
        raise BuildError(f"{deb.name} has an unreadable data tar: {e}") from None
    links: list[tuple[Path, Path]] = []
    with data:
        for member in data:
            if paths is not None:
                paths.append(dpkg_database.listed_path(_normalised(member.name)))
            rel = alternatives.usr_merged(_normalised(member.name))
            if not rel:
                continue
            path = _inside(tree, tree / rel)
            if member.isdir():
                if path.is_symlink() and path.resolve().is_dir():
                    continue  # a directory symlink stands in for it, as dpkg keeps it
                if not path.is_dir():
                    _replace(path)
                    path.mkdir(parents=True)
            elif member.isfile():
                path.parent.mkdir(parents=True, exist_ok=True)
                _replace(path)
                source = data.extractfile(member)
                assert source is not None
                with source, open(path, "wb") as f:
                    shutil.copyfileobj(source, f, 1 << 20)
                os.chmod(path, 0o755 if member.mode & 0o111 else 0o644)
            elif member.issym():
                if rel.removeprefix("usr/") in alternatives.MERGED_USR:
                    continue  # trixie's base-files ships /bin -> usr/bin: the layout has it
                path.parent.mkdir(parents=True, exist_ok=True)
                _replace(path)
                os.symlink(relative_target(rel, member.linkname), path)
            elif member.islnk():
                links.append((path, tree / alternatives.usr_merged(_normalised(member.linkname))))
            else:
                ctx.say(f"{deb.name}: skipped {member.name} (not a file, directory or symlink)")
    for path, target in links:
        _replace(path)
        os.link(_inside(tree, target), path)
    fields = deb.control.rstrip("\n").split("\n")
    status = "\n".join([fields[0], "Status: install ok installed", *fields[1:]]) + "\n"
    return status, deb.postinst


def write_accounts(tree: Path) -> None:
    etc = tree / "etc"
    etc.mkdir(exist_ok=True)
    master = tree / "usr/share/base-passwd"
    passwd = (master / "passwd.master").read_text() if master.is_dir() else "root:*:0:0::/root:\n"
    group = (master / "group.master").read_text() if master.is_dir() else "root:*:0:\n"
    passwd += f"cog:*:{COG_UID}:{COG_UID}:cog:/home/cog:/bin/bash\n"
    group += f"cog:*:{COG_UID}:\n"
    for name, text in (("passwd", passwd), ("group", group)):
        _replace(etc / name)
        (etc / name).write_text(text)
    for d in ("root", "home/cog", "tmp", "var/tmp", "run", "proc", "sys", "dev"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    for d in ("tmp", "var/tmp"):
        os.chmod(tree / d, 0o1777)  # the canonical form keeps the sticky bit of directories


def write_ca_bundle(tree: Path) -> None:
    """What update-ca-certificates writes, for the certificates this layer ships."""
    shared = tree / "usr/share/ca-certificates"
    if not shared.is_dir():
        return
    certs = sorted(p.relative_to(shared).as_posix() for p in shared.rglob("*.crt"))
    certdir = tree / "etc/ssl/certs"
    certdir.mkdir(parents=True, exist_ok=True)
    bundle = []
    for rel in certs:
        pem = (shared / rel).read_text()
        bundle.append(pem if pem.endswith("\n") else pem + "\n")
        link = certdir / (Path(rel).name.removesuffix(".crt") + ".pem")
        _replace(link)
        os.symlink(f"../../../usr/share/ca-certificates/{rel}", link)
    (certdir / "ca-certificates.crt").write_text("".join(bundle))
    (tree / "etc/ca-certificates.conf").write_text("".join(f"{rel}\n" for rel in certs))


_PYTHON = re.compile(r"python3\.\d+")


def link_python(tree: Path, lowers: list[Path]) -> None:
    """`python3` and `python` for the newest Debian interpreter in the stack, if none exist."""
    found: set[str] = set()
    for root in (*lowers, tree):
        if (root / "usr/bin").is_dir():
            found |= {p.name for p in (root / "usr/bin").iterdir() if _PYTHON.fullmatch(p.name)}
    if not found:
        return
    newest = max(found, key=lambda n: int(n.split(".")[1]))
    for link, target in (("python3", newest), ("python", "python3")):
        if any(os.path.lexists(root / "usr/bin" / link) for root in (*lowers, tree)):
            continue  # a package or a lower layer has it already
        (tree / "usr/bin").mkdir(parents=True, exist_ok=True)
        os.symlink(target, tree / "usr/bin" / link)


def write_status(tree: Path, lower: Path | None, controls: list[str]) -> None:
    below = lower / STATUS if lower is not None else None
    previous = below.read_text() if below is not None and below.is_file() else ""
    stanzas = [s.strip("\n") + "\n" for s in previous.split("\n\n") if s.strip()]
    status = tree / STATUS
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text("\n".join(sorted(stanzas + controls)))

"""Every builder's derivations are made by one helper, `builders.base.derive`. Each factory must
still give, field for field, the `Derivation(...)` spelled out here from its builder class's
kind and version: a derivation's hash names every store path built from it, so a helper that
dropped an env, defaulted an arg or named a stale version would rebuild (and re-push) every
image. The plan of a real example project is checked the same way."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from packaging.utils import canonicalize_name

from builders.base import derive
from builders.bytecode import COMPILE_ENV
from builders.ca_cert import CaCertBuilder, ca_cert_derivation
from builders.command import CommandBuilder, command_derivation
from builders.fetch import FetchBuilder, fetch_derivation
from builders.image import ImageBuilder, LayerBuilder, image_derivation, layer_derivation
from builders.image_rootfs import ImageRootfsBuilder, rootfs_derivation
from builders.launch import model_environment, server_command
from builders.layers import Layers
from builders.oci_pull import OciBlobBuilder, OciLayoutBuilder, blob_derivation, layout_derivation
from builders.pyenv import env_derivation
from builders.realise import realise
from builders.registry import Builders
from builders.rootfs import RootfsBuilder, deb_derivation, root_layer_derivation
from builders.rootview import ViewBuilder, view_derivation
from builders.run_step import RunStepBuilder, step_derivation
from builders.sdist import CPPFLAGS, SOURCE_DATE_EPOCH, SdistBuilder, sdist_wheel_derivation
from builders.sdk import PyWheelBuilder, wheel_of_sources
from builders.unpack import UnpackBuilder, unpack_derivation
from builders.userland import Userland
from builders.wheel import (
    Interpreter,
    WheelBuilder,
    install_derivation,
    wheel_derivation,
    wheel_file_derivation,
)
from cog.project.plan import layers
from cuda_channels.channel import Channel, load
from derivations import lock as locking
from derivations.apt import DebPin
from derivations.config import CogConfig, Mount, RunItem, load_config
from derivations.hashing import drv_path, output_path, output_paths
from derivations.model import Derivation, DrvInput, FixedOutput, SrcInput
from derivations.pylock import Wheel
from store.local import Store
from store.paths import safe_name
from store.reference import Reference
from tests.projects import cog, project

SHA = "ab" * 32
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def assert_same(made: Derivation, spelled: Derivation) -> None:
    assert made.model_dump() == spelled.model_dump()
    assert (drv_path(made), output_paths(made)) == (drv_path(spelled), output_paths(spelled))


def spelled_fetch(
    name: str, urls: list[str], sha256: str, size: int | None = None, **more: object
) -> Derivation:
    args: dict[str, object] = {"urls": urls, "executable": False, **more}
    if size is not None:
        args["size"] = size
    return Derivation(
        name=safe_name(name),
        builder=FetchBuilder.kind,
        builder_version=FetchBuilder.version,
        args=args,
        fixed_output=FixedOutput(sha256=sha256),
    )


def spelled_root_layer(
    name: str,
    pins: Sequence[DebPin],
    arch: str,
    lowers: Sequence[Derivation] = (),
    apt_sources: str = "",
    dpkg_database: bool = False,
    listed: Sequence[DebPin] = (),
) -> Derivation:
    def fetched(pins: Sequence[DebPin]) -> list[DrvInput]:
        ordered = sorted(pins, key=lambda p: p.name)
        return [spelled_fetch(p.file_name, list(p.urls), p.sha256, p.size).dep() for p in ordered]

    inputs: dict[str, DrvInput | SrcInput] = {
        f"deb-{i:04d}": deb for i, deb in enumerate(fetched(pins))
    }
    inputs |= {f"lower-{i:02d}": lower.dep() for i, lower in enumerate(lowers)}
    inputs |= {f"listed-{i:04d}": deb for i, deb in enumerate(fetched(listed))}
    return Derivation(
        name=name,
        builder=RootfsBuilder.kind,
        builder_version=RootfsBuilder.version,
        inputs=inputs,
        args={"packages": sorted(p.name for p in pins), "arch": arch}
        | ({"apt_sources": apt_sources} if apt_sources else {})
        | ({"dpkg_database": True} if dpkg_database else {}),
        env=COMPILE_ENV,
    )


def spelled_view(name: str, below: Sequence[Derivation]) -> Derivation:
    return Derivation(
        name=name,
        builder=ViewBuilder.kind,
        builder_version=ViewBuilder.version,
        inputs={f"layer-{i:02d}": d.dep() for i, d in enumerate(below)},
    )


def spelled_install(
    wheel: Derivation, dist: str, version: str, filename: str, python: str, interp: Interpreter
) -> Derivation:
    inputs: dict[str, DrvInput | SrcInput] = {"wheel": wheel.dep(), "root": interp.root.dep()}
    if interp.standalone is not None:
        inputs["python"] = interp.standalone.dep()
    return Derivation(
        name=f"python{python}-{canonicalize_name(dist)}-{version}".replace("+", "_"),
        builder=WheelBuilder.kind,
        builder_version=WheelBuilder.version,
        inputs=inputs,
        args={"python": python, "filename": filename, "interpreter": interp.path},
        env=COMPILE_ENV,
    )


def spelled_wheel(pin: Wheel, python: str, interp: Interpreter) -> Derivation:
    fetched = spelled_fetch(pin.filename, [pin.url], pin.sha256, pin.size)
    return spelled_install(fetched, pin.name, pin.version, pin.filename, python, interp)


# Plain derivations to hang the factories' inputs on.
TARBALL = spelled_fetch("tree.tar", ["https://example.invalid/tree.tar"], SHA)
OTHER = spelled_fetch("other.tar", ["https://example.invalid/other.tar"], "cd" * 32)
SOURCE = SrcInput(path=str(output_path(TARBALL)))
INTERP = Interpreter(spelled_view("python-root", [TARBALL, OTHER]), "/usr/bin/python3.11")
DEBS = (
    DebPin("zlib1g", "1:1.2.13", "amd64", "01" * 32, 10, ("https://deb.invalid/z.deb",)),
    DebPin("jq", "1.6-2.1", "amd64", "02" * 32, 20, ("https://a.invalid/j", "https://b.invalid/j")),
)
REQUIRE = Wheel("flit-core", "3.9.0", "https://w.invalid/flit_core-3.9.0-py3-none-any.whl", SHA, 5)
SDIST = Wheel(
    "Foo.Bar", "1.0+local", "https://w.invalid/foo.bar-1.0.tar.gz", "03" * 32, 9, (REQUIRE,)
)
ITEM = RunItem(command=" make all ", mounts=(Mount(type="secret", id="token", target="/run/t"),))
REF = Reference("registry.invalid", "team/model", "v1")
MANIFEST = {
    "config": {"digest": "sha256:" + "04" * 32, "size": 7},
    "layers": [{"digest": "sha256:" + "05" * 32, "size": 11}],
}


def _sdist_case(standalone: Derivation | None) -> tuple[Derivation, Derivation]:
    land = Userland(TARBALL, OTHER, OTHER, standalone, INTERP.root, "/usr/bin/python3.11")
    made = sdist_wheel_derivation(SDIST, "3.11", land, OTHER)
    build_env = env_derivation(
        "python3.11-sdist-build-env",
        "3.11",
        "/usr/bin/python3.11",
        [spelled_wheel(REQUIRE, "3.11", Interpreter(INTERP.root, INTERP.path, standalone))],
        (standalone or OTHER).dep(),
    )
    inputs: dict[str, DrvInput | SrcInput] = {
        "src": spelled_fetch(SDIST.filename, [SDIST.url], SDIST.sha256, SDIST.size).dep(),
        "env": build_env.dep(),
        "root": OTHER.dep(),
    }
    env = {
        "PATH": f"{output_path(build_env)}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONHASHSEED": "0",
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
        "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
        "CPPFLAGS": CPPFLAGS,
    }
    if standalone is not None:
        inputs["python"] = standalone.dep()
        env |= {"CC": "gcc", "CXX": "g++", "LDSHARED": "gcc -shared"}
    spelled = Derivation(
        name="python3.11-foo-bar-1.0_local-wheel",
        builder=SdistBuilder.kind,
        builder_version=SdistBuilder.version,
        inputs=inputs,
        args={"package": "Foo.Bar", "version": "1.0+local"},
        env=env,
    )
    return made, spelled


def cases() -> Iterator[tuple[str, Derivation, Derivation]]:
    """(factory, what it makes, the same derivation spelled out)."""
    yield (
        "fetch",
        fetch_derivation("a file.whl", "https://example.invalid/a", SHA),
        spelled_fetch("a file.whl", ["https://example.invalid/a"], SHA),
    )
    yield (
        "fetch, every option",
        fetch_derivation("b", ["https://x.invalid/b", "https://y.invalid/b"], SHA, True, "ask", 7),
        spelled_fetch(
            "b",
            ["https://x.invalid/b", "https://y.invalid/b"],
            SHA,
            executable=True,
            hint="ask",
            size=7,
        ),
    )
    for subdir, args in ((None, {}), ("python", {"subdir": "python"})):
        yield (
            f"unpack {subdir}",
            unpack_derivation("python", TARBALL.dep(), subdir),
            Derivation(
                name="python",
                builder=UnpackBuilder.kind,
                builder_version=UnpackBuilder.version,
                inputs={"src": TARBALL.dep()},
                args=args,
            ),
        )
    command_inputs: dict[str, DrvInput | SrcInput] = {"tools": TARBALL.dep(), "src": SOURCE}
    yield (
        "command",
        command_derivation("c", ["/bin/sh", "-c", "true"], command_inputs),
        Derivation(
            name="c",
            builder=CommandBuilder.kind,
            builder_version=CommandBuilder.version,
            inputs=command_inputs,
            args={"argv": ["/bin/sh", "-c", "true"]},
        ),
    )
    yield (
        "command, env and rootfs",
        command_derivation("c", ["/bin/sh"], command_inputs, {"A": "1"}, "tools"),
        Derivation(
            name="c",
            builder=CommandBuilder.kind,
            builder_version=CommandBuilder.version,
            inputs=command_inputs,
            args={"argv": ["/bin/sh"], "rootfs": "tools"},
            env={"A": "1"},
        ),
    )
    yield (
        "oci layer",
        layer_derivation([(TARBALL.dep(), ""), (SOURCE, "src")], "zstd", True),
        Derivation(
            name="oci-layer",
            builder=LayerBuilder.kind,
            builder_version=LayerBuilder.version,
            inputs={"tree-000": TARBALL.dep(), "tree-001": SOURCE},
            args={"prefixes": ["", "src"], "compression": "zstd", "expect_store_form": True},
        ),
    )
    yield (
        "image rootfs",
        rootfs_derivation(output_path(TARBALL)),
        Derivation(
            name="image-rootfs",
            builder=ImageRootfsBuilder.kind,
            builder_version=ImageRootfsBuilder.version,
            inputs={"image": SOURCE},
        ),
    )
    manifest = blob_derivation(REF, "sha256:" + SHA, 300, "manifest")
    yield (
        "oci blob",
        manifest,
        Derivation(
            name=f"oci-manifest-{SHA[:16]}",
            builder=OciBlobBuilder.kind,
            builder_version=OciBlobBuilder.version,
            args={
                "host": "registry.invalid",
                "repository": "team/model",
                "digest": "sha256:" + SHA,
                "size": 300,
                "kind": "manifest",
            },
            fixed_output=FixedOutput(sha256=SHA),
        ),
    )
    media = "application/vnd.oci.image.manifest.v1+json"
    yield (
        "oci layout",
        layout_derivation(REF, manifest, MANIFEST, media),
        Derivation(
            name="oci-image",
            builder=OciLayoutBuilder.kind,
            builder_version=OciLayoutBuilder.version,
            inputs={
                "manifest": manifest.dep(),
                "config": blob_derivation(REF, "sha256:" + "04" * 32, 7, "blob").dep(),
                "layer-000": blob_derivation(REF, "sha256:" + "05" * 32, 11, "blob").dep(),
            },
            args={
                "manifest": "sha256:" + SHA,
                "media_type": media,
                "config": "sha256:" + "04" * 32,
                "layers": [("sha256:" + "05" * 32, 11)],
            },
        ),
    )
    yield (
        "deb",
        deb_derivation(DEBS[0]),
        spelled_fetch("zlib1g_1_1.2.13_amd64.deb", ["https://deb.invalid/z.deb"], "01" * 32, 10),
    )
    yield (
        "root layer",
        root_layer_derivation("rootfs-system", DEBS, "amd64", [TARBALL, OTHER]),
        spelled_root_layer("rootfs-system", DEBS, "amd64", [TARBALL, OTHER]),
    )
    yield (
        "root view",
        view_derivation("python-root", [TARBALL, OTHER]),
        spelled_view("python-root", [TARBALL, OTHER]),
    )
    yield (
        "ca cert",
        ca_cert_derivation(PEM, [TARBALL, OTHER]),
        Derivation(
            name="rootfs-ca-cert",
            builder=CaCertBuilder.kind,
            builder_version=CaCertBuilder.version,
            inputs={"layer-00": TARBALL.dep(), "layer-01": OTHER.dep()},
            args={"pem": PEM},
        ),
    )
    step_args: dict[str, object] = {
        "command": "make all",
        "secrets": [{"id": "token", "target": "/run/t"}],
    }
    env = {"PATH": "/usr/bin"}
    for label, made, network, fixed in (
        ("offline step", step_derivation(1, ITEM, [TARBALL], OTHER, env), False, None),
        ("online step", step_derivation(1, ITEM, [TARBALL], OTHER, env, network=True), True, None),
        ("pinned step", step_derivation(1, ITEM, [TARBALL], OTHER, env, SHA), True, SHA),
        # As before the helper: an empty pin asks for the network but declares no hash.
        ("empty pin", step_derivation(1, ITEM, [TARBALL], OTHER, env, ""), True, None),
    ):
        spelled = Derivation(
            name="run-1",
            builder=RunStepBuilder.kind,
            builder_version=RunStepBuilder.version,
            inputs={"layer-00": TARBALL.dep(), "model-env": OTHER.dep()},
            args=step_args | {"network": network},
            env=env,
            fixed_output=FixedOutput(sha256=fixed) if fixed else None,
        )
        yield label, made, spelled
    yield (
        "sources' wheel",
        wheel_of_sources(output_path(TARBALL), "cog", "0.1"),
        Derivation(
            name="cog-0.1-py3-none-any.whl",
            builder=PyWheelBuilder.kind,
            builder_version=PyWheelBuilder.version,
            inputs={"src": SOURCE},
            args={"dist": "cog", "version": "0.1"},
        ),
    )
    yield (
        "wheel file",
        wheel_file_derivation(REQUIRE),
        spelled_fetch("flit_core-3.9.0-py3-none-any.whl", [REQUIRE.url], SHA, 5),
    )
    yield "wheel", wheel_derivation(REQUIRE, "3.11", INTERP), spelled_wheel(REQUIRE, "3.11", INTERP)
    standalone = Interpreter(INTERP.root, "/opt/python/bin/python3", OTHER)
    yield (
        "install, standalone",
        install_derivation(TARBALL, "Foo_Bar", "2+x", "foo_bar-2.whl", "3.12", standalone),
        spelled_install(TARBALL, "Foo_Bar", "2+x", "foo_bar-2.whl", "3.12", standalone),
    )
    yield "sdist", *_sdist_case(None)
    yield "sdist, standalone", *_sdist_case(TARBALL)


@pytest.mark.parametrize(("made", "spelled"), [c[1:] for c in cases()], ids=[c[0] for c in cases()])
def test_each_factory_makes_the_derivation_its_builder_spells(
    made: Derivation, spelled: Derivation
) -> None:
    assert_same(made, spelled)


def test_derive_copies_what_it_is_given() -> None:
    """A caller that goes on filling its dict does not change a derivation already made."""
    inputs: dict[str, DrvInput | SrcInput] = {"src": SOURCE}
    args: dict[str, object] = {"subdir": "x"}
    made = derive(UnpackBuilder, "u", inputs=inputs, args=args)
    hashed = drv_path(made)
    inputs["other"], args["more"] = TARBALL.dep(), 1
    assert made.inputs == {"src": SOURCE} and made.args == {"subdir": "x"}
    assert drv_path(made.model_copy(deep=True)) == hashed


def test_the_image_is_the_derivation_its_builder_spells(store: Store) -> None:
    """The image derivation plans its layers from the environments' built closure."""
    model_env, runtime_env = view_derivation("model-env", []), view_derivation("runtime-env", [])
    realise(store, [model_env, runtime_env])
    code = output_path(TARBALL)
    built = Layers(TARBALL, OTHER, OTHER, None, model_env, runtime_env, code)
    labels = {"z": "1", "a": "2"}
    made = image_derivation(store, "image", built, labels, {"X": "1"}, "amd64", "p.py:P")
    env_paths = sorted([output_path(model_env), output_path(runtime_env)])
    # One tree a layer: each root layer, each path of the closure (alone: its store form), code.
    trees: list[tuple[DrvInput | SrcInput, str, bool]] = [
        *((d.dep(), "", False) for d in (TARBALL, OTHER, OTHER)),
        *((SrcInput(path=str(p)), p.layer_prefix, True) for p in env_paths),
        (SrcInput(path=str(code)), "src", False),
    ]
    blobs = [
        Derivation(
            name="oci-layer",
            builder=LayerBuilder.kind,
            builder_version=LayerBuilder.version,
            inputs={"tree-000": tree},
            args={"prefixes": [prefix], "compression": "gzip", "expect_store_form": alone},
        )
        for tree, prefix, alone in trees
    ]
    inputs: dict[str, DrvInput | SrcInput] = {
        f"layer-{i:03d}": b.dep() for i, b in enumerate(blobs)
    }
    inputs |= {
        "root-view": spelled_view("image-root", [TARBALL, OTHER, OTHER]).dep(),
        "model-env": model_env.dep(),
        "runtime-env": runtime_env.dep(),
        "code": SrcInput(path=str(code)),
    }
    config_env = model_environment(output_path(model_env), {"X": "1"})
    spelled = Derivation(
        name="image",
        builder=ImageBuilder.kind,
        builder_version=ImageBuilder.version,
        inputs=inputs,
        args={
            "arch": "amd64",
            "env": [f"{k}={v}" for k, v in sorted(config_env.items())],
            "cmd": server_command(output_path(model_env), output_path(runtime_env)),
            "labels": {"a": "2", "z": "1"},
            "predictor": "p.py:P",
        },
    )
    assert_same(made, spelled)


@dataclass
class Planned:
    config: CogConfig
    lock: locking.Lock
    layers: Layers
    channel: Channel


@pytest.fixture(scope="module")
def planned(offline: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Planned:
    """numpy-pillow locked offline by the real `cog lock`, then planned with a CA to trust."""
    root = project("numpy-pillow", tmp_path_factory.mktemp("project"))
    result = cog(root, offline, "lock")
    assert result.returncode == 0, result.stderr[-2000:]
    config, lock = load_config(root), locking.read(root)
    assert lock is not None
    with pytest.MonkeyPatch.context() as env:
        env.setitem(os.environ, "COG_CHANNEL_PATH", offline["COG_CHANNEL_PATH"])
        channel = load(locking.channel_name(config, lock))
    store = Store(tmp_path_factory.mktemp("store") / "store")
    try:
        planned = layers(store, root, config, lock, channel, ca_cert=PEM)
        return Planned(config, lock, planned, channel)
    finally:
        store.close()


def _graph(roots: Sequence[Derivation]) -> list[Derivation]:
    found: dict[str, Derivation] = {}
    stack = list(roots)
    while stack:
        drv = stack.pop()
        if found.setdefault(str(drv_path(drv)), drv) is drv:
            stack += [i.drv for i in drv.inputs.values() if isinstance(i, DrvInput)]
    return list(found.values())


def test_an_example_plans_the_layers_its_builders_spell(planned: Planned) -> None:
    """The root layers, the CA's layer and every pinned wheel of a real example's plan, spelled
    from cog.lock's pins, are the ones it plans."""
    lock, plan = planned.lock, planned.layers
    arch, system = lock.platform.arch, lock.system
    base = spelled_root_layer("rootfs-base", system.base, arch)
    python_layer = spelled_root_layer("rootfs-python", system.python, arch, [base])
    sources = "\n\n".join(  # apt's sources: the channel's archives, in deb822
        f"Types: deb\nURIs: {a.mirror}\nSuites: {' '.join(a.suites)}\n"
        f"Components: {' '.join(a.components)}\nSigned-By: {planned.channel.keyring}\n"
        "Check-Valid-Until: no"
        for a in planned.channel.archives
    )
    assert system.tools
    listed = [*system.base, *system.python]  # the tools layer writes dpkg's records of these
    tools = spelled_root_layer(
        "rootfs-tools", system.tools, arch, [base, python_layer], sources + "\n", True, listed
    )
    below = [base, python_layer, tools]
    system_layer = spelled_root_layer("rootfs-system", system.packages, arch, below, "", True)
    assert_same(plan.base, base)
    assert_same(plan.python_layer, python_layer)
    assert plan.tools is not None
    assert_same(plan.tools, tools)
    assert_same(plan.system, system_layer)
    assert plan.ca_cert is not None
    assert_same(plan.ca_cert, ca_cert_derivation(PEM, [*below, system_layer]))
    python = planned.config.build.python_version  # Debian's, on this channel
    interp = Interpreter(
        spelled_view("python-root", [base, python_layer]), f"/usr/bin/python{python}"
    )
    installed = {
        str(drv_path(i.drv))
        for env in (plan.model_env, plan.runtime_env)
        for i in env.inputs.values()
        if isinstance(i, DrvInput) and i.drv.builder == WheelBuilder.kind
    }
    pins = [*lock.python_packages, *lock.runtime_packages]
    assert len(pins) > 10  # numpy, pillow, tqdm, and the runtime's own
    spelled = {str(drv_path(spelled_wheel(pin, python, interp))) for pin in pins}
    assert spelled <= installed
    assert len(installed - spelled) == 2  # the `cog` SDK and our runtime, built from sources


def test_every_planned_derivation_names_its_builder_and_version(planned: Planned) -> None:
    graph = _graph([*planned.layers.derivations])
    builders = Builders()
    wrong = [
        f"{d.name}: {d.builder} {d.builder_version}"
        for d in graph
        if builders[d.builder].kind != d.builder
        or type(builders[d.builder]).version != d.builder_version
    ]
    assert not wrong
    kinds = {d.builder for d in graph}
    assert {"fetch", "rootfs", "rootview", "ca-cert", "wheel", "pywheel", "pyenv"} <= kinds

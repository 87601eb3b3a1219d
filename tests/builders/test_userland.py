"""The OS userland end to end: root layers from a frozen Debian mirror, run under bubblewrap."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builders.rootview import merge_view
from builders.userland import userland
from cuda_channels.channel import load
from derivations.apt import Universe, load_universe, resolve_root
from derivations.hashing import output_path
from store.local import Store
from tests.conftest import REPO, require_tool
from tests.debian_mirror import ARCH, PYTHON, SYSTEM_PACKAGES, mirrored


@dataclass
class Build:
    store: Store
    paths: dict[str, object]

    def physical(self, key: str) -> Path:
        return self.store.real_path(self.store.parse(str(self.paths[key])))


@pytest.fixture(scope="module")
def builds(debian_mirror: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Build]]:
    """The same inputs built at once in two empty stores that differ as two machines would."""
    require_tool("bwrap")
    variants = [
        ("022", "UTC", "C.UTF-8"),
        ("077", "Asia/Tokyo", "C"),
    ]
    procs = []
    for i, (umask, tz, lang) in enumerate(variants):
        store_dir = tmp_path_factory.mktemp(f"store-{i}")
        build = f"{sys.executable} -m tests.build_userland {store_dir} {debian_mirror}"
        script = f"umask {umask}; exec {build}"
        env = os.environ | {"TZ": tz, "LC_ALL": lang, "PYTHONPATH": str(REPO)}
        procs.append(
            (
                store_dir,
                subprocess.Popen(
                    ["sh", "-c", script],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                ),
            )
        )
    results = []
    for store_dir, proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err.decode()[-3000:]
        results.append(Build(Store(store_dir), json.loads(out.decode().splitlines()[-1])))
    yield results
    for b in results:
        b.store.close()


@pytest.fixture(scope="module")
def universe(debian_mirror: str) -> Universe:
    return load_universe(mirrored(load(), debian_mirror), ARCH)


def in_rootfs(view: Path, script: str) -> subprocess.CompletedProcess[str]:
    bwrap = require_tool("bwrap")
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", str(view), "/"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--clearenv"]
    argv += ["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", "/root"]
    argv += ["/bin/sh", "-c", script]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_rootfs_runs_python_and_ffmpeg(builds: list[Build], tmp_path: Path) -> None:
    build = builds[0]
    layers = [build.physical(k) for k in ("base", "python", "tools", "system")]
    view = merge_view(layers, tmp_path / "root")
    imports = "import ssl, sqlite3, ctypes, zlib, lzma, bz2, readline, venv"
    result = in_rootfs(view, f'python3.11 -c "{imports}; print(ssl.OPENSSL_VERSION)"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OpenSSL 3")
    result = in_rootfs(view, "ffmpeg -hide_banner -version")
    assert result.returncode == 0 and "ffmpeg version" in result.stdout, result.stderr
    result = in_rootfs(view, "id cog && id -u root && python3 --version")
    assert result.stdout.splitlines()[0].startswith("uid=1000(cog)"), result.stderr
    assert "Python 3.11" in result.stdout
    # HTTPS works: the bundle is there and Python's ssl loads it as its default trust store.
    check = (
        "import ssl; c = ssl.create_default_context(cafile='/etc/ssl/certs/ca-certificates.crt');"
        " print(len(c.get_ca_certs()))"
    )
    result = in_rootfs(view, f'python3 -c "{check}"')
    assert result.returncode == 0 and int(result.stdout) > 100, result.stderr
    # Alternatives from postinst scripts: awk exists (mawk), libblas.so.3 resolves (ffmpeg).
    result = in_rootfs(view, "readlink -f /usr/bin/awk /usr/lib/x86_64-linux-gnu/libblas.so.3")
    awk, blas = result.stdout.split()
    assert awk == "/usr/bin/mawk", result.stderr
    assert blas.startswith("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3")
    # /tmp keeps its sticky bit in the layer (the canonical form records it for the image).
    assert os.stat(build.physical("base") / "tmp").st_mode & stat.S_ISVTX
    result = in_rootfs(view, "grep -c '^Package: ' /var/lib/dpkg/status")
    assert int(result.stdout) == len(build.paths["debs"])  # type: ignore[arg-type]
    # dpkg knows which package owns each file and finds nothing half-installed; apt, git and
    # curl (Cog's tools) run.
    result = in_rootfs(view, "dpkg -S /usr/bin/jq /bin/bash && dpkg --audit")
    assert result.stdout.splitlines() == ["jq: /usr/bin/jq", "bash: /bin/bash"], result.stderr
    result = in_rootfs(view, "apt-get --version && git --version && curl --version")
    assert result.returncode == 0 and "git version" in result.stdout, result.stderr


def test_the_standard_library_is_loaded_from_its_bytecode(
    builds: list[Build], tmp_path: Path
) -> None:
    """The root is read-only, as the store is when an image runs: every module the interpreter
    imports comes from the .pyc the layer carries, none is compiled from source."""
    layers = [builds[0].physical(k) for k in ("base", "python", "tools", "system")]
    view = merge_view(layers, tmp_path / "root")
    imports = "import json, email.message, asyncio, sqlite3, http.client, logging, sysconfig"
    result = in_rootfs(view, f'python3 -v -c "{imports}" 2>&1')
    assert result.returncode == 0, result.stdout[-2000:]
    from_pyc = re.findall(
        r"^# code object from '(/usr/lib/python3\.11/\S+\.pyc)'", result.stdout, re.M
    )
    from_source = re.findall(r"^# code object from '(\S+\.py)'", result.stdout, re.M)
    assert from_source == []
    assert len(from_pyc) > 50
    # Its own name in tracebacks is where the source is at run time, not where it was compiled.
    result = in_rootfs(
        view,
        "python3 -c 'import json.decoder as d; print(d.JSONDecoder.decode.__code__.co_filename)'",
    )
    assert result.stdout.strip() == "/usr/lib/python3.11/json/decoder.py", result.stderr


def test_two_empty_stores_give_identical_layers(builds: list[Build]) -> None:
    first, second = builds
    assert first.paths == second.paths
    for key in ("base", "python", "tools", "system"):
        a = first.store.layer_info(first.store.parse(str(first.paths[key])))
        b = second.store.layer_info(second.store.parse(str(second.paths[key])))
        assert (a.nar_hash, a.tar_sha256, a.nar_size) == (b.nar_hash, b.tar_sha256, b.nar_size)


def test_lower_layers_do_not_depend_on_system_packages(universe: Universe) -> None:
    channel = load()
    few = resolve_root(channel, ARCH, PYTHON, ["ffmpeg"], universe)
    more = resolve_root(channel, ARCH, PYTHON, SYSTEM_PACKAGES, universe)
    a, b = userland(channel, ARCH, PYTHON, few), userland(channel, ARCH, PYTHON, more)
    assert output_path(a.base) == output_path(b.base)
    assert output_path(a.python_layer) == output_path(b.python_layer)
    assert output_path(a.python_root) == output_path(b.python_root)  # so: the same wheels
    assert a.tools is not None and b.tools is not None
    assert output_path(a.tools) == output_path(b.tools)  # Cog's tools: apt, curl, git …
    assert {p.name for p in few.tools}.isdisjoint(p.name for p in few.system)
    assert output_path(a.system) != output_path(b.system)
    assert {p.name for p in few.base}.isdisjoint(p.name for p in few.system)
    assert {p.name for p in few.python}.isdisjoint(p.name for p in few.system)
    # Debian's Python 3.11 has a layer of its own.
    assert "python3.11" in {p.name for p in more.python}

"""COG_CA_CERT: a company's CA, trusted by the image (its bundle, SSL_CERT_FILE and
REQUESTS_CA_BUNDLE, the build.run steps) and by what cog fetches on the host (uv, httpx).

Real TLS: a CA and a server certificate made here, an HTTPS server on loopback that no
default trust store accepts, and the CLI building and running an example project offline.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from builders.sandbox.jail import host_tool
from derivations import ca_cert, pylock
from derivations.buildreqs import on_host
from derivations.config import ConfigError
from derivations.downloads import client
from derivations.pylock import ResolveError
from store.oci import Layout
from tests.builders.test_run_steps import image_layers, with_steps
from tests.conftest import OutsideHost
from tests.projects import cog, project
from tests.wheels import make_wheel

# The resolver as cog locks with it: an sdist's code runs in the sandbox.
resolve = partial(pylock.resolve, hooks=on_host(host_tool))


@dataclass
class Tls:
    ca_pem: str  # the CA to trust
    url: str  # an HTTPS server whose certificate that CA signed, serving `root`
    root: Path


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    signer: object,
    ca: bool,
    address: str = "127.0.0.1",
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(address))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    else:
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = builder.add_extension(ski, critical=False)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture
def tls(tmp_path: Path, outside_host: OutsideHost) -> Iterator[Tls]:
    """An HTTPS server with a certificate of its own CA, on a host of the test's own (a model
    and a network step, whose networks are their own, reach it; this machine too)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cog Test CA")])
    ca = _certificate("Cog Test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    address = outside_host.address
    server = _certificate("localhost", server_key, ca_name, ca_key, ca=False, address=address)
    keys = tmp_path / "tls"
    keys.mkdir()
    (keys / "server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (keys / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    root = tmp_path / "served"
    root.mkdir()
    (root / "hello.txt").write_text("OK from the company proxy\n")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = outside_host.listening(lambda: http.server.ThreadingHTTPServer((address, 0), handler))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(keys / "server.crt", keys / "server.key")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        pem = ca.public_bytes(serialization.Encoding.PEM).decode()
        yield Tls(pem, f"https://{address}:{httpd.server_address[1]}", root)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_forms_cog_reads(tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "ca.crt"
    file.write_text(tls.ca_pem)
    folder = tmp_path / "cas"
    folder.mkdir()
    (folder / "b.pem").write_text(tls.ca_pem)
    (folder / "a.crt").write_text(tls.ca_pem.strip())  # no final newline: one is added
    (folder / "notes.txt").write_text("not a certificate")
    encoded = base64.b64encode(tls.ca_pem.encode()).decode()
    for value, expect in (
        (str(file), tls.ca_pem),
        (f"  {file}\n", tls.ca_pem),
        (str(folder), tls.ca_pem * 2),
        (tls.ca_pem, tls.ca_pem),
        (encoded, tls.ca_pem),
    ):
        monkeypatch.setenv("COG_CA_CERT", value)
        assert ca_cert.from_environment() == expect
    monkeypatch.setenv("COG_CA_CERT", "")
    assert ca_cert.from_environment() is None

    empty = tmp_path / "empty"
    empty.mkdir()
    damaged = tls.ca_pem.replace(tls.ca_pem.splitlines()[3], "A" * 64)
    for value, message in (
        ("not-a-cert", "must be a file path, directory, PEM certificate, or base64-encoded PEM"),
        (str(empty), f"no .crt or .pem files found in directory {empty}"),
        ("-----BEGIN CERTIFICATE-----\nMIIB", "invalid certificate in COG_CA_CERT"),
        (damaged, "invalid certificate in COG_CA_CERT"),
    ):
        monkeypatch.setenv("COG_CA_CERT", value)
        with pytest.raises(ConfigError, match="COG_CA_CERT") as e:
            ca_cert.from_environment()
        assert message in str(e.value)


def test_what_cog_fetches_on_the_host_trusts_it(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> None:
    """uv's resolution from an HTTPS index and cog's own downloads: refused by default,
    accepted with COG_CA_CERT."""
    make_wheel(tls.root, "alpha", "1.0")
    options = ["--no-index", f"--find-links {tls.url}/"]
    monkeypatch.delenv("COG_CA_CERT", raising=False)
    with pytest.raises(ResolveError):
        resolve([*options, "alpha"], "3.11", "amd64", "2.36")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"), client() as http:
        http.get(f"{tls.url}/hello.txt")

    monkeypatch.setenv("COG_CA_CERT", tls.ca_pem)
    [pin] = resolve([*options, "alpha"], "3.11", "amd64", "2.36")
    assert (pin.name, pin.version) == ("alpha", "1.0") and pin.url.startswith(tls.url)
    with client() as http:
        assert http.get(f"{tls.url}/hello.txt").text == "OK from the company proxy\n"


FETCH = """\
import os
import urllib.request

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, url: str) -> str:
        body = urllib.request.urlopen(url).read().decode()
        return f"{os.environ['REQUESTS_CA_BUNDLE']} {body}"
"""
STEP = "cp /etc/ssl/certs/ca-certificates.crt /opt-bundle.crt"


def test_the_image_trusts_it(offline: dict[str, str], tmp_path: Path, tls: Tls) -> None:
    root = with_steps(project("hello-world", tmp_path), [STEP])
    (root / "predict.py").write_text(FETCH)
    plain = cog(root, offline, "run", "-i", f"url={tls.url}/hello.txt")
    assert plain.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in plain.stderr

    bad = cog(root, offline | {"COG_CA_CERT": "nonsense"}, "build", "--no-docker-load")
    assert bad.returncode == 1 and "COG_CA_CERT: invalid value" in bad.stderr
    assert "Traceback" not in bad.stderr and "derivations to build" not in bad.stderr

    trusting = offline | {"COG_CA_CERT": tls.ca_pem}
    built = cog(root, trusting, "build", "--no-docker-load")
    assert built.returncode == 0, built.stderr[-3000:]
    assert "Injecting CA certificate from COG_CA_CERT" in built.stderr
    layers = image_layers(root)
    [mine] = [
        files for files in layers if "usr/local/share/ca-certificates/cog-ca-cert.crt" in files
    ]
    assert mine["usr/local/share/ca-certificates/cog-ca-cert.crt"].decode() == tls.ca_pem
    bundle = mine["etc/ssl/certs/ca-certificates.crt"].decode()
    assert bundle.endswith(tls.ca_pem) and bundle.count("BEGIN CERTIFICATE") > 100  # Debian's too
    [step] = [files for files in layers if "opt-bundle.crt" in files]
    assert step["opt-bundle.crt"].decode() == bundle  # build.run steps run over it
    env = Layout.open((root / ".cog" / "image").resolve()).config()["config"]["Env"]
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        assert f"{name}=/etc/ssl/certs/ca-certificates.crt" in env
    ran = cog(root, trusting, "run", "-i", f"url={tls.url}/hello.txt")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip() == "/etc/ssl/certs/ca-certificates.crt OK from the company proxy"


def test_a_network_step_trusts_it_beside_the_hosts_bundle(
    offline: dict[str, str], tmp_path: Path, tls: Tls
) -> None:
    """A build.run step with the network sees the host's SSL_CERT_FILE (a proxy's CA) joined
    to the image's bundle, so COG_CA_CERT's certificate still counts there."""
    get = f"import urllib.request as u; u.urlretrieve('{tls.url}/hello.txt', '/opt/hello')"
    fetch = f'mkdir -p /opt && python3 -c "{get}"'
    root = with_steps(project("hello-world", tmp_path), [fetch])
    host = tmp_path / "host-bundle.crt"
    host.write_text(Path(ssl.get_default_verify_paths().openssl_cafile).read_text())
    env = offline | {"SSL_CERT_FILE": str(host), "COG_CA_CERT": tls.ca_pem}
    locked = cog(root, env, "lock")
    assert locked.returncode == 0, locked.stderr[-3000:]
    [pin] = json.loads((root / "cog.lock").read_text())["run"]
    assert pin["network"] is True
    built = cog(root, env, "build", "--no-docker-load")
    assert built.returncode == 0, built.stderr[-3000:]
    assert {"opt/hello": b"OK from the company proxy\n"} in image_layers(root)

    refused = cog(root, offline | {"SSL_CERT_FILE": str(host)}, "lock", "--upgrade")
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr

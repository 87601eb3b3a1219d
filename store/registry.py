"""The OCI distribution API client (pulls, uploads, manifests); `store.push` pushes images with it.

The client is ours, on httpx: every blob streams from disk (with its Content-Length), is
HEAD-checked first, can be mounted from another repository of the same registry, and survives
5xx answers, resets and stalls with short retries. Credentials are Docker's (`config.json`,
credential helpers), sent as basic auth or traded for a bearer token at the registry's token
service. A blob upload is retried as a whole (a new upload session each time), which is always
safe; the manifest goes last, as its exact bytes. No transport error leaves this module as
anything but a `RegistryError`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

from store.credentials import docker_config_path, save_credentials, saved_credentials
from store.errors import RegistryError
from store.hashing import HashingWriter
from store.oci import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX,
    MANIFEST,
    BlobReader,
    BlobSource,
    digest_of,
    platform_manifest,
)
from store.reference import Reference

ACCEPT = ", ".join([MANIFEST, DOCKER_MANIFEST, INDEX, DOCKER_LIST])
RETRIABLE = {408, 429, 500, 502, 503, 504}
BODY_CHUNK = 1 << 20  # bytes read from a blob per write of an upload
_CHALLENGE_PARAM = re.compile(r'([A-Za-z]+)="([^"]*)"')
# The CA bundle to trust, first named first: SSL_CERT_FILE (OpenSSL's, and what the machine's
# proxy CA is added to), then the variables requests and curl read, which httpx does not.
_CA_BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


_SHARED: dict[tuple[str, bool], Registry] = {}
_SHARED_LOCK = threading.Lock()


def ssl_context() -> ssl.SSLContext:
    """TLS verification against the CA bundle the environment names (a proxy's CA is added
    to it), else the system's trust store."""
    named = next(((v, os.environ[v]) for v in _CA_BUNDLE_VARIABLES if os.environ.get(v)), None)
    directory = os.environ.get("SSL_CERT_DIR") or None
    try:
        return ssl.create_default_context(cafile=named[1] if named else None, capath=directory)
    except (OSError, ssl.SSLError) as e:
        where = f"{named[1]} (named by {named[0]})" if named else f"{directory} (SSL_CERT_DIR)"
        raise RegistryError(
            f"cannot load the CA certificates {where}: {getattr(e, 'strerror', None) or e}",
            hint="point the variable at a readable PEM bundle, or unset it",
        ) from None


class Registry:
    """One registry host: authenticated requests with retries, on one pooled httpx client."""

    def __init__(self, host: str, insecure: bool) -> None:
        self.host = host
        self.insecure = insecure
        self.base = f"{'http' if insecure else 'https'}://{host}"
        timeout = float(os.environ.get("COG_REGISTRY_TIMEOUT", "60"))
        self.attempts = int(os.environ.get("COG_REGISTRY_ATTEMPTS", "6"))
        # Proxies come from the environment (trust_env); redirects are followed (registries
        # send blob downloads to their storage), and httpx drops Authorization when one leads
        # to another origin.
        self.client = httpx.Client(
            verify=ssl_context(),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": "cog-hermetic"},
            follow_redirects=True,
            trust_env=True,
        )
        self.credentials: str | None = saved_credentials(host, docker_config_path())
        self.authorization: str | None = None
        self.auth_lock = threading.Lock()

    @classmethod
    def shared(cls, host: str, insecure: bool) -> Registry:
        """One client per registry in this process, so the blobs of a pull (fetched by
        separate derivations) share its connections and its answered auth challenge."""
        with _SHARED_LOCK:
            key = (host, insecure)
            if key not in _SHARED:
                _SHARED[key] = cls(host, insecure)
            return _SHARED[key]

    # --- requests --------------------------------------------------------------------------

    def _authenticate(self, challenge: httpx.Response, sent: str | None) -> None:
        with self.auth_lock:
            if self.authorization != sent:  # another thread already answered this challenge
                return
            scheme, _, params = challenge.headers.get("WWW-Authenticate", "").partition(" ")
            scheme = scheme.lower()
            if scheme == "basic":
                if not self.credentials:
                    raise self._no_credentials()
                self.authorization = f"Basic {self.credentials}"
                return
            if scheme == "bearer":
                token = self._token(dict(_CHALLENGE_PARAM.findall(params)))
                if token:
                    self.authorization = f"Bearer {token}"
                    return
                if not self.credentials:
                    raise self._no_credentials()
            raise self._refused()

    def _token(self, challenge: dict[str, str]) -> str | None:
        """A bearer token from the registry's token service for the challenge's scope, asked
        with our credentials when there are any (anonymously else); None when refused."""
        realm = challenge.get("realm")
        if not realm:
            return None
        if not realm.startswith(("http://", "https://")):
            realm = f"{'http' if self.insecure else 'https'}://{realm}"
        query = {k: challenge[k] for k in ("service", "scope") if challenge.get(k)}
        headers = {"Accept": "application/json"}
        if self.credentials:
            headers["Authorization"] = f"Basic {self.credentials}"
        problem = ""
        for attempt in range(self.attempts):
            if attempt:
                backoff(attempt)
            try:
                response = self.client.get(realm, params=query, headers=headers)
            except httpx.TransportError as e:
                problem = _transport_problem(e)
                continue
            except (httpx.HTTPError, httpx.InvalidURL) as e:
                problem = str(e) or type(e).__name__
                break
            if response.status_code in RETRIABLE:
                problem = f"HTTP {response.status_code}"
                continue
            if response.status_code != 200:
                return None
            try:
                answer = response.json()
            except ValueError:
                return None
            if not isinstance(answer, dict):
                return None
            token = answer.get("token") or answer.get("access_token")
            return str(token) if token else None
        raise RegistryError(
            f"the token service of {self.host} at {urlsplit(realm).netloc} failed ({problem})",
            hint="check that the registry is up and reachable, then run the command again",
        )

    def _no_credentials(self) -> RegistryError:
        return RegistryError(
            f"{self.host} asks for credentials and none are saved for it",
            hint=f"run `cog login {self.host}`",
        )

    def _refused(self) -> RegistryError:
        return RegistryError(
            f"{self.host} refused our credentials (HTTP 401)",
            hint=f"check them with `cog login {self.host}`",
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        body: Callable[[], bytes | BlobReader] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = True,
        stream: bool = False,
    ) -> httpx.Response:
        """One request, answering auth challenges; with `retry`, 5xx answers and transport
        errors are retried with a short backoff (for requests that are safe to repeat).
        `body` makes the request's body afresh for each try: bytes, or a blob reader that is
        streamed with its length. With `stream`, the caller reads the answer and closes it."""
        target = url if url.startswith("http") else f"{self.base}{url}"
        problem = ""
        reauthenticated = False
        attempt = 0
        while attempt < (self.attempts if retry else 1):
            sent = self.authorization
            all_headers = dict(headers or {})
            if sent:
                all_headers["Authorization"] = sent
            data = body() if body else None
            content: bytes | Iterator[bytes] | None = None
            if isinstance(data, BlobReader):
                # Streamed in chunks, never whole in memory; with a Content-Length (httpx
                # then sends no chunked encoding). A stream cannot be sent twice, so a
                # redirect of it is an answer like any other.
                content = _chunks(data)
                all_headers["Content-Length"] = str(len(data))
            else:
                content = data
            try:
                response = self.client.send(
                    self.client.build_request(method, target, content=content, headers=all_headers),
                    stream=stream,
                    follow_redirects=not isinstance(data, BlobReader),
                )
            except httpx.TransportError as e:
                problem = _transport_problem(e)
                if problem in ("connection refused", "unknown host"):  # nothing to wait for
                    raise RegistryError(
                        f"cannot reach the registry at {self.host} ({problem})",
                        hint="check the image name's host and port, and that the registry is up",
                    ) from None
            except (httpx.HTTPError, httpx.InvalidURL) as e:  # redirect loops, bad locations
                raise RegistryError(
                    f"the registry at {self.host} failed on {method} {urlsplit(target).path} "
                    f"({str(e) or type(e).__name__})"
                ) from None
            else:
                if response.status_code == 401 and not reauthenticated:
                    response.close()
                    self._authenticate(response, sent)
                    reauthenticated = True
                    continue
                if response.status_code == 401:
                    response.close()
                    raise self._refused()
                if response.status_code not in RETRIABLE or not retry:
                    return response
                problem = f"HTTP {response.status_code}"
                response.close()
            finally:
                if isinstance(data, BlobReader):
                    data.close()
            attempt += 1
            if attempt < self.attempts and retry:
                backoff(attempt)
        raise RegistryError(
            f"the registry at {self.host} failed ({problem}) on {method} "
            f"{urlsplit(target).path}" + (f" after {self.attempts} tries" if retry else ""),
            hint="check that the registry is up and reachable, then run the command again",
        )

    def check(self, response: httpx.Response, *ok: int) -> httpx.Response:
        if response.status_code in ok:
            return response
        message = response.reason_phrase
        try:
            response.read()  # a streamed answer's error document
            errors = response.json().get("errors") or []
            message = "; ".join(str(e.get("message") or e.get("code")) for e in errors) or message
        except (ValueError, AttributeError, httpx.HTTPError, httpx.StreamError):
            pass
        finally:
            response.close()
        raise RegistryError(
            f"the registry at {self.host} answered {response.status_code} ({message}) to "
            f"{response.request.method} {response.request.url.path}"
        )

    def ping(self) -> None:
        """Checks the registry answers and accepts our credentials (GET /v2/)."""
        self.check(self.request("GET", "/v2/"), 200)

    # --- blobs -----------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}")
        response.close()
        if response.status_code not in (200, 404):
            self.check(response, 200)
        return response.status_code == 200

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("Location", "")
        if not location:
            raise RegistryError(f"the registry at {self.host} gave no upload location")
        return location if location.startswith("http") else f"{self.base}{location}"

    def mount(self, repository: str, digest: str, source: str) -> bool:
        query = urlencode({"mount": digest, "from": source})
        response = self.request("POST", f"/v2/{repository}/blobs/uploads/?{query}")
        if response.status_code == 202:  # not mounted: cancel the session it opened for us
            self.request("DELETE", self._location(response), retry=False).close()
        return response.status_code == 201

    def upload(self, repository: str, digest: str, layout: BlobSource, chunk: int) -> None:
        """One whole upload: a fresh session, the bytes (in chunks when large), the digest."""
        size = layout.blob_size(digest)
        started = self.request(
            "POST", f"/v2/{repository}/blobs/uploads/", headers={"Content-Length": "0"}
        )
        location = self._location(self.check(started, 202))
        offset, setbacks = 0, 0
        while size > chunk and offset < size:
            end = min(offset + chunk, size)
            try:
                part = self.request(
                    "PATCH",
                    location,
                    body=lambda o=offset, e=end: layout.open_blob(digest, o, e),  # type: ignore[misc]
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{end - 1}",
                    },
                    retry=False,
                )
                location = self._location(self.check(part, 202))
                offset = end
            except RegistryError:
                # Resume where the registry says the upload stands, rather than from zero:
                # one lost chunk of a large layer must not cost the whole layer.
                setbacks += 1
                if setbacks >= self.attempts:
                    raise
                backoff(setbacks)
                offset, location = self._upload_status(location)
        separator = "&" if "?" in location else "?"
        finished = self.request(
            "PUT",
            f"{location}{separator}{urlencode({'digest': digest})}",
            body=(lambda: layout.open_blob(digest, offset, size)) if offset < size else None,
            headers={"Content-Type": "application/octet-stream"},
            retry=False,
        )
        if finished.status_code != 201:
            layout.verify_blob(digest)  # our corrupt bytes, named as such, not the registry's
        self.check(finished, 201)

    def _upload_status(self, location: str) -> tuple[int, str]:
        """How many bytes of an upload session the registry holds, and where to go on."""
        status = self.check(self.request("GET", location), 204)
        last = status.headers.get("Range", "0--1").rpartition("-")[2]
        return int(last) + 1, self._location(status)

    def fetch_blob(self, repository: str, digest: str, size: int, target: Path) -> None:
        """Downloads a blob to `target`, checking its size and sha256 as it streams; a
        download cut off midway starts again."""
        problem = ""
        for attempt in range(self.attempts):
            if attempt:
                backoff(attempt)
            response = self.check(
                self.request("GET", f"/v2/{repository}/blobs/{digest}", stream=True), 200
            )
            try:
                with open(target, "wb") as f:
                    out = HashingWriter(f)
                    for data in response.iter_bytes(BODY_CHUNK):
                        out.write(data)
                        if out.size > size:  # never more than the size it was asked for
                            break
            except httpx.TransportError as e:
                problem = _transport_problem(e)
                continue
            except httpx.HTTPError as e:  # a body that cannot be decoded
                raise RegistryError(
                    f"the blob {digest} from {self.host} cannot be read "
                    f"({str(e) or type(e).__name__})"
                ) from None
            finally:
                response.close()
            actual, written = out.digest, out.size
            if actual != digest or written != size:
                target.unlink()
                raise RegistryError(
                    f"the blob {digest} from {self.host} has the wrong content ({actual}, "
                    f"{written} bytes where {size} were expected)"
                )
            return
        target.unlink(missing_ok=True)
        raise RegistryError(
            f"the download of the blob {digest} from {self.host} failed ({problem}) "
            f"after {self.attempts} tries",
            hint="check that the registry is up and reachable, then run the command again",
        )

    # --- manifests -------------------------------------------------------------------------

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        response = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            body=lambda: data,
            headers={"Content-Type": media_type},
        )
        self.check(response, 201)
        digest = digest_of(data)
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise RegistryError(f"the registry stored the manifest as {answered}, not {digest}")
        return digest

    def find_manifest(self, repository: str, reference: str) -> bytes | None:
        """The manifest's bytes, or None when the repository has no such tag or digest."""
        response = self.request(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT}
        )
        if response.status_code == 404:
            return None
        return self.check(response, 200).content

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        response = self.request(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT}
        )
        if response.status_code == 404:
            raise RegistryError(
                f"there is no image {self.host}/{repository}:{reference}"
                if not reference.startswith("sha256:")
                else f"there is no image {self.host}/{repository}@{reference}",
                hint="check the name and tag, or push it first",
            )
        self.check(response, 200)
        media_type = response.headers.get("Content-Type", MANIFEST).split(";")[0]
        return response.content, media_type


def backoff(attempt: int) -> None:
    time.sleep(min(0.2 * 2**attempt, 5.0))


def _chunks(reader: BlobReader) -> Iterator[bytes]:
    while data := reader.read(BODY_CHUNK):
        yield data


def _transport_problem(error: httpx.TransportError) -> str:
    text = str(error)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    lower = text.lower()
    if any(w in lower for w in ("reset", "aborted", "disconnected", "broken pipe")):
        return "connection reset"
    return text or type(error).__name__


def resolve(ref: Reference, arch: str = "amd64") -> str:
    """The digest of the image manifest `ref` names now: its tag looked up, a multi-platform
    index narrowed to linux/`arch`. (What is fetched afterwards is fetched by digest.)"""
    registry = Registry.shared(ref.host, ref.insecure)
    data, _ = registry.get_manifest(ref.repository, ref.reference)
    digest = digest_of(data)
    if ref.digest and digest != ref.digest:
        raise RegistryError(f"the registry sent a manifest that is not {ref.digest}")
    return platform_manifest(json.loads(data), arch, str(ref)) or digest


def fetch_manifest(ref: Reference, digest: str, target: Path) -> None:
    """Writes the manifest `digest` of `ref`'s repository to `target`, verified."""
    registry = Registry.shared(ref.host, ref.insecure)
    data, _ = registry.get_manifest(ref.repository, digest)
    if digest_of(data) != digest:
        raise RegistryError(f"the registry sent a manifest that is not {digest}")
    target.write_bytes(data)


def fetch_blob(ref: Reference, digest: str, size: int, target: Path) -> None:
    Registry.shared(ref.host, ref.insecure).fetch_blob(ref.repository, digest, size, target)


def login(host: str, username: str, password: str) -> Path:
    """Checks the credentials against the registry, then saves them in Docker's config.json
    (where docker and this tool both read them)."""
    insecure = Reference(host, "x").insecure
    registry = Registry(host, insecure)
    registry.credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    registry.ping()
    return save_credentials(host, registry.credentials)

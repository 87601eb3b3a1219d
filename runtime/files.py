"""Files across the API: inputs by URL or data URI, outputs uploaded or returned as data URIs."""

from __future__ import annotations

import base64
import mimetypes
import os
import tempfile
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from runtime.pipe import FILE

if TYPE_CHECKING:
    import httpx

UPLOAD_TRIES = 4


class Client:
    """The server's one HTTP client, made on first use: most servers never fetch a file, upload
    one or call a webhook, and importing httpx is 60 ms of every start."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def __call__(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=httpx.Timeout(60.0), follow_redirects=True)
        return self._client

    @staticmethod
    def failures() -> tuple[type[Exception], ...]:
        """What a request can raise that is the far side's or its URL's fault, not ours."""
        import httpx

        return (httpx.HTTPError, httpx.InvalidURL)


class InputError(Exception):
    """A file input that cannot be fetched: becomes a failed prediction, not a 5xx."""


INVALID_INPUT = "Input validation error: "  # how coglet begins the error of such a prediction


class UploadError(Exception):
    """A file output that cannot be read or uploaded: fails its prediction, in coglet's words
    (a file that cannot be read, in words of ours made as coglet makes its own)."""


def _name_of(url: str) -> str:
    try:
        path = urllib.parse.urlparse(url).path
    except ValueError as e:  # e.g. an unclosed IPv6 bracket
        raise InputError(f"{INVALID_INPUT}{url[:100]!r} is not a valid URL: {e}") from None
    return Path(urllib.parse.unquote(path)).name or "input"


async def fetch_input(http: Client, value: str, into: Path) -> str:
    """Downloads a URL or decodes a data URI into a new file under `into`; returns its path."""
    directory = Path(tempfile.mkdtemp(dir=into))
    if value.startswith("data:"):
        header, _, payload = value.partition(",")
        try:
            data = (
                base64.b64decode(payload)
                if header.endswith(";base64")
                else (urllib.parse.unquote_to_bytes(payload))
            )
        except ValueError as e:
            raise InputError(f"{INVALID_INPUT}invalid data URI: {e}") from None
        mime = header[5:].split(";")[0] or "application/octet-stream"
        target = directory / f"input{mimetypes.guess_extension(mime) or ''}"
        await trio.Path(target).write_bytes(data)
        return str(target)
    if not value.startswith(("http://", "https://")):
        raise InputError(f"{INVALID_INPUT}{value[:100]!r} is not a URL or a data URI")
    target = directory / _name_of(value)
    try:
        async with http().stream("GET", value) as response:
            if response.is_error:  # as Cog's SDK (requests' raise_for_status) words it
                side = "Client" if response.status_code < 500 else "Server"
                raise InputError(
                    f"{INVALID_INPUT}{response.status_code} {side} Error: "
                    f"{response.reason_phrase} for url: {response.url}"
                )
            async with await trio.open_file(target, "wb") as f:
                async for chunk in response.aiter_bytes(1 << 20):
                    await f.write(chunk)
    except http.failures() as e:
        raise InputError(f"{INVALID_INPUT}fetching {value} failed: {e}") from None
    return str(target)


async def prepare_inputs(
    http: Client, values: dict[str, Any], kinds: dict[str, dict[str, Any]], into: Path
) -> dict[str, Any]:
    """Replaces file inputs (path/file) with {FILE: local path}; lists element by element."""

    async def convert(value: Any, kind: dict[str, Any]) -> Any:
        if value is None:
            return None
        if kind["kind"] == "list":
            return [await convert(v, kind["items"]) for v in value]
        if kind["kind"] in ("path", "file"):
            return {FILE: await fetch_input(http, value, into)}
        return value

    return {name: await convert(v, kinds[name]) for name, v in values.items() if name in kinds}


def data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    async with await trio.open_file(path, "rb") as f:
        while chunk := await f.read(1 << 20):
            yield chunk


async def upload(http: Client, upload_url: str, path: Path) -> str:
    """PUTs the file, streamed, to `upload_url`/name; returns its URL. Transport errors and 5xx
    are retried with backoff; anything else fails at once (UploadError)."""
    url = upload_url.rstrip("/") + "/" + urllib.parse.quote(path.name)
    headers = {
        "Content-Type": mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        "Content-Length": str(path.stat().st_size),
    }
    client = http()
    delay = 0.1
    for attempt in range(UPLOAD_TRIES):
        last = attempt == UPLOAD_TRIES - 1
        try:
            response = await client.put(url, content=_chunks(path), headers=headers)
        except http.failures() as e:
            if last:
                raise UploadError(f"Failed to upload output: upload request failed: {e}") from None
        else:
            if response.is_success:
                location = response.headers.get("location")
                return location or str(response.url).split("?")[0]
            if response.status_code < 500 or last:
                raise UploadError(
                    "Failed to upload output: upload returned status "
                    f"{response.status_code} {response.reason_phrase}"
                )
        await trio.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable: the last try returns or raises")


async def finish_outputs(http: Client, value: Any, upload_url: str | None) -> Any:
    """Replaces {FILE: path} in an output with an uploaded URL or a data URI."""
    if isinstance(value, dict):
        if set(value) == {FILE}:
            path = Path(value[FILE])
            try:
                if upload_url:
                    return await upload(http, upload_url, path)
                return data_uri(path)
            except OSError as e:  # coglet reports such an output as null, and success
                raise UploadError(
                    f"Prediction failed: Failed to read output file: {type(e).__name__}: {e}"
                ) from None
            finally:
                if path.parent.name.startswith("tmp"):
                    os.unlink(path)
        return {k: await finish_outputs(http, v, upload_url) for k, v in value.items()}
    if isinstance(value, list):
        return [await finish_outputs(http, v, upload_url) for v in value]
    return value

"""The value types predictors declare: files, secrets, iterator outputs, and the `Opaque` marker.

Each behaves as Cog 0.23.1's (tests/sdk/test_sdk_surface.py compares them), with the standard
library only: `urllib.request` stands in for `requests`, imported when a URL is first opened.
"""

from __future__ import annotations

import io
import mimetypes
import os
import pathlib
import shutil
import sys
import tempfile
import typing
import urllib.parse
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

FILENAME_ILLEGAL_CHARS = set("\u0000/")
FILENAME_MAX_LENGTH = 200


def _len_bytes(s: str) -> int:
    return len(s.encode("utf-8"))


def _truncate_filename_bytes(filename: str, length: int) -> str:
    """At most `length` UTF-8 bytes, the extension kept and a `~` where the cut is."""
    if _len_bytes(filename) <= length:
        return filename
    name, ext = os.path.splitext(filename)
    keep = length - _len_bytes(ext) - 1
    return f"{name.encode('utf-8')[:keep].decode('utf-8', errors='ignore')}~{ext}"


def _open_data_url(url: str) -> Any:
    import urllib.request  # only when a data URL is read: it costs every worker 30 ms to load

    return urllib.request.urlopen(url)


def get_filename(url: str) -> str:
    """The name a file downloaded from `url` gets: `file` plus the extension of a data URL's
    media type, or the URL path's last segment, unquoted, truncated and made a legal name."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "data":
        with _open_data_url(url) as response:
            extension = mimetypes.guess_extension(response.headers.get_content_type())
            return "file" if extension is None else "file" + extension
    basename = urllib.parse.unquote_plus(os.path.basename(parsed.path))
    if _len_bytes(basename) > FILENAME_MAX_LENGTH:
        basename = _truncate_filename_bytes(basename, length=FILENAME_MAX_LENGTH)
    for char in FILENAME_ILLEGAL_CHARS:
        basename = basename.replace(char, "_")
    return basename


@dataclass(frozen=True)
class Secret:
    """A string input that is never logged or echoed: read it with `get_secret_value()`."""

    secret_value: str | None = None

    def __repr__(self) -> str:
        return f"Secret({self})"

    def __str__(self) -> str:
        return "**********" if self.secret_value is not None else ""

    def get_secret_value(self) -> str | None:
        return self.secret_value


class URLFile(io.IOBase):
    """An http(s) URL as a file, opened on first use (not before `predict`) and read as the
    response streams; attributes it lacks are the response's. Pickles as its URL."""

    __slots__ = ("__target__", "__url__", "name")

    def __init__(self, url: str, filename: str | None = None) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in {"http", "https"}:
            raise ValueError("URLFile requires URL to conform to HTTP or HTTPS protocol")
        object.__setattr__(self, "name", filename or os.path.basename(parsed.path))
        object.__setattr__(self, "__url__", url)

    def __del__(self) -> None:
        try:
            object.__getattribute__(self, "__target__")
        except AttributeError:
            return  # never opened: nothing to close
        super().__del__()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "name": object.__getattribute__(self, "name"),
            "url": object.__getattribute__(self, "__url__"),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "name", state["name"])
        object.__setattr__(self, "__url__", state["url"])

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(type(self), name):
            object.__setattr__(self, name, value)
        else:
            setattr(self.__wrapped__, name, value)

    def __getattr__(self, name: str) -> Any:
        if name in ("__target__", "__wrapped__", "__url__"):
            raise AttributeError(name)
        if name == "name":
            return object.__getattribute__(self, "name")
        return getattr(self.__wrapped__, name)

    def __delattr__(self, name: str) -> None:
        if hasattr(type(self), name):
            object.__delattr__(self, name)
        else:
            delattr(self.__wrapped__, name)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.__wrapped__)

    @property
    def __wrapped__(self) -> Any:
        try:
            return object.__getattribute__(self, "__target__")
        except AttributeError:
            pass
        import urllib.request  # only when read: it costs every worker 30 ms to load

        url = object.__getattribute__(self, "__url__")
        agent = os.getenv("COG_USER_AGENT")
        request = urllib.request.Request(url, headers={"User-Agent": agent} if agent else {})
        response = urllib.request.urlopen(request, timeout=10)
        object.__setattr__(self, "__target__", response)
        return response

    def __repr__(self) -> str:
        try:
            target = object.__getattribute__(self, "__target__")
        except AttributeError:
            url = object.__getattribute__(self, "__url__")
            return f"<{type(self).__name__} at 0x{id(self):x} for {url!r}>"
        return f"<{type(self).__name__} at 0x{id(self):x} wrapping {target!r}>"


class File(io.IOBase):
    """Deprecated file input: the predictor receives an open binary file. Prefer `Path`."""

    @classmethod
    def validate(cls, value: Any) -> io.IOBase:
        """A file for `value`: itself if a file already, a data URL's bytes, or an http(s)
        URL as a `URLFile`."""
        if isinstance(value, io.IOBase):
            return value
        parsed = urllib.parse.urlparse(value)
        if parsed.scheme == "data":
            with _open_data_url(value) as response:
                return io.BytesIO(response.read())
        if parsed.scheme in ("http", "https"):
            return URLFile(value)
        raise ValueError(
            f"'{parsed.scheme}' is not a valid URL scheme. 'data', 'http', or 'https' is supported."
        )


class URLPath(pathlib.PosixPath):
    """A URL given for a `Path` input, downloaded when `convert()` is called: a path (so
    `isinstance(_, pathlib.Path)` holds) whose `str()` is the URL."""

    _path: Path | None

    def __new__(cls, *, source: str, filename: str, fileobj: io.IOBase) -> URLPath:
        return super().__new__(cls, filename)

    def __init__(self, *, source: str, filename: str, fileobj: io.IOBase) -> None:
        if sys.version_info >= (3, 12):  # pathlib's parts are set by __init__ since 3.12
            super().__init__(filename)
        if len(filename) > FILENAME_MAX_LENGTH:
            filename = _truncate_filename_bytes(filename, FILENAME_MAX_LENGTH)
        self.source = source
        self.filename = filename
        self.fileobj = fileobj
        self._path = None

    def convert(self) -> Path:
        """Downloads the URL into a temporary file, once, and returns its path."""
        if self._path is None:
            dest = tempfile.NamedTemporaryFile(suffix=self.filename, delete=False)  # noqa: SIM115
            shutil.copyfileobj(self.fileobj, dest)
            dest.close()
            self._path = Path(dest.name)
        return self._path

    def unlink(self, missing_ok: bool = False) -> None:
        """Removes the downloaded file, if there is one."""
        if self._path:
            self._path.unlink(missing_ok=missing_ok)

    def __str__(self) -> str:
        return self.source


class Path(pathlib.PosixPath):
    """A file input (downloaded before `predict` runs) or a file output (uploaded after)."""

    @classmethod
    def validate(cls, value: Any) -> pathlib.Path:
        """A path for `value`: itself if a path already, a `URLPath` for a data or http(s)
        URL, or else a `Path`."""
        if isinstance(value, pathlib.Path):
            return value
        parsed = urllib.parse.urlparse(value)
        if parsed.scheme in ("data", "http", "https"):
            return URLPath(source=value, filename=get_filename(value), fileobj=File.validate(value))
        return Path(value)


Item = TypeVar("Item")


# typing's aliases, not collections.abc's, as in Cog: the classes are then typing.Generic too
class ConcatenateIterator(typing.Iterator[Item]):
    """An iterator output whose chunks are meant to be joined (tokens of generated text)."""

    @abstractmethod
    def __next__(self) -> Item: ...


class AsyncConcatenateIterator(typing.AsyncIterator[Item]):
    """The async form of `ConcatenateIterator`."""

    @abstractmethod
    async def __anext__(self) -> Item: ...


class _OpaqueMarker:
    """The type of `Opaque`: `Annotated[T, Opaque]` makes T an object the schema does not look
    into, passed through as it is."""

    def __repr__(self) -> str:
        return "cog.Opaque"


Opaque = _OpaqueMarker()

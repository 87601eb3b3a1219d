"""The value types predictors declare: files, secrets, and iterator outputs."""

from __future__ import annotations

import io
import pathlib
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Path(pathlib.PosixPath):
    """A file input (downloaded before `predict` runs) or a file output (uploaded after)."""


class File(io.IOBase):
    """Deprecated file input: the predictor receives an open binary file. Prefer `Path`."""


class Secret:
    """A string input that is never logged or echoed: read it with `get_secret_value()`."""

    def __init__(self, secret_value: str | None = None) -> None:
        self._secret_value = secret_value

    def get_secret_value(self) -> str | None:
        return self._secret_value

    def __repr__(self) -> str:
        return f"Secret({'**********' if self._secret_value else ''})"

    def __str__(self) -> str:
        return "**********" if self._secret_value else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._secret_value == self._secret_value

    def __hash__(self) -> int:
        return hash(self._secret_value)


class URLFile(io.IOBase):
    """A URL input opened lazily: the body is fetched on first read, not before `predict`."""

    def __init__(self, url: str, filename: str | None = None) -> None:
        super().__init__()
        self.url = url
        self.name = filename or pathlib.PurePosixPath(urllib.parse.urlparse(url).path).name
        self._body: Any = None

    def _open(self) -> Any:
        if self._body is None:
            import urllib.request  # only when read: it costs 30 ms of every worker's start

            self._body = urllib.request.urlopen(self.url)
        return self._body

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._open().read(size)
        return data

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
        super().close()

    def __repr__(self) -> str:
        return f"URLFile({self.url!r})"


class ConcatenateIterator(Iterator[T]):
    """An iterator output whose chunks are meant to be joined (tokens of generated text)."""

    def __next__(self) -> T:
        raise StopIteration


class AsyncConcatenateIterator(AsyncIterator[T]):
    """The async form of `ConcatenateIterator`."""

    async def __anext__(self) -> T:
        raise StopAsyncIteration

"""The protocol between the server and the model's worker: every message each way, and framing.

One source, two packages: this file is `runtime/pipe.py`, and `cog/server/pipe.py` is a symlink
to it. Each end runs in an environment that holds only its own package (the model's holds the
`cog` SDK, the runtime's `runtime/`), and the wheels copy the file's content; so it imports the
standard library alone, and nothing of either package.

A message is one JSON object a line, tagged by `type`. Messages are TypedDicts: plain dicts on
the wire and in memory, so typing them costs nothing on the hot path (80,000 log lines, a 40 MB
output), and comparing `message["type"]` with a literal narrows a union to one message. A
message whose `type` the reading side does not know (or a line that is not an object) is
dropped as it is read: each end has always ignored what it did not expect, so a newer peer's
additions never break an older one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Generic, Literal, TypeAlias, TypedDict, TypeVar, cast, get_args
from typing import get_type_hints as _hints

FILE = "__cog_file__"  # marks a file value, in an input or an output: {FILE: "/abs/path"}

# --- to the worker ---------------------------------------------------------------------------


class Predict(TypedDict):
    """Run a prediction. On the work pipe, which the worker reads in order."""

    type: Literal["predict"]
    id: str
    input: dict[str, Any]  # validated JSON values; a file is {FILE: its local path}
    context: dict[str, str]


class Shutdown(TypedDict):
    """Finish what runs, then exit. On the work pipe, after every prediction sent before it."""

    type: Literal["shutdown"]


class Cancel(TypedDict):
    """Cancel a prediction. On the control pipe, which the worker reads while one runs."""

    type: Literal["cancel"]
    id: str


class HealthcheckRequest(TypedDict):
    """Run the predictor's healthcheck(); answered by a HealthcheckResult with the same id."""

    type: Literal["healthcheck"]
    id: str


ToWorker: TypeAlias = Predict | Shutdown | Cancel | HealthcheckRequest
WORK_PIPE = frozenset({"predict", "shutdown"})  # the rest go down the control pipe

# --- from the worker -------------------------------------------------------------------------


Stream: TypeAlias = Literal["stdout", "stderr"]


class Log(TypedDict):
    """Text the predictor (or anything in its process) wrote to stdout or stderr."""

    type: Literal["log"]
    id: str | None  # its prediction; None: setup's, or no single prediction's (the server's log)
    stream: Stream
    data: str


class Output(TypedDict):
    """One item an iterator yielded, encoded (files as {FILE: path})."""

    type: Literal["output"]
    id: str
    value: Any


class Metric(TypedDict):
    """One metric recorded, sent at once for SSE (all of them arrive again with the end)."""

    type: Literal["metric"]
    id: str
    name: str
    value: Any  # None deletes it
    mode: str  # coglet's: replace, increment, append


class _Done(TypedDict):
    type: Literal["done"]
    id: str
    metrics: dict[str, Any]


class Done(_Done, total=False):
    """A prediction succeeded. No `output` when it was an iterator's: its items went as Output."""

    output: Any


class Failed(TypedDict):
    """A prediction raised (or called sys.exit)."""

    type: Literal["failed"]
    id: str
    error: str
    metrics: dict[str, Any]


class Canceled(TypedDict):
    """A prediction stopped by a Cancel."""

    type: Literal["canceled"]
    id: str
    metrics: dict[str, Any]


class Signature(TypedDict):
    """The predictor's description (`cog.server.signature.describe`), sent before setup runs."""

    type: Literal["signature"]
    signature: dict[str, Any]


class SetupDone(TypedDict):
    type: Literal["setup_done"]


class SetupFailed(TypedDict):
    """Loading or setup() failed; the worker exits."""

    type: Literal["setup_failed"]
    error: str


class _HealthcheckResult(TypedDict):
    type: Literal["healthcheck"]
    id: str
    ok: bool


class HealthcheckResult(_HealthcheckResult, total=False):
    error: str  # why not ok


FromWorker: TypeAlias = (
    Log
    | Output
    | Metric
    | Done
    | Failed
    | Canceled
    | Signature
    | SetupDone
    | SetupFailed
    | HealthcheckResult
)


class WorkerDiedMessage(TypedDict):
    """Never on the wire: what the server tells each running prediction when the pipe closes."""

    type: Literal["worker_died"]
    error: str


ToPrediction: TypeAlias = FromWorker | WorkerDiedMessage  # what a prediction's handler is given

# --- framing ---------------------------------------------------------------------------------

M = TypeVar("M")  # ToWorker or FromWorker

# Made once: json.dumps and json.loads with arguments build a coder on every call (30% of a log
# line's cost). Both are safe to share between threads.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
_decode = json.JSONDecoder().decode


def frame(message: Mapping[str, Any]) -> bytes:
    """A message as one line (values JSON cannot hold are written as their str())."""
    return (_encode(message) + "\n").encode()


class Direction(Generic[M]):
    """The messages one way down the pipe, to tell those this side knows from the rest."""

    def __init__(self, union: object) -> None:
        self.tags = frozenset(get_args(_hints(m)["type"])[0] for m in get_args(union))

    def parse(self, line: bytes) -> M | None:
        """The message on `line`, or None if it is not one of this direction's."""
        message = _decode(line.decode("utf-8", "surrogatepass"))
        if type(message) is dict and message.get("type") in self.tags:
            return cast(M, message)
        return None


TO_WORKER: Direction[ToWorker] = Direction(ToWorker)
FROM_WORKER: Direction[FromWorker] = Direction(FromWorker)


class Lines(Generic[M]):
    """Splits a stream of chunks into messages. Chunks are whatever size the pipe gives: a
    message can be far larger than one (a 40 MB output), or many can share one. Each message is
    joined once, when its end has arrived, so the cost is linear in its size."""

    def __init__(self, direction: Direction[M]) -> None:
        self._tags = direction.tags
        self._partial: list[bytes] = []

    def feed(self, chunk: bytes) -> list[M]:
        """The messages that `chunk` completes, in order (those not of this direction dropped)."""
        end = chunk.rfind(b"\n")
        if end == -1:
            self._partial.append(chunk)
            return []
        whole = b"".join([*self._partial, chunk[: end + 1]])
        self._partial = [chunk[end + 1 :]] if end + 1 < len(chunk) else []
        # Decoded once, not line by line: a third less time for a stream of log lines.
        lines = whole.decode("utf-8", "surrogatepass").split("\n")
        messages = [_decode(line) for line in lines if line]
        tags = self._tags
        return cast("list[M]", [m for m in messages if type(m) is dict and m.get("type") in tags])

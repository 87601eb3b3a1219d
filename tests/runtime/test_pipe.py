"""The worker pipe's protocol (`runtime.pipe`, also `cog.server.pipe`): one source for both ends,
its framing, and what each end does with a message it does not know."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import trio

import cog.server.pipe as sdk_pipe
import runtime.pipe as pipe
from builders.sdk import add_sources
from cog.server.worker import Channel
from runtime.spawn import Spawned
from runtime.worker import WorkerProcess
from store.local import Store

REPO = Path(__file__).resolve().parents[2]


def test_both_ends_read_one_source() -> None:
    link = REPO / "cog/server/pipe.py"
    assert link.is_symlink() and os.readlink(link) == "../../runtime/pipe.py"
    assert Path(sdk_pipe.__file__).read_bytes() == Path(pipe.__file__).read_bytes()
    imported = set()
    for node in ast.walk(ast.parse(Path(pipe.__file__).read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module  # no relative import: two packages hold it
            imported.add(node.module.split(".")[0])
    # Each environment holds only one of the two packages: the standard library alone.
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_each_package_ships_the_content_not_a_link(store: Store) -> None:
    for package, exclude in (("cog", ("cli",)), ("runtime", ())):
        src = store.real_path(add_sources(store, package, package, exclude=exclude))
        copied = src / package / ("server/pipe.py" if package == "cog" else "pipe.py")
        assert not copied.is_symlink()
        assert copied.read_bytes() == (REPO / "runtime/pipe.py").read_bytes()


def test_every_message_has_its_own_tag() -> None:
    assert pipe.TO_WORKER.tags == {"predict", "shutdown", "cancel", "healthcheck"}
    assert pipe.FROM_WORKER.tags == {
        "log",
        "output",
        "metric",
        "done",
        "failed",
        "canceled",
        "signature",
        "setup_done",
        "setup_failed",
        "healthcheck",
    }
    assert len(get_args(pipe.ToWorker)) == len(pipe.TO_WORKER.tags)
    assert len(get_args(pipe.FromWorker)) == len(pipe.FROM_WORKER.tags)
    assert sorted(pipe.WORK_PIPE) == ["predict", "shutdown"]  # in order; the rest: control pipe
    assert "worker_died" not in pipe.FROM_WORKER.tags  # the server's own, never read off the pipe


def test_lines_split_and_join_whatever_the_chunks() -> None:
    big: pipe.Done = {"type": "done", "id": "p", "metrics": {}, "output": "é" * 300_000}
    sent: list[pipe.FromWorker] = [
        {"type": "log", "id": None, "stream": "stdout", "data": "ünïcode\n"},
        big,
        {"type": "setup_done"},
    ]
    data = b"".join(pipe.frame(m) for m in sent)
    for size in (1, 7, 4096, len(data)):  # multibyte characters split across chunks too
        lines = pipe.Lines(pipe.FROM_WORKER)
        got = [m for i in range(0, len(data), size) for m in lines.feed(data[i : i + size])]
        assert got == sent


def test_frame_writes_what_json_cannot_hold_as_its_str() -> None:
    line = pipe.frame({"type": "metric", "id": "p", "name": "n", "value": Path("/x"), "mode": "a"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["value"] == "/x"


def test_a_message_the_protocol_does_not_know_is_dropped_as_read() -> None:
    stream = (
        b'{"type":"from_the_future","id":"p"}\n[1,2]\n"text"\n{"id":"p"}\n'
        + pipe.frame({"type": "output", "id": "p", "value": 1})
        + pipe.frame({"type": "predict", "id": "p", "input": {}, "context": {}})  # the other way
    )
    assert pipe.Lines(pipe.FROM_WORKER).feed(stream) == [{"type": "output", "id": "p", "value": 1}]
    assert pipe.FROM_WORKER.parse(b'{"type":"from_the_future"}') is None


def test_the_worker_skips_what_it_does_not_know() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b'{"type":"pause","id":"p"}\n' + pipe.frame({"type": "cancel", "id": "p"}))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert Channel.receive(reader) == {"type": "cancel", "id": "p"}
        assert Channel.receive(reader) is None  # the end of the pipe, not the unknown message


async def test_the_server_ignores_what_it_does_not_know_and_reports_the_death() -> None:
    work_r, work_w = os.pipe()
    control_r, control_w = os.pipe()
    receive_r, receive_w = os.pipe()
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    worker = WorkerProcess(Spawned(process, work_w, control_w, receive_r))
    worker.start()
    owned: list[pipe.ToPrediction] = []
    unowned: list[pipe.FromWorker] = []
    worker.handlers["p"] = owned.append
    worker.on_message = unowned.append
    os.write(
        receive_w,
        b'{"type":"from_the_future","id":"p"}\n{"type":"from_the_future"}\n[]\n'
        + pipe.frame({"type": "log", "id": "p", "stream": "stderr", "data": "a\n"})
        + pipe.frame({"type": "log", "id": None, "stream": "stdout", "data": "b\n"})
        + pipe.frame({"type": "healthcheck", "id": "p", "ok": True}),  # never a prediction's
    )
    os.close(receive_w)
    with trio.fail_after(10):
        await worker.run()
    assert owned == [
        {"type": "log", "id": "p", "stream": "stderr", "data": "a\n"},
        {"type": "worker_died", "error": "the worker exited with status 3"},
    ]
    assert unowned == [
        {"type": "log", "id": None, "stream": "stdout", "data": "b\n"},
        {"type": "healthcheck", "id": "p", "ok": True},
    ]
    for fd in (work_r, control_r):
        os.close(fd)

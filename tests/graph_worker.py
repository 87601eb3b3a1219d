"""A separate process that realises a fixed graph; used by the concurrency and crash tests.

usage: python -m tests.graph_worker STORE_DIR COUNTER_FILE FETCH_URL FETCH_SHA256 [SLEEP]

Its `count` builder appends the derivation's name to COUNTER_FILE each time it really runs,
so the test can tell how often each derivation was built across all processes.
"""

from __future__ import annotations

import os
import sys
import time

import trio

from builders.base import BuildContext
from builders.fetch import fetch_derivation
from builders.realise import Realiser, default_builders
from derivations import Derivation
from store.local import Store


class CountingBuilder:
    kind = "count"
    version = "1"
    runs_foreign_code = False

    def __init__(self, counter: str, sleep: float) -> None:
        self.counter, self.sleep = counter, sleep

    def build(self, ctx: BuildContext) -> None:
        fd = os.open(self.counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{ctx.drv.name}\n".encode())
        os.close(fd)
        deadline = time.monotonic() + self.sleep
        while time.monotonic() < deadline:
            ctx.check_cancelled()
            time.sleep(0.01)
        ctx.out.mkdir()
        (ctx.out / "data").write_bytes(ctx.drv.name.encode() * 20000)
        for role, path in ctx.input_paths.items():
            (ctx.out / role).write_text(str(path))


def graph(url: str, sha: str) -> Derivation:
    src = fetch_derivation("seed", url, sha)

    def node(name: str, **inputs: Derivation) -> Derivation:
        return Derivation(
            name=name,
            builder="count",
            builder_version="1",
            inputs={k: v.dep() for k, v in inputs.items()},
        )

    a = node("a", src=src)
    b, c = node("b", a=a), node("c", a=a)
    return node("d", b=b, c=c)


def main() -> None:
    store_dir, counter, url, sha = sys.argv[1:5]
    sleep = float(sys.argv[5]) if len(sys.argv) > 5 else 0.2
    builders = default_builders() | {"count": CountingBuilder(counter, sleep)}
    realiser = Realiser(Store(store_dir), builders=builders, jobs=2)
    [outs] = trio.run(realiser.realise, [graph(url, sha)])
    print(outs["out"])


if __name__ == "__main__":
    main()

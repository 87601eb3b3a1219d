"""Store metadata in SQLite (WAL): what is valid, its hashes, references and deriver."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from store.paths import StorePath

_SCHEMA = """
CREATE TABLE IF NOT EXISTS paths (
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE NOT NULL,
    nar_hash TEXT NOT NULL,
    nar_size INTEGER NOT NULL,
    tar_sha256 TEXT NOT NULL,
    tar_size INTEGER NOT NULL,
    deriver TEXT,
    ca TEXT,
    registered_at INTEGER NOT NULL,
    signatures TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS refs (
    referrer INTEGER NOT NULL REFERENCES paths(id) ON DELETE CASCADE,
    reference INTEGER NOT NULL,
    PRIMARY KEY (referrer, reference)
);
CREATE INDEX IF NOT EXISTS refs_by_reference ON refs(reference);
"""


@dataclass(frozen=True)
class PathInfo:
    path: StorePath
    nar_hash: str  # BLAKE3 hex of the nar form
    nar_size: int
    tar_sha256: str  # SHA-256 hex of the layer form, its diff_id; "" until first needed
    tar_size: int
    references: tuple[StorePath, ...] = ()
    deriver: str | None = None  # the .drv store path that built it
    ca: str | None = None  # "blake3:<nar hash>" for content-addressed paths
    registered_at: int = 0
    signatures: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["references"] = [str(r) for r in self.references]
        d["signatures"] = list(self.signatures)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PathInfo:
        return cls(
            path=StorePath.parse(d["path"]),
            nar_hash=d["nar_hash"],
            nar_size=int(d["nar_size"]),
            tar_sha256=d["tar_sha256"],
            tar_size=int(d["tar_size"]),
            references=tuple(StorePath.parse(r) for r in d.get("references", [])),
            deriver=d.get("deriver"),
            ca=d.get("ca"),
            registered_at=int(d.get("registered_at", 0)),
            signatures=tuple(d.get("signatures", [])),
        )


class MetadataDB:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            path, timeout=60, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        with self.transaction() as c:
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                c.execute(stmt)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def is_valid(self, path: StorePath) -> bool:
        return bool(self._query("SELECT 1 FROM paths WHERE path = ?", [str(path)]))

    def register(self, info: PathInfo) -> PathInfo:
        """Records a path and its references; every reference must already be valid."""
        now = info.registered_at or int(time.time())
        with self.transaction() as c:
            row = c.execute("SELECT id FROM paths WHERE path = ?", [str(info.path)]).fetchone()
            if row is not None:
                return info
            cur = c.execute(
                "INSERT INTO paths (path, nar_hash, nar_size, tar_sha256, tar_size, deriver, ca,"
                " registered_at, signatures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    str(info.path),
                    info.nar_hash,
                    info.nar_size,
                    info.tar_sha256,
                    info.tar_size,
                    info.deriver,
                    info.ca,
                    now,
                    json.dumps(list(info.signatures)),
                ],
            )
            new_id = cur.lastrowid
            for ref in info.references:
                ref_row = (
                    [new_id]
                    if ref == info.path
                    else c.execute("SELECT id FROM paths WHERE path = ?", [str(ref)]).fetchone()
                )
                if ref_row is None:
                    raise ValueError(f"reference {ref} of {info.path} is not valid")
                c.execute("INSERT INTO refs VALUES (?, ?)", [new_id, ref_row[0]])
        return PathInfo(**{**info.__dict__, "registered_at": now})

    def set_layer_hash(self, path: StorePath, tar_sha256: str) -> None:
        """Records the layer form's SHA-256 of a path registered without it."""
        with self.transaction() as c:
            c.execute(
                "UPDATE paths SET tar_sha256 = ? WHERE path = ? AND tar_sha256 = ''",
                [tar_sha256, str(path)],
            )

    def info(self, path: StorePath) -> PathInfo | None:
        rows = self._query(
            "SELECT id, nar_hash, nar_size, tar_sha256, tar_size, deriver, ca, registered_at,"
            " signatures FROM paths WHERE path = ?",
            [str(path)],
        )
        if not rows:
            return None
        pid, nar_hash, nar_size, tar_sha256, tar_size, deriver, ca, at, sigs = rows[0]
        refs = self._query(
            "SELECT p.path FROM refs r JOIN paths p ON p.id = r.reference WHERE r.referrer = ?"
            " ORDER BY p.path",
            [pid],
        )
        return PathInfo(
            path,
            nar_hash,
            nar_size,
            tar_sha256,
            tar_size,
            tuple(StorePath.parse(r[0]) for r in refs),
            deriver,
            ca,
            at,
            tuple(json.loads(sigs)),
        )

    def references(self, path: StorePath) -> list[StorePath]:
        rows = self._query(
            "SELECT p.path FROM paths q JOIN refs r ON r.referrer = q.id"
            " JOIN paths p ON p.id = r.reference WHERE q.path = ?",
            [str(path)],
        )
        return [StorePath.parse(r[0]) for r in rows]

    def referrers(self, path: StorePath) -> list[StorePath]:
        rows = self._query(
            "SELECT p.path FROM paths q JOIN refs r ON r.reference = q.id"
            " JOIN paths p ON p.id = r.referrer WHERE q.path = ?",
            [str(path)],
        )
        return [StorePath.parse(r[0]) for r in rows]

    def all_paths(self) -> list[StorePath]:
        return [StorePath.parse(r[0]) for r in self._query("SELECT path FROM paths ORDER BY path")]

    def all_references(self) -> dict[StorePath, list[StorePath]]:
        out: dict[StorePath, list[StorePath]] = {p: [] for p in self.all_paths()}
        for a, b in self._query(
            "SELECT p.path, q.path FROM refs r JOIN paths p ON p.id = r.referrer"
            " JOIN paths q ON q.id = r.reference"
        ):
            out[StorePath.parse(a)].append(StorePath.parse(b))
        return out

    def unregister(self, paths: Iterable[StorePath]) -> None:
        with self.transaction() as c:
            for p in paths:
                row = c.execute("SELECT id FROM paths WHERE path = ?", [str(p)]).fetchone()
                if row is not None:
                    c.execute("DELETE FROM refs WHERE reference = ?", row)
                    c.execute("DELETE FROM paths WHERE id = ?", row)

    def derivers(self) -> set[str]:
        return {r[0] for r in self._query("SELECT DISTINCT deriver FROM paths") if r[0]}

"""The embedded search store: SQLite (WAL, FTS5) shared by the Argilla server and its rq worker.

This module knows nothing of Argilla's ORM: it stores plain documents and answers queries on them.
`argilla_stack.engine` maps Argilla's models and filter objects onto it.

Layout, one row per value so that multi-valued fields (multi-label suggestions, list metadata)
match a filter when any value does, as in Elasticsearch:

* ``records``: one row per record (dataset, status, timestamps, insertion sequence).
* ``facts``: ``(rid, path, term, num)`` for metadata (``metadata.<name>``) and suggestions
  (``suggestions.<question>.<value|score|agent|type>``).
* ``responses`` and ``response_values``: nested per response, so that a filter on the status or a
  value *and* the user matches within one response.
* ``fts``: FTS5 over each text field plus one ``*`` row with all fields of a record.
* ``vectors``: float32 blobs; similarity is an exact, vectorised cosine over an in-process matrix
  cached per vector setting and invalidated by a generation counter bumped on every write.

Staleness: every write transaction bumps ``meta.generation`` and, after it commits, records
``(store_id, generation)`` in a stamp file beside the store (``<stem>-generation.json``, only ever
raised; not ``<store>*``, so copying the store's files does not copy it).
A store file restored from an older copy has a lower generation than its stamp (or another
store's id), which :meth:`SearchStore.check` reports as :class:`StoreStaleError` even when its
record counts match the database's, so the launcher rebuilds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS indexes(dataset_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS records(
    rid INTEGER PRIMARY KEY,
    dataset_id TEXT NOT NULL,
    record_id TEXT NOT NULL UNIQUE,
    external_id TEXT,
    status TEXT,
    inserted_at REAL,
    updated_at REAL
);
CREATE INDEX IF NOT EXISTS records_dataset ON records(dataset_id, status);
CREATE TABLE IF NOT EXISTS facts(rid INTEGER NOT NULL, path TEXT NOT NULL, term TEXT, num REAL);
CREATE INDEX IF NOT EXISTS facts_term ON facts(path, term, rid);
CREATE INDEX IF NOT EXISTS facts_num ON facts(path, num, rid);
CREATE INDEX IF NOT EXISTS facts_rid ON facts(rid, path);
CREATE TABLE IF NOT EXISTS responses(
    response_id TEXT PRIMARY KEY,
    rid INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_rid ON responses(rid);
CREATE INDEX IF NOT EXISTS responses_user ON responses(user_id, status);
CREATE TABLE IF NOT EXISTS response_values(
    response_id TEXT NOT NULL, rid INTEGER NOT NULL, question TEXT NOT NULL, term TEXT, num REAL
);
CREATE INDEX IF NOT EXISTS response_values_id ON response_values(response_id);
CREATE INDEX IF NOT EXISTS response_values_q ON response_values(question, term);
CREATE TABLE IF NOT EXISTS vectors(
    rid INTEGER NOT NULL, settings_id TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (settings_id, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vectors_rid ON vectors(rid);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    body, field UNINDEXED, rid UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
);
"""


class StoreCorruptError(RuntimeError):
    """The store file is not a valid search store; delete it and it is rebuilt from Argilla's database."""


class StoreStaleError(StoreCorruptError):
    """The store file is older than the last write made to it (restored from an older copy)."""


@dataclass
class Document:
    """A record as the store sees it. ``facts`` are ``(path, value)`` pairs; lists give one row per item."""

    record_id: str
    external_id: str | None
    status: str
    inserted_at: float
    updated_at: float
    texts: dict[str, str] = field(default_factory=dict)
    facts: list[tuple[str, Any]] = field(default_factory=list)
    responses: list[ResponseDoc] = field(default_factory=list)
    vectors: dict[str, Sequence[float]] = field(default_factory=dict)


@dataclass
class ResponseDoc:
    response_id: str
    user_id: str
    status: str
    values: dict[str, Any] = field(default_factory=dict)


def _term_num(value: Any) -> tuple[str | None, float | None]:
    if isinstance(value, bool):
        return str(value).lower(), float(value)
    if isinstance(value, int | float):
        return str(value), float(value)
    if isinstance(value, str):
        return value, None
    return None, None


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, str | int | float | bool)]
    if isinstance(value, str | int | float | bool):
        return [value]
    return []  # structured values (spans, rankings) are not searchable, as in Argilla's own engines


class SearchStore:
    """Thread- and fork-safe access to one SQLite store file.

    A connection is opened per (process, thread): the rq worker forks per job, and a SQLite
    connection must never cross a fork.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._local = threading.local()
        self._vector_cache: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}

    # -- connection ---------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=60000")
                conn.execute("PRAGMA cache_size=-65536")
                conn.executescript(_SCHEMA)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", (uuid.uuid4().hex,))
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise StoreCorruptError(f"search store {self.path} is unreadable ({exc})") from exc
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def check(self) -> None:
        """Raise :class:`StoreCorruptError` unless the file passes SQLite's quick check."""
        try:
            row = self.db.execute("PRAGMA quick_check").fetchone()
            self.db.execute("SELECT count(*) FROM records").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreCorruptError(f"search store {self.path} is corrupt ({exc})") from exc
        if row[0] != "ok":
            raise StoreCorruptError(f"search store {self.path} failed its integrity check: {row[0]}")
        stamp = self._read_stamp()
        store_id, generation = self.get_meta("store_id"), int(self.get_meta("generation") or 0)
        if stamp is None:
            self._raise_stamp(store_id, generation)
        elif stamp["store_id"] != store_id or generation < stamp["generation"]:
            raise StoreStaleError(
                f"search store {self.path} is older than its last write (generation {generation} of store "
                f"{store_id}, stamp says {stamp['generation']} of store {stamp['store_id']}): restored from a copy?"
            )

    @property
    def stamp_path(self) -> Path:
        # not under the store's own name prefix: `cp search.sqlite3* backup/` must not carry the
        # stamp back in time with the store (a review restored both and the store went unnoticed)
        return self.path.with_name(f"{self.path.stem}-generation.json")

    def _read_stamp(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.stamp_path.read_text())
            return {"store_id": str(data["store_id"]), "generation": int(data["generation"])}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _raise_stamp(self, store_id: str | None, generation: int) -> None:
        """Write (store_id, generation) to the stamp unless it already holds a later generation of
        this store (server and worker write concurrently; a lock keeps the stamp monotonic)."""
        lock_path = self.stamp_path.with_name(self.stamp_path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = self._read_stamp()
            if current and current["store_id"] == store_id and current["generation"] >= generation:
                return
            tmp = self.stamp_path.with_name(f"{self.stamp_path.name}.{os.getpid()}.tmp")
            tmp_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(tmp_fd, "w") as handle:
                json.dump({"store_id": store_id, "generation": generation}, handle)
            os.replace(tmp, self.stamp_path)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; IMMEDIATE takes the write lock up front so the server and worker queue."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            generation = int(
                db.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation' RETURNING value"
                ).fetchone()[0]
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._raise_stamp(self.get_meta("store_id"), generation)

    def _write(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        with self._transaction() as db:
            for sql, params in statements:
                db.execute(sql, params)

    # -- indexes --------------------------------------------------------------------------------
    def create_index(self, dataset_id: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO indexes VALUES (?)", (dataset_id,))

    def delete_index(self, dataset_id: str) -> None:
        rids = [row[0] for row in self.db.execute("SELECT rid FROM records WHERE dataset_id=?", (dataset_id,))]
        self._delete_rids(rids, extra=[("DELETE FROM indexes WHERE dataset_id=?", (dataset_id,))])

    def dataset_counts(self) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT i.dataset_id, count(r.rid) FROM indexes i "
            "LEFT JOIN records r ON r.dataset_id = i.dataset_id GROUP BY i.dataset_id"
        )
        return {dataset_id: count for dataset_id, count in rows}

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    # -- writes ---------------------------------------------------------------------------------
    def _rid(self, record_id: str) -> int | None:
        row = self.db.execute("SELECT rid FROM records WHERE record_id=?", (record_id,)).fetchone()
        return row[0] if row else None

    def _delete_rids(self, rids: Sequence[int], extra: Sequence[tuple[str, Sequence[Any]]] = ()) -> None:
        statements: list[tuple[str, Sequence[Any]]] = []
        settings: set[Any] = set()
        for start in range(0, len(rids), 500):
            chunk = list(rids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            settings.update(
                row[0]
                for row in self.db.execute(f"SELECT DISTINCT settings_id FROM vectors WHERE rid IN ({marks})", chunk)
            )
            for table in ("facts", "responses", "response_values", "vectors", "fts", "records"):
                statements.append((f"DELETE FROM {table} WHERE rid IN ({marks})", chunk))
        statements += [self._bump_sql(settings_id) for settings_id in settings]
        statements += list(extra)
        self._write(statements)

    @staticmethod
    def _bump_sql(settings_id: str) -> tuple[str, Sequence[Any]]:
        return (
            "INSERT INTO meta VALUES (?, '1') ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            (f"vectors:{settings_id}",),
        )

    def index_documents(self, dataset_id: str, documents: Sequence[Document]) -> None:
        """Insert or replace whole documents (an upsert by ``record_id``)."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO indexes VALUES (?)", (dataset_id,))
            touched_settings: set[str] = set()
            for doc in documents:
                rid = self._rid(doc.record_id)
                if rid is not None:
                    for table in ("facts", "responses", "response_values", "fts"):
                        db.execute(f"DELETE FROM {table} WHERE rid=?", (rid,))
                    old = [row[0] for row in db.execute("SELECT settings_id FROM vectors WHERE rid=?", (rid,))]
                    touched_settings.update(old)
                    db.execute("DELETE FROM vectors WHERE rid=?", (rid,))
                    db.execute(
                        "UPDATE records SET external_id=?, status=?, inserted_at=?, updated_at=? WHERE rid=?",
                        (doc.external_id, doc.status, doc.inserted_at, doc.updated_at, rid),
                    )
                else:
                    rid = db.execute(
                        "INSERT INTO records(dataset_id, record_id, external_id, status, inserted_at, updated_at)"
                        " VALUES (?,?,?,?,?,?)",
                        (
                            dataset_id,
                            doc.record_id,
                            doc.external_id,
                            doc.status,
                            doc.inserted_at,
                            doc.updated_at,
                        ),
                    ).lastrowid
                assert rid is not None  # sqlite3 gives the new row's id after an INSERT
                self._insert_facts(rid, doc.facts)
                for response in doc.responses:
                    self._insert_response(rid, response)
                texts = [(text, name, rid) for name, text in doc.texts.items() if text]
                if texts:
                    texts.append((" \n ".join(text for text, _, _ in texts), "*", rid))
                    db.executemany("INSERT INTO fts(body, field, rid) VALUES (?,?,?)", texts)
                for settings_id, value in doc.vectors.items():
                    blob = np.asarray(value, dtype=np.float32).tobytes()
                    db.execute("INSERT INTO vectors VALUES (?,?,?)", (rid, settings_id, blob))
                    touched_settings.add(settings_id)
            for settings_id in touched_settings:
                db.execute(*self._bump_sql(settings_id))

    def _insert_facts(self, rid: int, facts: Iterable[tuple[str, Any]]) -> None:
        rows = []
        for path, value in facts:
            for item in _flatten(value):
                term, num = _term_num(item)
                rows.append((rid, path, term, num))
        self.db.executemany("INSERT INTO facts VALUES (?,?,?,?)", rows)

    def _insert_response(self, rid: int, response: ResponseDoc) -> None:
        db = self.db
        db.execute("DELETE FROM response_values WHERE response_id=?", (response.response_id,))
        db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?,?,?,?)",
            (response.response_id, rid, response.user_id, response.status),
        )
        rows = []
        for question, value in response.values.items():
            for item in _flatten(value):
                term, num = _term_num(item)
                rows.append((response.response_id, rid, question, term, num))
        db.executemany("INSERT INTO response_values VALUES (?,?,?,?,?)", rows)

    def delete_documents(self, record_ids: Sequence[str]) -> None:
        rids = [rid for rid in (self._rid(record_id) for record_id in record_ids) if rid is not None]
        self._delete_rids(rids)

    def update_record(self, record_id: str, status: str | None = None, facts: Sequence[tuple[str, Any]] = ()):
        rid = self._rid(record_id)
        if rid is None:
            return
        if status is not None:
            with self._transaction() as db:
                db.execute("UPDATE records SET status=? WHERE rid=?", (status, rid))
        if facts:
            self.replace_facts(record_id, {path for path, _ in facts}, facts)

    def replace_facts(self, record_id: str, paths: set[str], facts: Sequence[tuple[str, Any]]) -> None:
        """Replace every fact whose path is in ``paths`` (e.g. one question's suggestion)."""
        rid = self._rid(record_id)
        if rid is None:
            return
        with self._transaction() as db:
            for path in paths:
                db.execute("DELETE FROM facts WHERE rid=? AND path=?", (rid, path))
            self._insert_facts(rid, facts)

    def upsert_response(self, record_id: str, response: ResponseDoc) -> None:
        rid = self._rid(record_id)
        if rid is None:
            return
        with self._transaction():
            self._insert_response(rid, response)

    def delete_response(self, response_id: str) -> None:
        self._write(
            [
                ("DELETE FROM response_values WHERE response_id=?", (response_id,)),
                ("DELETE FROM responses WHERE response_id=?", (response_id,)),
            ]
        )

    # -- reads ----------------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.db.execute(sql, params).fetchall()

    def vector_matrix(self, dataset_id: str, settings_id: str) -> tuple[np.ndarray, np.ndarray]:
        """All vectors of one setting as ``(rids (n,), unit-normalised float32 matrix (n, d))``."""
        generation = int(self.get_meta(f"vectors:{settings_id}") or 0)
        cached = self._vector_cache.get(settings_id)
        if cached is not None and cached[0] == generation:
            return cached[1], cached[2]
        rows = self.db.execute(
            "SELECT v.rid, v.value FROM vectors v JOIN records r ON r.rid = v.rid "
            "WHERE v.settings_id=? AND r.dataset_id=? ORDER BY v.rid",
            (settings_id, dataset_id),
        ).fetchall()
        if not rows:
            rids, matrix = np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32)
        else:
            rids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), -1)
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            matrix = (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32, copy=False)
        self._vector_cache[settings_id] = (generation, rids, matrix)
        return rids, matrix

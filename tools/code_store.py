"""Parsed symbols on disk, keyed by (git blob SHA, language): a file's content is parsed once, whichever
path, branch or worktree it appears under. One SQLite file in WAL mode, so several processes can share it.
It is a cache: a store that cannot be opened or written degrades to memory."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dsagent.tools.code_parse import EXTRACT_VERSION

DB_NAME = "symbols.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS symbols (sha TEXT, lang TEXT, data TEXT, PRIMARY KEY (sha, lang)) WITHOUT ROWID",
)

Key = tuple[str, str]  # (blob sha, language)


class SymbolStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self.persistent = True
        try:
            self._db = self._open(self.directory / DB_NAME)
        except (sqlite3.Error, OSError):
            self._db = self._open_memory()

    def _open(self, path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        ignore = path.parent / ".gitignore"
        if not ignore.exists():  # keep the cache out of `git status` and out of patches
            ignore.write_text("*\n")
        try:
            return self._prepare(sqlite3.connect(path, check_same_thread=False, timeout=10))
        except sqlite3.DatabaseError:  # corrupt or foreign file: it is only a cache, start over
            path.unlink(missing_ok=True)
            return self._prepare(sqlite3.connect(path, check_same_thread=False, timeout=10))

    def _open_memory(self) -> sqlite3.Connection:
        self.persistent = False
        return self._prepare(sqlite3.connect(":memory:", check_same_thread=False))

    def _prepare(self, db: sqlite3.Connection) -> sqlite3.Connection:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")  # a lost write costs one re-parse, never correctness
        for statement in _SCHEMA:
            db.execute(statement)
        row = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        if row is None or row[0] != EXTRACT_VERSION:
            db.execute("DELETE FROM symbols")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (EXTRACT_VERSION,))
        db.commit()
        return db

    def get_many(self, keys: Iterable[Key]) -> dict[Key, dict[str, Any]]:
        wanted = list(dict.fromkeys(keys))
        found: dict[Key, dict[str, Any]] = {}
        with self._lock:
            for i in range(0, len(wanted), 400):
                chunk = wanted[i : i + 400]
                marks = ",".join("(?, ?)" for _ in chunk)
                flat = [part for key in chunk for part in key]
                query = f"SELECT sha, lang, data FROM symbols WHERE (sha, lang) IN (VALUES {marks})"
                for sha, lang, data in self._db.execute(query, flat):
                    found[(sha, lang)] = json.loads(data)
        return found

    def put_many(self, rows: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        encoded = [(sha, lang, json.dumps(data, separators=(",", ":"))) for sha, lang, data in rows]
        if not encoded:
            return
        with self._lock:
            try:
                self._db.executemany("INSERT OR REPLACE INTO symbols VALUES (?, ?, ?)", encoded)
                self._db.commit()
            except sqlite3.Error:  # read-only or full disk: keep working from memory
                self._db = self._open_memory()
                self._db.executemany("INSERT OR REPLACE INTO symbols VALUES (?, ?, ?)", encoded)

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM symbols").fetchone()[0]

    def prune(self, keep: set[Key], slack: int = 4) -> int:
        """Drop entries no current file uses once the store holds `slack` times more than needed."""
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM symbols").fetchone()[0]
            if total <= slack * len(keep) + 1000:
                return 0
            stale = [key for key in self._db.execute("SELECT sha, lang FROM symbols") if tuple(key) not in keep]
            self._db.executemany("DELETE FROM symbols WHERE sha = ? AND lang = ?", stale)
            self._db.commit()
            return len(stale)

    def close(self) -> None:
        with self._lock:
            self._db.close()

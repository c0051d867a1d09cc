"""The code index: definitions and references of every source file in a workspace.

`refresh()` keeps it in step with the disk. It stats every known file (cheap) and re-reads only those
whose stat changed; a file whose content hash is new is parsed, everything else comes from the store.
A cold build spreads parsing over all cores; small updates parse in-process (milliseconds)."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from dsagent.multiproc import start_helpers
from dsagent.tools.code_langs import language_for
from dsagent.tools.code_parse import blob_sha, parse_source
from dsagent.tools.code_store import SymbolStore
from dsagent.tools.gitfiles import RACY_NS, FileLister
from dsagent.tools.textfile import read_regular

MAX_SOURCE_BYTES = 1024 * 1024  # bigger files are generated or minified: not worth indexing
POOL_MIN_FILES = 48  # below this, a process pool costs more than it saves

Progress = Callable[[int, int], None]  # (files parsed so far, files to parse)


class Definition(NamedTuple):
    name: str
    kind: str
    path: str
    line: int
    end_line: int
    scope: str
    signature: str

    @property
    def qualified(self) -> str:
        return f"{self.scope}.{self.name}" if self.scope else self.name


@dataclass
class IndexedFile:
    path: str
    lang: str
    sha: str
    stat: tuple[int, int, int]  # (mtime_ns, size, inode)
    seen_at: int  # time.time_ns() when the content was hashed
    defs: list[list[Any]]
    refs: dict[str, list[int]]


@dataclass
class UpdateStats:
    files: int = 0
    parsed: int = 0
    from_store: int = 0
    removed: int = 0
    seconds: float = 0.0
    changed: list[str] = field(default_factory=list)


def parse_batch(root: str, items: list[tuple[str, str]]) -> list[tuple[str, str, str, dict[str, Any]] | None]:
    """Worker: read and parse files; returns (path, lang, sha, symbols) or None for unreadable ones."""
    out = []
    for path, lang in items:
        data = read_regular(Path(root, path), MAX_SOURCE_BYTES)
        if data is None or _minified(data):
            out.append(None)
            continue
        out.append((path, lang, blob_sha(data), parse_source(lang, data)))
    return out


def _minified(data: bytes) -> bool:
    """Generated one-line code (bundles, minified libraries) has no outline worth indexing."""
    return len(data) > 4096 and len(data) / (data.count(b"\n") + 1) > 300


def _pool_context():
    """fork is fastest and needs no re-import of the main module, but forking a process that runs
    other threads can deadlock the child; such processes (the TUI) use a fork server instead."""
    import multiprocessing

    if threading.active_count() == 1:
        context = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["dsagent.tools.code_parse"])
    start_helpers(context)  # on the real stderr, even under the TUI's capture
    return context


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class CodeIndex:
    def __init__(
        self,
        root: Path,
        index_dir: Path,
        lister: FileLister | None = None,
        workers: int | None = None,
        pool_min_files: int = POOL_MIN_FILES,
    ) -> None:
        self.root = Path(os.path.realpath(root))
        self._base = str(self.root)
        self.lister = lister or FileLister(self.root)
        self.store = SymbolStore(index_dir)
        self.workers = workers or _cores()
        self.pool_min_files = pool_min_files
        self.files: dict[str, IndexedFile] = {}
        self.version = 0  # bumped whenever any file's symbols change
        self._by_name: dict[str, list[Definition]] | None = None
        self._removed: list[str] = []
        self._listing_seen: list[str] | None = None
        self._listing: dict[str, str] = {}

    # -- keeping in step with the disk -------------------------------------------------------------
    def refresh(self, progress: Progress | None = None, paths: Iterable[str] | None = None) -> UpdateStats:
        """Catch up with the disk: every file, or only `paths` when the caller knows what changed."""
        start = time.perf_counter()
        stats = UpdateStats()
        if paths is None:
            listing = self._sources()
            for gone in [p for p in self.files if p not in listing]:
                self._forget(gone)
                stats.removed += 1
                stats.changed.append(gone)
        else:
            listing = {p: lang for p in paths if (lang := language_for(p)) and ".min." not in p}
        pending: list[tuple[str, str, str, tuple[int, int, int], bytes]] = []
        self._removed = []
        for path, lang in listing.items():
            item = self._check(path, lang, force=paths is not None)
            if item is not None:
                pending.append(item)
        stats.removed += len(self._removed)
        stats.changed.extend(self._removed)
        if pending:
            self._resolve(pending, stats, progress)
        stats.files = len(self.files)
        stats.seconds = time.perf_counter() - start
        if stats.changed:
            self.version += 1
        return stats

    def _sources(self) -> dict[str, str]:
        """Indexable paths of the current listing and their languages (recomputed when it changes)."""
        files = self.lister.files()
        if files is not self._listing_seen:
            self._listing_seen = files
            self._listing = {p: lang for p in files if (lang := language_for(p)) and ".min." not in p}
        return self._listing

    def _check(self, path: str, lang: str, force: bool = False):
        """None when the file is unchanged; else what `_resolve` needs to (re)load it."""
        full = os.path.join(self._base, path)
        known = self.files.get(path)
        try:
            st = os.lstat(full)  # symlinks are not followed: they may lead out of the workspace
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            if known is not None:
                self._forget(path)
                self._removed.append(path)
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        fresh = known is not None and known.stat == key and st.st_mtime_ns < known.seen_at - RACY_NS
        if fresh and not force:
            return None
        data = read_regular(full, MAX_SOURCE_BYTES)
        if data is not None and _minified(data):
            data = None
        if data is None:
            if known is not None:
                self._forget(path)
                self._removed.append(path)
            return None
        sha = blob_sha(data)
        if known is not None and known.sha == sha and known.lang == lang:
            known.stat, known.seen_at = key, time.time_ns()
            return None
        return path, lang, sha, key, data

    def _resolve(self, pending, stats: UpdateStats, progress: Progress | None) -> None:
        stored = self.store.get_many((sha, lang) for _, lang, sha, _, _ in pending)
        to_parse = [item for item in pending if (item[2], item[1]) not in stored]
        parsed = self._parse(to_parse, progress)
        self.store.put_many((sha, lang, symbols) for (sha, lang), symbols in parsed.items())
        now = time.time_ns()
        for path, lang, sha, key, _ in pending:
            symbols = stored.get((sha, lang)) or parsed.get((sha, lang))
            if symbols is None:
                continue
            self._forget(path)
            self.files[path] = IndexedFile(path, lang, sha, key, now, symbols["defs"], symbols["refs"])
            self._add_names(self.files[path])
            stats.changed.append(path)
        stats.parsed += len(parsed)
        stats.from_store += len(pending) - len(to_parse)

    def _parse(self, items, progress: Progress | None) -> dict[tuple[str, str], dict[str, Any]]:
        results: dict[tuple[str, str], dict[str, Any]] = {}
        total = len(items)
        if total < self.pool_min_files or self.workers < 2:
            for done, (_, lang, sha, _, data) in enumerate(items, 1):
                results[(sha, lang)] = parse_source(lang, data)
                if progress:
                    progress(done, total)
            return results
        done = 0
        try:
            for batch in self._parallel(items):
                for item in batch:
                    if item is not None:
                        _, lang, sha, symbols = item
                        results[(sha, lang)] = symbols
                    done += 1
                if progress:
                    progress(done, total)
        except (BrokenProcessPool, OSError, ValueError):  # no worker processes here: parse the rest in-process
            for _, lang, sha, _, data in items:
                if (sha, lang) not in results:
                    results[(sha, lang)] = parse_source(lang, data)
                    done += 1
                    if progress:
                        progress(done, total)
        return results

    def _parallel(self, items):
        # Largest files first, in many small batches, so no core idles at the end.
        ordered = sorted(items, key=lambda item: -len(item[4]))
        chunks = max(self.workers * 8, 1)
        batches = [[(path, lang) for path, lang, *_ in ordered[i::chunks]] for i in range(chunks)]
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=_pool_context()) as pool:
            futures = [pool.submit(parse_batch, str(self.root), batch) for batch in batches if batch]
            for future in as_completed(futures):
                yield future.result()

    # -- lookups ------------------------------------------------------------------------------------
    def definitions(self, name: str) -> list[Definition]:
        return list(self._names().get(name, ()))

    def all_names(self) -> dict[str, list[Definition]]:
        return self._names()

    def references(self, name: str) -> list[tuple[str, int]]:
        return [(path, line) for path, f in self.files.items() for line in f.refs.get(name, ())]

    def file_definitions(self, path: str) -> list[Definition]:
        f = self.files.get(path)
        return [Definition(d[0], d[1], path, d[2], d[3], d[4], d[5]) for d in f.defs] if f else []

    def counts(self) -> tuple[int, int, int]:
        """(files, definitions, reference sites)."""
        defs = sum(len(f.defs) for f in self.files.values())
        refs = sum(len(lines) for f in self.files.values() for lines in f.refs.values())
        return len(self.files), defs, refs

    def prune_store(self) -> int:
        return self.store.prune({(f.sha, f.lang) for f in self.files.values()})

    def close(self) -> None:
        self.store.close()

    def _names(self) -> dict[str, list[Definition]]:
        if self._by_name is None:
            self._by_name = {}
            for f in self.files.values():
                self._add_names(f)
        return self._by_name

    def _add_names(self, f: IndexedFile) -> None:
        if self._by_name is None:
            return
        for d in f.defs:
            self._by_name.setdefault(d[0], []).append(Definition(d[0], d[1], f.path, d[2], d[3], d[4], d[5]))

    def _forget(self, path: str) -> None:
        old = self.files.pop(path, None)
        if old is None or self._by_name is None:
            return
        for name in {d[0] for d in old.defs}:
            remaining = [d for d in self._by_name.get(name, ()) if d.path != path]
            if remaining:
                self._by_name[name] = remaining
            else:
                self._by_name.pop(name, None)

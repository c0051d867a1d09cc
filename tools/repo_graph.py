"""The reference graph behind the repo map, as flat numpy arrays, and PageRank over it.

E edges, P definition pairs (file, name), N files. Per-file arrays are cached by content hash, so a
rebuild after one file changed is a concatenation and a vectorised join, not a walk over every
reference in Python."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from dsagent.tools.code_index import CodeIndex


@dataclass
class Graph:
    paths: list[str] = field(default_factory=list)
    file_id: dict[str, int] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    name_id: dict[str, int] = field(default_factory=dict)
    name_weight: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # definition pairs, sorted by name id: [P]
    def_file: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    def_name: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    defs_per_file: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # edges: [E]
    edge_src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    edge_dst: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    edge_name: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    edge_def: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # path -> (sha, defined name ids [d], referenced name ids [r], reference counts [r])
    per_file: dict[str, tuple[str, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    def definers(self, name: int) -> list[int]:
        lo, hi = np.searchsorted(self.def_name, [name, name + 1])
        return self.def_file[lo:hi].tolist()


def _intern(graph: Graph, name: str) -> int:
    found = graph.name_id.get(name)
    if found is None:
        found = graph.name_id[name] = len(graph.names)
        graph.names.append(name)
    return found


PLAIN_WEIGHT = 0.1
PLAIN_SPREAD = 20  # a plain word used by this many files counts half as much again


def _name_weight(name: str) -> float:
    """How surely a use of `name` means the definition of that name. Short, magic and plain lowercase
    words (`value`, `split`, `type`) are used for many unrelated things (string methods, locals);
    CamelCase and compound names (`QuerySet`, `make_engine`) almost always mean the one definition."""
    core = name.strip("_")
    if len(core) < 3 or (name.startswith("__") and name.endswith("__")):
        return 0.0
    weight = 1.0 if _specific(core) else PLAIN_WEIGHT
    return weight * (0.3 if name.startswith("_") else 1.0)


def _specific(core: str) -> bool:
    return (any(c.isupper() for c in core) and any(c.islower() for c in core)) or "_" in core or len(core) >= 12


def build_graph(index: CodeIndex, previous: Graph | None = None) -> Graph:
    graph = Graph()
    if previous is not None:  # keep interned names and per-file arrays of unchanged files
        graph.names, graph.name_id = previous.names, previous.name_id
        graph.per_file = {p: v for p, v in previous.per_file.items() if p in index.files}
    graph.paths = sorted(index.files)
    graph.file_id = {p: i for i, p in enumerate(graph.paths)}
    for path in graph.paths:
        f = index.files[path]
        cached = graph.per_file.get(path)
        if cached is None or cached[0] != f.sha:
            defined = np.unique(np.array([_intern(graph, d[0]) for d in f.defs], dtype=np.int64))
            refs = np.array([_intern(graph, n) for n in f.refs], dtype=np.int64)
            counts = np.array([len(lines) for lines in f.refs.values()], dtype=np.float64)
            graph.per_file[path] = (f.sha, defined, refs, counts)
    known = previous.name_weight if previous is not None else np.zeros(0)
    fresh = np.array([_name_weight(n) for n in graph.names[len(known) :]], dtype=np.float64)
    graph.name_weight = np.concatenate([known, fresh])
    _join(graph)
    return graph


def _join(graph: Graph) -> None:
    parts = [graph.per_file[p] for p in graph.paths]
    n = len(graph.paths)
    if not parts:
        return
    def_name = np.concatenate([p[1] for p in parts])
    def_file = np.repeat(np.arange(n), [len(p[1]) for p in parts])
    order = np.lexsort((def_file, def_name))
    graph.def_name, graph.def_file = def_name[order], def_file[order]
    graph.defs_per_file = fsum(graph.def_file, np.ones(len(graph.def_file)), n)
    ref_name = np.concatenate([p[2] for p in parts])
    ref_count = np.concatenate([p[3] for p in parts])
    ref_file = np.repeat(np.arange(n), [len(p[2]) for p in parts])
    lo = np.searchsorted(graph.def_name, ref_name, side="left")
    hi = np.searchsorted(graph.def_name, ref_name, side="right")
    fan = hi - lo  # how many files define each referenced name
    keep = fan > 0
    ref_name, ref_count, ref_file, lo, fan = ref_name[keep], ref_count[keep], ref_file[keep], lo[keep], fan[keep]
    # One edge per (reference, definer): expand each reference `fan` times.
    which = np.repeat(np.arange(len(ref_name)), fan)
    offset = np.arange(len(which)) - np.repeat(np.cumsum(fan) - fan, fan)
    edge_def = lo[which] + offset
    src, dst = ref_file[which], graph.def_file[edge_def]
    keep = (src != dst) & (graph.name_weight[ref_name[which]] > 0)  # no self-loops, no meaningless names
    which, edge_def, src, dst = which[keep], edge_def[keep], src[keep], dst[keep]
    graph.edge_src, graph.edge_dst, graph.edge_def = src, dst, edge_def
    graph.edge_name = ref_name[which]
    name_weight = graph.name_weight[graph.edge_name]
    # A plain word used all over the repository (`django` in every import, `.value` everywhere) is
    # vocabulary, not a dependency: damp it by how many files use it.
    users = fsum(ref_name, np.ones(len(ref_name)), len(graph.names))[graph.edge_name]
    plain = name_weight <= PLAIN_WEIGHT
    name_weight = np.where(plain, name_weight / (1.0 + users / PLAIN_SPREAD), name_weight)
    graph.weights = np.sqrt(ref_count[which]) * name_weight / fan[which]


def fsum(index: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Per-bucket sums of `weights`, as float64 even when there is nothing to sum (np.bincount then
    returns int64)."""
    return np.bincount(index, weights=weights, minlength=size).astype(np.float64, copy=False)


def pagerank(
    n: int,
    src: np.ndarray,
    dst: np.ndarray,
    weights: np.ndarray,
    restart: np.ndarray,
    damping: float = 0.85,
    iterations: int = 60,
    tol: float = 1e-6,
) -> np.ndarray:
    """Weighted personalized PageRank; dangling files hand their rank back to the restart vector."""
    out = fsum(src, weights, n)
    share = weights / np.maximum(out[src], 1e-300)
    dangling = out == 0
    ranks = restart.copy()
    for _ in range(iterations):
        moved = fsum(dst, ranks[src] * share, n)
        new = damping * (moved + ranks[dangling].sum() * restart) + (1 - damping) * restart
        if np.abs(new - ranks).sum() < tol:
            return new
        ranks = new
    return ranks

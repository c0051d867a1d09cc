"""The repo map: the most important definitions of a repository, as signatures, within a token budget.

Files are nodes of a graph; file F has an edge to file D for every name F uses that D defines. The
edges are weighted (more uses weigh more, names defined in many places weigh less), and a
personalized PageRank (focus files and mentioned symbols get the restart mass) ranks files; each
definition then gets the rank that flows into it along its name's edges. The graph is rebuilt from
per-file arrays only when the index changed, so a map with nothing changed costs one PageRank."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from dsagent.tools.code_index import CodeIndex, Definition
from dsagent.tools.repo_graph import Graph, build_graph, fsum, pagerank

MAX_SAME_NAME = 3
_TOKEN_SPLIT = re.compile(r"[\s,;`'\"()]+")


def estimate_tokens(text: str) -> int:
    """Tokens of code text for DeepSeek's tokenizer, erring high (about 3.5 characters per token)."""
    return math.ceil(len(text) / 3.3)


@dataclass
class MapResult:
    text: str
    tokens: int
    files: list[str]
    definitions: int
    unknown_focus: list[str]


class RepoMap:
    def __init__(self, index: CodeIndex) -> None:
        self.index = index
        self._graph: Graph | None = None
        self._graph_version = -1
        self._outlines: dict[str, tuple[str, _Outline]] = {}  # path -> (content sha, outline)

    def graph(self) -> Graph:
        if self._graph is None or self._graph_version != self.index.version:
            self._graph = build_graph(self.index, self._graph)
            self._graph_version = self.index.version
        return self._graph

    def render(self, focus: str | None = None, max_tokens: int = 2048) -> MapResult:
        graph = self.graph()
        focus_files, mentioned, unknown = self._parse_focus(graph, focus or "")
        if not graph.paths:
            return MapResult("(no source files in a supported language)", 0, [], 0, unknown)
        file_rank, def_scores = self._rank(graph, focus_files, mentioned)
        return self._render(graph, file_rank, def_scores, max_tokens, unknown)

    def file_ranks(self) -> dict[str, float]:
        """Global importance of every indexed file (no focus)."""
        graph = self.graph()
        if not graph.paths:
            return {}
        ranks, _ = self._rank(graph, set(), set())
        return dict(zip(graph.paths, ranks.tolist(), strict=True))

    def _parse_focus(self, graph: Graph, focus: str) -> tuple[set[int], set[int], list[str]]:
        files: set[int] = set()
        names: set[int] = set()
        unknown: list[str] = []
        for token in filter(None, _TOKEN_SPLIT.split(focus)):
            token = token.removeprefix("./").rstrip("/")
            hit = False
            if token in graph.file_id:
                files.add(graph.file_id[token])
                hit = True
            under = [i for p, i in graph.file_id.items() if p.startswith(token + "/")]
            stem = [i for p, i in graph.file_id.items() if p.rsplit("/", 1)[-1].split(".")[0] == token]
            files.update(under or stem)
            hit = hit or bool(under or stem)
            for part in {token, *re.split(r"\.|::", token)}:
                if part in graph.name_id and graph.definers(graph.name_id[part]):
                    names.add(graph.name_id[part])
                    hit = True
            if not hit:
                unknown.append(token)
        return files, names, unknown

    def _rank(self, graph: Graph, focus_files: set[int], mentioned: set[int]) -> tuple[np.ndarray, np.ndarray]:
        n = len(graph.paths)
        weights = graph.weights.copy()
        if mentioned:
            weights[np.isin(graph.edge_name, list(mentioned))] *= 10.0
        restart = np.zeros(n)
        for i in focus_files:
            restart[i] = 1.0
        for name in mentioned:
            for i in graph.definers(name):
                restart[i] = max(restart[i], 0.5)
        if not restart.any():
            restart[:] = 1.0
        restart /= restart.sum()
        ranks = pagerank(n, graph.edge_src, graph.edge_dst, weights, restart)
        # Rank flowing along each edge goes to the definition of that edge's name in the target file.
        out = fsum(graph.edge_src, weights, n)
        flow = ranks[graph.edge_src] * weights / np.maximum(out[graph.edge_src], 1e-12)
        scores = fsum(graph.edge_def, flow, len(graph.def_file))
        # Definitions nobody references still order by their file's rank, below everything referenced.
        scores += 1e-3 * ranks[graph.def_file] / np.maximum(graph.defs_per_file[graph.def_file], 1)
        top = scores.max(initial=0.0) + ranks.max(initial=0.0)
        outline = focus_files | {i for name in mentioned for i in graph.definers(name)}
        if outline:  # the focus files' own outline, interleaved with what they use
            files = graph.def_file[np.isin(graph.def_file, list(outline))]
            scores[np.isin(graph.def_file, list(outline))] += ranks[files] / np.maximum(graph.defs_per_file[files], 1)
        if mentioned:
            scores[np.isin(graph.def_name, list(mentioned))] += 2 * top
        return ranks, scores

    def _outline(self, path: str) -> _Outline:
        sha = self.index.files[path].sha
        cached = self._outlines.get(path)
        if cached is None or cached[0] != sha:
            cached = self._outlines[path] = (sha, _Outline(self.index.file_definitions(path)))
        return cached[1]

    def _render(self, graph: Graph, file_rank, def_scores, max_tokens: int, unknown: list[str]) -> MapResult:
        chosen: dict[int, dict[int, Definition]] = {}  # file id -> line -> definition
        used, misses = 0, 0
        for pair in np.argsort(-def_scores, kind="stable"):
            file = int(graph.def_file[pair])
            path = graph.paths[file]
            rows = self._outline(path).rows(graph.names[int(graph.def_name[pair])], chosen.get(file, {}))
            cost = sum(estimate_tokens(_line(d)) + 1 for d in rows) + (0 if file in chosen else len(path) // 3 + 2)
            if not rows:
                continue
            if used + cost > max_tokens:
                misses += 1
                if misses > 50:
                    break
                continue
            used += cost
            bucket = chosen.setdefault(file, {})
            for d in rows:
                bucket[d.line] = d
        order = sorted(chosen, key=lambda f: (-file_rank[f], graph.paths[f]))
        blocks = []
        for file in order:
            lines = [_line(d) for _, d in sorted(chosen[file].items())]
            blocks.append(graph.paths[file] + ":\n" + "\n".join(lines))
        text = "\n\n".join(blocks) if blocks else "(the budget is too small for a single definition)"
        count = sum(len(v) for v in chosen.values())
        return MapResult(text, estimate_tokens(text), [graph.paths[f] for f in order], count, unknown)


class _Outline:
    """One file's definitions, looked up by name and by qualified name."""

    def __init__(self, defs: list[Definition]) -> None:
        self.by_name: dict[str, list[Definition]] = {}
        for d in defs:
            self.by_name.setdefault(d.name, []).append(d)
        self.by_qualified = {d.qualified: d for d in defs}

    def rows(self, name: str, present: dict[int, Definition]) -> list[Definition]:
        """The definitions of `name` not shown yet, with their enclosing classes."""
        # A name defined many times in one file (`value` in ten classes) shows its first few only.
        wanted = [d for d in self.by_name.get(name, ()) if d.line not in present][:MAX_SAME_NAME]
        extra: list[Definition] = []
        for d in wanted:
            scope = d.scope
            while scope:
                parent = self.by_qualified.get(scope)
                if parent is not None and parent.line not in present and parent not in extra:
                    extra.append(parent)
                scope = scope.rpartition(".")[0]
        return extra + wanted


def _line(d: Definition) -> str:
    depth = d.scope.count(".") + 1 if d.scope else 0
    return f"{d.line:>6}: {'    ' * depth}{d.signature}"
